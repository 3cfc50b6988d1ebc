//! The page's WebSocket at `/ws`: on connect the page gets the cluster (nodes
//! and placement), then membership, health and rebalance events as they
//! happen; it sends [`ClientMsg`] requests (key operations and
//! administration) and gets replies with the same id, answered concurrently.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use shardscope_shared::protocol::{
    ClientMsg, ErrorCode, NodeReply, NodeRequest, Progress, ServerMsg, MAX_KEY, MAX_MESSAGE, MAX_SCAN_BYTES, MAX_VALUE,
};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::admin::Admin;
use crate::cluster::Cluster;

/// Requests one connection may have in flight; past that the socket is not
/// read until one finishes.
const IN_FLIGHT: usize = 256;
/// KiB of replies one connection may hold at once (being built, queued or
/// being written). Each request reserves the most its reply can take
/// before it is answered, and gives it back once the reply is written, so
/// a page that sends requests and never reads its socket stops being read
/// at this mark instead of piling up replies in the backend.
const REPLY_BUDGET_KIB: u32 = 64 * 1024;
/// KiB of requests and replies all connections together may hold: past it
/// every page waits its turn, and memory stays bounded however many connect.
static ALL_SESSIONS: Semaphore = Semaphore::const_new(256 * 1024);
/// A request, parsed, takes up to this many times its JSON.
const PARSED_FACTOR: usize = 8;
/// How long one message may take to be written: a page that does not read
/// for that long is closed, and what it held is given back.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Keys one `batch` works on at once.
const BATCH_LANES: usize = 256;

/// Opens a session; with the admin token (`/ws?token=..`), one that may
/// administer the cluster.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(admin): State<Admin>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let may_administer = admin
        .authorize(shardscope_consul::token::presented(&headers, query.as_deref()).as_deref())
        .map_err(|e| e.to_string());
    ws.max_message_size(MAX_MESSAGE).on_upgrade(move |socket| session(socket, admin, may_administer))
}

/// One page's connection: requests are answered concurrently (replies carry
/// their request's id), and cluster and rebalance events are pushed in
/// between, all through one writer.
async fn session(socket: WebSocket, admin: Admin, may_administer: Result<(), String>) {
    let cluster = admin.cluster.clone();
    let (mut sink, mut stream) = socket.split();
    // Each reply travels with its reservation, given back once it is written.
    let (out, mut outbox) = mpsc::channel::<(ServerMsg, Option<Reserved>)>(IN_FLIGHT);
    let writer = tokio::spawn(async move {
        while let Some((msg, reserved)) = outbox.recv().await {
            let text = serde_json::to_string(&msg).expect("server messages always serialize");
            drop(msg);
            match tokio::time::timeout(WRITE_TIMEOUT, sink.send(Message::Text(text.into()))).await {
                Ok(Ok(())) => drop(reserved),
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::warn!("a WebSocket client did not read for {WRITE_TIMEOUT:?}: closing it");
                    break;
                }
            }
        }
    });
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let budget = Arc::new(Semaphore::new(REPLY_BUDGET_KIB as usize));
    // Answers in progress but administration; dropped (so cancelled) when
    // the page goes.
    let mut tasks = tokio::task::JoinSet::new();
    let mut events = cluster.subscribe();
    if out.send((cluster.snapshot(), None)).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            event = events.recv() => {
                let msg = match event {
                    Ok(msg) => msg,
                    Err(RecvError::Lagged(_)) => cluster.snapshot(),
                    Err(RecvError::Closed) => break,
                };
                if out.send((msg, None)).await.is_err() { break }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            incoming = stream.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let Ok(slot) = slots.clone().acquire_owned().await else { break };
                // The request's own memory and its reply's most, reserved
                // at once (so no request holds part and waits for the rest)
                // before it is parsed.
                let request_kib = text.len().saturating_mul(PARSED_FACTOR) / 1024;
                let kib = request_kib.saturating_add(reply_reservation_kib(text.as_str()) as usize);
                let Some(reserved) = Reserved::take(&budget, kib).await else { break };
                let msg = serde_json::from_str::<ClientMsg>(text.as_str());
                drop(text);
                let (admin, out, may_administer) = (admin.clone(), out.clone(), may_administer.clone());
                // Administration runs to its end even if the page goes (a
                // node half added or half removed helps no one); the rest
                // is cancelled with the page.
                let administers = matches!(
                    msg,
                    Ok(ClientMsg::AddNode { .. } | ClientMsg::RemoveNode { .. } | ClientMsg::ChangePlacement { .. })
                );
                let work = async move {
                    let reply = match msg {
                        Ok(msg) => answer(&admin, &may_administer, msg).await,
                        Err(e) => {
                            let reply = NodeReply::error(ErrorCode::BadRequest, format!("malformed message: {e}"));
                            ServerMsg::Reply { id: 0, node: None, reply }
                        }
                    };
                    let _ = out.send((reply, Some(reserved))).await;
                    drop(slot);
                };
                if administers {
                    tokio::spawn(work);
                } else {
                    tasks.spawn(work);
                }
            }
        }
    }
    writer.abort();
}

