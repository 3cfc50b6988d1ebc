//! The embedded registry: a single-machine stand-in for a Consul agent that
//! serves the subset of Consul's HTTP API ShardScope uses, with Consul's JSON
//! and semantics: agent service register/deregister, check pass/warn/fail,
//! health and catalog queries, KV (with `recurse` and `cas`), status leader,
//! `X-Consul-Index` on every read and blocking queries (`index` + `wait`).
//! It runs the checks itself (TTL expiry, HTTP and TCP probes) and
//! deregisters services critical for longer than
//! `DeregisterCriticalServiceAfter`. No gossip, no Raft, no ACL system:
//! one optional token that every write must carry ([`Registry::with_token`]),
//! and one that the storage nodes' writes need ([`Registry::with_node_token`]:
//! registering `shardscope-node`, and KV under `shardscope/`).
//!
//! Everything it holds is bounded ([`Limits`]): a write past a limit is
//! refused with a 4xx and changes nothing, and a state file past them is
//! not loaded. Checks probe only the service's own address, at most one
//! probe per check at a time. A `shardscope-node` id is held by one node
//! instance (`Meta.shardscope-instance`) while its check passes.
//!
//! In memory by default; [`Registry::with_data_dir`] keeps the catalog and KV
//! in a state file there (see [`state_file`]), as a Consul server agent does
//! with `-data-dir`: every write is on disk before it is acknowledged, and a
//! restart comes back with the same services, checks, KV and index.

mod answers;
mod state_file;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};

use base64::Engine as _;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::api::{
    format_duration, id_taken, is_loopback, parse_duration, AgentNode, AgentService, CatalogService, HealthCheck,
    KvPair, ServiceEntry, ServiceRegistration, INSTANCE_META, NODE_KV_PREFIX, NODE_SERVICE,
};
use crate::token::Token;
use state_file::{SaveError, StateDir};
pub use state_file::{MAX_STATE, STATE_FILE};

const AGENT: &str = "shardscope-embedded";
/// The address of the embedded agent's node (a service without an address is at it).
const AGENT_ADDRESS: &str = "127.0.0.1";
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
const MAX_WAIT: Duration = Duration::from_secs(600);
/// How long [`Registry::serve`] waits for the first answers of the probes
/// due at start (a restored catalog's) before it answers requests.
const FIRST_PROBES_WAIT: Duration = Duration::from_secs(2);
/// A check's statuses, as Consul names them.
const STATUSES: [&str; 3] = ["passing", "warning", "critical"];
/// The shortest `Interval` and `Timeout` an HTTP or TCP check may have.
pub const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// What the registry holds at most. A write past a limit is refused and
/// changes nothing (413 for sizes, 400 for counts, 429 for blocking queries);
/// a state file past them does not load.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Services registered (each has at most one check, so this bounds the
    /// checks too).
    pub services: usize,
    /// Bytes of one registration's body.
    pub registration: usize,
    /// KV keys.
    pub kv_keys: usize,
    /// Bytes of one KV key.
    pub key: usize,
    /// Bytes of one KV value (Consul's `kv_max_value_size` default).
    pub value: usize,
    /// Bytes of every KV key and value together.
    pub kv_bytes: usize,
    /// Blocking queries (`?index=`) waiting at once; past it a query is
    /// answered 429 at once rather than queued.
    pub blocking_queries: usize,
    /// Bytes of anonymous clients' answers held until they read them; past
    /// it an answer is a 503 (see [`answers`]).
    pub answers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            services: 1024,
            registration: 64 * 1024,
            kv_keys: 16 * 1024,
            key: 1024,
            value: 512 * 1024,
            kv_bytes: 4 * 1024 * 1024,
            blocking_queries: 256,
            answers: 64 * 1024 * 1024,
        }
    }
}

/// A refused request: its status and message.
type Refusal = (StatusCode, String);

/// Writes that carry a token (the nodes', `serve`'s) may go a quarter past
/// the count and size limits, so anonymous clients that fill the registry
/// to its limits cannot shut the cluster's own registrations and state out;
/// a state file is held to the larger bound.
fn with_reserve(limit: usize, trusted: bool) -> usize {
    if trusted {
        limit.saturating_add(limit / 4)
    } else {
        limit
    }
}

