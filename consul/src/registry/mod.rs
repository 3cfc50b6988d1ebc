//! The embedded registry: a single-node stand-in for a Consul agent that is
//! also its own server, serving what a Consul user meets first with
//! Consul's JSON, status codes and semantics (the list is README's
//! "Consul compatibility"): the agent's services and checks ([`agent`]),
//! the catalog and health views, catalog registration of other nodes
//! ([`catalog`]), KV with flags, `cas`, locks, `keys` and `?raw` ([`kv`]),
//! sessions with TTLs, checks, behaviors and lock-delay ([`session`]),
//! `?filter=` expressions ([`filter`]), status, `X-Consul-Index` on every
//! read and blocking queries (`index` + `wait`). Bodies decode as Consul
//! decodes them, field names in any case ([`decode`]). It runs the checks
//! itself (TTL expiry, HTTP and TCP probes; no scripts) and deregisters
//! services critical for longer than `DeregisterCriticalServiceAfter`. No
//! gossip, no Raft, no ACL system: one optional token that every write must
//! carry ([`Registry::with_token`]), and one that the storage nodes' writes
//! need ([`Registry::with_node_token`]: `shardscope-node` services and what
//! decides their health, and KV under `shardscope/`).
//!
//! Everything it holds is bounded ([`Limits`]): a write past a limit is
//! refused with a 4xx and changes nothing, and a state file past them is
//! not loaded. Checks probe only the service's own address, at most one
//! probe per check at a time. A `shardscope-node` id is held by one node
//! instance (`Meta.shardscope-instance`) while its checks pass.
//!
//! In memory by default; [`Registry::with_data_dir`] keeps the catalog, KV
//! and sessions in a state file there (see [`state_file`]), as a Consul
//! server agent does with `-data-dir`: every write is on disk before it is
//! acknowledged, and a restart comes back with the same state and index.

mod agent;
mod answers;
mod catalog;
mod decode;
mod filter;
mod kv;
mod session;
mod state_file;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, put};
use axum::{Json, Router};

use tokio::sync::watch;
use tokio::time::Instant;

use crate::api::{parse_duration, CheckDefinition, ServiceRegistration, INSTANCE_META};
use crate::token::Token;
use state_file::{SaveError, StateDir};
pub use state_file::{MAX_STATE, STATE_FILE};

/// The agent's node name (`Config.NodeName`).
const AGENT: &str = "shardscope-embedded";
/// The address of the embedded agent's node (a service without an address is at it).
const AGENT_ADDRESS: &str = "127.0.0.1";
/// The agent's server address, as `/v1/status/leader` names it.
const LEADER: &str = "127.0.0.1:8300";
const DATACENTER: &str = "dc1";
/// The agent node's own check, always passing: this node is up while it answers.
const SERF_CHECK: &str = "serfHealth";
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
    /// Services registered, on every node together.
    pub services: usize,
    /// Checks registered, on every node together.
    pub checks: usize,
    /// Nodes registered through the catalog (besides the agent's own).
    pub nodes: usize,
    /// Sessions.
    pub sessions: usize,
    /// The shortest session `TTL` (Consul's `session_ttl_min`, 10s); the
    /// longest is 24h.
    pub session_ttl_min: Duration,
    /// Bytes of one registration's (or session's) body.
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
    /// Bytes of the whole state (as saved) past which anonymous writes that
    /// grow it are refused (413). Every write saves the whole state under
    /// the one lock, so this bounds what each write costs everyone; writes
    /// with a token may go on to [`MAX_STATE`].
    pub anonymous_state: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            services: 1024,
            checks: 4096,
            nodes: 256,
            sessions: 1024,
            session_ttl_min: Duration::from_secs(10),
            registration: 64 * 1024,
            kv_keys: 16 * 1024,
            key: 1024,
            value: 512 * 1024,
            kv_bytes: 4 * 1024 * 1024,
            blocking_queries: 256,
            answers: 64 * 1024 * 1024,
            anonymous_state: 8 * 1024 * 1024,
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

