//! The node's ZeroMQ ROUTER loop.
//!
//! Every incoming message is `[identity, envelope.., payload]`: a REQ client's
//! envelope is one empty delimiter frame, a DEALER client may add its own
//! frames (the backend sends a request id). The reply goes back as
//! `[identity, envelope.., reply]`, so each client gets its envelope back.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use shardscope_shared::protocol::{parse_request, ErrorCode, NodeReply};
use zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};

use crate::consul::Consul;
use crate::store::Store;
use shardscope_shared::consul::{CheckDefinition, ServiceRegistration, NODE_SERVICE};

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

/// Runs a node until `shutdown` completes.
pub async fn run(config: NodeConfig, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    let mut socket = zeromq::RouterSocket::new();
    let endpoint = format!("tcp://{}:{}", config.bind, config.port);
    socket.bind(&endpoint).await?;
    tracing::info!(%endpoint, data_dir = %config.data_dir.display(), "node listening");
    let mut store = Store::new();
    if let Some(consul) = &config.registry {
        register_with_retries(consul, &config.registration()).await?;
        tracing::info!(id = %config.id, registry = consul.base(), "registered");
    }
    tokio::pin!(shutdown);
    loop {
        let msg = tokio::select! {
            _ = &mut shutdown => break,
            msg = socket.recv() => msg,
        };
        let Ok(msg) = msg else { continue };
        if let Some(reply) = serve_one(&mut store, msg) {
            if let Err(e) = socket.send(reply).await {
                tracing::debug!("reply not delivered: {e}");
            }
        }
    }
    if let Some(consul) = &config.registry {
        match consul.deregister(&config.id).await {
            Ok(()) => tracing::info!(id = %config.id, "deregistered"),
            Err(e) => tracing::warn!(id = %config.id, "could not deregister: {e:#}"),
        }
    }
    tracing::info!("node stopped");
    Ok(())
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

/// Handles one ROUTER message; `None` when it carries no payload to answer.
fn serve_one(store: &mut Store, msg: ZmqMessage) -> Option<ZmqMessage> {
    let mut frames = msg.into_vecdeque();
    if frames.len() < 2 {
        return None;
    }
    let payload = frames.pop_back()?;
    let reply = match parse_request(&payload) {
        Ok(req) => store.apply(req),
        Err(e) => NodeReply::error(ErrorCode::BadRequest, format!("malformed request: {e}")),
    };
    let body = serde_json::to_vec(&reply).expect("replies always serialize");
    frames.push_back(Bytes::from(body));
    ZmqMessage::try_from(frames).ok()
}
