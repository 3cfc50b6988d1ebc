//! The KV store's endpoints (`/v1/kv/...`) with Consul's semantics: `GET`
//! of a key (404 when absent, `?raw` for the bare value, an empty value as
//! `"Value": null`), of a prefix (`?recurse`), of key names (`?keys`, with
//! `?separator`); `PUT` answering `true`/`false`, with `?flags`, `?cas`
//! (`cas=0`: only if absent), `?acquire=SESSION` and `?release=SESSION`
//! (a lock: `LockIndex` counts its acquisitions, `Session` names its
//! holder, and after a holder's session ends the key cannot be acquired
//! for its lock-delay); `DELETE` with `?recurse` and `?cas`. Keys under
//! `shardscope/` are the storage nodes' (the node token).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{refuse, unread_body, with_index, KvEntry, Presented, QueryParams, Registry, Tables};
use crate::api::{KvPair, NODE_KV_PREFIX};

pub(super) fn routes() -> Router<Registry> {
    let key = get(get_key).put(put_key).delete(delete_key);
    let root = get(get_root).put(put_root).delete(delete_root);
    Router::new().route("/v1/kv/{*key}", key).route("/v1/kv/", root.clone()).route("/v1/kv", root)
}

/// `/v1/kv/` itself: the empty key (every key's prefix).
async fn get_root(reg: State<Registry>, params: QueryParams, presented: Presented) -> Response {
    get_key(reg, Path(String::new()), params, presented).await
}

async fn put_root(
    reg: State<Registry>,
    params: QueryParams,
    presented: Presented,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    put_key(reg, Path(String::new()), params, presented, body).await
}

async fn delete_root(reg: State<Registry>, params: QueryParams, presented: Presented) -> Response {
    delete_key(reg, Path(String::new()), params, presented).await
}

impl KvEntry {
    /// The pair as the state file keeps it (value in base64).
    pub(super) fn to_pair(&self, key: &str) -> KvPair {
        KvPair {
            key: key.to_string(),
            value: Some(base64::engine::general_purpose::STANDARD.encode(&self.value)),
            flags: self.flags,
            create_index: self.create_index,
            modify_index: self.modify_index,
            lock_index: self.lock_index,
            session: self.session.clone(),
        }
    }

    /// The pair as Consul's KV API returns it: an empty value is `null`,
    /// `Session` only while a session holds it.
    fn to_json(&self, key: &str) -> Value {
        let value = (!self.value.is_empty()).then(|| base64::engine::general_purpose::STANDARD.encode(&self.value));
        let mut v = json!({
            "LockIndex": self.lock_index, "Key": key, "Flags": self.flags, "Value": value,
            "CreateIndex": self.create_index, "ModifyIndex": self.modify_index,
        });
        if let Some(s) = &self.session {
            v["Session"] = json!(s);
        }
        v
    }
}

/// Whether `key` is the storage nodes' (under `shardscope/`).
pub(super) fn nodes_key(key: &str) -> bool {
    key.starts_with(NODE_KV_PREFIX)
}

fn under<'a>(t: &'a Tables, prefix: &'a str) -> impl Iterator<Item = (&'a String, &'a KvEntry)> + 'a {
    t.kv.range(prefix.to_string()..).take_while(move |(k, _)| k.starts_with(prefix))
}

async fn get_key(
    State(reg): State<Registry>,
    Path(key): Path<String>,
    params: QueryParams,
    presented: Presented,
) -> Response {
    if let Err(refused) = reg.block(&params, &presented).await {
        return refused;
    }
    let t = reg.tables.lock().unwrap();
    let found = |v: Vec<Value>| match v.is_empty() {
        true => with_index(t.index, StatusCode::NOT_FOUND),
        false => with_index(t.index, Json(v)),
    };
    if params.keys {
        let mut names: Vec<Value> = Vec::new();
        for (k, _) in under(&t, &key) {
            let rest = &k[key.len()..];
            let name = match params
                .separator
                .as_deref()
                .filter(|s| !s.is_empty())
                .and_then(|s| rest.find(s).map(|i| i + s.len()))
            {
                Some(end) => &k[..key.len() + end],
                None => k.as_str(),
            };
            if names.last().and_then(Value::as_str) != Some(name) {
                names.push(json!(name));
            }
        }
        return found(names);
    }
    if params.recurse {
        return found(under(&t, &key).map(|(k, e)| e.to_json(k)).collect());
    }
    match t.kv.get(&key) {
        None => with_index(t.index, StatusCode::NOT_FOUND),
        Some(e) if params.raw => with_index(t.index, e.value.clone()),
        Some(e) => with_index(t.index, Json(vec![e.to_json(&key)])),
    }
}

