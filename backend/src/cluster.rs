//! The backend's live view of the cluster: the nodes, a connection to each,
//! their health, and the placement built over them with `shared/`. Routes
//! every key to its owner, tells connected pages about changes, and keeps
//! routing correct while a rebalance moves keys.
//!
//! Every client write is versioned here, by the gateway's hybrid logical
//! clock, which starts above every version the nodes hold (their `STATS`
//! say) and passes every version it meets; a node refuses a write older
//! than its copy (`stale`), and the write is retried with a newer version.
//!
//! During a rebalance there are two placements, the current one and the
//! target. A key whose owner differs between them is *moving*: its newest
//! copy may be on either owner. Every request holds the `gate` shared; the
//! rebalancer holds it exclusive while it moves one batch (scan the source,
//! copy to the target newer-wins, forget at the source). A moving key is
//! written to its new owner (its version beats any copy on the old one),
//! read from both (the newer answer wins, a tombstone included), and
//! deleted on both.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use shardscope_shared::placement::{build, restore, restore_located, Member, Placement, PlacementSpec};
use shardscope_shared::protocol::{
    Datum, Entry, ErrorCode, NodeInfo, NodeReply, NodeRequest, ServerMsg, Supervision, MAX_MESSAGE, MAX_SCAN_BYTES,
    MAX_SCAN_LIMIT,
};
use shardscope_shared::version::{wall_millis, Clock, Version};
use tokio::sync::broadcast;

use crate::metrics::Metrics;
use crate::node_client::NodeClient;
use crate::state::{ClusterState, MemberRecord, Pending, StateStore};

struct Node {
    info: NodeInfo,
    client: NodeClient,
    healthy: bool,
    /// Where its data lives, when this `serve` launched it.
    data_dir: Option<PathBuf>,
    /// Reached at `info.addr` (a node restored from the state is not,
    /// until it registers).
    connected: bool,
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
    /// Versions client writes get.
    clock: Arc<Clock>,
    /// Where the cluster's state is recorded (none in unit tests of routing).
    store: Option<StateStore>,
    /// Held while the state is written.
    persisting: Arc<tokio::sync::Mutex<()>>,
    meta: Arc<Mutex<Meta>>,
    /// Listings running at once (each page asks every node for a `SCAN`):
    /// a client asking for many cannot make the nodes do unbounded work
    /// while key requests wait; more listings queue here.
    listings: Arc<tokio::sync::Semaphore>,
    pub metrics: Metrics,
}

/// Listing pages built at once, cluster-wide.
const LISTINGS: usize = 4;

/// The parts of the durable state that are not routing.
#[derive(Default)]
struct Meta {
    epoch: u64,
    desired_nodes: usize,
    /// Data dirs of nodes this `serve` launched, known before they join.
    data_dirs: BTreeMap<String, PathBuf>,
    /// Ids the operator removed: they do not join again by registering.
    retired: BTreeSet<String>,
    /// What the change in progress is (`join node-4`, ...).
    change: String,
}

/// Times a write is retried after meeting a newer copy.
const STALE_RETRIES: usize = 5;

fn unavailable(message: String) -> NodeReply {
    NodeReply::error(ErrorCode::Unavailable, message)
}

impl Cluster {
    /// A cluster with no nodes yet, recording its state in `store`.
    pub fn new(spec: PlacementSpec, store: Option<StateStore>) -> Self {
        let placement = build(&spec, &[]);
        let view = View { nodes: BTreeMap::new(), spec, placement, target: None, supervision: BTreeMap::new() };
        let (events, _) = broadcast::channel(1024);
        let clock = Arc::new(Clock::new(getrandom::u32().unwrap_or(0)));
        Cluster {
            view: Arc::new(RwLock::new(view)),
            gate: Arc::default(),
            events,
            clock,
            store,
            persisting: Arc::default(),
            meta: Arc::default(),
            listings: Arc::new(tokio::sync::Semaphore::new(LISTINGS)),
            metrics: Metrics::new(),
        }
    }

