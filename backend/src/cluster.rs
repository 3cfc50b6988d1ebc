//! The backend's live view of the cluster: the nodes, a connection to each,
//! their health, and the placement built over them with `shared/`. Routes
//! every key to its owner, tells connected pages about changes, and keeps
//! routing correct while a rebalance moves keys.
//!
//! During a rebalance there are two placements, the current one and the
//! target. A key whose owner differs between them is *moving*: it lives on
//! exactly one of the two owners, and the `gate` keeps it that way. Every
//! request holds the gate shared; the rebalancer holds it exclusive while it
//! moves one batch (scan the source, copy to the target, delete from the
//! source). A moving key is written to its new owner and deleted from its old
//! one, read from the new owner and then the old, and deleted from both.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use shardscope_shared::placement::{build, Member, Placement, PlacementSpec};
use shardscope_shared::protocol::{ErrorCode, NodeInfo, NodeReply, NodeRequest, ServerMsg, Supervision};
use tokio::sync::broadcast;

use crate::metrics::Metrics;
use crate::node_client::NodeClient;

struct Node {
    info: NodeInfo,
    client: NodeClient,
    healthy: bool,
}

struct View {
    /// Every node the backend is connected to: members, joiners, leavers.
    nodes: BTreeMap<String, Node>,
    spec: PlacementSpec,
    placement: Box<dyn Placement>,
    /// The placement a running rebalance moves keys to.
    target: Option<(PlacementSpec, Box<dyn Placement>)>,
    /// The supervision of the nodes this backend launched, by id.
    supervision: BTreeMap<String, Supervision>,
}

/// Where a single-key request goes.
enum Route {
    One { id: String, client: NodeClient, healthy: bool },
    Moving { old: (String, NodeClient, bool), new: (String, NodeClient, bool) },
}

impl View {
    fn node(&self, id: &str) -> Option<(String, NodeClient, bool)> {
        self.nodes.get(id).map(|n| (id.to_string(), n.client.clone(), n.healthy))
    }

    fn route(&self, key: &[u8]) -> Option<Route> {
        let old = self.placement.owner_of(key)?.to_string();
        let new = match &self.target {
            Some((_, t)) => t.owner_of(key)?.to_string(),
            None => old.clone(),
        };
        if old == new {
            let (id, client, healthy) = self.node(&old)?;
            return Some(Route::One { id, client, healthy });
        }
        Some(Route::Moving { old: self.node(&old)?, new: self.node(&new)? })
    }

    /// Whether the current or target placement depends on the key set.
    fn depends_on_keys(&self) -> bool {
        self.placement.depends_on_keys() || self.target.as_ref().is_some_and(|(_, t)| t.depends_on_keys())
    }

    /// Tells key-set placements (bounded) of a key about to be written.
    fn key_added(&mut self, key: &[u8]) {
        let hash = shardscope_shared::hash::key_hash(key);
        self.placement.key_added(hash);
        if let Some((_, t)) = &mut self.target {
            t.key_added(hash);
        }
    }

    /// Tells key-set placements (bounded) of a key that was deleted.
    fn key_removed(&mut self, key: &[u8]) {
        let hash = shardscope_shared::hash::key_hash(key);
        self.placement.key_removed(hash);
        if let Some((_, t)) = &mut self.target {
            t.key_removed(hash);
        }
    }

    /// Nodes holding keys now: members of the current and target placements.
    fn holders(&self) -> Vec<NodeClient> {
        let mut ids: Vec<&str> = self.placement.members().iter().map(|m| m.id.as_str()).collect();
        if let Some((_, t)) = &self.target {
            ids.extend(t.members().iter().map(|m| m.id.as_str()));
        }
        ids.sort_unstable();
        ids.dedup();
        ids.iter().filter_map(|id| self.nodes.get(*id)).map(|n| n.client.clone()).collect()
    }
}

/// Shared, cheaply cloned handle on the cluster view.
#[derive(Clone)]
pub struct Cluster {
    view: Arc<RwLock<View>>,
    gate: Arc<tokio::sync::RwLock<()>>,
    events: broadcast::Sender<ServerMsg>,
    pub metrics: Metrics,
}