/// What a PUT does to a key's lock.
enum Lock {
    None,
    Acquire(String),
    Release(String),
}

async fn put_key(
    State(reg): State<Registry>,
    Path(key): Path<String>,
    params: QueryParams,
    presented: Presented,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if let Err(refused) = reg.authorize(&presented, nodes_key(&key), &format!("'key:write' on {key:?}")) {
        return refuse(refused);
    }
    let body = match body {
        Ok(body) => body,
        Err(e) => return unread_body(e, reg.limits.value),
    };
    // The body limit is the value limit (see `router`).
    if let Err(refused) = reg.limits.key_fits(&key) {
        return refuse(refused);
    }
    let lock = match (params.acquire, params.release) {
        (Some(_), Some(_)) => {
            return refuse((StatusCode::BAD_REQUEST, "Conflicting flags: acquire and release".into()))
        }
        (Some(s), None) => Lock::Acquire(s),
        (None, Some(s)) => Lock::Release(s),
        (None, None) => Lock::None,
    };
    let mut t = reg.tables.lock().unwrap();
    let (keys, bytes) = t.kv_size();
    let current = t.kv.get(&key);
    let replaced = current.map(|e| key.len() + e.value.len());
    let after = (
        keys + usize::from(replaced.is_none()),
        (bytes - replaced.unwrap_or(0)).saturating_add(key.len() + body.len()),
    );
    if let Err(refused) = reg.limits.kv_fits(after.0, after.1, reg.trusted(&presented)) {
        return refuse(refused);
    }
    if let Some(cas) = params.cas {
        let ok = match current {
            None => cas == 0,
            Some(e) => cas == e.modify_index,
        };
        if !ok {
            return Json(false).into_response();
        }
    }
    let held_by = current.and_then(|e| e.session.clone());
    match &lock {
        Lock::Acquire(s) => {
            if !t.sessions.contains_key(s) {
                return refuse((StatusCode::BAD_REQUEST, format!("Invalid session {s:?}")));
            }
            let delayed = t.lock_delays.get(&key).is_some_and(|until| *until > Instant::now());
            if delayed || held_by.as_ref().is_some_and(|h| h != s) {
                return Json(false).into_response();
            }
        }
        Lock::Release(s) if held_by.as_ref() != Some(s) => return Json(false).into_response(),
        _ => {}
    }
    let outcome = reg.commit(&mut t, reg.trusted(&presented), |t, index| {
        let old = t.kv.get(&key);
        let (create_index, lock_index) = old.map_or((index, 0), |e| (e.create_index, e.lock_index));
        let (lock_index, session) = match lock {
            Lock::Acquire(s) if held_by.as_ref() == Some(&s) => (lock_index, Some(s)),
            Lock::Acquire(s) => (lock_index + 1, Some(s)),
            Lock::Release(_) => (lock_index, None),
            Lock::None => (lock_index, held_by),
        };
        let flags = params.flags.unwrap_or(0);
        let entry = KvEntry { value: body.to_vec(), flags, create_index, modify_index: index, lock_index, session };
        t.kv.insert(key, entry);
        Ok(())
    });
    outcome.map(|()| Json(true)).into_response()
}

async fn delete_key(
    State(reg): State<Registry>,
    Path(key): Path<String>,
    params: QueryParams,
    presented: Presented,
) -> Response {
    let mut t = reg.tables.lock().unwrap();
    if let Some(cas) = params.cas {
        if t.kv.get(&key).map(|e| e.modify_index) != Some(cas) {
            return Json(false).into_response();
        }
    }
    let doomed: Vec<String> = if params.recurse {
        under(&t, &key).map(|(k, _)| k.clone()).collect()
    } else {
        t.kv.contains_key(&key).then(|| key.clone()).into_iter().collect()
    };
    let nodes = nodes_key(&key) || doomed.iter().any(|k| nodes_key(k));
    if let Err(refused) = reg.authorize(&presented, nodes, &format!("'key:write' on {key:?}")) {
        return refuse(refused);
    }
    if doomed.is_empty() {
        return Json(true).into_response();
    }
    let outcome = reg.commit(&mut t, reg.trusted(&presented), |t, _| {
        for k in &doomed {
            t.kv.remove(k);
        }
        Ok(())
    });
    outcome.map(|()| Json(true)).into_response()
}