impl Limits {
    fn services_fit(&self, services: usize, trusted: bool) -> Result<(), Refusal> {
        let max = with_reserve(self.services, trusted);
        if services > max {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("Too many services: the registry holds at most {max} (deregister some first)"),
            ));
        }
        Ok(())
    }

    fn key_fits(&self, key: &str) -> Result<(), Refusal> {
        if key.is_empty() {
            return Err((StatusCode::BAD_REQUEST, "Missing key name".into()));
        }
        if key.len() > self.key {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("Key too long: {} bytes, max size: {} bytes", key.len(), self.key),
            ));
        }
        Ok(())
    }

    /// A client's value is held to it by the body limit (see
    /// [`unread_body`]); this checks a restored one.
    fn value_fits(&self, len: usize) -> Result<(), Refusal> {
        if len > self.value {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Value of {len} bytes too large, max size: {} bytes", self.value),
            ));
        }
        Ok(())
    }

    fn kv_fits(&self, keys: usize, bytes: usize, trusted: bool) -> Result<(), Refusal> {
        let (max_keys, max_bytes) = (with_reserve(self.kv_keys, trusted), with_reserve(self.kv_bytes, trusted));
        if keys > max_keys {
            return Err((StatusCode::BAD_REQUEST, format!("Too many KV keys: the registry holds at most {max_keys}")));
        }
        if bytes > max_bytes {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("KV store full: keys and values would take {bytes} bytes, max size: {max_bytes} bytes"),
            ));
        }
        Ok(())
    }
}

fn refuse((status, message): Refusal) -> Response {
    (status, format!("{message}\n")).into_response()
}

#[derive(Clone, Debug)]
enum Probe {
    Ttl(Duration),
    Http(String),
    Tcp(String),
}

#[derive(Clone, Debug)]
struct Check {
    id: String,
    name: String,
    probe: Probe,
    interval: Duration,
    timeout: Duration,
    status: String,
    output: String,
    deregister_after: Option<Duration>,
    critical_since: Option<Instant>,
    /// TTL checks: when the check turns critical unless passed again.
    ttl_deadline: Option<Instant>,
    next_probe: Instant,
    /// A probe is running: the next one waits for its answer.
    probing: bool,
}

impl Check {
    /// Sets the status and output (a TTL check's window starts again);
    /// returns whether the status changed.
    fn set(&mut self, status: &str, output: String, now: Instant) -> bool {
        if let Probe::Ttl(ttl) = self.probe {
            self.ttl_deadline = Some(now + ttl);
        }
        let changed = self.status != status;
        self.status = status.to_string();
        self.output = output;
        if status == "critical" {
            self.critical_since.get_or_insert(now);
        } else {
            self.critical_since = None;
        }
        changed
    }
}

#[derive(Clone, Debug)]
struct Service {
    reg: ServiceRegistration,
    id: String,
    check: Option<Check>,
}

impl Service {
    /// A service from its registration, checked as Consul checks it (and
    /// its check against [`build_check`]'s rules); its id is the
    /// registration's `ID`, else its name.
    fn new(reg: ServiceRegistration) -> Result<Service, String> {
        if reg.name.is_empty() {
            return Err("Missing service name".into());
        }
        let id = reg.id.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| reg.name.clone());
        let check = reg.check.as_ref().map(|c| build_check(&id, &reg, c)).transpose()?;
        Ok(Service { reg, id, check })
    }

    /// The storage node instance that registered it (`Meta.shardscope-instance`).
    fn instance(&self) -> Option<&str> {
        self.reg.meta.get(INSTANCE_META).map(String::as_str)
    }

    /// Whether its check (if any) passes.
    fn passing(&self) -> bool {
        self.check.as_ref().is_none_or(|c| c.status == "passing")
    }

    /// Where it is: its address, else its agent's.
    fn address(&self) -> &str {
        if self.reg.address.is_empty() {
            AGENT_ADDRESS
        } else {
            &self.reg.address
        }
    }
}

#[derive(Clone, Debug)]
struct KvEntry {
    value: Vec<u8>,
    flags: u64,
    create_index: u64,
    modify_index: u64,
}

