//! The page's WebSocket at `/ws`: on connect the page gets the cluster (nodes
//! and placement), then membership changes as they happen; it sends
//! [`ClientMsg`] requests and gets [`ServerMsg::Reply`]s with the same id.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use shardscope_shared::protocol::{ClientMsg, ErrorCode, NodeReply, NodeRequest, ServerMsg};
use tokio::sync::broadcast::error::RecvError;

use crate::cluster::Cluster;

pub async fn upgrade(ws: WebSocketUpgrade, State(cluster): State<Cluster>) -> Response {
    ws.on_upgrade(move |socket| session(socket, cluster))
}

async fn session(mut socket: WebSocket, cluster: Cluster) {
    let mut events = cluster.subscribe();
    if send(&mut socket, &cluster.snapshot()).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(msg) => if send(&mut socket, &msg).await.is_err() { return },
                Err(RecvError::Lagged(_)) => if send(&mut socket, &cluster.snapshot()).await.is_err() { return },
                Err(RecvError::Closed) => return,
            },
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let reply = answer(&cluster, text.as_str()).await;
                if send(&mut socket, &reply).await.is_err() { return }
            }
        }
    }
}

async fn answer(cluster: &Cluster, text: &str) -> ServerMsg {
    let msg: ClientMsg = match serde_json::from_str(text) {
        Ok(msg) => msg,
        Err(e) => {
            let reply = NodeReply::error(ErrorCode::BadRequest, format!("malformed message: {e}"));
            return ServerMsg::Reply { id: 0, node: None, reply };
        }
    };
    let (id, node, reply) = match msg {
        ClientMsg::Put { id, key, value } => {
            let (node, reply) =
                cluster.request_key(key.as_bytes(), &NodeRequest::Put { key: key.clone(), value }).await;
            (id, node, reply)
        }
        ClientMsg::Get { id, key } => {
            let (node, reply) = cluster.request_key(key.as_bytes(), &NodeRequest::GetOne { key: key.clone() }).await;
            (id, node, reply)
        }
        ClientMsg::GetAll { id } => (id, None, cluster.get_all().await),
    };
    ServerMsg::Reply { id, node, reply }
}

async fn send(socket: &mut WebSocket, msg: &ServerMsg) -> Result<(), axum::Error> {
    let text = serde_json::to_string(msg).expect("server messages always serialize");
    socket.send(Message::Text(text.into())).await
}