    /// Takes up a recorded state: its members (unhealthy until they
    /// register again), placement and history, and the change in progress
    /// (routed with both placements until the rebalancer finishes it).
    pub fn restore(&self, state: &ClusterState) -> anyhow::Result<()> {
        let mut view = self.view.write().unwrap();
        let mut meta = self.meta.lock().unwrap();
        let records = state.members.iter().chain(state.pending.iter().flat_map(|p| p.members.iter()));
        for r in records {
            let info = NodeInfo { id: r.id.clone(), addr: r.addr.clone(), healthy: false, supervision: None };
            let client = NodeClient::lazy(&r.addr)?;
            view.nodes.insert(
                r.id.clone(),
                Node { info, client, healthy: false, data_dir: r.data_dir.clone(), connected: false },
            );
            if let Some(dir) = &r.data_dir {
                meta.data_dirs.insert(r.id.clone(), dir.clone());
            }
        }
        let members: Vec<Member> = state.members.iter().map(MemberRecord::member).collect();
        view.spec = state.placement.clone();
        view.placement = restore(&state.placement, &members, state.slots.as_deref());
        view.target = state.pending.as_ref().map(|p| {
            let members: Vec<Member> = p.members.iter().map(MemberRecord::member).collect();
            (p.placement.clone(), restore(&p.placement, &members, p.slots.as_deref()))
        });
        meta.epoch = state.epoch;
        meta.desired_nodes = state.desired_nodes;
        meta.retired = state.retired.iter().cloned().collect();
        meta.change = state.pending.as_ref().map(|p| p.change.clone()).unwrap_or_default();
        Ok(())
    }

    /// Connects to a node so it can take part in a rebalance (not yet a
    /// member), or again to a known node at the address it registered; the
    /// clock moves past every version the node holds.
    pub async fn connect(&self, info: NodeInfo) -> anyhow::Result<()> {
        let client = NodeClient::connect(&info.addr).await?;
        match client.request(&NodeRequest::Stats).await {
            NodeReply::Stats { stats } => self.clock.observe(stats.max_version),
            other => anyhow::bail!("{} did not answer STATS: {other:?}", info.id),
        }
        let mut view = self.view.write().unwrap();
        let data_dir = self.meta.lock().unwrap().data_dirs.get(&info.id).cloned();
        let id = info.id.clone();
        view.nodes.insert(info.id.clone(), Node { info, client, healthy: true, data_dir, connected: true });
        drop(view);
        // A member back (at a new address, or after a restart): pages hear
        // of it. A joiner is announced once it has joined.
        if self.is_member(&id) {
            self.broadcast();
        }
        Ok(())
    }

    /// Whether the backend has reached node `id` at its current address.
    pub fn is_connected(&self, id: &str) -> bool {
        self.view.read().unwrap().nodes.get(id).is_some_and(|n| n.connected)
    }

    /// The address the backend has for node `id`.
    pub fn addr_of(&self, id: &str) -> Option<String> {
        self.view.read().unwrap().nodes.get(id).map(|n| n.info.addr.clone())
    }

    /// Whether `id` holds keys: a member of the current or target placement.
    pub fn is_member(&self, id: &str) -> bool {
        let view = self.view.read().unwrap();
        let of = |p: &dyn Placement| p.members().iter().any(|m| m.id == id);
        of(view.placement.as_ref()) || view.target.as_ref().is_some_and(|(_, t)| of(t.as_ref()))
    }