impl KvEntry {
    /// The pair as Consul's KV API returns it (value in base64).
    fn to_pair(&self, key: &str) -> KvPair {
        KvPair {
            key: key.to_string(),
            value: Some(base64::engine::general_purpose::STANDARD.encode(&self.value)),
            flags: self.flags,
            create_index: self.create_index,
            modify_index: self.modify_index,
            lock_index: 0,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Tables {
    index: u64,
    services: BTreeMap<String, Service>,
    kv: BTreeMap<String, KvEntry>,
}

impl Tables {
    /// The check with id `check_id`.
    fn check_mut(&mut self, check_id: &str) -> Option<&mut Check> {
        self.services.values_mut().filter_map(|s| s.check.as_mut()).find(|c| c.id == check_id)
    }

    /// The name of the service whose check is `check_id`.
    fn service_of_check(&self, check_id: &str) -> Option<&str> {
        let has = |s: &&Service| s.check.as_ref().is_some_and(|c| c.id == check_id);
        self.services.values().find(has).map(|s| s.reg.name.as_str())
    }

    /// KV keys and the bytes of their keys and values.
    fn kv_size(&self) -> (usize, usize) {
        (self.kv.len(), self.kv.iter().map(|(k, e)| k.len() + e.value.len()).sum())
    }
}

/// The registry's state; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    tables: Arc<Mutex<Tables>>,
    changes: watch::Sender<u64>,
    /// When set, every write needs it (see [`Registry::authorize`]).
    token: Option<Token>,
    /// When set, the storage nodes' writes need it, or `token`.
    node_token: Option<Token>,
    /// When set, the state is kept there (see [`Registry::with_data_dir`]).
    disk: Option<Arc<StateDir>>,
    limits: Arc<Limits>,
    /// One permit per blocking query that may wait.
    blocking: Arc<tokio::sync::Semaphore>,
    /// Bytes of anonymous clients' answers not yet read (see [`answers`]).
    answers: answers::Budget,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A registry in memory, with the default [`Limits`].
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// A registry in memory that holds at most `limits`.
    pub fn with_limits(limits: Limits) -> Self {
        let tables = Tables { index: 1, ..Default::default() };
        let (changes, _) = watch::channel(1);
        Registry {
            tables: Arc::new(Mutex::new(tables)),
            changes,
            token: None,
            node_token: None,
            disk: None,
            blocking: Arc::new(tokio::sync::Semaphore::new(limits.blocking_queries)),
            answers: answers::Budget::new(limits.answers),
            limits: Arc::new(limits),
        }
    }

    /// A registry that keeps its catalog and KV in `dir` (created if need
    /// be), in [`STATE_FILE`]: it starts with what the file holds (checks in
    /// the status they had, TTL checks with a fresh window), and every write
    /// replaces the file before it is acknowledged. A state file that does
    /// not read back whole, or holds more than the default [`Limits`], is an
    /// error naming it, never an empty start.
    pub fn with_data_dir(dir: &std::path::Path) -> anyhow::Result<Self> {
        let registry = Registry::new();
        let (disk, saved) = StateDir::open(dir, &registry.limits)?;
        let registry = Registry { disk: Some(Arc::new(disk)), ..registry };
        if let Some(tables) = saved {
            registry.changes.send_replace(tables.index);
            *registry.tables.lock().unwrap() = tables;
        }
        Ok(registry)
    }

    /// Writes (registration, checks, KV) will need `token`.
    pub fn with_token(mut self, token: Option<Token>) -> Self {
        self.token = token;
        self
    }

    /// The storage nodes' writes will need `token` (or the one of
    /// [`Registry::with_token`]): registering, deregistering and updating
    /// the checks of `shardscope-node` services, and KV under `shardscope/`.
    /// Other services and keys stay as open as the rest.
    pub fn with_node_token(mut self, token: Token) -> Self {
        self.node_token = Some(token);
        self
    }

    /// Whether a write may be made by whoever `presented` a token: with a
    /// token every write needs it; a write to the nodes' names (`nodes`)
    /// needs the node token or that one. Refused as Consul's ACLs refuse:
    /// 403, "Permission denied", naming the permission (`what`).
    /// Whether `presented` is one of the registry's tokens (the admin or the
    /// node token): such a client gets the reserve past the limits and
    /// blocking queries that do not count against anyone else's.
    pub(crate) fn trusted(&self, presented: &Presented) -> bool {
        [&self.token, &self.node_token].into_iter().flatten().any(|t| t.accepts(presented.0.as_deref()))
    }

    fn authorize(&self, presented: &Presented, nodes: bool, what: &str) -> Result<(), Refusal> {
        let accepts = |t: &Option<Token>| t.as_ref().is_some_and(|t| t.accepts(presented.0.as_deref()));
        let open = self.token.is_none() && !(nodes && self.node_token.is_some());
        if open || accepts(&self.token) || (nodes && accepts(&self.node_token)) {
            return Ok(());
        }
        let needs = if nodes && self.node_token.is_some() {
            "the registry's node token (CONSUL_HTTP_TOKEN, or CONSUL_HTTP_TOKEN_FILE=DATA_DIR/registry/token \
             of the `shardscope serve` that runs this registry)"
        } else {
            "the admin token (X-Consul-Token)"
        };
        Err((
            StatusCode::FORBIDDEN,
            format!("Permission denied: anonymous token lacks permission {what}: this write needs {needs}"),
        ))
    }

    /// Makes a client's write: `change` edits the tables at the next index,
    /// which it is given. With a data dir the changed tables are saved before
    /// they replace the live ones, so no one sees, and no client is told of,
    /// a write that is not on disk; a failed save changes nothing. Wakes
    /// blocking queries. The caller holds the lock, so writes are saved in
    /// index order.
    fn commit(&self, t: &mut Tables, change: impl FnOnce(&mut Tables, u64)) -> Result<(), SaveError> {
        let index = t.index + 1;
        match &self.disk {
            None => change(t, index),
            Some(disk) => {
                let mut next = t.clone();
                change(&mut next, index);
                next.index = index;
                disk.save(&next)?;
                *t = next;
            }
        }
        t.index = index;
        self.changes.send_replace(index);
        Ok(())
    }

    /// Records a change the registry made itself (a check's status from a
    /// probe or a TTL, a deregistration after
    /// `DeregisterCriticalServiceAfter`): bumps the index, saves the tables
    /// when there is a data dir, and wakes blocking queries. Such a change
    /// stands even if the save fails (the health view must not lag behind
    /// the checks): the failure is logged and the next save carries it.
    fn record(&self, t: &mut Tables) {
        t.index += 1;
        if let Some(disk) = &self.disk {
            if let Err(e) = disk.save(t) {
                tracing::error!("registry: a check's change is not saved: {e}");
            }
        }
        self.changes.send_replace(t.index);
    }

    /// Serves the API on `listener` and runs the checks, until `shutdown`.
    /// Probes due at once (those of a restored catalog) answer first, within
    /// 2 s, so that after a restart no client is told that a service which
    /// went away meanwhile is passing.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.serve_wrapped(listener, shutdown, |router| router).await
    }

    /// Like [`Registry::serve`], serving the router `wrap` makes of
    /// [`Registry::router`] (the caller's layers in front of it).
    pub async fn serve_wrapped(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        wrap: impl FnOnce(Router) -> Router,
    ) -> anyhow::Result<()> {
        let first = self.run_due_checks(Instant::now());
        let _ = tokio::time::timeout(FIRST_PROBES_WAIT, async {
            for probe in first {
                let _ = probe.await;
            }
        })
        .await;
        let checker = tokio::spawn(self.clone().run_checks());
        let app = wrap(self.router());
        let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
        checker.abort();
        Ok(result?)
    }

    pub fn router(self) -> Router {
        let registration = DefaultBodyLimit::max(self.limits.registration);
        Router::new()
            .route("/v1/agent/service/register", put(register).layer(registration))
            .route("/v1/agent/service/deregister/{id}", put(deregister))
            .route("/v1/agent/check/{verb}/{id}", put(update_check))
            .route("/v1/health/service/{name}", get(health_service))
            .route("/v1/catalog/services", get(catalog_services))
            .route("/v1/catalog/service/{name}", get(catalog_service))
            .route("/v1/kv/{*key}", get(kv_get).put(kv_put).delete(kv_delete))
            .route("/v1/status/leader", get(|| async { Json("127.0.0.1:8300") }))
            .fallback(|| async { (StatusCode::NOT_FOUND, "Unsupported endpoint\n") })
            .layer(DefaultBodyLimit::max(self.limits.value))
            .layer(axum::middleware::from_fn_with_state(self.clone(), answers::hold))
            .with_state(self)
    }

    /// Runs due checks every 50 ms.
    async fn run_checks(self) {
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tick.tick().await;
            self.run_due_checks(Instant::now());
        }
    }