/// KiB held from this connection's budget and from all connections'.
struct Reserved {
    _session: OwnedSemaphorePermit,
    _all: tokio::sync::SemaphorePermit<'static>,
}

impl Reserved {
    /// Waits for `kib` (at most a connection's whole budget) from both.
    async fn take(session: &Arc<Semaphore>, kib: usize) -> Option<Reserved> {
        let kib = u32::try_from(kib).unwrap_or(u32::MAX).clamp(1, REPLY_BUDGET_KIB);
        let session = session.clone().acquire_many_owned(kib).await.ok()?;
        let all = ALL_SESSIONS.acquire_many(kib).await.ok()?;
        Some(Reserved { _session: session, _all: all })
    }
}

/// KiB reserved for a reply that holds no key or value (admin, stats,
/// batch summaries, errors).
const SMALL_REPLY_KIB: u32 = 64;

/// What a reservation needs to know of a request before it is parsed (a
/// scan of its JSON that keeps nothing else).
#[derive(serde::Deserialize)]
struct Peek {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    limit: Option<serde::de::IgnoredAny>,
}

/// The most the reply to the request `text` can take as JSON, in KiB: a
/// value (or a page, or a whole collection) at its limit, at 4/3 of its
/// size (base64, the longest a datum is written), plus room for the rest.
fn reply_reservation_kib(text: &str) -> u32 {
    let peek = serde_json::from_str::<Peek>(text).ok();
    let data = match peek.as_ref().map(|p| (p.kind.as_str(), p.limit.is_some())) {
        Some(("get", _)) => MAX_KEY + MAX_VALUE,
        Some(("get_all", true)) => MAX_SCAN_BYTES + MAX_KEY + MAX_VALUE,
        Some(("get_all", false)) => MAX_MESSAGE,
        _ => 0,
    };
    u32::try_from(data / 3 * 4 / 1024).unwrap_or(REPLY_BUDGET_KIB) + SMALL_REPLY_KIB
}

