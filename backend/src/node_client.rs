//! A pipelined connection to one storage node over a ZeroMQ DEALER socket.
//!
//! Each request is sent as `["", id, json]`; the node's ROUTER echoes the
//! envelope, so the reply `["", id, json]` is matched to its caller by `id`
//! and many requests can be in flight at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use shardscope_shared::protocol::{ErrorCode, NodeReply, NodeRequest};
use tokio::sync::oneshot;
use zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};

/// How long a request may wait for its reply before it fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<NodeReply>>>>;

/// A connection to one node; cheap to clone.
#[derive(Clone)]
pub struct NodeClient {
    endpoint: Arc<str>,
    sender: Arc<tokio::sync::Mutex<zeromq::DealerSendHalf>>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
    _reader: Arc<ReaderTask>,
}

/// Stops the reply reader when the last clone of the client is dropped.
struct ReaderTask(tokio::task::JoinHandle<()>);

impl Drop for ReaderTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl NodeClient {
    /// Connects to a node's ROUTER endpoint, e.g. `tcp://127.0.0.1:5601`.
    pub async fn connect(endpoint: &str) -> anyhow::Result<Self> {
        let mut socket = zeromq::DealerSocket::new();
        socket.connect(endpoint).await?;
        let (send, mut recv) = socket.split();
        let pending: Pending = Arc::default();
        let reader_pending = pending.clone();
        let reader = tokio::spawn(async move {
            while let Ok(msg) = recv.recv().await {
                if let Some((id, reply)) = decode_reply(msg) {
                    if let Some(tx) = reader_pending.lock().unwrap().remove(&id) {
                        let _ = tx.send(reply);
                    }
                }
            }
        });
        Ok(NodeClient {
            endpoint: endpoint.into(),
            sender: Arc::new(tokio::sync::Mutex::new(send)),
            pending,
            next_id: Arc::new(AtomicU64::new(1)),
            _reader: Arc::new(ReaderTask(reader)),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends one request and waits for its reply. Transport failures and
    /// time-outs come back as an `unavailable` error reply.
    pub async fn request(&self, req: &NodeRequest) -> NodeReply {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let body = serde_json::to_vec(req).expect("requests always serialize");
        let frames = vec![Bytes::new(), Bytes::copy_from_slice(&id.to_be_bytes()), Bytes::from(body)];
        let msg = ZmqMessage::try_from(frames).expect("three frames");
        let sent = self.sender.lock().await.send(msg).await;
        let outcome = match sent {
            Err(e) => Err(format!("send failed: {e}")),
            Ok(()) => match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(_)) => Err("connection closed".to_string()),
                Err(_) => Err(format!("no reply within {REQUEST_TIMEOUT:?}")),
            },
        };
        outcome.unwrap_or_else(|why| {
            self.pending.lock().unwrap().remove(&id);
            NodeReply::error(ErrorCode::Unavailable, format!("node {}: {why}", self.endpoint))
        })
    }
}

fn decode_reply(msg: ZmqMessage) -> Option<(u64, NodeReply)> {
    let frames = msg.into_vec();
    let [_, id, body] = frames.as_slice() else {
        return None;
    };
    let id = u64::from_be_bytes(id.as_ref().try_into().ok()?);
    Some((id, serde_json::from_slice(body).ok()?))
}