    /// Expires TTLs, deregisters services critical for too long, and starts
    /// the HTTP and TCP probes due at `now`; returns the probes' tasks.
    fn run_due_checks(&self, now: Instant) -> Vec<tokio::task::JoinHandle<()>> {
        let mut due = Vec::new();
        {
            let mut t = self.tables.lock().unwrap();
            let mut changed = false;
            let mut expired = Vec::new();
            for (sid, svc) in t.services.iter_mut() {
                let Some(check) = svc.check.as_mut() else {
                    continue;
                };
                match &check.probe {
                    Probe::Ttl(_) => {
                        if check.ttl_deadline.is_some_and(|d| now >= d) && check.status != "critical" {
                            check.status = "critical".into();
                            check.output = "TTL expired".into();
                            check.critical_since = Some(now);
                            changed = true;
                        }
                    }
                    Probe::Http(_) | Probe::Tcp(_) => {
                        if now >= check.next_probe && !check.probing {
                            check.next_probe = now + check.interval;
                            check.probing = true;
                            due.push((sid.clone(), check.probe.clone(), check.timeout));
                        }
                    }
                }
                if let (Some(after), Some(since)) = (check.deregister_after, check.critical_since) {
                    if now.duration_since(since) >= after {
                        expired.push(sid.clone());
                    }
                }
            }
            for sid in expired {
                t.services.remove(&sid);
                tracing::info!(service = %sid, "deregistered after being critical too long");
                changed = true;
            }
            if changed {
                self.record(&mut t);
            }
        }
        let probe = |(sid, probe, timeout): (String, Probe, Duration)| {
            let registry = self.clone();
            tokio::spawn(async move {
                let (status, output) = run_probe(&probe, timeout).await;
                registry.probed(&sid, status, output);
            })
        };
        due.into_iter().map(probe).collect()
    }

