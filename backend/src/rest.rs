//! The HTTP API, as curl users expect from seed 003:
//! `PUT /kv/{key}` (body = value), `GET /kv/{key}` (body = value),
//! `DELETE /kv/{key}`, `GET /kv` (every pair), `GET /nodes`, `GET /cluster`
//! (the recorded state), `GET /stats`
//! (each node's counters), `GET /healthz`; and administration:
//! `POST /nodes` (add a node), `DELETE /nodes/{id}` (drain and remove one),
//! `PUT /placement` (change the algorithm; body = a placement spec); each
//! takes `?rate=N` (keys per second) to slow its rebalance.
//! Every per-key answer names the owner in the `X-ShardScope-Node` header.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use futures::StreamExt;
use shardscope_shared::placement::PlacementSpec;
use shardscope_shared::protocol::{Entry, ErrorCode, NodeReply, NodeRequest, MAX_SCAN_LIMIT};

use crate::admin::{Admin, AdminError};
use crate::cluster::Cluster;
use crate::server::App;

/// Header naming the node that owns (and served) a key.
pub const NODE_HEADER: &str = "x-shardscope-node";
/// Header with the version (`hlc.writer`) of the value a GET returned.
pub const VERSION_HEADER: &str = "x-shardscope-version";

pub fn routes() -> Router<App> {
    Router::new()
        .route("/kv", get(get_all))
        .route("/kv/{*key}", get(get_one).put(put_one).delete(delete_one))
        .route("/nodes", get(nodes).post(add_node))
        .route("/cluster", get(cluster_state))
        .route("/nodes/{id}", delete(remove_node))
        .route("/placement", get(placement).put(change_placement))
        .route("/stats", get(stats))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
}

/// The refusal (401) of an administrative request without the admin token.
fn refusal(admin: &Admin, headers: &HeaderMap) -> Option<Response> {
    let presented = shardscope_consul::token::presented(headers, None);
    admin.authorize(presented.as_deref()).err().map(admin_error)
}

fn admin_error(e: AdminError) -> Response {
    (e.status(), Json(NodeReply::error(e.code(), e.to_string()))).into_response()
}

/// An administrative request's `?rate=N`: its rebalance's keys per second.
#[derive(serde::Deserialize)]
struct Rate {
    rate: Option<u64>,
}

/// `POST /nodes`: launches a node; it joins and gets its share (watch `/ws`).
async fn add_node(State(admin): State<Admin>, headers: HeaderMap, Query(Rate { rate }): Query<Rate>) -> Response {
    if let Some(refused) = refusal(&admin, &headers) {
        return refused;
    }
    match admin.add_node(rate).await {
        Ok(info) => (StatusCode::ACCEPTED, Json(info)).into_response(),
        Err(e) => admin_error(e),
    }
}

/// `DELETE /nodes/{id}`: answers once the node's keys have moved off.
async fn remove_node(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(Rate { rate }): Query<Rate>,
) -> Response {
    if let Some(refused) = refusal(&admin, &headers) {
        return refused;
    }
    match admin.remove_node(&id, rate).await {
        Ok(progress) => Json(progress).into_response(),
        Err(e) => admin_error(e),
    }
}

/// `PUT /placement`: answers once every key is where the new spec puts it.
async fn change_placement(
    State(admin): State<Admin>,
    headers: HeaderMap,
    Query(Rate { rate }): Query<Rate>,
    body: Bytes,
) -> Response {
    if let Some(refused) = refusal(&admin, &headers) {
        return refused;
    }
    let spec: PlacementSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a placement spec: {e}")),
    };
    match admin.change_placement(spec, rate).await {
        Ok(progress) => Json(progress).into_response(),
        Err(e) => admin_error(e),
    }
}

fn error(status: StatusCode, message: String) -> Response {
    let code = if status == StatusCode::NOT_FOUND {
        ErrorCode::NotFound
    } else if status == StatusCode::BAD_REQUEST {
        ErrorCode::BadRequest
    } else {
        ErrorCode::Unavailable
    };
    (status, Json(NodeReply::error(code, message))).into_response()
}

async fn put_one(State(cluster): State<Cluster>, Path(key): Path<String>, body: Bytes) -> Response {
    let req = NodeRequest::Put { key: key.as_str().into(), value: body.to_vec().into(), version: None };
    let (node, reply) = cluster.request_key(key.as_bytes(), &req).await;
    with_node(node, reply_response(reply))
}

