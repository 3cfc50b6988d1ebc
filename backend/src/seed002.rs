//! Seed 002's REST API on the gateway, as that seed writes it: `PUT /set`
//! (a list of pairs; answers `[{"keys_added":N,"keys_failed":[..]}]`),
//! `POST /fetch` (a list of keys; answers the pairs found), `GET /fetch`
//! (every pair) and `POST /query` (a list of keys; answers whether each
//! exists). Keys and values are `{"encoding":"string"|"binary","data":..}`
//! (`shardscope_shared::seed002`); each key is routed to its owner like
//! `/kv`, up to [`LANES`] keys at a time.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use shardscope_shared::protocol::{Datum, Entry, ErrorCode, NodeReply, NodeRequest, MAX_SCAN_LIMIT};
use shardscope_shared::seed002::{Encoded, Pair, Presence, SetOutcome};

use crate::cluster::Cluster;
use crate::rest::{reply_response, stream_all};
use crate::server::App;

/// Keys sent to their nodes at once, per request.
pub const LANES: usize = 64;

/// Most items one request may list (the body's size is bounded as well).
pub const MAX_ITEMS: usize = MAX_SCAN_LIMIT;

pub fn routes() -> Router<App> {
    Router::new().route("/set", put(set)).route("/fetch", post(fetch).get(fetch_all)).route("/query", post(query))
}

/// The request's list, or the bad request saying why it is not one.
fn parse<T: DeserializeOwned>(body: &[u8], what: &str) -> Result<Vec<T>, NodeReply> {
    let items: Vec<T> = serde_json::from_slice(body).map_err(|e| {
        bad_request(format!("expected a JSON list of {what} ({{\"encoding\":\"string\"|\"binary\",\"data\":..}}): {e}"))
    })?;
    if items.len() > MAX_ITEMS {
        return Err(bad_request(format!("{} items; at most {MAX_ITEMS} in one request", items.len())));
    }
    Ok(items)
}

fn bad_request(message: String) -> NodeReply {
    NodeReply::error(ErrorCode::BadRequest, message)
}

/// Sends each request to its key's owner, in order, up to [`LANES`] at a
/// time; a request over the node's limits is answered by its refusal.
async fn run_each(cluster: &Cluster, requests: Vec<(Datum, NodeRequest)>) -> Vec<(Datum, NodeReply)> {
    futures::stream::iter(requests)
        .map(|(key, request)| async move {
            let reply = match request.validate() {
                Ok(()) => cluster.request_key(key.as_bytes(), &request).await.1,
                Err(refusal) => refusal,
            };
            (key, reply)
        })
        .buffered(LANES)
        .collect()
        .await
}

/// `PUT /set`: stores every pair, as if one after another (a key listed
/// twice keeps its last value). A pair that could not be stored (too large,
/// its node unavailable) is listed in `keys_failed`; the rest are stored.
async fn set(State(cluster): State<Cluster>, body: Bytes) -> Response {
    let items: Vec<Pair> = match parse(&body, "{\"key\":..,\"value\":..} pairs") {
        Ok(items) => items,
        Err(refused) => return reply_response(refused),
    };
    // The last value of each key and how often it was listed, keys in the
    // order first listed.
    let mut order: Vec<Datum> = Vec::new();
    let mut last: HashMap<Datum, (Datum, u64)> = HashMap::new();
    for Pair { key: Encoded(key), value: Encoded(value) } in items {
        let entry = last.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            (Datum::default(), 0)
        });
        *entry = (value, entry.1 + 1);
    }
    let puts = order
        .into_iter()
        .map(|key| {
            let value = last[&key].0.clone();
            (key.clone(), NodeRequest::Put { key, value, version: None })
        })
        .collect();
    let mut outcome = SetOutcome::default();
    for (key, reply) in run_each(&cluster, puts).await {
        match reply {
            NodeReply::Ok { .. } => outcome.keys_added += last[&key].1,
            _ => outcome.keys_failed.push(Encoded(key)),
        }
    }
    Json(vec![outcome]).into_response()
}

/// Reads the listed keys: each with its reply, in order. A key over the
/// node's limits is a bad request (nothing is read), a node that cannot
/// answer makes it unavailable (a partial answer would look like missing
/// keys).
async fn read_each(cluster: &Cluster, body: &[u8]) -> Result<Vec<(Datum, NodeReply)>, NodeReply> {
    let keys: Vec<Encoded> = parse(body, "keys")?;
    let gets: Vec<(Datum, NodeRequest)> =
        keys.into_iter().map(|Encoded(key)| (key.clone(), NodeRequest::GetOne { key, versioned: false })).collect();
    for (i, (_, get)) in gets.iter().enumerate() {
        if let Err(NodeReply::Error { message, .. }) = get.validate() {
            return Err(bad_request(format!("key {i}: {message}; nothing was read")));
        }
    }
    let asked = gets.len();
    let replies = run_each(cluster, gets).await;
    let failed: Vec<&(Datum, NodeReply)> = replies.iter().filter(|(_, r)| found(r).is_none()).collect();
    match failed.first() {
        None => Ok(replies),
        Some((key, reply)) => {
            let reason = match reply {
                NodeReply::Error { message, .. } => message.clone(),
                other => format!("unexpected reply {other:?}"),
            };
            let message = format!(
                "{} of {asked} keys could not be read (first: {:?}: {reason}); nothing is returned",
                failed.len(),
                key.to_text_lossy()
            );
            Err(NodeReply::error(ErrorCode::Unavailable, message))
        }
    }
}

/// Whether a reply says the key exists (`Some(true)`), does not
/// (`Some(false)`), or could not tell (`None`).
fn found(reply: &NodeReply) -> Option<bool> {
    match reply {
        NodeReply::Value { .. } => Some(true),
        NodeReply::Error { error: ErrorCode::NotFound, .. } => Some(false),
        _ => None,
    }
}

/// `POST /fetch`: the pairs of the listed keys that exist, in the order
/// listed; a key that is not there is left out.
async fn fetch(State(cluster): State<Cluster>, body: Bytes) -> Response {
    let replies = match read_each(&cluster, &body).await {
        Ok(replies) => replies,
        Err(refused) => return reply_response(refused),
    };
    let pairs: Vec<Pair> = replies
        .into_iter()
        .filter_map(|(key, reply)| match reply {
            NodeReply::Value { value, .. } => Some(Pair { key: Encoded(key), value: Encoded(value) }),
            _ => None,
        })
        .collect();
    Json(pairs).into_response()
}

/// `POST /query`: for each listed key, in order, whether it exists.
async fn query(State(cluster): State<Cluster>, body: Bytes) -> Response {
    let replies = match read_each(&cluster, &body).await {
        Ok(replies) => replies,
        Err(refused) => return reply_response(refused),
    };
    let presence: Vec<Presence> = replies
        .into_iter()
        .map(|(key, reply)| Presence { value: found(&reply) == Some(true), key: Encoded(key) })
        .collect();
    Json(presence).into_response()
}

/// `GET /fetch`: every pair in the cluster, streamed.
async fn fetch_all(State(cluster): State<Cluster>) -> Response {
    fn write(out: &mut Vec<u8>, e: &Entry) -> serde_json::Result<()> {
        let pair = Pair { key: Encoded(e.key.clone()), value: Encoded(e.value.clone()) };
        serde_json::to_writer(out, &pair)
    }
    stream_all(&cluster, b"[", b"]", write).await
}