    /// A probe of service `sid`'s check answered; a new status is recorded.
    fn probed(&self, sid: &str, status: &str, output: String) {
        let mut t = self.tables.lock().unwrap();
        let Some(check) = t.services.get_mut(sid).and_then(|s| s.check.as_mut()) else { return };
        check.probing = false;
        if check.set(status, output, Instant::now()) {
            self.record(&mut t);
        }
    }

    /// Waits, for a blocking query, until the index passes `index` or
    /// `wait` elapses. With [`Limits::blocking_queries`] anonymous ones
    /// already waiting, another is refused at once (429) instead; one that
    /// presents a token (the backend's watch) is not counted, so anonymous
    /// clients cannot starve the cluster's own watch.
    async fn block(&self, params: &QueryParams, presented: &Presented) -> Result<(), Refusal> {
        let Some(index) = params.index else { return Ok(()) };
        let _permit = match self.trusted(presented) {
            true => None,
            false => match self.blocking.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let message = format!(
                        "Too many blocking queries waiting (at most {}): retry later, please rate limit your calls",
                        self.limits.blocking_queries
                    );
                    return Err((StatusCode::TOO_MANY_REQUESTS, message));
                }
            },
        };
        let wait = params.wait.as_deref().and_then(parse_duration).unwrap_or(DEFAULT_WAIT).min(MAX_WAIT);
        let mut rx = self.changes.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|&current| current > index)).await;
        Ok(())
    }
}

async fn run_probe(probe: &Probe, timeout: Duration) -> (&'static str, String) {
    match probe {
        Probe::Tcp(addr) => match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => ("passing", format!("TCP connect {addr}: Success")),
            Ok(Err(e)) => ("critical", format!("dial tcp {addr}: {e}")),
            Err(_) => ("critical", format!("dial tcp {addr}: i/o timeout")),
        },
        Probe::Http(url) => {
            // Redirects are not followed: a check probes its service only.
            let client =
                reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none()).build();
            let client = match client {
                Ok(client) => client,
                Err(e) => return ("critical", format!("HTTP GET {url}: {e}")),
            };
            match client.get(url).send().await {
                Ok(r) if r.status().is_success() => ("passing", format!("HTTP GET {url}: {}", r.status())),
                Ok(r) if r.status().as_u16() == 429 => ("warning", format!("HTTP GET {url}: {}", r.status())),
                Ok(r) => ("critical", format!("HTTP GET {url}: {}", r.status())),
                Err(e) => ("critical", format!("HTTP GET {url}: {e}")),
            }
        }
        Probe::Ttl(_) => unreachable!("TTL checks are not probed"),
    }
}

#[derive(Default)]
struct QueryParams {
    index: Option<u64>,
    wait: Option<String>,
    passing: bool,
    recurse: Option<String>,
    raw: Option<String>,
    cas: Option<u64>,
    flags: Option<u64>,
    note: Option<String>,
}

fn bad_request(msg: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, format!("{}\n", msg.into())).into_response()
}

fn with_index(index: u64, resp: impl IntoResponse) -> Response {
    let mut resp = resp.into_response();
    let headers: &mut HeaderMap = resp.headers_mut();
    headers.insert("x-consul-index", HeaderValue::from(index));
    headers.insert("x-consul-knownleader", HeaderValue::from_static("true"));
    resp
}

impl QueryParams {
    /// Parses a query string; flags like `?passing` have no value. Consul
    /// ignores parameters it does not use here (dc, stale, ...).
    fn parse(raw: &str) -> Result<Self, String> {
        let mut q = QueryParams::default();
        for pair in raw.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let num = |v: &str| v.parse::<u64>().map_err(|_| format!("{k}={v:?} is not a number"));
            match k {
                "index" => q.index = Some(num(v)?),
                "cas" => q.cas = Some(num(v)?),
                "flags" => q.flags = Some(num(v)?),
                "wait" => {
                    parse_duration(v).ok_or_else(|| format!("wait={v:?} is not a duration"))?;
                    q.wait = Some(v.to_string());
                }
                "passing" => {
                    q.passing = match v {
                        "" | "1" | "true" => true,
                        "0" | "false" => false,
                        _ => return Err(format!("passing={v:?} is not a boolean")),
                    }
                }
                "recurse" => q.recurse = Some(v.to_string()),
                "raw" => q.raw = Some(v.to_string()),
                "note" => q.note = Some(v.to_string()),
                _ => {}
            }
        }
        Ok(q)
    }
}

