//! Sessions (`/v1/session/...`) as Consul keeps them: `create` (on a node,
//! with a `TTL` of 10s ([`super::Limits::session_ttl_min`]) to 24h, `NodeChecks` (default `serfHealth`) and
//! `ServiceChecks`, a `Behavior` of `release` or `delete`, a `LockDelay` of
//! at most 60s, default 15s), `renew`, `destroy`, `info`, `list`, `node`.
//! A session ends when it is destroyed, when its TTL lapses unrenewed
//! (Consul allows twice the TTL, and so does the registry), or when its node
//! or one of its checks is gone or critical; then the keys it locks are
//! released (`release`) or deleted (`delete`), and none of them can be
//! acquired again for its lock-delay. Sessions are kept in the state file;
//! after a restart their TTLs run from the start, as after a Consul leader
//! election.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::kv::nodes_key;
use super::{bad_request, decoded, refuse, with_index, Presented, QueryParams, Registry, Tables, AGENT, SERF_CHECK};
use crate::api::{format_duration, parse_duration};

const MAX_TTL: Duration = Duration::from_secs(86400);
const MAX_LOCK_DELAY: Duration = Duration::from_secs(60);
const DEFAULT_LOCK_DELAY: Duration = Duration::from_secs(15);

pub(super) fn routes() -> Router<Registry> {
    Router::new()
        .route("/v1/session/create", put(create))
        .route("/v1/session/renew/{id}", put(renew))
        .route("/v1/session/destroy/{id}", put(destroy))
        .route("/v1/session/info/{id}", get(info))
        .route("/v1/session/list", get(list))
        .route("/v1/session/node/{node}", get(node))
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Behavior {
    Release,
    Delete,
}

impl Behavior {
    pub(super) fn parse(text: &str) -> Option<Behavior> {
        match text {
            "" | "release" => Some(Behavior::Release),
            "delete" => Some(Behavior::Delete),
            _ => None,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Behavior::Release => "release",
            Behavior::Delete => "delete",
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct Session {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) node: String,
    pub(super) lock_delay: Duration,
    pub(super) behavior: Behavior,
    pub(super) ttl: Option<Duration>,
    pub(super) node_checks: Vec<String>,
    pub(super) service_checks: Vec<String>,
    pub(super) create_index: u64,
    pub(super) modify_index: u64,
    /// When an unrenewed TTL session ends: twice its TTL after the last renewal.
    pub(super) deadline: Option<Instant>,
}

impl Session {
    /// Its TTL window starts again at `now`.
    pub(super) fn renew(&mut self, now: Instant) {
        self.deadline = self.ttl.map(|ttl| now + ttl * 2);
    }

    /// Whether its TTL has lapsed by `now`.
    pub(super) fn lapsed(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|d| now >= d)
    }

    /// Whether it still holds at `now`: its TTL not lapsed, its node there,
    /// each of its checks there and not critical.
    pub(super) fn holds(&self, t: &Tables, now: Instant) -> bool {
        let Some(node) = t.nodes.get(&self.node) else { return false };
        let up = |id: &String| {
            (self.node == AGENT && id == SERF_CHECK) || node.checks.get(id).is_some_and(|c| c.status != "critical")
        };
        !self.lapsed(now) && self.node_checks.iter().all(up) && self.service_checks.iter().all(up)
    }

    fn json(&self) -> Value {
        let service_checks: Option<Vec<Value>> = (!self.service_checks.is_empty())
            .then(|| self.service_checks.iter().map(|id| json!({"ID": id, "Namespace": ""})).collect());
        json!({
            "ID": self.id, "Name": self.name, "Node": self.node,
            "LockDelay": u64::try_from(self.lock_delay.as_nanos()).unwrap_or(u64::MAX),
            "Behavior": self.behavior.name(), "TTL": self.ttl.map(format_duration).unwrap_or_default(),
            "NodeChecks": self.node_checks, "ServiceChecks": service_checks,
            "CreateIndex": self.create_index, "ModifyIndex": self.modify_index,
        })
    }
}

impl Tables {
    /// Ends session `id` at `index`: the keys it locks are released or
    /// deleted (its behavior) and held back for its lock-delay.
    pub(super) fn end_session(&mut self, id: &str, now: Instant, index: u64) {
        let Some(session) = self.sessions.remove(id) else { return };
        let held: Vec<String> =
            self.kv.iter().filter(|(_, e)| e.session.as_deref() == Some(id)).map(|(k, _)| k.clone()).collect();
        for key in held {
            match session.behavior {
                Behavior::Delete => {
                    self.kv.remove(&key);
                }
                Behavior::Release => {
                    if let Some(e) = self.kv.get_mut(&key) {
                        e.session = None;
                        e.modify_index = index;
                    }
                }
            }
            if !session.lock_delay.is_zero() {
                self.lock_delays.insert(key, now + session.lock_delay);
            }
        }
    }

    /// Whether session `id` locks a key of the storage nodes'.
    pub(super) fn locks_nodes_keys(&self, id: &str) -> bool {
        self.kv.iter().any(|(k, e)| e.session.as_deref() == Some(id) && nodes_key(k))
    }
}

/// A service check as `ServiceChecks` names it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceCheck {
    #[serde(rename = "ID")]
    id: String,
}

/// The body of `PUT /v1/session/create`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct SessionRequest {
    #[serde(default)]
    name: String,
    #[serde(default)]
    node: String,
    /// A duration (`"15s"`), or a number: seconds below 1000, else nanoseconds.
    #[serde(default)]
    lock_delay: Option<Value>,
    #[serde(default)]
    behavior: String,
    #[serde(rename = "TTL", default)]
    ttl: String,
    #[serde(default)]
    checks: Option<Vec<String>>,
    #[serde(default)]
    node_checks: Option<Vec<String>>,
    #[serde(default)]
    service_checks: Option<Vec<ServiceCheck>>,
}

