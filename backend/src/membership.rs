//! Follows cluster membership in the registry (embedded or a real Consul)
//! with blocking queries on the `shardscope-node` instances: every change is
//! pushed to the backend as soon as the registry sees it, and the cluster
//! view is brought in step (new nodes join through the rebalancer, failing
//! checks mark nodes unhealthy, a known node back at a new address is
//! reconnected there, vanished nodes are dropped). A registration at the
//! address of another live node is not admitted: one process is one node.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use shardscope_consul::api::NODE_SERVICE;
use shardscope_consul::client::{Consul, ServiceNode};
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
/// a member that registers at a new address is reconnected there, and a
/// failing check (or a member gone from the registry) marks it unhealthy:
/// its keys answer 503 until it is back or removed, and no other node
/// answers for them.
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
        if let Some(node) = all.get(&id) {
            // At another address it was restarted there: healthy once
            // reconnected (below).
            let here = cluster.addr_of(&id).as_deref() == Some(node.addr.as_str()) && cluster.is_connected(&id);
            cluster.set_health(&id, passing.contains(&id) && here);
        } else if cluster.is_member(&id) {
            // A member stays one: its keys wait for it (supervision brings
            // it back, or the operator removes it), never rerouted to nodes
            // that do not hold them.
            tracing::info!(%id, "member left the registry: its keys wait for it");
            cluster.set_health(&id, false);
        } else {
            cluster.disconnect(&id);
        }
    }
    for (id, node) in all {
        if !passing.contains(&id) || cluster.is_retired(&id) {
            continue;
        }
        if cluster.is_connected(&id) && cluster.addr_of(&id).as_deref() == Some(node.addr.as_str()) {
            continue;
        }
        // Another id for a node the backend already reaches there would
        // make one process two members (and a rebalance between them would
        // delete what it moves): an impostor, or a stale registration.
        let live_there = |other: &&String| {
            **other != id
                && cluster.is_connected(other)
                && cluster.addr_of(other).as_deref() == Some(node.addr.as_str())
        };
        if let Some(other) = passing.iter().find(live_there) {
            tracing::warn!(%id, addr = %node.addr, %other, "registered at the address of another live node: not admitted");
            continue;
        }
        let joins = !cluster.knows(&id);
        tracing::info!(%id, addr = %node.addr, joins, "node registered: connecting");
        match cluster.connect(node.clone()).await {
            Ok(()) if joins => rebalancer.submit(Change::Join(node)),
            Ok(()) => {}
            Err(e) => tracing::warn!(%id, "cannot connect: {e:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_reached_at_its_service_address_else_its_agents() {
        let health: Vec<ServiceNode> = serde_json::from_str(
            r#"[{"Node":{"ID":"","Node":"a","Address":"10.0.0.1","Datacenter":"dc1"},
                 "Service":{"ID":"node-1","Service":"shardscope-node","Tags":[],"Address":"10.0.0.9","Port":5001},
                 "Checks":[]},
                {"Node":{"ID":"","Node":"b","Address":"10.0.0.2","Datacenter":"dc1"},
                 "Service":{"ID":"node-2","Service":"shardscope-node","Tags":[],"Address":"","Port":5002},
                 "Checks":[]}]"#,
        )
        .unwrap();
        let nodes = nodes_of(&health);
        assert_eq!(nodes["node-1"].addr, "tcp://10.0.0.9:5001");
        assert_eq!(nodes["node-2"].addr, "tcp://10.0.0.2:5002");
    }
}