/// Query strings that do not parse (e.g. `index=abc`) are a 400, as in Consul.
impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        QueryParams::parse(parts.uri.query().unwrap_or_default())
            .map_err(|e| bad_request(format!("Invalid query parameters: {e}")))
    }
}

/// The token a write carries (see [`crate::token::presented`]); reads need none.
pub(crate) struct Presented(pub(crate) Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for Presented {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Presented(crate::token::presented(&parts.headers, parts.uri.query())))
    }
}

/// A failed save: the write was not made.
impl IntoResponse for SaveError {
    fn into_response(self) -> Response {
        tracing::error!("registry: a write is refused: {self}");
        let status = match self {
            SaveError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            SaveError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, format!("{self}\n")).into_response()
    }
}

/// A body the registry did not take: too large is a 413 naming the limit,
/// worded as Consul's.
fn unread_body(e: BytesRejection, limit: usize) -> Response {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return refuse((StatusCode::PAYLOAD_TOO_LARGE, format!("Request body too large, max size: {limit} bytes")));
    }
    e.into_response()
}

async fn register(State(reg): State<Registry>, presented: Presented, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(e) => return unread_body(e, reg.limits.registration),
    };
    let r: ServiceRegistration = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(format!("Request decode failed: {e}")),
    };
    let service = match Service::new(r) {
        Ok(s) => s,
        Err(e) => return bad_request(e),
    };
    let mut t = reg.tables.lock().unwrap();
    let held = t.services.get(&service.id);
    let nodes = service.reg.name == NODE_SERVICE || held.is_some_and(|h| h.reg.name == NODE_SERVICE);
    if let Err(refused) = reg.authorize(&presented, nodes, &format!("'service:write' on {:?}", service.reg.name)) {
        return refuse(refused);
    }
    if let Some(held) = held {
        if held.reg.name == NODE_SERVICE && held.instance() != service.instance() && held.passing() {
            let message = id_taken(&service.id, held.address(), held.reg.port, held.instance());
            return refuse((StatusCode::CONFLICT, message));
        }
    } else if let Err(refused) = reg.limits.services_fit(t.services.len() + 1, reg.trusted(&presented)) {
        return refuse(refused);
    }
    let outcome = reg.commit(&mut t, |t, _| {
        t.services.insert(service.id.clone(), service);
    });
    outcome.map(|()| StatusCode::OK).into_response()
}

/// Checks that a probe of `host` stays at the service's own address
/// (`address`, or the agent's when empty): the same host, or both on
/// loopback. A check may not turn the registry into a prober of others.
fn own_address(address: &str, host: &str, kind: &str) -> Result<(), String> {
    let address = if address.is_empty() { AGENT_ADDRESS } else { address };
    let ip = |h: &str| h.parse::<std::net::IpAddr>().ok();
    let same = host.eq_ignore_ascii_case(address) || ip(host).is_some_and(|a| ip(address) == Some(a));
    if same || (is_loopback(address) && is_loopback(host)) {
        return Ok(());
    }
    Err(format!(
        "{kind} check probes {host:?}, not the service's own address {address:?}: a check may only probe its service"
    ))
}

/// The host an HTTP check's URL names (http or https only).
fn http_host(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("Invalid HTTP check URL {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("Invalid HTTP check URL {url:?}: the scheme must be http or https"));
    }
    match parsed.host_str() {
        Some(host) => Ok(host.trim_start_matches('[').trim_end_matches(']').to_string()),
        None => Err(format!("Invalid HTTP check URL {url:?}: no host")),
    }
}

/// The host of a TCP check's `host:port`.
fn tcp_host(addr: &str) -> Result<String, String> {
    let bad = || format!("Invalid TCP check address {addr:?}: expected host:port");
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return Err(bad());
    }
    Ok(host.to_string())
}

