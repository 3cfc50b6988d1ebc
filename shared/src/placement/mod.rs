//! Placement: which node owns a key.
//!
//! One trait, [`Placement`], answers `owner_of(key)` and the first R distinct
//! owners (replicas) for a membership. A placement is built from a
//! [`PlacementSpec`] (the algorithm and its settings) and a list of
//! [`Member`]s with [`build`]; [`analysis`] measures balance and, for a
//! membership change, exactly which keys move; [`explain`] says why a key has
//! its owner, by each algorithm's own rule. Every algorithm hashes keys
//! with [`crate::hash::key_hash`] only, and gives the same answer on x86_64
//! and wasm32 (floating point goes through `libm`, never the platform's).
//!
//! | algorithm | module | join moves | notes |
//! |---|---|---|---|
//! | `modulo` | [`modulo`] | ~N/(N+1) of keys | the seeds' phase-1 baseline |
//! | `ring` | [`ring`] | only keys to the new node | V virtual nodes x weight |
//! | `rendezvous` | [`rendezvous`] | only keys to the new node | HRW, weighted by `-w/ln(u)` |
//! | `jump` | [`jump`] | only keys to the new node | stable id -> bucket slots |
//! | `maglev` | [`maglev`] | mostly to the new node | table of prime size M |
//! | `bounded` | [`bounded`] | cascades | ring with capacity c x mean |

pub mod analysis;
pub mod bounded;
pub mod explain;
pub mod jump;
pub mod maglev;
pub mod modulo;
pub mod rendezvous;
pub mod ring;
mod spec;

pub use spec::{Algorithm, PlacementSpec, Settings, SpecError, CAPACITY, TABLE_SIZE, VNODES, WEIGHT};

use serde::{Deserialize, Serialize};

use crate::hash::key_hash;

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
        Member { id: id.into(), weight: 1 }
    }

    pub fn weighted(id: impl Into<String>, weight: u32) -> Self {
        Member { id: id.into(), weight }
    }
}

/// Maps keys to members.
pub trait Placement: Send + Sync {
    /// The members, ordered by id.
    fn members(&self) -> &[Member];

    /// The index (into [`Placement::members`]) of the member owning a key
    /// hash, or `None` when there are no members.
    fn owner_index(&self, hash: u64) -> Option<usize>;

    /// Up to `r` distinct member indices for a key hash, the owner first:
    /// where replicas of the key go.
    fn owner_indices(&self, hash: u64, r: usize) -> Vec<usize>;

    /// Why `hash` goes to its owner, by this algorithm's own rule.
    fn explain(&self, hash: u64) -> explain::Explanation;

    /// Replaces the membership. Algorithms with history (jump's stable
    /// buckets) keep it for members that stay.
    fn set_members(&mut self, members: &[Member]);

    /// The id of the member that owns `key`.
    fn owner_of(&self, key: &[u8]) -> Option<&str> {
        let i = self.owner_index(key_hash(key))?;
        Some(self.members()[i].id.as_str())
    }

    /// The ids of up to `r` distinct owners of `key`, the owner first.
    fn owners_of(&self, key: &[u8], r: usize) -> Vec<&str> {
        let members = self.members();
        self.owner_indices(key_hash(key), r).into_iter().map(|i| members[i].id.as_str()).collect()
    }

    /// State beyond the member list that another party needs to rebuild this
    /// exact placement: jump's slot table (see [`jump`]); `None` for the rest.
    fn slots(&self) -> Option<Vec<Option<String>>> {
        None
    }

    /// The ring positions where ownership can change, sorted, when the
    /// owner of a hash is that of the first position at or after it
    /// (wrapping): the ring's virtual nodes. `None` for the rest.
    fn ring_positions(&self) -> Option<&[u64]> {
        None
    }

    /// Whether placement depends on the key set (bounded): then the cluster
    /// reports every key written and removed.
    fn depends_on_keys(&self) -> bool {
        false
    }

    /// A key (by hash) now exists; a key-set placement gives it an owner
    /// without moving any other key. The rest ignore it.
    fn key_added(&mut self, _hash: u64) {}

    /// A key (by hash) no longer exists.
    fn key_removed(&mut self, _hash: u64) {}