/// A count past its limit: 400 naming it.
fn count_fits(what: &str, count: usize, limit: usize, trusted: bool) -> Result<(), Refusal> {
    let max = with_reserve(limit, trusted);
    if count > max {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("Too many {what}: the registry holds at most {max} (remove some first)"),
        ));
    }
    Ok(())
}

impl Limits {
    /// The counts of `t` with their limits.
    fn counts(&self, t: &Tables) -> [(&'static str, usize, usize); 4] {
        [
            ("services", t.nodes.values().map(|n| n.services.len()).sum(), self.services),
            ("checks", t.nodes.values().map(|n| n.checks.len()).sum(), self.checks),
            ("nodes", t.nodes.len().saturating_sub(1), self.nodes),
            ("sessions", t.sessions.len(), self.sessions),
        ]
    }

    /// Whether a change from `before` to `after` keeps within the limits:
    /// a count that grows may not pass its limit (one that shrinks always may).
    fn counts_fit(&self, before: &Tables, after: &Tables, trusted: bool) -> Result<(), Refusal> {
        for ((what, was, limit), (_, now, _)) in self.counts(before).into_iter().zip(self.counts(after)) {
            if now > was {
                count_fits(what, now, limit, trusted)?;
            }
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

/// A refusal as an answer (see [`refuse`]).
struct Refused(Refusal);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        refuse(self.0)
    }
}

#[derive(Clone, Debug)]
enum Probe {
    Ttl(Duration),
    Http(String),
    Tcp(String),
    /// Set by whoever registered it (a catalog registration, maintenance
    /// mode); the registry never changes it.
    Fixed,
}

impl Probe {
    /// Consul's `Type` of the check.
    fn kind(&self) -> &'static str {
        match self {
            Probe::Ttl(_) => "ttl",
            Probe::Http(_) => "http",
            Probe::Tcp(_) => "tcp",
            Probe::Fixed => "",
        }
    }
}

#[derive(Clone, Debug)]
struct Check {
    /// As registered, with its id, name and service resolved: what the
    /// state file keeps.
    def: CheckDefinition,
    id: String,
    name: String,
    /// The service it checks; empty for a node check.
    service_id: String,
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
    create_index: u64,
    modify_index: u64,
}

impl Check {
    /// Sets the status and output (a TTL check's window starts again);
    /// returns whether the status changed, and then records `index`.
    fn set(&mut self, status: &str, output: String, now: Instant, index: u64) -> bool {
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
        if changed {
            self.modify_index = index;
        }
        changed
    }
}

#[derive(Clone, Debug)]
struct Service {
    /// As registered, without its checks (those are the node's).
    reg: ServiceRegistration,
    id: String,
    create_index: u64,
    modify_index: u64,
}

impl Service {
    /// The storage node instance that registered it (`Meta.shardscope-instance`).
    fn instance(&self) -> Option<&str> {
        self.reg.meta.get(INSTANCE_META).map(String::as_str)
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

/// A node: the agent's own, or one registered through the catalog.
#[derive(Clone, Debug)]
struct Node {
    address: String,
    tagged_addresses: BTreeMap<String, String>,
    meta: BTreeMap<String, String>,
    services: BTreeMap<String, Service>,
    checks: BTreeMap<String, Check>,
    create_index: u64,
    modify_index: u64,
}

impl Node {
    fn agent() -> Node {
        Node {
            address: AGENT_ADDRESS.into(),
            tagged_addresses: BTreeMap::new(),
            meta: BTreeMap::new(),
            services: BTreeMap::new(),
            checks: BTreeMap::new(),
            create_index: 1,
            modify_index: 1,
        }
    }

    /// Whether every check of service `sid` and of the node passes.
    fn passing(&self, sid: &str) -> bool {
        self.checks.values().filter(|c| c.service_id.is_empty() || c.service_id == sid).all(|c| c.status == "passing")
    }

    /// Removes service `sid` and its checks.
    fn remove_service(&mut self, sid: &str) {
        self.services.remove(sid);
        self.checks.retain(|_, c| c.service_id != sid);
    }
}

#[derive(Clone, Debug)]
struct KvEntry {
    value: Vec<u8>,
    flags: u64,
    create_index: u64,
    modify_index: u64,
    lock_index: u64,
    /// The session holding its lock.
    session: Option<String>,
}

#[derive(Clone, Debug)]
struct Tables {
    index: u64,
    /// Every node; the agent's own ([`AGENT`]) is always there.
    nodes: BTreeMap<String, Node>,
    kv: BTreeMap<String, KvEntry>,
    sessions: BTreeMap<String, session::Session>,
    /// Keys whose lock may not be acquired again until then, after the
    /// session holding it ended (in memory only, as in Consul).
    lock_delays: BTreeMap<String, Instant>,
    /// Bytes of these tables as saved, as of the last write.
    encoded_len: usize,
}

impl Default for Tables {
    fn default() -> Self {
        Tables {
            index: 1,
            nodes: [(AGENT.to_string(), Node::agent())].into(),
            kv: BTreeMap::new(),
            sessions: BTreeMap::new(),
            lock_delays: BTreeMap::new(),
            encoded_len: 0,
        }
    }
}

impl Tables {
    fn agent(&self) -> &Node {
        self.nodes.get(AGENT).expect("the agent's node is always there")
    }

    fn agent_mut(&mut self) -> &mut Node {
        self.nodes.entry(AGENT.to_string()).or_insert_with(Node::agent)
    }

    /// KV keys and the bytes of their keys and values.
    fn kv_size(&self) -> (usize, usize) {
        (self.kv.len(), self.kv.iter().map(|(k, e)| k.len() + e.value.len()).sum())
    }

    /// Ends the sessions that no longer hold (their node or one of their
    /// checks gone or critical, their TTL lapsed by `now`) at `index`;
    /// returns whether any ended.
    fn settle(&mut self, now: Instant, index: u64) -> bool {
        let ended: Vec<String> =
            self.sessions.iter().filter(|(_, s)| !s.holds(self, now)).map(|(id, _)| id.clone()).collect();
        for id in &ended {
            self.end_session(id, now, index);
        }
        !ended.is_empty()
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
        let (changes, _) = watch::channel(1);
        Registry {
            tables: Arc::new(Mutex::new(Tables::default())),
            changes,
            token: None,
            node_token: None,
            disk: None,
            blocking: Arc::new(tokio::sync::Semaphore::new(limits.blocking_queries)),
            answers: answers::Budget::new(limits.answers),
            limits: Arc::new(limits),
        }
    }

    /// A registry that keeps its catalog, KV and sessions in `dir` (created
    /// if need be), in [`STATE_FILE`]: it starts with what the file holds
    /// (checks in the status they had, TTL checks and sessions with a fresh
    /// window), and every write replaces the file before it is acknowledged.
    /// A state file that does not read back whole, or holds more than the
    /// default [`Limits`], is an error naming it, never an empty start.
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

    /// Writes (registration, checks, KV, sessions) will need `token`.
    pub fn with_token(mut self, token: Option<Token>) -> Self {
        self.token = token;
        self
    }

    /// The storage nodes' writes will need `token` (or the one of
    /// [`Registry::with_token`]): registering, deregistering and updating
    /// the checks of `shardscope-node` services (and the agent node's own
    /// checks and maintenance, which decide their health too), and KV under
    /// `shardscope/` (and the sessions that hold locks there). Other
    /// services and keys stay as open as the rest.
    pub fn with_node_token(mut self, token: Token) -> Self {
        self.node_token = Some(token);
        self
    }

    /// Whether `presented` is one of the registry's tokens (the admin or the
    /// node token): such a client gets the reserve past the limits and
    /// blocking queries that do not count against anyone else's.
    pub(crate) fn trusted(&self, presented: &Presented) -> bool {
        [&self.token, &self.node_token].into_iter().flatten().any(|t| t.accepts(presented.0.as_deref()))
    }

    /// Whether a write may be made by whoever `presented` a token: with a
    /// token every write needs it; a write to the nodes' names (`nodes`)
    /// needs the node token or that one. Refused as Consul's ACLs refuse:
    /// 403, "Permission denied", naming the permission (`what`).
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

    /// Makes a client's write: `change` edits a copy of the tables at the
    /// next index, which it is given, and may refuse (nothing changes);
    /// the copy must stay within the count limits (`trusted` gets the
    /// reserve), sessions it ends are ended, and with a data dir it is saved
    /// before it replaces the live tables, so no one sees, and no client is
    /// told of, a write that is not on disk; a failed save changes nothing.
    /// Wakes blocking queries. The caller holds the lock, so writes are saved
    /// in index order.
    fn commit<T>(
        &self,
        t: &mut Tables,
        trusted: bool,
        change: impl FnOnce(&mut Tables, u64) -> Result<T, Refusal>,
    ) -> Result<T, Refused> {
        let index = t.index + 1;
        let mut next = t.clone();
        let out = change(&mut next, index).map_err(Refused)?;
        self.limits.counts_fit(t, &next, trusted).map_err(Refused)?;
        let now = Instant::now();
        // A session holding the storage nodes' keys ends with its node or
        // checks, and its keys with it: an anonymous write may not be what
        // ends it (say, a catalog change to the node or check it names).
        if !trusted {
            let ended = next.sessions.iter().find(|(id, s)| {
                !s.holds(&next, now)
                    && next.locks_nodes_keys(id)
                    && t.sessions.get(*id).is_some_and(|s| s.holds(t, now))
            });
            if let Some((id, _)) = ended {
                return Err(Refused((
                    StatusCode::FORBIDDEN,
                    format!(
                        "Permission denied: anonymous token lacks permission 'session:write' on {id:?}: \
                         this write would end that session, which holds the storage nodes' keys"
                    ),
                )));
            }
        }
        next.settle(now, index);
        next.index = index;
        // Measured whether or not there is a disk: the state's size is what
        // every later write copies and saves.
        let bytes = state_file::encode(&next).map_err(|e| Refused(e.refusal()))?;
        let limit = self.limits.anonymous_state;
        if !trusted && bytes.len() > limit && bytes.len() > t.encoded_len {
            return Err(Refused((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the registry's state would be {} bytes, over the {} MiB anonymous writes may fill \
                     (remove some registrations, sessions or keys first)",
                    bytes.len(),
                    limit >> 20
                ),
            )));
        }
        if let Some(disk) = &self.disk {
            disk.write(&bytes).map_err(|e| Refused(e.refusal()))?;
        }
        next.encoded_len = bytes.len();
        *t = next;
        self.changes.send_replace(index);
        Ok(out)
    }

    /// Records a change the registry made itself (a check's status from a
    /// probe or a TTL, a deregistration after
    /// `DeregisterCriticalServiceAfter`, a session's end) at `t.index + 1`:
    /// ends the sessions it ends, bumps the index, saves the tables when
    /// there is a data dir, and wakes blocking queries. Such a change stands
    /// even if the save fails (the health view must not lag behind the
    /// checks): the failure is logged and the next save carries it.
    fn record(&self, t: &mut Tables, now: Instant) {
        t.settle(now, t.index + 1);
        t.index += 1;
        if let Some(disk) = &self.disk {
            if let Err(e) = disk.save(t) {
                tracing::error!("registry: a change of its own is not saved: {e}");
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
        let body = DefaultBodyLimit::max(self.limits.registration);
        Router::new()
            .merge(agent::routes().layer(body))
            .merge(catalog::routes().layer(body))
            .merge(session::routes().layer(body))
            .merge(kv::routes())
            .route("/v1/status/leader", get(|| async { Json(LEADER) }))
            .route("/v1/status/peers", get(|| async { Json([LEADER]) }))
            .route("/v1/acl/{*rest}", any(acl_disabled))
            .route("/v1/agent/token/{*rest}", put(acl_disabled))
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

    /// Expires TTLs (of checks and sessions), deregisters services critical
    /// for too long, and starts the HTTP and TCP probes due at `now`;
    /// returns the probes' tasks.
    fn run_due_checks(&self, now: Instant) -> Vec<tokio::task::JoinHandle<()>> {
        let mut due = Vec::new();
        {
            let mut t = self.tables.lock().unwrap();
            let index = t.index + 1;
            let mut changed = false;
            let mut expired = Vec::new();
            let agent = t.agent_mut();
            for check in agent.checks.values_mut() {
                match &check.probe {
                    Probe::Ttl(_) => {
                        if check.ttl_deadline.is_some_and(|d| now >= d) && check.status != "critical" {
                            changed |= check.set("critical", "TTL expired".into(), now, index);
                            check.ttl_deadline = None;
                        }
                    }
                    Probe::Http(_) | Probe::Tcp(_) => {
                        if now >= check.next_probe && !check.probing {
                            check.next_probe = now + check.interval;
                            check.probing = true;
                            due.push((check.id.clone(), check.probe.clone(), check.timeout));
                        }
                    }
                    Probe::Fixed => {}
                }
                if let (Some(after), Some(since)) = (check.deregister_after, check.critical_since) {
                    if now.duration_since(since) >= after && !check.service_id.is_empty() {
                        expired.push(check.service_id.clone());
                    }
                }
            }
            for sid in expired {
                agent.remove_service(&sid);
                tracing::info!(service = %sid, "deregistered after being critical too long");
                changed = true;
            }
            let lapsed = t.sessions.values().any(|s| s.lapsed(now));
            t.lock_delays.retain(|_, until| *until > now);
            if changed || lapsed {
                self.record(&mut t, now);
            }
        }
        let probe = |(id, probe, timeout): (String, Probe, Duration)| {
            let registry = self.clone();
            tokio::spawn(async move {
                let (status, output) = run_probe(&probe, timeout).await;
                registry.probed(&id, status, output);
            })
        };
        due.into_iter().map(probe).collect()
    }

    /// A probe of the agent's check `id` answered; a new status is recorded.
    fn probed(&self, id: &str, status: &str, output: String) {
        let mut t = self.tables.lock().unwrap();
        let index = t.index + 1;
        let Some(check) = t.agent_mut().checks.get_mut(id) else { return };
        check.probing = false;
        let now = Instant::now();
        if check.set(status, output, now, index) {
            self.record(&mut t, now);
        }
    }

    /// Waits, for a blocking query, until the index passes `index` or
    /// `wait` elapses. With [`Limits::blocking_queries`] anonymous ones
    /// already waiting, another is refused at once (429) instead; one that
    /// presents a token (the backend's watch) is not counted, so anonymous
    /// clients cannot starve the cluster's own watch.
    async fn block(&self, params: &QueryParams, presented: &Presented) -> Result<(), Response> {
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
                    return Err(refuse((StatusCode::TOO_MANY_REQUESTS, message)));
                }
            },
        };
        let wait = params.wait.as_deref().and_then(parse_duration).unwrap_or(DEFAULT_WAIT).min(MAX_WAIT);
        let mut rx = self.changes.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|&current| current > index)).await;
        Ok(())
    }
}

