//! Cluster administration, as the seeds order it. Add a node: launch it;
//! it registers, the membership watch sees it, and the rebalancer gives it
//! its share. Remove a node: move its keys off (rebalance), deregister it,
//! stop it. Change the algorithm: a rebalance like any other.

use std::sync::Arc;

use shardscope_consul::client::Consul;
use shardscope_consul::token::Token;
use shardscope_shared::placement::PlacementSpec;
use shardscope_shared::protocol::{NodeInfo, Progress};
use tokio::sync::Mutex;

use crate::cluster::Cluster;
use crate::rebalance::{Change, Rebalancer};
use crate::supervisor::Supervisor;

/// The Consul KV key holding the desired node count (seed 001).
pub const CLUSTER_SIZE: &str = "cluster_size";

/// Handle for administrative actions; cheap to clone.
#[derive(Clone)]
pub struct Admin {
    pub cluster: Cluster,
    pub rebalancer: Rebalancer,
    pub supervisor: Arc<Mutex<Supervisor>>,
    pub consul: Consul,
    /// When set, administration needs it (see [`crate::token`]).
    pub token: Option<Token>,
}

impl Admin {
    /// Whether a request carrying `presented` may administer the cluster;
    /// the error says how to present the token.
    pub fn authorize(&self, presented: Option<&str>) -> Result<(), String> {
        match &self.token {
            Some(token) if !token.accepts(presented) => Err(format!(
                "administration needs the admin token: send `Authorization: Bearer TOKEN` \
                 (the CLI's --token or {}), or open the page with ?token=TOKEN",
                crate::token::ENV
            )),
            _ => Ok(()),
        }
    }

    /// Launches one more node; it joins through the registry. Returns it
    /// before its keys have arrived (progress comes as events). The desired
    /// count in Consul KV (`cluster_size`) grows by one.
    pub async fn add_node(&self) -> anyhow::Result<NodeInfo> {
        let node = self.supervisor.lock().await.launch().await?;
        self.set_cluster_size(self.cluster.nodes().len() + 1).await;
        Ok(node)
    }

    async fn set_cluster_size(&self, n: usize) {
        if let Err(e) = self.consul.kv_put(CLUSTER_SIZE, n.to_string().as_bytes(), None).await {
            tracing::warn!("could not record {CLUSTER_SIZE}={n} in Consul KV: {e:#}");
        }
    }

    /// Drains `id` (its keys move to the others), deregisters it, and stops it
    /// if this backend started it.
    pub async fn remove_node(&self, id: &str) -> Result<Progress, String> {
        let progress = self.rebalancer.run(Change::Leave(id.to_string())).await?;
        if let Err(e) = self.consul.deregister(id).await {
            tracing::warn!(%id, "drained, but deregistering failed: {e:#}");
        }
        self.supervisor.lock().await.stop(id).await;
        self.cluster.disconnect(id);
        self.set_cluster_size(self.cluster.nodes().len()).await;
        Ok(progress)
    }

    /// Moves every key to where `spec` places it, then routes with it.
    pub async fn change_placement(&self, spec: PlacementSpec) -> Result<Progress, String> {
        self.rebalancer.run(Change::Placement(spec)).await
    }
}
