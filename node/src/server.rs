//! The node's ZeroMQ ROUTER loop, on libzmq in a thread of its own.
//!
//! Every incoming message is `[identity, envelope.., payload]`: a REQ client's
//! envelope is one empty delimiter frame, a DEALER client may add its own
//! frames (the backend sends a request id). The reply goes back as
//! `[identity, envelope.., reply]`, so each client gets its envelope back.
//!
//! Group commit: the loop takes every request already waiting (up to 1024),
//! applies them in order, makes their writes durable with one log commit,
//! and only then sends their replies. libzmq's `ZMQ_MAXMSGSIZE` drops peers
//! that send more than twice the message limit; anything up to that gets a
//! `too_large` reply.

use std::path::PathBuf;
use std::time::Duration;

use shardscope_shared::consul::{CheckDefinition, ServiceRegistration, NODE_SERVICE};
use shardscope_shared::protocol::{parse_request, ErrorCode, NodeReply, MAX_MESSAGE};

use crate::consul::Consul;
use crate::store::Store;
use crate::wal::FsyncPolicy;

/// Requests answered per group commit at most.
const BATCH: usize = 1024;

/// How to run a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Interface to bind (loopback by default).
    pub bind: String,
    /// TCP port of the ROUTER socket.
    pub port: u16,
    /// Directory for the node's files.
    pub data_dir: PathBuf,
    /// Service id in the registry (e.g. `node-3`).
    pub id: String,
    /// Host other machines reach this node at (defaults to `bind`).
    pub advertise: Option<String>,
    /// Where to register; `None` runs the node unregistered.
    pub registry: Option<Consul>,
    /// When acknowledged writes reach the disk.
    pub fsync: FsyncPolicy,
}

impl NodeConfig {
    /// The registration this node makes: service `shardscope-node`, its id,
    /// address and port, and a TCP check on the ZeroMQ port every second; a
    /// node critical for 30 s is deregistered by the registry.
    pub fn registration(&self) -> ServiceRegistration {
        let host = self.advertise.clone().unwrap_or_else(|| self.bind.clone());
        ServiceRegistration {
            id: Some(self.id.clone()),
            name: NODE_SERVICE.to_string(),
            address: host.clone(),
            port: self.port,
            check: Some(CheckDefinition {
                tcp: Some(format!("{host}:{}", self.port)),
                interval: Some("1s".into()),
                timeout: Some("1s".into()),
                deregister_critical_service_after: Some("30s".into()),
                status: Some("passing".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// Runs a node until `shutdown` completes: recovers the data, binds, registers;
/// on shutdown deregisters, answers what is in flight, and returns.
pub async fn run(config: NodeConfig, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let store = Store::open(&config.data_dir, config.fsync)?;
    tracing::info!(keys = store.len(), data_dir = %config.data_dir.display(), "data recovered");
    let ctx = zmq::Context::new();
    let socket = ctx.socket(zmq::ROUTER)?;
    socket.set_maxmsgsize(2 * MAX_MESSAGE as i64)?;
    socket.set_linger(1000)?;
    let endpoint = format!("tcp://{}:{}", config.bind, config.port);
    socket.bind(&endpoint)?;
    let stop_addr = format!("inproc://stop-{}", config.port);
    let stop_rx = ctx.socket(zmq::PAIR)?;
    stop_rx.bind(&stop_addr)?;
    let stop_tx = ctx.socket(zmq::PAIR)?;
    stop_tx.connect(&stop_addr)?;
    tracing::info!(%endpoint, "node listening");
    let worker =
        std::thread::Builder::new().name("zmq-router".into()).spawn(move || serve_loop(socket, stop_rx, store))?;

    if let Some(consul) = &config.registry {
        register_with_retries(consul, &config.registration()).await?;
        tracing::info!(id = %config.id, registry = consul.base(), "registered");
    }
    shutdown.await;
    if let Some(consul) = &config.registry {
        match consul.deregister(&config.id).await {
            Ok(()) => tracing::info!(id = %config.id, "deregistered"),
            Err(e) => tracing::warn!(id = %config.id, "could not deregister: {e:#}"),
        }
    }
    stop_tx.send("stop", 0)?;
    let outcome = tokio::task::spawn_blocking(move || worker.join()).await?;
    outcome.map_err(|_| anyhow::anyhow!("the ZeroMQ loop panicked"))??;
    tracing::info!("node stopped");
    Ok(())
}

/// Answers requests until a message arrives on `stop`; then answers what is
/// already queued and returns.
fn serve_loop(socket: zmq::Socket, stop: zmq::Socket, mut store: Store) -> anyhow::Result<()> {
    loop {
        let timeout = store.sync_due_in().map_or(-1, |d| d.as_millis().max(1) as i64);
        let mut items = [socket.as_poll_item(zmq::POLLIN), stop.as_poll_item(zmq::POLLIN)];
        zmq::poll(&mut items, timeout)?;
        let stopping = items[1].is_readable();
        if items[0].is_readable() || stopping {
            serve_batch(&socket, &mut store)?;
        }
        if store.sync_due_in() == Some(Duration::ZERO) {
            store.sync()?;
        }
        if stopping {
            store.sync()?;
            return Ok(());
        }
    }
}

/// Takes every waiting request, applies them, commits once, then replies.
fn serve_batch(socket: &zmq::Socket, store: &mut Store) -> anyhow::Result<()> {
    let mut replies = Vec::new();
    while replies.len() < BATCH {
        match socket.recv_multipart(zmq::DONTWAIT) {
            Ok(frames) => replies.extend(serve_one(store, frames)),
            Err(zmq::Error::EAGAIN) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if let Err(e) = store.commit() {
        // Nothing here was acknowledged; stop rather than ack what the log lacks.
        tracing::error!("write-ahead log failed: {e}; stopping");
        return Err(e.into());
    }
    for reply in replies {
        socket.send_multipart(reply, 0)?;
    }
    Ok(())
}

/// Handles one ROUTER message; `None` when it carries no payload to answer.
fn serve_one(store: &mut Store, mut frames: Vec<Vec<u8>>) -> Option<Vec<Vec<u8>>> {
    if frames.len() < 2 {
        return None;
    }
    let payload = frames.pop()?;
    let reply = if payload.len() > MAX_MESSAGE {
        let message = format!("message of {} bytes is over the {MAX_MESSAGE}-byte limit", payload.len());
        NodeReply::error(ErrorCode::TooLarge, message)
    } else {
        match parse_request(&payload) {
            Ok(req) => store.apply(req),
            Err(e) => NodeReply::error(ErrorCode::BadRequest, format!("malformed request: {e}")),
        }
    };
    frames.push(serde_json::to_vec(&reply).expect("replies always serialize"));
    Some(frames)
}

/// Registers, retrying for up to 5 s while the registry comes up.
async fn register_with_retries(consul: &Consul, reg: &ServiceRegistration) -> anyhow::Result<()> {
    let mut last = None;
    for _ in 0..25 {
        match consul.register(reg).await {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last.unwrap().context(format!("registering with {}", consul.base())))
}