fn lock_delay(v: &Option<Value>) -> Result<Duration, String> {
    let delay = match v {
        None => DEFAULT_LOCK_DELAY,
        Some(Value::String(s)) => parse_duration(s).ok_or(format!("Invalid LockDelay {s:?}"))?,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) if n < 1000 => Duration::from_secs(n),
            Some(n) => Duration::from_nanos(n),
            None => return Err(format!("Invalid LockDelay {n}")),
        },
        Some(other) => return Err(format!("Invalid LockDelay {other}")),
    };
    if delay > MAX_LOCK_DELAY {
        return Err(format!("LockDelay {} is over the maximum of 60s", format_duration(delay)));
    }
    Ok(delay)
}

/// The session a create request asks for, checked against the tables.
fn new_session(
    r: SessionRequest,
    t: &Tables,
    min_ttl: Duration,
    id: String,
    now: Instant,
    index: u64,
) -> Result<Session, String> {
    let behavior = Behavior::parse(&r.behavior).ok_or(format!("Invalid Behavior setting {:?}", r.behavior))?;
    let ttl = match r.ttl.as_str() {
        "" => None,
        text => {
            let ttl = parse_duration(text).ok_or(format!("Invalid Session TTL {text:?}"))?;
            if !(min_ttl..=MAX_TTL).contains(&ttl) {
                let min = format_duration(min_ttl);
                return Err(format!("Invalid Session TTL '{text}', must be between [{min}=24h0m0s]"));
            }
            Some(ttl)
        }
    };
    let node = if r.node.is_empty() { AGENT.to_string() } else { r.node };
    let held = t.nodes.get(&node).ok_or(format!("Missing node registration: {node:?}"))?;
    let node_checks = match (r.node_checks, r.checks) {
        (Some(a), Some(b)) => a.into_iter().chain(b).collect(),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => vec![SERF_CHECK.to_string()],
    };
    let service_checks: Vec<String> = r.service_checks.unwrap_or_default().into_iter().map(|c| c.id).collect();
    for check in node_checks.iter().chain(&service_checks) {
        if node == AGENT && check == SERF_CHECK {
            continue;
        }
        match held.checks.get(check) {
            None => return Err(format!("Missing check {check:?} registration")),
            Some(c) if c.status == "critical" => return Err(format!("Check {check:?} is in critical state")),
            Some(_) => {}
        }
    }
    let mut session = Session {
        id,
        name: r.name,
        node,
        lock_delay: lock_delay(&r.lock_delay)?,
        behavior,
        ttl,
        node_checks,
        service_checks,
        create_index: index,
        modify_index: index,
        deadline: None,
    };
    session.renew(now);
    Ok(session)
}

