//! Follows cluster membership in the registry (embedded or a real Consul)
//! with blocking queries on the healthy `shardscope-node` instances: every
//! change is pushed to the backend as soon as the registry sees it, and the
//! cluster view is brought in step (new nodes connected and added, nodes that
//! left or turned critical dropped from routing).

use std::collections::BTreeMap;
use std::time::Duration;

use shardscope_node::consul::{Consul, ServiceNode};
use shardscope_shared::consul::NODE_SERVICE;
use shardscope_shared::protocol::NodeInfo;

use crate::cluster::Cluster;

/// How long one blocking query may wait for a change.
const WAIT: Duration = Duration::from_secs(30);

/// The nodes a health answer names, by id.
pub fn nodes_of(entries: &[ServiceNode]) -> BTreeMap<String, NodeInfo> {
    entries
        .iter()
        .map(|e| {
            let host = if e.service.address.is_empty() { e.node.address.clone() } else { e.service.address.clone() };
            let info = NodeInfo { id: e.service.id.clone(), addr: format!("tcp://{host}:{}", e.service.port) };
            (info.id.clone(), info)
        })
        .collect()
}

/// Watches the registry forever, keeping `cluster` in step.
pub async fn watch(consul: Consul, cluster: Cluster) {
    let mut index: Option<u64> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        match consul.health_service(NODE_SERVICE, true, index, WAIT).await {
            Ok((entries, new_index)) => {
                backoff = Duration::from_millis(100);
                // Consul: an index that goes backwards means start over.
                index = Some(if index.is_some_and(|i| new_index < i) { 0 } else { new_index });
                apply(&cluster, nodes_of(&entries)).await;
            }
            Err(e) => {
                tracing::warn!("membership watch: {e:#}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn apply(cluster: &Cluster, healthy: BTreeMap<String, NodeInfo>) {
    let current: BTreeMap<String, NodeInfo> = cluster.nodes().into_iter().map(|n| (n.id.clone(), n)).collect();
    for (id, node) in &current {
        if healthy.get(id) != Some(node) {
            tracing::info!(%id, "node left or is unhealthy: no more traffic");
            cluster.remove_node(id);
        }
    }
    for (id, node) in healthy {
        if current.get(&id) != Some(&node) {
            tracing::info!(%id, addr = %node.addr, "node joined");
            if let Err(e) = cluster.add_node(node).await {
                tracing::warn!(%id, "cannot connect: {e:#}");
            }
        }
    }
}
