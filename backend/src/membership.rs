//! Follows cluster membership in the registry (embedded or a real Consul)
//! with blocking queries on the `shardscope-node` instances: every change is
//! pushed to the backend as soon as the registry sees it, and the cluster
//! view is brought in step (new nodes join through the rebalancer, failing
//! checks mark nodes unhealthy, a known node back at a new address is
//! reconnected there, vanished nodes are dropped).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use shardscope_node::consul::{Consul, ServiceNode};
use shardscope_shared::consul::NODE_SERVICE;
use shardscope_shared::protocol::NodeInfo;

use crate::cluster::Cluster;
use crate::rebalance::{Change, Rebalancer};

/// How long one blocking query may wait for a change.
const WAIT: Duration = Duration::from_secs(30);

/// The nodes a health answer names, by id.
pub fn nodes_of(entries: &[ServiceNode]) -> BTreeMap<String, NodeInfo> {
    entries
        .iter()
        .map(|e| {
            let host = if e.service.address.is_empty() { e.node.address.clone() } else { e.service.address.clone() };
            let addr = format!("tcp://{host}:{}", e.service.port);
            let info = NodeInfo { id: e.service.id.clone(), addr, healthy: true, supervision: None };
            (info.id.clone(), info)
        })
        .collect()
}

/// Watches the registry forever, keeping `cluster` in step: a node that
/// registers and passes its check joins (the rebalancer gives it its share),
/// a failing check marks it unhealthy, and a node that vanishes from the
/// registry without a planned leave is dropped.
pub async fn watch(consul: Consul, cluster: Cluster, rebalancer: Rebalancer) {
    let mut index: Option<u64> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        let polled = async {
            let (all, new_index) = consul.health_service(NODE_SERVICE, false, index, WAIT).await?;
            let (passing, _) = consul.health_service(NODE_SERVICE, true, None, Duration::from_secs(5)).await?;
            anyhow::Ok((all, passing, new_index))
        };
        match polled.await {
            Ok((all, passing, new_index)) => {
                backoff = Duration::from_millis(100);
                // Consul: an index that goes backwards means start over.
                index = Some(if index.is_some_and(|i| new_index < i) { 0 } else { new_index });
                let passing = nodes_of(&passing).into_keys().collect();
                apply(&cluster, &rebalancer, nodes_of(&all), passing).await;
            }
            Err(e) => {
                tracing::warn!("membership watch: {e:#}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

async fn apply(cluster: &Cluster, rebalancer: &Rebalancer, all: BTreeMap<String, NodeInfo>, passing: BTreeSet<String>) {
    for id in cluster.known_ids() {
        let Some(node) = all.get(&id) else {
            tracing::info!(%id, "node left the registry");
            cluster.drop_node(&id);
            continue;
        };
        // A known node passing at another address was restarted there:
        // reconnect before routing to it again.
        let healthy = passing.contains(&id)
            && match cluster.reconnect(&id, &node.addr).await {
                Ok(moved) => {
                    if moved {
                        tracing::info!(%id, addr = %node.addr, "node came back at a new address: reconnected");
                    }
                    true
                }
                Err(e) => {
                    tracing::warn!(%id, addr = %node.addr, "cannot reconnect: {e:#}");
                    false
                }
            };
        cluster.set_health(&id, healthy);
    }
    for (id, node) in all {
        if passing.contains(&id) && !cluster.knows(&id) {
            tracing::info!(%id, addr = %node.addr, "node registered: joining");
            match cluster.connect(node.clone()).await {
                Ok(()) => rebalancer.submit(Change::Join(node)),
                Err(e) => tracing::warn!(%id, "cannot connect: {e:#}"),
            }
        }
    }
}