/// What Consul answers on ACL endpoints when ACLs are disabled (the
/// registry has no ACL system).
async fn acl_disabled() -> Response {
    (StatusCode::UNAUTHORIZED, "ACL support disabled\n").into_response()
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
        Probe::Ttl(_) | Probe::Fixed => unreachable!("only HTTP and TCP checks are probed"),
    }
}

/// The query parameters the registry reads; Consul ignores the others
/// (stale, consistent, ...) and so does it.
#[derive(Default)]
struct QueryParams {
    index: Option<u64>,
    wait: Option<String>,
    passing: bool,
    recurse: bool,
    raw: bool,
    keys: bool,
    separator: Option<String>,
    cas: Option<u64>,
    flags: Option<u64>,
    acquire: Option<String>,
    release: Option<String>,
    note: Option<String>,
    tags: Vec<String>,
    filter: Option<filter::Filter>,
    service_id: Option<String>,
    enable: Option<bool>,
    reason: Option<String>,
    state: Option<String>,
    /// `peer=`: no peers exist, so a query naming one finds nothing.
    peer: bool,
}

fn bad_request(msg: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, format!("{}\n", msg.into())).into_response()
}

fn with_index(index: u64, resp: impl IntoResponse) -> Response {
    let mut resp = resp.into_response();
    let headers: &mut HeaderMap = resp.headers_mut();
    headers.insert("x-consul-index", HeaderValue::from(index));
    headers.insert("x-consul-knownleader", HeaderValue::from_static("true"));
    headers.insert("x-consul-lastcontact", HeaderValue::from_static("0"));
    resp
}