fn unavailable(message: String) -> NodeReply {
    NodeReply::error(ErrorCode::Unavailable, message)
}

impl Cluster {
    pub fn new(spec: PlacementSpec) -> Self {
        let placement = build(&spec, &[]);
        let view = View { nodes: BTreeMap::new(), spec, placement, target: None, supervision: BTreeMap::new() };
        let (events, _) = broadcast::channel(1024);
        Cluster { view: Arc::new(RwLock::new(view)), gate: Arc::default(), events, metrics: Metrics::new() }
    }

    /// Connects to a node so it can take part in a rebalance (not yet a member).
    pub async fn connect(&self, info: NodeInfo) -> anyhow::Result<()> {
        let client = NodeClient::connect(&info.addr).await?;
        let mut view = self.view.write().unwrap();
        view.nodes.insert(info.id.clone(), Node { info, client, healthy: true });
        Ok(())
    }

    /// Points known node `id` at `addr` when it came back there (restarted
    /// on another port): a new connection replaces the old one, and it stays
    /// what it was (a member, with its keys). Whether it had moved.
    pub async fn reconnect(&self, id: &str, addr: &str) -> anyhow::Result<bool> {
        let known = self.view.read().unwrap().nodes.get(id).map(|n| n.info.addr.clone());
        if known.is_none_or(|known| known == addr) {
            return Ok(false);
        }
        let client = NodeClient::connect(addr).await?;
        if let Some(node) = self.view.write().unwrap().nodes.get_mut(id) {
            node.info.addr = addr.to_string();
            node.client = client;
        }
        self.broadcast();
        Ok(true)
    }

    /// Records how a node this backend launched is supervised (`None`: no
    /// longer), for pages and `GET /nodes`.
    pub fn set_supervision(&self, id: &str, supervision: Option<Supervision>) {
        {
            let mut view = self.view.write().unwrap();
            match supervision {
                Some(s) => view.supervision.insert(id.to_string(), s),
                None => view.supervision.remove(id),
            };
        }
        self.broadcast();
    }

    /// Every node the backend is connected to.
    pub fn known_ids(&self) -> Vec<String> {
        self.view.read().unwrap().nodes.keys().cloned().collect()
    }

    /// Whether the backend knows (is connected to) node `id`.
    pub fn knows(&self, id: &str) -> bool {
        self.view.read().unwrap().nodes.contains_key(id)
    }

    pub fn client(&self, id: &str) -> Option<NodeClient> {
        self.view.read().unwrap().nodes.get(id).map(|n| n.client.clone())
    }

    /// Marks a node healthy or not (its registry check); requests for keys
    /// an unhealthy node owns fail with `unavailable` until it recovers.
    pub fn set_health(&self, id: &str, healthy: bool) {
        let changed = {
            let mut view = self.view.write().unwrap();
            match view.nodes.get_mut(id) {
                Some(n) if n.healthy != healthy => {
                    n.healthy = healthy;
                    true
                }
                _ => false,
            }
        };
        if changed {
            tracing::info!(%id, healthy, "node health changed");
            self.broadcast();
        }
    }

    /// Forgets a node that vanished without a planned leave (crashed and
    /// was deregistered): its keys are gone with it.
    pub fn drop_node(&self, id: &str) {
        {
            let mut view = self.view.write().unwrap();
            view.nodes.remove(id);
            view.placement.remove_member(id);
        }
        self.broadcast();
    }

    /// Disconnects a node that has left (after its keys were moved off).
    pub fn disconnect(&self, id: &str) {
        self.view.write().unwrap().nodes.remove(id);
    }

    /// The current placement's members, the spec, and jump's history.
    pub fn placement_state(&self) -> (PlacementSpec, Vec<Member>, Option<Vec<Option<String>>>) {
        let view = self.view.read().unwrap();
        (view.spec.clone(), view.placement.members().to_vec(), view.placement.slots())
    }

    /// Exclusive hold on routing: no request is in flight while it is held.
    pub async fn lock_routing(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.gate.write().await
    }