async fn get_one(State(cluster): State<Cluster>, Path(key): Path<String>) -> Response {
    let req = NodeRequest::GetOne { key: key.as_str().into(), versioned: false };
    let (node, reply) = cluster.request_key(key.as_bytes(), &req).await;
    let resp = match reply {
        NodeReply::Value { value, version, .. } => {
            let mut resp = ([(header::CONTENT_TYPE, "application/octet-stream")], value.0).into_response();
            if let Some(v) = version.and_then(|v| HeaderValue::from_str(&v.to_string()).ok()) {
                resp.headers_mut().insert(VERSION_HEADER, v);
            }
            resp
        }
        other => reply_response(other),
    };
    with_node(node, resp)
}

async fn delete_one(State(cluster): State<Cluster>, Path(key): Path<String>) -> Response {
    let req = NodeRequest::Delete { key: key.as_str().into(), version: None };
    let (node, reply) = cluster.request_key(key.as_bytes(), &req).await;
    with_node(node, reply_response(reply))
}

/// `GET /kv`: every pair (`{"collection":[..]}`, as the seeds); with any of
/// `prefix`, `after`, `limit` (default 100, at most 10,000), one page:
/// `{"page":[..],"next":<key or null>}`; pass `next` as `after` for the next.
async fn get_all(State(cluster): State<Cluster>, Query(q): Query<ListQuery>) -> Response {
    if q.prefix.is_none() && q.after.is_none() && q.limit.is_none() {
        let write = |out: &mut Vec<u8>, e: &Entry| serde_json::to_writer(out, e);
        return stream_all(&cluster, b"{\"collection\":[", b"]}", write).await;
    }
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_SCAN_LIMIT {
        return error(StatusCode::BAD_REQUEST, format!("limit must be 1..={MAX_SCAN_LIMIT}"));
    }
    let prefix = q.prefix.unwrap_or_default();
    reply_response(cluster.list(prefix.as_bytes(), q.after.as_deref().map(str::as_bytes), limit).await)
}

/// Every pair in the cluster as one JSON list, `opening`, the entries as
/// `write` puts them, `closing` (`GET /kv` unpaged: the seeds' whole
/// `{"collection":[..]}`), streamed a page at a time, so any size is
/// answered in bounded memory. A node failing before the first page is an
/// error status; later, the answer is cut off (its JSON left unclosed),
/// never silently short.
pub(crate) async fn stream_all(
    cluster: &Cluster,
    opening: &'static [u8],
    closing: &'static [u8],
    write: fn(&mut Vec<u8>, &Entry) -> serde_json::Result<()>,
) -> Response {
    let mut pages = Box::pin(cluster.pages());
    let first = match pages.next().await {
        Some(Ok(page)) => page,
        Some(Err(reply)) => return reply_response(reply),
        None => Vec::new(),
    };
    let mut wrote_any = false;
    let mut chunk = move |page: Vec<Entry>, last: bool| {
        let mut out = Vec::new();
        for e in &page {
            if wrote_any {
                out.push(b',');
            }
            wrote_any = true;
            write(&mut out, e).expect("an entry serializes");
        }
        if last {
            out.extend_from_slice(closing);
        }
        Bytes::from(out)
    };
    let opening = Bytes::from_static(opening);
    let first = chunk(first, false);
    let rest = pages.map(Some).chain(futures::stream::iter([None])).map(move |page| match page {
        Some(Ok(page)) => Ok(chunk(page, false)),
        Some(Err(reply)) => Err(std::io::Error::other(format!("listing cut off: {reply:?}"))),
        None => Ok(chunk(Vec::new(), true)),
    });
    let body = futures::stream::iter([Ok(opening), Ok(first)]).chain(rest);
    ([(header::CONTENT_TYPE, "application/json")], axum::body::Body::from_stream(body)).into_response()
}

#[derive(serde::Deserialize)]
struct ListQuery {
    prefix: Option<String>,
    after: Option<String>,
    limit: Option<usize>,
}

/// `GET /metrics`: Prometheus (OpenMetrics) text.
async fn metrics(State(cluster): State<Cluster>) -> Response {
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], cluster.metrics.render()).into_response()
}

/// Every node's `STATS`, by node id.
async fn stats(State(cluster): State<Cluster>) -> Response {
    Json(cluster.stats().await).into_response()
}

/// `GET /cluster`: the cluster's recorded state (members, placement and its
/// history, desired count, removed ids, and the change in progress, if any).
async fn cluster_state(State(cluster): State<Cluster>) -> Response {
    Json(cluster.durable_state()).into_response()
}

/// `GET /placement`: the spec the cluster routes with now.
async fn placement(State(cluster): State<Cluster>) -> Response {
    Json(cluster.placement_state().0).into_response()
}

async fn nodes(State(cluster): State<Cluster>) -> Response {
    Json(cluster.nodes()).into_response()
}

/// A node reply as JSON, with the status code its outcome calls for.
pub(crate) fn reply_response(reply: NodeReply) -> Response {
    let status = match &reply {
        NodeReply::Error { error, .. } => match error {
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Stale => StatusCode::CONFLICT,
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