/// The check of service `service_id` as registered in `reg`: one of TTL,
/// HTTP (to the service's own address) or TCP (likewise), probed no more
/// often than [`MIN_CHECK_INTERVAL`].
fn build_check(
    service_id: &str,
    reg: &ServiceRegistration,
    def: &crate::api::CheckDefinition,
) -> Result<Check, String> {
    let dur = |field: &str, v: &Option<String>| -> Result<Option<Duration>, String> {
        v.as_deref().map(|s| parse_duration(s).ok_or(format!("Invalid {field} duration {s:?}"))).transpose()
    };
    let interval = dur("Interval", &def.interval)?;
    let timeout = dur("Timeout", &def.timeout)?;
    let probe = match (&def.ttl, &def.http, &def.tcp) {
        (Some(ttl), None, None) => Probe::Ttl(parse_duration(ttl).ok_or(format!("Invalid TTL duration {ttl:?}"))?),
        (None, Some(url), None) => {
            own_address(&reg.address, &http_host(url)?, "HTTP")?;
            Probe::Http(url.clone())
        }
        (None, None, Some(addr)) => {
            own_address(&reg.address, &tcp_host(addr)?, "TCP")?;
            Probe::Tcp(addr.clone())
        }
        (None, None, None) => return Err("Check must be one of TTL, HTTP or TCP".into()),
        _ => return Err("Check has more than one of TTL, HTTP, TCP".into()),
    };
    if !matches!(probe, Probe::Ttl(_)) {
        if interval.is_none() {
            return Err("Interval must be > 0 for HTTP and TCP checks".into());
        }
        for (field, d) in [("Interval", interval), ("Timeout", timeout)] {
            if d.is_some_and(|d| d < MIN_CHECK_INTERVAL) {
                return Err(format!(
                    "{field} {} is below the minimum of {} for HTTP and TCP checks",
                    format_duration(d.unwrap_or_default()),
                    format_duration(MIN_CHECK_INTERVAL)
                ));
            }
        }
    }
    let status = def.status.clone().unwrap_or_else(|| "critical".into());
    if !STATUSES.contains(&status.as_str()) {
        return Err(format!("Invalid check status {status:?}"));
    }
    let now = Instant::now();
    Ok(Check {
        id: def.check_id.clone().unwrap_or_else(|| format!("service:{service_id}")),
        name: def.name.clone().unwrap_or_else(|| format!("Service '{}' check", reg.name)),
        ttl_deadline: match probe {
            Probe::Ttl(ttl) => Some(now + ttl),
            _ => None,
        },
        probe,
        interval: interval.unwrap_or(Duration::from_secs(10)),
        timeout: timeout.unwrap_or(Duration::from_secs(10)),
        critical_since: (status == "critical").then_some(now),
        status,
        output: String::new(),
        deregister_after: dur("DeregisterCriticalServiceAfter", &def.deregister_critical_service_after)?,
        next_probe: now,
        probing: false,
    })
}

async fn deregister(State(reg): State<Registry>, Path(id): Path<String>, presented: Presented) -> Response {
    let mut t = reg.tables.lock().unwrap();
    let name = t.services.get(&id).map(|s| s.reg.name.clone()).unwrap_or_default();
    if let Err(refused) = reg.authorize(&presented, name == NODE_SERVICE, &format!("'service:write' on {name:?}")) {
        return refuse(refused);
    }
    if !t.services.contains_key(&id) {
        return (
            StatusCode::NOT_FOUND,
            format!("Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name.\n"),
        )
            .into_response();
    }
    let outcome = reg.commit(&mut t, |t, _| {
        t.services.remove(&id);
    });
    outcome.map(|()| StatusCode::OK).into_response()
}

async fn update_check(
    State(reg): State<Registry>,
    Path((verb, id)): Path<(String, String)>,
    params: QueryParams,
    presented: Presented,
) -> Response {
    let status = match verb.as_str() {
        "pass" => "passing",
        "warn" => "warning",
        "fail" => "critical",
        _ => return (StatusCode::NOT_FOUND, "Unsupported endpoint\n").into_response(),
    };
    let note = params.note.unwrap_or_default();
    let now = Instant::now();
    let mut t = reg.tables.lock().unwrap();
    let name = t.service_of_check(&id).unwrap_or_default().to_string();
    if let Err(refused) = reg.authorize(&presented, name == NODE_SERVICE, &format!("'service:write' on {name:?}")) {
        return refuse(refused);
    }
    let Some(check) = t.check_mut(&id) else {
        return (StatusCode::NOT_FOUND, format!("Unknown check ID {id:?}\n")).into_response();
    };
    if check.status == status {
        // A heartbeat: the TTL window starts again, nothing else changes.
        check.set(status, note, now);
        return StatusCode::OK.into_response();
    }
    let outcome = reg.commit(&mut t, |t, _| {
        if let Some(check) = t.check_mut(&id) {
            check.set(status, note, now);
        }
    });
    outcome.map(|()| StatusCode::OK).into_response()
}

fn entry(svc: &Service) -> ServiceEntry {
    let r = &svc.reg;
    ServiceEntry {
        node: AgentNode {
            id: String::new(),
            node: AGENT.into(),
            address: "127.0.0.1".into(),
            datacenter: "dc1".into(),
        },
        service: AgentService {
            id: svc.id.clone(),
            service: r.name.clone(),
            tags: Some(r.tags.clone()),
            address: r.address.clone(),
            port: r.port,
            meta: Some(r.meta.clone()),
        },
        checks: svc
            .check
            .iter()
            .map(|c| HealthCheck {
                node: AGENT.into(),
                check_id: c.id.clone(),
                name: c.name.clone(),
                status: c.status.clone(),
                output: c.output.clone(),
                service_id: svc.id.clone(),
                service_name: r.name.clone(),
            })
            .collect(),
    }
}