    /// Starts routing moving keys to `target` (call with routing locked).
    pub fn begin_rebalance(&self, spec: PlacementSpec, target: Box<dyn Placement>) {
        self.view.write().unwrap().target = Some((spec, target));
    }

    /// Makes the target the placement (call with routing locked).
    pub fn finish_rebalance(&self) {
        {
            let mut view = self.view.write().unwrap();
            if let Some((spec, target)) = view.target.take() {
                view.spec = spec;
                view.placement = target;
            }
        }
        self.broadcast();
    }

    /// The current members and placement, as sent to pages.
    pub fn snapshot(&self) -> ServerMsg {
        let view = self.view.read().unwrap();
        let nodes = view
            .placement
            .members()
            .iter()
            .filter_map(|m| view.nodes.get(&m.id))
            .map(|n| NodeInfo {
                healthy: n.healthy,
                supervision: view.supervision.get(&n.info.id).cloned(),
                ..n.info.clone()
            })
            .collect();
        ServerMsg::Cluster { nodes, placement: view.spec.clone(), slots: view.placement.slots() }
    }

    /// Sends the current snapshot to every page.
    pub fn broadcast(&self) {
        let snapshot = self.snapshot();
        if let ServerMsg::Cluster { nodes, .. } = &snapshot {
            let healthy = nodes.iter().filter(|n| n.healthy).count();
            self.metrics.set_nodes(healthy, nodes.len() - healthy);
        }
        let _ = self.events.send(snapshot);
    }

    /// Sends any event to every page.
    pub fn publish(&self, msg: ServerMsg) {
        let _ = self.events.send(msg);
    }

    /// The current members, with their health.
    pub fn nodes(&self) -> Vec<NodeInfo> {
        match self.snapshot() {
            ServerMsg::Cluster { nodes, .. } => nodes,
            _ => unreachable!("snapshot is a cluster message"),
        }
    }

    /// Future changes and rebalance events, for a page's WebSocket.
    pub fn subscribe(&self) -> broadcast::Receiver<ServerMsg> {
        self.events.subscribe()
    }

    /// Sends a single-key request (`PUT`, `GET_ONE`, `DELETE`) to the key's
    /// owner, or both owners while the key moves. Returns the node that
    /// answered for the key and the reply.
    pub async fn request_key(&self, key: &[u8], req: &NodeRequest) -> (Option<String>, NodeReply) {
        let started = std::time::Instant::now();
        let (node, reply) = self.route_and_send(key, req).await;
        let op = match req {
            NodeRequest::Put { .. } => "put",
            NodeRequest::GetOne { .. } => "get",
            NodeRequest::Delete { .. } => "delete",
            _ => "other",
        };
        self.metrics.request(op, &reply, started.elapsed());
        (node, reply)
    }

    async fn route_and_send(&self, key: &[u8], req: &NodeRequest) -> (Option<String>, NodeReply) {
        let _gate = self.gate.read().await;
        let is_put = matches!(req, NodeRequest::Put { .. });
        let route = if is_put && self.view.read().unwrap().depends_on_keys() {
            let mut view = self.view.write().unwrap();
            view.key_added(key);
            view.route(key)
        } else {
            self.view.read().unwrap().route(key)
        };
        let (node, reply) = match route {
            None => (None, unavailable("no storage nodes in the cluster".into())),
            Some(Route::One { id, healthy: false, .. }) => {
                let msg = format!("{id}, which owns this key, is failing its health check");
                (Some(id), unavailable(msg))
            }
            Some(Route::One { id, client, .. }) => {
                let reply = client.request(req).await;
                (Some(id), reply)
            }
            Some(Route::Moving { old, new }) => match [&old, &new].into_iter().find(|n| !n.2) {
                Some(sick) => (Some(new.0.clone()), unavailable(format!("{} is failing its health check", sick.0))),
                None => moving_request(&old, &new, req).await,
            },
        };
        if matches!((req, &reply), (NodeRequest::Delete { .. }, NodeReply::Ok { .. }))
            && self.view.read().unwrap().depends_on_keys()
        {
            self.view.write().unwrap().key_removed(key);
        }
        (node, reply)
    }