async fn answer(admin: &Admin, may_administer: &Result<(), String>, msg: ClientMsg) -> ServerMsg {
    let cluster = &admin.cluster;
    if let (
        ClientMsg::AddNode { id, .. } | ClientMsg::RemoveNode { id, .. } | ClientMsg::ChangePlacement { id, .. },
        Err(why),
    ) = (&msg, may_administer)
    {
        return admin_reply(*id, Err(why.to_string()));
    }
    let (id, node, reply) = match msg {
        ClientMsg::Put { id, key, value } => {
            let (node, reply) =
                cluster.request_key(key.as_bytes(), &NodeRequest::Put { key: key.clone(), value, version: None }).await;
            (id, node, reply)
        }
        ClientMsg::Get { id, key } => {
            let (node, reply) =
                cluster.request_key(key.as_bytes(), &NodeRequest::GetOne { key: key.clone(), versioned: false }).await;
            (id, node, reply)
        }
        ClientMsg::Delete { id, key } => {
            let (node, reply) =
                cluster.request_key(key.as_bytes(), &NodeRequest::Delete { key: key.clone(), version: None }).await;
            (id, node, reply)
        }
        ClientMsg::GetAll { id, prefix, after, limit: Some(limit) } => {
            let prefix = prefix.unwrap_or_default();
            (id, None, cluster.list(prefix.as_bytes(), after.as_ref().map(|a| a.as_bytes()), limit).await)
        }
        ClientMsg::GetAll { id, .. } => (id, None, cluster.get_all().await),
        ClientMsg::AddNode { id, rate } => {
            return match admin.add_node(rate).await {
                Ok(node) => ServerMsg::AdminReply {
                    id,
                    ok: true,
                    message: format!("{} launched; it joins through the registry", node.id),
                    progress: None,
                    node: Some(node.id),
                },
                Err(e) => admin_reply(id, Err(e.to_string())),
            };
        }
        ClientMsg::RemoveNode { id, node, rate } => {
            let done = admin.remove_node(&node, rate).await.map(|p| (format!("{node} drained and removed"), Some(p)));
            let done = done.map_err(|e| e.to_string());
            return admin_reply(id, done);
        }
        ClientMsg::Stats { id } => {
            let stats = cluster
                .stats()
                .await
                .into_iter()
                .filter_map(|(node, reply)| match reply {
                    NodeReply::Stats { stats } => Some((node, stats)),
                    _ => None,
                })
                .collect();
            return ServerMsg::Stats { id, stats };
        }
        ClientMsg::Batch { id, ops } => {
            if let Err(reply) = check_batch(&ops) {
                return ServerMsg::Reply { id, node: None, reply };
            }
            let summary = crate::load::run(&ops, BATCH_LANES, |op| run_op(cluster, op), || {}).await;
            return ServerMsg::BatchReply { id, summary };
        }
        ClientMsg::ChangePlacement { id, placement, rate } => {
            let name = placement.name();
            let done =
                admin.change_placement(placement, rate).await.map(|p| (format!("now placing with {name}"), Some(p)));
            let done = done.map_err(|e| e.to_string());
            return admin_reply(id, done);
        }
    };
    ServerMsg::Reply { id, node, reply }
}

/// A batch runs only what a key set or the seeds' operations file holds,
/// each within the node's limits; otherwise none of it runs.
fn check_batch(ops: &[NodeRequest]) -> Result<(), NodeReply> {
    for (i, op) in ops.iter().enumerate() {
        let allowed = matches!(
            op,
            NodeRequest::Put { .. } | NodeRequest::GetOne { .. } | NodeRequest::Delete { .. } | NodeRequest::GetAll
        );
        if !allowed {
            let message = format!("batch operation {i}: only PUT, GET_ONE, DELETE and GET_ALL run in a batch");
            return Err(NodeReply::error(ErrorCode::BadRequest, message));
        }
        op.validate().map_err(|reply| match reply {
            NodeReply::Error { error, message, .. } => {
                NodeReply::error(error, format!("batch operation {i}: {message}; nothing was run"))
            }
            other => other,
        })?;
    }
    Ok(())
}

/// One operation of a batch, routed like its single request.
async fn run_op(cluster: &Cluster, op: &NodeRequest) -> Result<NodeReply, String> {
    Ok(match op {
        NodeRequest::Put { key, .. } | NodeRequest::GetOne { key, .. } | NodeRequest::Delete { key, .. } => {
            cluster.request_key(key.as_bytes(), op).await.1
        }
        _ => cluster.get_all().await,
    })
}

fn admin_reply(id: u64, outcome: Result<(String, Option<Progress>), String>) -> ServerMsg {
    match outcome {
        Ok((message, progress)) => ServerMsg::AdminReply { id, ok: true, message, progress, node: None },
        Err(message) => ServerMsg::AdminReply { id, ok: false, message, progress: None, node: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_reserved_by_what_they_can_hold() {
        let kib = |msg: &ClientMsg| reply_reservation_kib(&serde_json::to_string(msg).unwrap());
        let value = kib(&ClientMsg::Get { id: 1, key: "k".into() });
        assert!(value as usize * 1024 >= (MAX_VALUE + MAX_KEY) / 3 * 4, "{value}");
        let page = kib(&ClientMsg::GetAll { id: 1, prefix: None, after: None, limit: Some(10) });
        let all = kib(&ClientMsg::GetAll { id: 1, prefix: None, after: None, limit: None });
        assert!(value < page && page < all && all <= REPLY_BUDGET_KIB / 2, "{value} {page} {all}");
        assert_eq!(kib(&ClientMsg::Put { id: 1, key: "k".into(), value: "v".into() }), SMALL_REPLY_KIB);
        assert_eq!(reply_reservation_kib("not json"), SMALL_REPLY_KIB);
    }
}
