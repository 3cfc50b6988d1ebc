//! The cluster's durable state, in Consul KV under one key
//! ([`STATE_KEY`]): the members (id, weight, address, and the data dir of
//! those `serve` launched), the placement spec and its history (jump's
//! slots), the desired node count, and the change in progress with its
//! epoch. It is written *before* it is acted on: a rebalance records its
//! target before the first key moves and clears it only after the last, so
//! a `serve` restarted at any moment (SIGTERM or `kill -9`) reads it back,
//! relaunches the nodes it owns on their own data, routes with both
//! placements again and finishes the change. With the embedded registry the
//! state lives in its data dir; with a real Consul, in Consul.
//!
//! Bounded loads' assignments are not stored: where each key is *is* the
//! assignment, and a restarted `serve` reads it back from the nodes.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use shardscope_consul::client::Consul;
use shardscope_shared::placement::{Member, PlacementSpec, WEIGHT};

/// Where the state lives in Consul KV.
pub const STATE_KEY: &str = "shardscope/cluster";

/// Everything a restarted `serve` needs to come back to the same cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Bumped by every change that starts or ends.
    pub epoch: u64,
    pub placement: PlacementSpec,
    pub members: Vec<MemberRecord>,
    /// Jump's slot table (its history), when the algorithm has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<Vec<Option<String>>>,
    /// Nodes the operator wants (`cluster_size`, seed 001).
    pub desired_nodes: usize,
    /// The change in progress: routing uses both placements until it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// Ids the operator removed: registering again does not make them join.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<String>,
}

/// A node of the cluster (or joining it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemberRecord {
    pub id: String,
    #[serde(default = "one")]
    pub weight: u32,
    /// Its last known ZeroMQ endpoint.
    pub addr: String,
    /// Where its data lives, when this `serve` launched it (and relaunches it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

fn one() -> u32 {
    1
}

impl ClusterState {
    /// Every placement in it (the current one and the change's target)
    /// and every member's weight within their bounds, so that a state
    /// edited by hand cannot make serve build an unbounded placement.
    fn check(&self) -> Result<(), String> {
        let pending = self.pending.iter().map(|p| (&p.placement, &p.members));
        for (spec, members) in std::iter::once((&self.placement, &self.members)).chain(pending) {
            spec.validate().map_err(|e| e.to_string())?;
            if let Some(m) = members.iter().find(|m| !WEIGHT.contains(&m.weight)) {
                return Err(format!(
                    "{}: weight must be {} to {}, got {}",
                    m.id,
                    WEIGHT.start(),
                    WEIGHT.end(),
                    m.weight
                ));
            }
        }
        Ok(())
    }
}

impl MemberRecord {
    pub fn member(&self) -> Member {
        Member::weighted(&self.id, self.weight)
    }
}

/// A change that has started and not yet finished.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// What it is, e.g. `join node-4`, `leave node-2`, `placement jump`.
    pub change: String,
    /// The epoch it started in.
    pub epoch: u64,
    /// The placement it moves every key to.
    pub placement: PlacementSpec,
    pub members: Vec<MemberRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<Vec<Option<String>>>,
}

/// Reads and writes [`ClusterState`] in Consul KV.
#[derive(Clone)]
pub struct StateStore {
    consul: Consul,
}

impl StateStore {
    pub fn new(consul: Consul) -> Self {
        StateStore { consul }
    }

    /// The recorded state, or `None` for a cluster that has never run.
    pub async fn load(&self) -> anyhow::Result<Option<ClusterState>> {
        match self.consul.kv_get(STATE_KEY).await? {
            None => Ok(None),
            Some(text) => {
                let state: ClusterState = serde_json::from_str(&text).map_err(|e| {
                    anyhow::anyhow!("{STATE_KEY} in Consul KV is not a cluster state ({e}): {text:.200}")
                })?;
                state.check().map_err(|e| anyhow::anyhow!("{STATE_KEY} in Consul KV is out of bounds: {e}"))?;
                Ok(Some(state))
            }
        }
    }

    /// Records `state`; once this returns it survives a restart of `serve`
    /// (and of the embedded registry).
    pub async fn save(&self, state: &ClusterState) -> anyhow::Result<()> {
        let text = serde_json::to_vec(state)?;
        if !self.consul.kv_put(STATE_KEY, &text, None).await? {
            anyhow::bail!("Consul did not store {STATE_KEY}");
        }
        Ok(())
    }
}