    /// The target owner of `key` while a rebalance runs (else the owner).
    pub fn target_owner(&self, key: &[u8]) -> Option<String> {
        let view = self.view.read().unwrap();
        let placement = view.target.as_ref().map_or(&view.placement, |(_, t)| t);
        placement.owner_of(key).map(str::to_string)
    }

    /// Every key-value pair of every node, in key order.
    pub async fn get_all(&self) -> NodeReply {
        let _gate = self.gate.read().await;
        let clients = self.view.read().unwrap().holders();
        let replies = futures::future::join_all(clients.iter().map(|c| c.request(&NodeRequest::GetAll))).await;
        let mut all = Vec::new();
        for reply in replies {
            match reply {
                NodeReply::Collection { collection } => all.extend(collection),
                err @ NodeReply::Error { .. } => return err,
                other => return unavailable(format!("unexpected reply to GET_ALL: {other:?}")),
            }
        }
        all.sort_by(|a, b| a.key.cmp(&b.key));
        NodeReply::Collection { collection: all }
    }

    /// One page of pairs in key order: keys starting with `prefix`, after
    /// `after`, at most `limit`; `next` continues from the page's last key.
    pub async fn list(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> NodeReply {
        let all = match self.get_all().await {
            NodeReply::Collection { collection } => collection,
            other => return other,
        };
        let page: Vec<_> = all
            .into_iter()
            .filter(|e| e.key.as_bytes().starts_with(prefix) && after.is_none_or(|a| e.key.as_bytes() > a))
            .take(limit.saturating_add(1))
            .collect();
        let more = page.len() > limit;
        let page: Vec<_> = page.into_iter().take(limit).collect();
        let next = if more { page.last().map(|e| e.key.clone()) } else { None };
        NodeReply::Page { page, next }
    }

    /// Each node's `STATS` reply, by node id.
    pub async fn stats(&self) -> BTreeMap<String, NodeReply> {
        let clients: Vec<(String, NodeClient)> =
            self.view.read().unwrap().nodes.iter().map(|(id, n)| (id.clone(), n.client.clone())).collect();
        let replies = futures::future::join_all(clients.iter().map(|(_, c)| c.request(&NodeRequest::Stats))).await;
        clients.into_iter().map(|(id, _)| id).zip(replies).collect()
    }
}

/// A request for a key that is moving from `old` to `new`.
async fn moving_request(
    old: &(String, NodeClient, bool),
    new: &(String, NodeClient, bool),
    req: &NodeRequest,
) -> (Option<String>, NodeReply) {
    let not_found = |r: &NodeReply| matches!(r, NodeReply::Error { error: ErrorCode::NotFound, .. });
    let ok = |r: &NodeReply| matches!(r, NodeReply::Ok { .. });
    match req {
        NodeRequest::GetOne { .. } => {
            let reply = new.1.request(req).await;
            if !not_found(&reply) {
                return (Some(new.0.clone()), reply);
            }
            (Some(old.0.clone()), old.1.request(req).await)
        }
        NodeRequest::Put { key, .. } => {
            let reply = new.1.request(req).await;
            if !ok(&reply) {
                return (Some(new.0.clone()), reply);
            }
            // Retire the old copy so the rebalance can never carry it over.
            let retired = old.1.request(&NodeRequest::Delete { key: key.clone() }).await;
            if ok(&retired) || not_found(&retired) {
                (Some(new.0.clone()), reply)
            } else {
                (Some(new.0.clone()), unavailable(format!("stored on {}, but {} kept an old copy", new.0, old.0)))
            }
        }
        NodeRequest::Delete { .. } => {
            let (a, b) = futures::join!(new.1.request(req), old.1.request(req));
            match (ok(&a) || not_found(&a), ok(&b) || not_found(&b)) {
                (true, true) if not_found(&a) && not_found(&b) => (Some(new.0.clone()), a),
                (true, true) => (Some(new.0.clone()), NodeReply::ok()),
                _ => (Some(new.0.clone()), if ok(&a) || not_found(&a) { b } else { a }),
            }
        }
        other => (None, NodeReply::error(ErrorCode::BadRequest, format!("{other:?} is not a single-key request"))),
    }
}