/// A fresh session id: a random (version 4) UUID.
fn session_id() -> Result<String, String> {
    let hex = crate::token::random_hex(16).map_err(|e| e.to_string())?;
    let (a, b, c, d, e) = (&hex[0..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32]);
    let variant = ["8", "9", "a", "b"][usize::from(hex.as_bytes()[16] % 4)];
    Ok(format!("{a}-{b}-4{c}-{variant}{d}-{e}"))
}

/// `_params`: a datacenter other than this one is refused (see [`QueryParams::parse`]).
async fn create(
    State(reg): State<Registry>,
    _params: QueryParams,
    presented: Presented,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let r: SessionRequest = match decoded(body, reg.limits.registration) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    if let Err(refused) = reg.authorize(&presented, false, "'session:write'") {
        return refuse(refused);
    }
    let id = match session_id() {
        Ok(id) => id,
        Err(e) => return refuse((StatusCode::INTERNAL_SERVER_ERROR, e)),
    };
    let mut t = reg.tables.lock().unwrap();
    let session = match new_session(r, &t, reg.limits.session_ttl_min, id.clone(), Instant::now(), t.index + 1) {
        Ok(s) => s,
        Err(e) => return bad_request(e),
    };
    let outcome = reg.commit(&mut t, reg.trusted(&presented), |t, _| {
        t.sessions.insert(session.id.clone(), session);
        Ok(())
    });
    outcome.map(|()| Json(json!({"ID": id}))).into_response()
}

async fn renew(
    State(reg): State<Registry>,
    Path(id): Path<String>,
    _params: QueryParams,
    presented: Presented,
) -> Response {
    let mut t = reg.tables.lock().unwrap();
    if let Err(refused) = reg.authorize(&presented, t.locks_nodes_keys(&id), &format!("'session:write' on {id:?}")) {
        return refuse(refused);
    }
    let Some(session) = t.sessions.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, format!("Session id '{id}' not found\n")).into_response();
    };
    // Renewal is not a change of state: no index, no save (as in Consul).
    session.renew(Instant::now());
    let answer = Json(vec![session.json()]);
    with_index(t.index, answer)
}

async fn destroy(
    State(reg): State<Registry>,
    Path(id): Path<String>,
    _params: QueryParams,
    presented: Presented,
) -> Response {
    let mut t = reg.tables.lock().unwrap();
    if let Err(refused) = reg.authorize(&presented, t.locks_nodes_keys(&id), &format!("'session:write' on {id:?}")) {
        return refuse(refused);
    }
    if !t.sessions.contains_key(&id) {
        return Json(true).into_response();
    }
    let outcome = reg.commit(&mut t, reg.trusted(&presented), |t, index| {
        t.end_session(&id, Instant::now(), index);
        Ok(())
    });
    outcome.map(|()| Json(true)).into_response()
}

/// Answers the sessions `pick` keeps, after a blocking query's wait.
async fn answer(
    reg: &Registry,
    params: &QueryParams,
    presented: &Presented,
    pick: impl Fn(&Session) -> bool,
) -> Response {
    if let Err(refused) = reg.block(params, presented).await {
        return refused;
    }
    let t = reg.tables.lock().unwrap();
    let mut sessions: Vec<&Session> = t.sessions.values().filter(|s| pick(s)).collect();
    sessions.sort_by_key(|s| s.create_index);
    let list = params.filtered(sessions.into_iter().map(Session::json).collect());
    with_index(t.index, Json(list))
}

async fn info(
    State(reg): State<Registry>,
    Path(id): Path<String>,
    params: QueryParams,
    presented: Presented,
) -> Response {
    answer(&reg, &params, &presented, |s| s.id == id).await
}

async fn list(State(reg): State<Registry>, params: QueryParams, presented: Presented) -> Response {
    answer(&reg, &params, &presented, |_| true).await
}

async fn node(
    State(reg): State<Registry>,
    Path(node): Path<String>,
    params: QueryParams,
    presented: Presented,
) -> Response {
    answer(&reg, &params, &presented, |s| s.node == node).await
}