async fn health_service(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    params: QueryParams,
    presented: Presented,
) -> Response {
    if let Err(refused) = reg.block(&params, &presented).await {
        return refuse(refused);
    }
    let t = reg.tables.lock().unwrap();
    let entries: Vec<ServiceEntry> = t
        .services
        .values()
        .filter(|s| s.reg.name == name)
        .filter(|s| !params.passing || s.check.as_ref().is_none_or(|c| c.status == "passing"))
        .map(entry)
        .collect();
    with_index(t.index, Json(entries))
}

async fn catalog_services(State(reg): State<Registry>, params: QueryParams, presented: Presented) -> Response {
    if let Err(refused) = reg.block(&params, &presented).await {
        return refuse(refused);
    }
    let t = reg.tables.lock().unwrap();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in t.services.values() {
        let tags = out.entry(s.reg.name.clone()).or_default();
        for tag in &s.reg.tags {
            if !tags.contains(tag) {
                tags.push(tag.clone());
            }
        }
    }
    with_index(t.index, Json(out))
}

async fn catalog_service(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    params: QueryParams,
    presented: Presented,
) -> Response {
    if let Err(refused) = reg.block(&params, &presented).await {
        return refuse(refused);
    }
    let t = reg.tables.lock().unwrap();
    let out: Vec<CatalogService> = t
        .services
        .values()
        .filter(|s| s.reg.name == name)
        .map(|s| CatalogService {
            node: AGENT.into(),
            address: "127.0.0.1".into(),
            service_id: s.id.clone(),
            service_name: s.reg.name.clone(),
            service_address: s.reg.address.clone(),
            service_port: s.reg.port,
            service_tags: Some(s.reg.tags.clone()),
        })
        .collect();
    with_index(t.index, Json(out))
}

async fn kv_get(
    State(reg): State<Registry>,
    Path(key): Path<String>,
    params: QueryParams,
    presented: Presented,
) -> Response {
    if let Err(refused) = reg.block(&params, &presented).await {
        return refuse(refused);
    }
    let t = reg.tables.lock().unwrap();
    if params.recurse.is_some() {
        let pairs: Vec<KvPair> =
            t.kv.range(key.clone()..).take_while(|(k, _)| k.starts_with(&key)).map(|(k, e)| e.to_pair(k)).collect();
        if pairs.is_empty() {
            return with_index(t.index, StatusCode::NOT_FOUND);
        }
        return with_index(t.index, Json(pairs));
    }
    match t.kv.get(&key) {
        None => with_index(t.index, StatusCode::NOT_FOUND),
        Some(e) if params.raw.is_some() => with_index(t.index, e.value.clone()),
        Some(e) => with_index(t.index, Json(vec![e.to_pair(&key)])),
    }
}

/// Whether `key` is the storage nodes' (under `shardscope/`).
fn nodes_key(key: &str) -> bool {
    key.starts_with(NODE_KV_PREFIX)
}

async fn kv_put(
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
    let mut t = reg.tables.lock().unwrap();
    let (keys, bytes) = t.kv_size();
    let replaced = t.kv.get(&key).map(|e| key.len() + e.value.len());
    let after = (keys + usize::from(replaced.is_none()), bytes - replaced.unwrap_or(0) + key.len() + body.len());
    if let Err(refused) = reg.limits.kv_fits(after.0, after.1, reg.trusted(&presented)) {
        return refuse(refused);
    }
    let current = t.kv.get(&key).map(|e| e.modify_index);
    if let Some(cas) = params.cas {
        let ok = match (cas, current) {
            (0, None) => true,
            (0, Some(_)) => false,
            (c, Some(m)) => c == m,
            (_, None) => false,
        };
        if !ok {
            return Json(false).into_response();
        }
    }
    let outcome = reg.commit(&mut t, |t, index| {
        let create_index = t.kv.get(&key).map_or(index, |e| e.create_index);
        let entry =
            KvEntry { value: body.to_vec(), flags: params.flags.unwrap_or(0), create_index, modify_index: index };
        t.kv.insert(key, entry);
    });
    outcome.map(|()| Json(true)).into_response()
}

async fn kv_delete(
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
    let doomed: Vec<String> = if params.recurse.is_some() {
        t.kv.range(key.clone()..).take_while(|(k, _)| k.starts_with(&key)).map(|(k, _)| k.clone()).collect()
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
    let outcome = reg.commit(&mut t, |t, _| {
        for k in &doomed {
            t.kv.remove(k);
        }
    });
    outcome.map(|()| Json(true)).into_response()
}
