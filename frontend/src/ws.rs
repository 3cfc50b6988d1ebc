//! The page's WebSocket to the backend: it owns the connection, keeps the
//! cluster view (nodes + placement) current from pushed messages, and sends
//! requests whose replies come back by id.

use std::collections::{BTreeMap, HashMap};

use futures::channel::{mpsc, oneshot};
use futures::{SinkExt, StreamExt};
use gloo_net::websocket::{futures::WebSocket, Message};
use leptos::prelude::*;
use leptos::task::spawn_local;
use shardscope_shared::placement::PlacementSpec;
use shardscope_shared::protocol::{ClientMsg, NodeInfo, NodeReply, NodeStats, Progress, ServerMsg};

/// A reply from the backend: the node that served it, and the node's answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub node: Option<String>,
    pub reply: NodeReply,
}

/// A cluster as it was: nodes, placement, and jump's slots.
pub type Snapshot = (Vec<NodeInfo>, PlacementSpec, Option<Vec<Option<String>>>);

/// A rebalance as the page shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Rebalance {
    pub progress: Progress,
    pub done: bool,
    pub error: Option<String>,
}

/// The connection state the views read.
#[derive(Clone, Copy)]
pub struct Backend {
    pub connected: RwSignal<bool>,
    pub nodes: RwSignal<Vec<NodeInfo>>,
    pub placement: RwSignal<Option<PlacementSpec>>,
    /// Jump's slot table from the backend, when the algorithm has one.
    pub slots: RwSignal<Option<Vec<Option<String>>>>,
    /// Replies by request id.
    pub answers: RwSignal<HashMap<u64, Answer>>,
    /// Administrative replies by request id: (ok, message).
    pub admin: RwSignal<HashMap<u64, (bool, String)>>,
    /// The latest rebalance, as the backend reports it.
    pub rebalance: RwSignal<Option<Rebalance>>,
    /// The membership and placement before the latest change (nodes, spec,
    /// jump's slots), to show which keys it moved.
    pub previous: RwSignal<Option<Snapshot>>,
    /// Each node's counters, from the latest `stats` reply.
    pub stats: RwSignal<BTreeMap<String, NodeStats>>,
    outbox: StoredValue<Option<mpsc::UnboundedSender<ClientMsg>>>,
    next_id: StoredValue<u64>,
    /// Requests sent with [`Backend::call`], waiting for their reply.
    waiters: StoredValue<HashMap<u64, oneshot::Sender<ServerMsg>>>,
}

/// The page's backend connection, provided by the app shell
/// (`provide_context`); every view reaches it this way.
pub fn backend() -> Backend {
    expect_context::<Backend>()
}