    /// Adds (or re-weights) one member.
    fn add_member(&mut self, member: Member) {
        let mut members: Vec<Member> = self.members().iter().filter(|m| m.id != member.id).cloned().collect();
        members.push(member);
        self.set_members(&members);
    }

    /// Removes a member; `false` when it was not there.
    fn remove_member(&mut self, id: &str) -> bool {
        let before = self.members().len();
        let members: Vec<Member> = self.members().iter().filter(|m| m.id != id).cloned().collect();
        if members.len() == before {
            return false;
        }
        self.set_members(&members);
        true
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
///
/// `bounded` places keys as they are asked for; to place a known key set
/// exactly as the cluster would, use [`build_for_keys`].
pub fn build(spec: &PlacementSpec, members: &[Member]) -> Box<dyn Placement> {
    match spec {
        PlacementSpec::Modulo => Box::new(modulo::Modulo::new(members)),
        PlacementSpec::Ring { vnodes } => Box::new(ring::Ring::new(members, *vnodes)),
        PlacementSpec::Rendezvous => Box::new(rendezvous::Rendezvous::new(members)),
        PlacementSpec::Jump => Box::new(jump::Jump::new(members)),
        PlacementSpec::Maglev { table_size } => Box::new(maglev::Maglev::new(members, *table_size)),
        PlacementSpec::Bounded { vnodes, capacity } => {
            Box::new(bounded::Bounded::new(members, *vnodes, *capacity, &[]))
        }
    }
}

/// Rebuilds a placement another party exported: `slots` is its
/// [`Placement::slots`] (used by jump), `members` its member list.
pub fn restore(spec: &PlacementSpec, members: &[Member], slots: Option<&[Option<String>]>) -> Box<dyn Placement> {
    match (spec, slots) {
        (PlacementSpec::Jump, Some(slots)) => Box::new(jump::Jump::from_slots(slots)),
        _ => build(spec, members),
    }
}

/// Like [`build`], but `bounded` first places exactly the keys in `hashes`
/// (the others ignore them).
pub fn build_for_keys(spec: &PlacementSpec, members: &[Member], hashes: &[u64]) -> Box<dyn Placement> {
    match spec {
        PlacementSpec::Bounded { vnodes, capacity } => {
            Box::new(bounded::Bounded::new(members, *vnodes, *capacity, hashes))
        }
        other => build(other, members),
    }
}

/// Like [`restore`], but `bounded` takes up `located` as its assignment:
/// each key hash with the id of the member holding it (where the keys are,
/// read back from the nodes). The others ignore it.
pub fn restore_located(
    spec: &PlacementSpec,
    members: &[Member],
    slots: Option<&[Option<String>]>,
    located: &[(u64, String)],
) -> Box<dyn Placement> {
    match spec {
        PlacementSpec::Bounded { vnodes, capacity } => {
            let members = normalize(members);
            let located: Vec<(u64, usize)> = located
                .iter()
                .filter_map(|(h, id)| members.iter().position(|m| &m.id == id).map(|i| (*h, i)))
                .collect();
            Box::new(bounded::Bounded::with_assignment(&members, *vnodes, *capacity, &located))
        }
        other => restore(other, members, slots),
    }
}

/// The first `r` distinct members met walking `table` (a member index per
/// slot) from `start` and wrapping around: top-R for the algorithms that
/// place by slot. `r` must not exceed the members the table holds.
fn distinct_walk(table: &[u32], start: usize, r: usize) -> Vec<usize> {
    let mut out = Vec::with_capacity(r);
    extend_distinct(&mut out, (0..table.len()).map(|step| table[(start + step) % table.len()] as usize), r);
    out
}

/// Appends the candidates not already in `out`, in order, until it holds `r`.
fn extend_distinct(out: &mut Vec<usize>, candidates: impl IntoIterator<Item = usize>, r: usize) {
    for m in candidates {
        if out.len() >= r {
            break;
        }
        if !out.contains(&m) {
            out.push(m);
        }
    }
}

/// A strong 64-bit mixer (the SplitMix64 finaliser): spreads a hash combined
/// with a member's hash into an independent-looking score.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