impl QueryParams {
    /// Parses a query string (percent-decoded); flags like `?passing` have
    /// no value. A datacenter other than this one is Consul's 500, `No path
    /// to datacenter`.
    fn parse(raw: &str) -> Result<Self, Refusal> {
        let bad = |e: String| (StatusCode::BAD_REQUEST, format!("Invalid query parameters: {e}"));
        let mut q = QueryParams::default();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            let num = |v: &str| v.parse::<u64>().map_err(|_| bad(format!("{k}={v:?} is not a number")));
            let flag = |v: &str| match v.to_ascii_lowercase().as_str() {
                "" | "1" | "true" => Ok(true),
                "0" | "false" => Ok(false),
                _ => Err(bad(format!("{k}={v:?} is not a boolean"))),
            };
            match &*k {
                "index" => q.index = Some(num(&v)?),
                "cas" => q.cas = Some(num(&v)?),
                "flags" => q.flags = Some(num(&v)?),
                "wait" => {
                    parse_duration(&v).ok_or_else(|| bad(format!("wait={v:?} is not a duration")))?;
                    q.wait = Some(v.into_owned());
                }
                "passing" => q.passing = flag(&v)?,
                "recurse" => q.recurse = flag(&v)?,
                "raw" => q.raw = flag(&v)?,
                "keys" => q.keys = flag(&v)?,
                "enable" => q.enable = Some(flag(&v)?),
                "separator" => q.separator = Some(v.into_owned()),
                "acquire" => q.acquire = Some(v.into_owned()),
                "release" => q.release = Some(v.into_owned()),
                "note" => q.note = Some(v.into_owned()),
                "reason" => q.reason = Some(v.into_owned()),
                "tag" => q.tags.push(v.into_owned()),
                "service_id" => q.service_id = Some(v.into_owned()),
                "state" => q.state = Some(v.into_owned()),
                "peer" => q.peer = !v.is_empty(),
                "filter" => q.filter = Some(filter::Filter::parse(&v).map_err(|e| (StatusCode::BAD_REQUEST, e))?),
                "dc" if !v.is_empty() && v != DATACENTER => {
                    return Err((StatusCode::INTERNAL_SERVER_ERROR, "No path to datacenter".into()));
                }
                _ => {}
            }
        }
        Ok(q)
    }

    /// Whether `entry` passes `?filter=` (when given).
    fn keeps(&self, entry: &serde_json::Value) -> bool {
        self.filter.as_ref().is_none_or(|f| f.matches(entry))
    }

    /// The entries `?filter=` keeps.
    fn filtered(&self, entries: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
        entries.into_iter().filter(|e| self.keeps(e)).collect()
    }
}

/// Query strings that do not parse (e.g. `index=abc`) are a 400, as in Consul.
impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        QueryParams::parse(parts.uri.query().unwrap_or_default()).map_err(refuse)
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

impl SaveError {
    /// A failed save's answer: the write was not made.
    fn refusal(self) -> Refusal {
        tracing::error!("registry: a write is refused: {self}");
        let status = match self {
            SaveError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            SaveError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, self.to_string())
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

/// A body as Consul decodes it (see [`decode`]), or the answer refusing it.
fn decoded<T: serde::de::DeserializeOwned>(
    body: Result<axum::body::Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, Box<Response>> {
    let body = body.map_err(|e| Box::new(unread_body(e, limit)))?;
    decode::decode(&body).map_err(|e| Box::new(bad_request(e)))
}