impl Backend {
    /// Opens the WebSocket at `/ws` on the page's own host.
    pub fn connect() -> Self {
        let backend = Backend {
            connected: RwSignal::new(false),
            nodes: RwSignal::new(Vec::new()),
            placement: RwSignal::new(None),
            slots: RwSignal::new(None),
            answers: RwSignal::new(HashMap::new()),
            admin: RwSignal::new(HashMap::new()),
            rebalance: RwSignal::new(None),
            stats: RwSignal::new(BTreeMap::new()),
            previous: RwSignal::new(None),
            outbox: StoredValue::new(None),
            next_id: StoredValue::new(1),
            waiters: StoredValue::new(HashMap::new()),
        };
        let Some(url) = ws_url() else { return backend };
        let Ok(socket) = WebSocket::open(&url) else {
            return backend;
        };
        let (mut sink, mut stream) = socket.split();
        let (tx, mut rx) = mpsc::unbounded::<ClientMsg>();
        backend.outbox.set_value(Some(tx));
        spawn_local(async move {
            while let Some(msg) = rx.next().await {
                let text = serde_json::to_string(&msg).expect("client messages serialize");
                if sink.send(Message::Text(text)).await.is_err() {
                    break;
                }
            }
        });
        spawn_local(async move {
            while let Some(Ok(Message::Text(text))) = stream.next().await {
                backend.connected.set(true);
                let msg = serde_json::from_str::<ServerMsg>(&text);
                let waiter = match &msg {
                    Ok(
                        ServerMsg::Reply { id, .. }
                        | ServerMsg::BatchReply { id, .. }
                        | ServerMsg::AdminReply { id, .. }
                        | ServerMsg::Stats { id, .. },
                    ) => backend.waiters.try_update_value(|w| w.remove(id)).flatten(),
                    _ => None,
                };
                if let (Some(waiter), Ok(msg)) = (waiter, &msg) {
                    let _ = waiter.send(msg.clone());
                    continue;
                }
                match msg {
                    Ok(ServerMsg::Cluster { nodes, placement, slots }) => {
                        let ids = |ns: &[NodeInfo]| ns.iter().map(|n| n.id.clone()).collect::<Vec<_>>();
                        let changed = backend.nodes.with_untracked(|old| ids(old) != ids(&nodes))
                            || backend.placement.with_untracked(|old| old.as_ref() != Some(&placement));
                        if changed && backend.placement.with_untracked(Option::is_some) {
                            let before = (
                                backend.nodes.get_untracked(),
                                backend.placement.get_untracked(),
                                backend.slots.get_untracked(),
                            );
                            backend.previous.set(before.1.map(|spec| (before.0, spec, before.2)));
                        }
                        backend.nodes.set(nodes);
                        backend.placement.set(Some(placement));
                        backend.slots.set(slots);
                    }
                    Ok(ServerMsg::Reply { id, node, reply }) => {
                        backend.answers.update(|a| {
                            a.insert(id, Answer { node, reply });
                        });
                    }
                    Ok(ServerMsg::Stats { stats, .. }) => backend.stats.set(stats),
                    Ok(ServerMsg::AdminReply { id, ok, message, .. }) => {
                        backend.admin.update(|a| {
                            a.insert(id, (ok, message));
                        });
                    }
                    Ok(ServerMsg::RebalancePlan { change, keys_total, ideal, .. }) => {
                        let progress = Progress { change, keys_total, ideal, ..Default::default() };
                        backend.rebalance.set(Some(Rebalance { progress, done: false, error: None }));
                    }
                    Ok(ServerMsg::RebalanceProgress { progress }) => {
                        backend.rebalance.set(Some(Rebalance { progress, done: false, error: None }));
                    }
                    Ok(ServerMsg::RebalanceDone { progress }) => {
                        backend.rebalance.set(Some(Rebalance { progress, done: true, error: None }));
                    }
                    Ok(ServerMsg::RebalanceError { message, .. }) => {
                        backend.rebalance.update(|r| {
                            if let Some(r) = r {
                                r.error = Some(message);
                            }
                        });
                    }
                    Ok(ServerMsg::BatchReply { .. }) => {}
                    Err(e) => leptos::logging::warn!("unreadable message from backend: {e}"),
                }
            }
            backend.connected.set(false);
            // Whoever waits for a reply learns that none will come.
            backend.waiters.update_value(HashMap::clear);
        });
        backend
    }

    /// Sends a request built from a fresh id; returns that id.
    pub fn send(&self, make: impl FnOnce(u64) -> ClientMsg) -> u64 {
        let id = self.next_id.get_value();
        self.next_id.set_value(id + 1);
        self.outbox.with_value(|tx| {
            if let Some(tx) = tx {
                let _ = tx.unbounded_send(make(id));
            }
        });
        id
    }

    /// Sends a request and waits for its reply; `None` when the connection
    /// is gone (or was never open).
    pub async fn call(&self, make: impl FnOnce(u64) -> ClientMsg) -> Option<ServerMsg> {
        if self.outbox.with_value(Option::is_none) {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        let id = self.next_id.get_value();
        self.waiters.update_value(|w| {
            w.insert(id, tx);
        });
        self.send(make);
        rx.await.ok()
    }
}

/// `/ws` on the page's own host, with the admin token when the page has one.
fn ws_url() -> Option<String> {
    let location = web_sys::window()?.location();
    let scheme = if location.protocol().ok()? == "https:" { "wss" } else { "ws" };
    let query = admin_token().map(|t| format!("?token={t}")).unwrap_or_default();
    Some(format!("{scheme}://{}/ws{query}", location.host().ok()?))
}

/// Where the tab keeps the admin token.
const TOKEN_KEY: &str = "shardscope-admin-token";

/// The admin token (as written in a URL): from the page's `?token=`, which
/// is then kept in the tab's session storage and taken out of the address
/// bar (so a projector does not show it), or from an earlier load in this tab.
fn admin_token() -> Option<String> {
    let window = web_sys::window()?;
    let storage = window.session_storage().ok().flatten();
    let location = window.location();
    let search = location.search().ok()?;
    let params: Vec<&str> = search.trim_start_matches('?').split('&').filter(|p| !p.is_empty()).collect();
    let Some(token) = params.iter().find_map(|p| p.strip_prefix("token=")) else {
        return storage?.get_item(TOKEN_KEY).ok().flatten();
    };
    if let Some(storage) = &storage {
        let _ = storage.set_item(TOKEN_KEY, token);
    }
    let rest: Vec<&str> = params.iter().copied().filter(|p| !p.starts_with("token=")).collect();
    let query = if rest.is_empty() { String::new() } else { format!("?{}", rest.join("&")) };
    let url = format!("{}{query}{}", location.pathname().ok()?, location.hash().ok()?);
    let _ = window.history().ok()?.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&url));
    Some(token.to_string())
}
