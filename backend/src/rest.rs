//! The HTTP API, as curl users expect from seed 003:
//! `PUT /kv/{key}` (body = value), `GET /kv/{key}` (body = value),
//! `DELETE /kv/{key}`, `GET /kv` (every pair), `GET /nodes`, `GET /stats`
//! (each node's counters), `GET /healthz`.
//! Every per-key answer names the owner in the `X-ShardScope-Node` header.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use shardscope_shared::protocol::{ErrorCode, NodeReply, NodeRequest};

use crate::cluster::Cluster;

/// Header naming the node that owns (and served) a key.
pub const NODE_HEADER: &str = "x-shardscope-node";

pub fn routes() -> Router<Cluster> {
    Router::new()
        .route("/kv", get(get_all))
        .route("/kv/{*key}", get(get_one).put(put_one).delete(delete_one))
        .route("/nodes", get(nodes))
        .route("/stats", get(stats))
        .route("/healthz", get(|| async { "ok\n" }))
}

async fn put_one(State(cluster): State<Cluster>, Path(key): Path<String>, body: Bytes) -> Response {
    let req = NodeRequest::Put { key: key.as_str().into(), value: body.to_vec().into() };
    let (node, reply) = cluster.request_key(key.as_bytes(), &req).await;
    with_node(node, reply_response(reply))
}

async fn get_one(State(cluster): State<Cluster>, Path(key): Path<String>) -> Response {
    let req = NodeRequest::GetOne { key: key.as_str().into() };
    let (node, reply) = cluster.request_key(key.as_bytes(), &req).await;
    let resp = match reply {
        NodeReply::Value { value, .. } => {
            ([(header::CONTENT_TYPE, "application/octet-stream")], value.0).into_response()
        }
        other => reply_response(other),
    };
    with_node(node, resp)
}

async fn delete_one(State(cluster): State<Cluster>, Path(key): Path<String>) -> Response {
    let req = NodeRequest::Delete { key: key.as_str().into() };
    let (node, reply) = cluster.request_key(key.as_bytes(), &req).await;
    with_node(node, reply_response(reply))
}

async fn get_all(State(cluster): State<Cluster>) -> Response {
    reply_response(cluster.get_all().await)
}

/// Every node's `STATS`, by node id.
async fn stats(State(cluster): State<Cluster>) -> Response {
    Json(cluster.stats().await).into_response()
}

async fn nodes(State(cluster): State<Cluster>) -> Response {
    Json(cluster.nodes()).into_response()
}

/// A node reply as JSON, with the status code its outcome calls for.
fn reply_response(reply: NodeReply) -> Response {
    let status = match &reply {
        NodeReply::Error { error, .. } => match error {
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        },
        _ => StatusCode::OK,
    };
    (status, Json(reply)).into_response()
}

fn with_node(node: Option<String>, mut resp: Response) -> Response {
    if let Some(value) = node.and_then(|n| HeaderValue::from_str(&n).ok()) {
        let headers: &mut HeaderMap = resp.headers_mut();
        headers.insert(NODE_HEADER, value);
    }
    resp
}