    /// Ids of the current and target placements' members.
    pub fn member_ids(&self) -> Vec<String> {
        let view = self.view.read().unwrap();
        let mut ids: Vec<String> = view.placement.members().iter().map(|m| m.id.clone()).collect();
        if let Some((_, t)) = &view.target {
            ids.extend(t.members().iter().map(|m| m.id.clone()));
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// For a placement that depends on the key set (bounded), rebuilds it
    /// from where the keys are: each member's keys are its assignment. (A
    /// restarted `serve` knows the members and the spec, not which key
    /// went where.) Nothing to do for the others.
    pub async fn relocate(&self) {
        if !self.view.read().unwrap().placement.depends_on_keys() {
            return;
        }
        let _routing = self.lock_routing().await;
        let (spec, members, slots) = self.placement_state();
        let mut located = Vec::new();
        for m in &members {
            let Some(client) = self.client(&m.id) else { continue };
            match crate::rebalance::key_hashes(&m.id, &client).await {
                Ok(hashes) => located.extend(hashes.into_iter().map(|h| (h, m.id.clone()))),
                // Its keys answer 503 until it is back, whatever owner they
                // get meanwhile.
                Err(e) => tracing::warn!(id = %m.id, "cannot read its keys for the bounded placement: {e}"),
            }
        }
        let rebuilt = restore_located(&spec, &members, slots.as_deref(), &located);
        self.view.write().unwrap().placement = rebuilt;
        tracing::info!(keys = located.len(), "bounded placement rebuilt from where the keys are");
    }

    /// Notes where a node this `serve` is launching keeps its data.
    pub fn set_data_dir(&self, id: &str, dir: PathBuf) {
        self.meta.lock().unwrap().data_dirs.insert(id.to_string(), dir);
    }

    /// Members this `serve` launched, with their data dirs (to relaunch
    /// after a restart).
    pub fn owned_members(&self) -> Vec<(String, PathBuf)> {
        let view = self.view.read().unwrap();
        view.nodes.iter().filter_map(|(id, n)| n.data_dir.clone().map(|d| (id.clone(), d))).collect()
    }

    pub fn desired_nodes(&self) -> usize {
        self.meta.lock().unwrap().desired_nodes
    }

    /// Records the node count the operator wants.
    pub async fn set_desired_nodes(&self, n: usize) -> anyhow::Result<()> {
        self.meta.lock().unwrap().desired_nodes = n;
        self.persist().await
    }

    /// Whether the operator removed `id` (it does not join again).
    pub fn is_retired(&self, id: &str) -> bool {
        self.meta.lock().unwrap().retired.contains(id)
    }

    /// Marks `id` removed, so that registering again does not make it join.
    pub fn retire(&self, id: &str) {
        self.meta.lock().unwrap().retired.insert(id.to_string());
    }

    /// The change in progress, as recorded.
    pub fn pending(&self) -> Option<Pending> {
        let view = self.view.read().unwrap();
        let meta = self.meta.lock().unwrap();
        view.target.as_ref().map(|(spec, t)| Pending {
            change: meta.change.clone(),
            epoch: meta.epoch,
            placement: spec.clone(),
            members: records(&view, &meta, t.members()),
            slots: t.slots(),
        })
    }

    /// The state as it is now, the change in progress included.
    pub fn durable_state(&self) -> ClusterState {
        let pending = self.pending();
        let view = self.view.read().unwrap();
        let meta = self.meta.lock().unwrap();
        ClusterState {
            epoch: meta.epoch,
            placement: view.spec.clone(),
            members: records(&view, &meta, view.placement.members()),
            slots: view.placement.slots(),
            desired_nodes: meta.desired_nodes,
            pending,
            retired: meta.retired.iter().cloned().collect(),
        }
    }

    /// Records the state as it is now (the change in progress included)
    /// and bumps the epoch; returns once it is durable. Records one at a
    /// time, each taken when its turn comes, so an older picture never
    /// lands after a newer one.
    pub async fn persist(&self) -> anyhow::Result<()> {
        let Some(store) = &self.store else { return Ok(()) };
        let _one_at_a_time = self.persisting.lock().await;
        self.meta.lock().unwrap().epoch += 1;
        store.save(&self.durable_state()).await
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

    /// Starts routing with `from` as the placement and moving keys to
    /// `target` (call with routing locked).
    pub fn begin_rebalance(
        &self,
        change: &str,
        from: Option<(PlacementSpec, Box<dyn Placement>)>,
        target: (PlacementSpec, Box<dyn Placement>),
    ) {
        self.meta.lock().unwrap().change = change.to_string();
        let mut view = self.view.write().unwrap();
        if let Some(from) = from {
            (view.spec, view.placement) = from;
        }
        view.target = Some(target);
    }

    /// Moves the clock past a version seen elsewhere.
    pub fn observe(&self, v: Version) {
        self.clock.observe(v);
    }

    /// Whether node `id` is healthy, waiting up to `patience` for it.
    pub async fn wait_healthy(&self, id: &str, patience: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        let mut events = self.subscribe();
        while !(self.is_healthy(id) && self.is_connected(id)) {
            if tokio::time::timeout_at(deadline, events.recv()).await.is_err() {
                return false;
            }
        }
        true
    }

    /// Drops the target of a rebalance that never moved a key (call with
    /// routing locked).
    pub fn abandon_rebalance(&self) {
        self.view.write().unwrap().target = None;
    }

    /// Whether node `id` passes its health check.
    pub fn is_healthy(&self, id: &str) -> bool {
        self.view.read().unwrap().nodes.get(id).is_some_and(|n| n.healthy)
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
                let reply = self.send(&client, req).await;
                (Some(id), reply)
            }
            Some(Route::Moving { old, new }) => match [&old, &new].into_iter().find(|n| !n.2) {
                Some(sick) => (Some(new.0.clone()), unavailable(format!("{} is failing its health check", sick.0))),
                None => self.moving_request(&old, &new, req).await,
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
    /// Refused with `too_large` past [`MAX_MESSAGE`] bytes of keys and
    /// values (it is one message): page with [`Cluster::list`] instead.
    pub async fn get_all(&self) -> NodeReply {
        let mut collection = Vec::new();
        let mut bytes = 0usize;
        let mut after: Option<Datum> = None;
        loop {
            let (page, more) = match self.scan_merged(&[], after.as_ref().map(|a| a.as_bytes()), MAX_SCAN_LIMIT).await {
                Ok(page) => page,
                Err(reply) => return reply,
            };
            bytes = bytes.saturating_add(page.iter().map(|e| e.key.len() + e.value.len()).sum());
            if bytes > MAX_MESSAGE {
                let message = format!(
                    "GET_ALL would answer more than {MAX_MESSAGE} bytes of keys and values in one message; \
                     page through them with a limit (GET /kv?limit=1000, then &after=NEXT)"
                );
                return NodeReply::error(ErrorCode::TooLarge, message);
            }
            after = page.last().map(|e| e.key.clone()).or(after);
            collection.extend(page);
            if !more {
                return NodeReply::Collection { collection };
            }
        }
    }

    /// Every live pair in key order, a page at a time (each as
    /// [`Cluster::list`] bounds it), for an answer streamed out without
    /// holding the cluster's data.
    pub fn pages(&self) -> impl futures::Stream<Item = Result<Vec<Entry>, NodeReply>> + Send + 'static {
        let cluster = self.clone();
        futures::stream::unfold(Some(None::<Datum>), move |after| {
            let cluster = cluster.clone();
            async move {
                let after = after?;
                match cluster.scan_merged(&[], after.as_ref().map(|a| a.as_bytes()), MAX_SCAN_LIMIT).await {
                    Ok((page, true)) => {
                        let next = page.last().map(|e| e.key.clone()).or(after);
                        Some((Ok(page), Some(next)))
                    }
                    Ok((page, false)) => Some((Ok(page), None)),
                    Err(reply) => Some((Err(reply), None)),
                }
            }
        })
    }

    /// One page of pairs in key order: keys starting with `prefix`, after
    /// `after`, at most `limit` and ending once it holds [`MAX_SCAN_BYTES`]
    /// of keys and values; `next` continues from the page's last key.
    /// Pages through the nodes with `SCAN`; never loads more than a page
    /// from each.
    pub async fn list(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> NodeReply {
        match self.scan_merged(prefix, after, limit).await {
            Ok((page, more)) => {
                let next = if more { page.last().map(|e| e.key.clone()) } else { None };
                NodeReply::Page { page, next }
            }
            Err(reply) => reply,
        }
    }

    /// Up to `limit` live pairs starting with `prefix` after `after`, in key
    /// order, merged from every node holding keys (the newest copy of a key
    /// wins, a tombstone hides it), and whether more follow.
    async fn scan_merged(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<Entry>, bool), NodeReply> {
        let _turn = self.listings.acquire().await.expect("the listings semaphore is never closed");
        let _gate = self.gate.read().await;
        let clients = self.view.read().unwrap().holders();
        let batch = limit.saturating_add(1).clamp(1, MAX_SCAN_LIMIT);
        let prefix = (!prefix.is_empty()).then(|| Datum(prefix.to_vec()));
        let mut cursor = after.map(|a| Datum(a.to_vec()));
        let mut out: Vec<Entry> = Vec::new();
        let mut bytes = 0usize;
        loop {
            let scan = NodeRequest::Scan {
                cursor: cursor.clone(),
                limit: batch,
                ranges: None,
                tombstones: true,
                prefix: prefix.clone(),
            };
            let replies = futures::future::join_all(clients.iter().map(|c| c.request(&scan))).await;
            let mut newest: BTreeMap<Datum, Entry> = BTreeMap::new();
            // Keys up to the smallest last key of an unfinished node are
            // complete; past it, that node may hold more.
            let mut horizon: Option<Datum> = None;
            for reply in replies {
                let (page, next) = match reply {
                    NodeReply::Page { page, next } => (page, next),
                    err @ NodeReply::Error { .. } => return Err(err),
                    other => return Err(unavailable(format!("unexpected reply to SCAN: {other:?}"))),
                };
                if let Some(next) = next {
                    horizon = Some(horizon.map_or(next.clone(), |h| h.min(next)));
                }
                for e in page {
                    if let Some(v) = e.version {
                        self.clock.observe(v);
                    }
                    match newest.get(&e.key) {
                        Some(seen) if seen.version >= e.version => {}
                        _ => {
                            newest.insert(e.key.clone(), e);
                        }
                    }
                }
            }
            let complete = newest.into_values().filter(|e| horizon.as_ref().is_none_or(|h| e.key <= *h));
            for e in complete.filter(|e| !e.deleted) {
                if out.len() >= limit || bytes >= MAX_SCAN_BYTES {
                    return Ok((out, true));
                }
                bytes += e.key.len() + e.value.len();
                out.push(Entry::new(e.key, e.value));
            }
            match horizon {
                Some(h) => cursor = Some(h),
                None => return Ok((out, false)),
            }
        }
    }

    /// Each node's `STATS` reply, by node id.
    pub async fn stats(&self) -> BTreeMap<String, NodeReply> {
        let clients: Vec<(String, NodeClient)> =
            self.view.read().unwrap().nodes.iter().map(|(id, n)| (id.clone(), n.client.clone())).collect();
        let replies = futures::future::join_all(clients.iter().map(|(_, c)| c.request(&NodeRequest::Stats))).await;
        clients.into_iter().map(|(id, _)| id).zip(replies).collect()
    }
}

impl Cluster {
    /// A client's single-key request sent to one node: reads ask for the
    /// version, writes get the gateway's (a `stale` answer moves the clock
    /// past the node's copy and the write goes again with a newer one).
    async fn send(&self, client: &NodeClient, req: &NodeRequest) -> NodeReply {
        if let NodeRequest::GetOne { key, .. } = req {
            let reply = client.request(&NodeRequest::GetOne { key: key.clone(), versioned: true }).await;
            if let Some(Some(v)) = version_of(&reply) {
                self.clock.observe(v);
            }
            return reply;
        }
        for _ in 0..STALE_RETRIES {
            let version = Some(self.clock.tick(wall_millis()));
            let stamped = match req {
                NodeRequest::Put { key, value, .. } => {
                    NodeRequest::Put { key: key.clone(), value: value.clone(), version }
                }
                NodeRequest::Delete { key, .. } => NodeRequest::Delete { key: key.clone(), version },
                other => return client.request(other).await,
            };
            match client.request(&stamped).await {
                NodeReply::Error { error: ErrorCode::Stale, version: Some(newer), .. } => self.clock.observe(newer),
                reply => return reply,
            }
        }
        unavailable(format!("the key kept meeting newer writes ({STALE_RETRIES} tries)"))
    }

    /// A request for a key that is moving from `old` to `new`.
    async fn moving_request(
        &self,
        old: &(String, NodeClient, bool),
        new: &(String, NodeClient, bool),
        req: &NodeRequest,
    ) -> (Option<String>, NodeReply) {
        let settled =
            |r: &NodeReply| matches!(r, NodeReply::Ok { .. } | NodeReply::Error { error: ErrorCode::NotFound, .. });
        match req {
            NodeRequest::GetOne { .. } => {
                let (a, b) = futures::join!(self.send(&new.1, req), self.send(&old.1, req));
                // The newer of the two answers; a failure is no answer.
                match (version_of(&a), version_of(&b)) {
                    (None, _) => (Some(new.0.clone()), a),
                    (_, None) => (Some(old.0.clone()), b),
                    (Some(va), Some(vb)) if vb > va => (Some(old.0.clone()), b),
                    _ => (Some(new.0.clone()), a),
                }
            }
            // Its version is above any copy on the old owner.
            NodeRequest::Put { .. } => (Some(new.0.clone()), self.send(&new.1, req).await),
            NodeRequest::Delete { .. } => {
                let (a, b) = futures::join!(self.send(&new.1, req), self.send(&old.1, req));
                let reply = match (settled(&a), settled(&b)) {
                    (true, true) if matches!(b, NodeReply::Ok { .. }) => b,
                    (true, true) => a,
                    (false, _) => a,
                    (true, false) => b,
                };
                (Some(new.0.clone()), reply)
            }
            other => (None, NodeReply::error(ErrorCode::BadRequest, format!("{other:?} is not a single-key request"))),
        }
    }
}

/// Records for `members`, with the addresses and data dirs known for them.
fn records(view: &View, meta: &Meta, members: &[Member]) -> Vec<MemberRecord> {
    members
        .iter()
        .map(|m| MemberRecord {
            id: m.id.clone(),
            weight: m.weight,
            addr: view.nodes.get(&m.id).map(|n| n.info.addr.clone()).unwrap_or_default(),
            data_dir: meta.data_dirs.get(&m.id).cloned(),
        })
        .collect()
}

/// The version a read answered with: `Some(Some(v))` for a value or a
/// tombstone, `Some(None)` for a key the node has never held, `None` for a
/// failure.
fn version_of(reply: &NodeReply) -> Option<Option<Version>> {
    match reply {
        NodeReply::Value { version, .. } => Some(*version),
        NodeReply::Error { error: ErrorCode::NotFound, version, .. } => Some(*version),
        _ => None,
    }
}
