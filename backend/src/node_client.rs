//! A pipelined connection to one storage node: a ZeroMQ DEALER speaking
//! ZMTP 3 ([`shardscope_node::zmtp`]) over one TCP connection.
//!
//! Each request is sent as `["", id, json]`; the node's ROUTER echoes the
//! envelope, so the reply `["", id, json]` is matched to its caller by `id`
//! and many requests can be in flight at once. Requests queued by many
//! callers go out in one write. A lost connection fails what was in flight
//! on it, and the next request connects again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use shardscope_node::zmtp;
use shardscope_shared::protocol::{ErrorCode, NodeReply, NodeRequest, MAX_MESSAGE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// How long a request may wait for its reply before it fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting to a node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest reply taken: twice the message limit. A node's biggest replies
/// are bounded well below it (`GET_ALL` at
/// [`MAX_GET_ALL_BYTES`](shardscope_shared::protocol::MAX_GET_ALL_BYTES) of JSON, a
/// `SCAN` page at 6 MiB of keys and values plus one entry, at most 4/3 of
/// that as JSON), so a peer sending more is not a node to trust.
pub const MAX_REPLY: usize = 2 * MAX_MESSAGE;
/// Most bytes of queued requests put into one write.
const WRITE_BATCH: usize = 1 << 20;

type Pending = Mutex<HashMap<u64, oneshot::Sender<NodeReply>>>;

/// A connection to one node; cheap to clone.
#[derive(Clone)]
pub struct NodeClient {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: String,
    /// `host:port` of the endpoint.
    addr: String,
    next_id: AtomicU64,
    link: RwLock<Option<Arc<Link>>>,
    /// Held while connecting, so that concurrent requests make one connection.
    connecting: tokio::sync::Mutex<()>,
}

/// One TCP connection: a writer task draining `outbox`, a reader task
/// answering `pending`. Both stop when the link is dropped.
struct Link {
    outbox: mpsc::UnboundedSender<Vec<u8>>,
    pending: Arc<Pending>,
    alive: Arc<AtomicBool>,
    _tasks: [AbortOnDrop; 2],
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl NodeClient {
    /// Connects to a node's ROUTER endpoint, e.g. `tcp://127.0.0.1:5601`.
    pub async fn connect(endpoint: &str) -> anyhow::Result<Self> {
        let client = Self::lazy(endpoint)?;
        client.link().await.map_err(|e| anyhow::anyhow!("{endpoint}: {e}"))?;
        Ok(client)
    }

    /// A client for `endpoint` that connects on its first request (for a
    /// node known from the cluster's state that may not be up yet).
    pub fn lazy(endpoint: &str) -> anyhow::Result<Self> {
        let Some(addr) = endpoint.strip_prefix("tcp://") else {
            anyhow::bail!("{endpoint}: only tcp://HOST:PORT endpoints are supported");
        };
        let inner = Inner {
            endpoint: endpoint.to_string(),
            addr: addr.to_string(),
            next_id: AtomicU64::new(1),
            link: RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
        };
        Ok(NodeClient { inner: Arc::new(inner) })
    }

    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// Sends one request and waits for its reply. Transport failures and
    /// time-outs come back as an `unavailable` error reply.
    pub async fn request(&self, req: &NodeRequest) -> NodeReply {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let body = serde_json::to_vec(req).expect("requests always serialize");
        let mut frame = Vec::with_capacity(body.len() + 32);
        zmtp::encode_message([&[][..], &id.to_be_bytes()[..], &body[..]].into_iter(), &mut frame);
        let outcome = match self.link().await {
            Err(e) => Err(format!("cannot connect: {e}")),
            Ok(link) => link.call(id, frame).await,
        };
        outcome.unwrap_or_else(|why| {
            NodeReply::error(ErrorCode::Unavailable, format!("node {}: {why}", self.inner.endpoint))
        })
    }

    /// The live connection, or a new one.
    async fn link(&self) -> std::io::Result<Arc<Link>> {
        if let Some(link) = self.current() {
            return Ok(link);
        }
        let _one_at_a_time = self.inner.connecting.lock().await;
        if let Some(link) = self.current() {
            return Ok(link);
        }
        let link = Arc::new(Link::open(&self.inner.addr).await?);
        *self.inner.link.write().unwrap() = Some(link.clone());
        Ok(link)
    }

    fn current(&self) -> Option<Arc<Link>> {
        self.inner.link.read().unwrap().as_ref().filter(|l| l.alive.load(Ordering::SeqCst)).cloned()
    }
}

impl Link {
    async fn open(addr: &str) -> std::io::Result<Link> {
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        let (mut reader, mut writer) = stream.into_split();
        let mut hello = zmtp::greeting().to_vec();
        zmtp::encode_ready("DEALER", &mut hello);
        writer.write_all(&hello).await?;

        let alive = Arc::new(AtomicBool::new(true));
        let pending: Arc<Pending> = Arc::default();
        let (outbox, mut queued) = mpsc::unbounded_channel::<Vec<u8>>();
        let writer_alive = alive.clone();
        let write = tokio::spawn(async move {
            let mut batch = Vec::new();
            while let Some(first) = queued.recv().await {
                batch.clear();
                batch.extend_from_slice(&first);
                while batch.len() < WRITE_BATCH {
                    match queued.try_recv() {
                        Ok(more) => batch.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                if writer.write_all(&batch).await.is_err() {
                    break;
                }
            }
            writer_alive.store(false, Ordering::SeqCst);
        });
        let (reader_alive, reader_pending) = (alive.clone(), pending.clone());
        let read = tokio::spawn(async move {
            let mut decoder = zmtp::Decoder::new(MAX_REPLY);
            let (mut buf, mut items) = (Vec::with_capacity(64 * 1024), Vec::new());
            loop {
                buf.reserve(64 * 1024);
                match reader.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                match decoder.decode(&buf, &mut items) {
                    Ok(used) => drop(buf.drain(..used)),
                    Err(e) => {
                        tracing::warn!("node connection dropped: {e}");
                        break;
                    }
                }
                for item in items.drain(..) {
                    if let Some((id, reply)) = decode_reply(item) {
                        if let Some(tx) = reader_pending.lock().unwrap().remove(&id) {
                            let _ = tx.send(reply);
                        }
                    }
                }
            }
            // Marked dead first, then what waits is failed: a request that
            // registers after this sees the mark and fails by itself.
            reader_alive.store(false, Ordering::SeqCst);
            reader_pending.lock().unwrap().clear();
        });
        Ok(Link { outbox, pending, alive, _tasks: [AbortOnDrop(write), AbortOnDrop(read)] })
    }

    async fn call(&self, id: u64, frame: Vec<u8>) -> Result<NodeReply, String> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        if !self.alive.load(Ordering::SeqCst) || self.outbox.send(frame).is_err() {
            self.pending.lock().unwrap().remove(&id);
            return Err("connection closed".into());
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err("connection closed".into()),
            Err(_) => {
                self.pending.lock().unwrap().remove(&id);
                Err(format!("no reply within {REQUEST_TIMEOUT:?}"))
            }
        }
    }
}

/// A reply `["", id, json]`: the id and the node's answer (`None` for
/// anything else, which the reader skips).
pub fn decode_reply(item: zmtp::Item) -> Option<(u64, NodeReply)> {
    let zmtp::Item::Message(frames) = item else { return None };
    let [_, id, body] = frames.as_slice() else {
        return None;
    };
    let id = u64::from_be_bytes(id.as_slice().try_into().ok()?);
    Some((id, serde_json::from_slice(body).ok()?))
}
