//! The node's ZeroMQ ROUTER loop.
//!
//! Every incoming message is `[identity, envelope.., payload]`: a REQ client's
//! envelope is one empty delimiter frame, a DEALER client may add its own
//! frames (the backend sends a request id). The reply goes back as
//! `[identity, envelope.., reply]`, so each client gets its envelope back.

use std::path::PathBuf;

use bytes::Bytes;
use shardscope_shared::protocol::{parse_request, ErrorCode, NodeReply};
use zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};

use crate::store::Store;

/// How to run a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Interface to bind (loopback by default).
    pub bind: String,
    /// TCP port of the ROUTER socket.
    pub port: u16,
    /// Directory for the node's files.
    pub data_dir: PathBuf,
}

/// Runs a node until `shutdown` completes.
pub async fn run(
    config: NodeConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)?;
    let mut socket = zeromq::RouterSocket::new();
    let endpoint = format!("tcp://{}:{}", config.bind, config.port);
    socket.bind(&endpoint).await?;
    tracing::info!(%endpoint, data_dir = %config.data_dir.display(), "node listening");
    let mut store = Store::new();
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
    tracing::info!("node stopped");
    Ok(())
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
