//! Placement: which node owns a key.
//!
//! One trait, [`Placement`], answers `owner_of(key)` for a fixed membership.
//! A placement is built from a [`PlacementSpec`] (the algorithm and its
//! settings) and a list of [`Member`]s with [`build`]; a membership change
//! builds a new placement, and [`crate::placement::analysis`] compares two.
//! Every algorithm hashes keys with [`crate::hash::key_hash`] only.

pub mod ring;

use serde::{Deserialize, Serialize};

/// A node taking part in placement: its id (e.g. `node-3`) and relative weight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

impl Member {
    pub fn new(id: impl Into<String>) -> Self {
        Member {
            id: id.into(),
            weight: 1,
        }
    }
}

/// The algorithm and its settings, as chosen at `shardscope serve` and sent to
/// the page so it can rebuild the very same placement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "algorithm", rename_all = "snake_case")]
pub enum PlacementSpec {
    /// Consistent hashing with `vnodes` virtual nodes per unit of weight.
    Ring { vnodes: u32 },
}

impl Default for PlacementSpec {
    fn default() -> Self {
        PlacementSpec::Ring { vnodes: 160 }
    }
}

/// Maps keys to members.
pub trait Placement: Send + Sync {
    /// The members this placement distributes keys over.
    fn members(&self) -> &[Member];
    /// The index (into [`Placement::members`]) of the member owning a key
    /// hash, or `None` when there are no members.
    fn owner_index(&self, hash: u64) -> Option<usize>;

    /// The id of the member that owns `key`.
    fn owner_of(&self, key: &[u8]) -> Option<&str> {
        let i = self.owner_index(crate::hash::key_hash(key))?;
        Some(self.members()[i].id.as_str())
    }
}

/// Members ordered by id with duplicate ids dropped: every algorithm starts
/// from this, so no placement depends on the order members were given in.
pub fn normalize(members: &[Member]) -> Vec<Member> {
    let mut members: Vec<Member> = members.to_vec();
    members.sort_by(|a, b| a.id.cmp(&b.id));
    members.dedup_by(|a, b| a.id == b.id);
    members
}

/// Builds the placement `spec` describes over `members`.
pub fn build(spec: &PlacementSpec, members: &[Member]) -> Box<dyn Placement> {
    match spec {
        PlacementSpec::Ring { vnodes } => Box::new(ring::Ring::new(members, *vnodes)),
    }
}
