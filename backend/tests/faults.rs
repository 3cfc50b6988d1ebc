//! Fault injection in the spirit of Jepsen, with real processes. Writers run
//! a history of PUTs (each of a unique value), DELETEs and GETs over REST and
//! over the WebSocket, one writer per key, while a nemesis kills, pauses and
//! restarts storage nodes and `serve` itself, in the middle of rebalances
//! too. After each fault heals every key must be served again, and a checker
//! verifies the whole history. The guarantees under test:
//!
//! - **G1**: no acknowledged write is lost, no deleted key comes back, every
//!   read returns a value its history allows, and a read after an
//!   acknowledged write never returns an older value;
//! - **G2**: `serve` stopped (SIGTERM) or killed (`kill -9`, mid-join,
//!   mid-leave, mid-change of algorithm) and started again with the same
//!   command comes back to the same cluster (node ids, algorithm), with the
//!   interrupted change finished or rolled back;
//! - **G3**: serve restarts a node process that dies; a node that comes back
//!   on a new port is reconnected; one down past deregistration that comes
//!   back on its data brings no old value back;
//! - **G4**: every key is served again within a bound of the heal (30 s,
//!   `SHARDSCOPE_FAULT_BOUND_SECS`); the actual time is printed.
//!
//! Each nemesis runs on a fresh cluster, so each row of the final table is
//! that nemesis's doing. `SHARDSCOPE_FAULT_NEMESES=none` runs only the
//! control (writers, no fault), `=kill-node,sigterm-serve` a selection;
//! `SHARDSCOPE_FAULT_SOAK=1` more keys and more rounds of every nemesis.
//! serve's and the nodes' logs go to `target/tmp/faults/`. The checker is
//! unit-tested on hand-made histories at the bottom of this file.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::TcpStream;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{node_pid, signal, NodeProcess, Paused, RestartableStack, Rng};
use reqwest::blocking::Client;
use serde_json::{json, Value as Json};
use shardscope_backend::guard::WRITE_HEADER;
use tokio_tungstenite::tungstenite::{self, Message, WebSocket};

// ---------------------------------------------------------------- history

/// What a key holds: a value, or `None` when absent (never written, or deleted).
type Value = Option<String>;

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// REST 200 (404 for a GET or DELETE of an absent key) or a WebSocket
    /// reply `ok`: it happened (a GET's value is known).
    Acked,
    /// Definitely not applied: the connection was refused before the
    /// request was sent.
    Failed,
    /// An error reply (503, 409, 500, ..) or a connection lost with the
    /// request sent: it may or may not have happened, by the time it ended.
    Unknown,
    /// No answer within the client's timeout: it may happen at any later time.
    TimedOut,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Put(String),
    Delete,
    Get,
}

/// One operation of the history. Times are nanoseconds since the test began.
#[derive(Clone, Debug)]
struct Event {
    client: String,
    key: String,
    op: Op,
    issued: u64,
    completed: u64,
    outcome: Outcome,
    /// What a GET that was acknowledged read.
    seen: Value,
    /// The status or error, for errors.
    detail: String,
    /// The node that answered for the key, when serve said.
    node: String,
}

impl Event {
    /// What a write leaves in its key (`None` for a GET).
    fn written(&self) -> Option<Value> {
        match &self.op {
            Op::Put(v) => Some(Some(v.clone())),
            Op::Delete => Some(None),
            Op::Get => None,
        }
    }

    fn line(&self) -> String {
        let op = match &self.op {
            Op::Put(v) => format!("put {v:?}"),
            Op::Delete => "delete".into(),
            Op::Get => "get".into(),
        };
        let outcome = match (self.outcome, &self.op) {
            (Outcome::Acked, Op::Get) => format!("-> {}", show(&self.seen)),
            (Outcome::Acked, _) => "ok".into(),
            (o, _) => format!("{o:?} {}", self.detail).to_lowercase(),
        };
        let node = if self.node.is_empty() { String::new() } else { format!(" @{}", self.node) };
        format!("{}..{} {:<8} {op} {outcome}{node}", secs(self.issued), secs(self.completed), self.client)
    }
}

fn show(v: &Value) -> String {
    v.as_ref().map_or_else(|| "absent".into(), |v| format!("{v:?}"))
}

fn secs(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1e9)
}

/// Nanoseconds since the test began: the one clock of every history.
fn now() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// What the checker found in a history.
#[derive(Debug, Default)]
struct Verdict {
    ops: usize,
    acknowledged: usize,
    unknown: usize,
    failed: usize,
    reads_checked: usize,
    reads_errored: usize,
    violations: usize,
    /// Violations by kind: "lost write", "deleted key came back", ...
    kinds: BTreeMap<&'static str, usize>,
    /// The first few violations, with the key's history.
    examples: Vec<String>,
}

const EXAMPLES: usize = 5;

/// Checks every acknowledged read of `events` against its key's history.
///
/// Let A be the key's last acknowledged write (PUT or DELETE; a DELETE
/// leaves it absent) that completed before the read was issued, or
/// "absent" when there is none. The read may return A's value, or the value
/// of a write that was issued before the read completed and that either
/// completed after A did without being known to fail (an unknown outcome,
/// or an acknowledged write concurrent with the read) or timed out (it may
/// land at any later time). Anything else is a violation. One writer issues
/// each key's operations one after another, so for its own reads "issued
/// before the read completed" is "issued before the read"; the recovery
/// sweeps read concurrently with it, which the concurrent case covers.
fn check(events: &[Event]) -> Verdict {
    let mut verdict = Verdict { ops: events.len(), ..Default::default() };
    let mut by_key: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in events {
        match e.outcome {
            Outcome::Acked => verdict.acknowledged += 1,
            Outcome::Failed => verdict.failed += 1,
            Outcome::Unknown | Outcome::TimedOut => verdict.unknown += 1,
        }
        match (e.op == Op::Get, e.outcome) {
            (true, Outcome::Acked) => verdict.reads_checked += 1,
            (true, Outcome::Unknown | Outcome::TimedOut) => verdict.reads_errored += 1,
            _ => {}
        }
        by_key.entry(&e.key).or_default().push(e);
    }
    let mut shown: Vec<&str> = Vec::new();
    for (key, history) in &mut by_key {
        history.sort_by_key(|e| (e.issued, e.completed));
        let writes: Vec<&Event> =
            history.iter().copied().filter(|e| e.op != Op::Get && e.outcome != Outcome::Failed).collect();
        for read in history.iter().filter(|e| e.op == Op::Get && e.outcome == Outcome::Acked) {
            let base = writes
                .iter()
                .filter(|w| w.outcome == Outcome::Acked && w.completed <= read.issued)
                .max_by_key(|w| w.completed);
            let mut allowed: Vec<Value> = vec![base.and_then(|w| w.written()).flatten()];
            for w in writes.iter().filter(|w| w.issued < read.completed) {
                let after_base = base.is_none_or(|b| w.completed > b.completed);
                if w.outcome == Outcome::TimedOut || after_base {
                    allowed.push(w.written().flatten());
                }
            }
            if allowed.contains(&read.seen) {
                continue;
            }
            let written_before = writes.iter().any(|w| w.written() == Some(read.seen.clone()));
            let kind = match (&read.seen, base.map(|b| &b.op)) {
                (None, _) => "lost write (read absent)",
                (Some(_), Some(Op::Delete)) if written_before => "deleted key came back",
                (Some(_), _) if written_before => "stale value",
                (Some(_), _) => "value never written",
            };
            verdict.violations += 1;
            let seen_kind = verdict.kinds.contains_key(kind);
            *verdict.kinds.entry(kind).or_default() += 1;
            // The first of each kind, then the first others; one per key.
            if (!seen_kind || verdict.examples.len() < EXAMPLES) && !shown.contains(key) {
                shown.push(key);
                verdict.examples.push(describe(key, read, kind, &allowed, history));
            }
        }
    }
    verdict
}

/// A violation in words: the key, the read, what was allowed, and the key's
/// history up to the read (runs of reads that errored in one line each).
fn describe(key: &str, read: &Event, kind: &str, allowed: &[Value], history: &[&Event]) -> String {
    let mut allowed: Vec<String> = allowed.iter().map(show).collect();
    allowed.dedup();
    let mut lines: Vec<String> = Vec::new();
    let mut errored_run: Vec<&Event> = Vec::new();
    let flush = |run: &mut Vec<&Event>, lines: &mut Vec<String>| match run.len() {
        0 => {}
        1 => lines.push(run[0].line()),
        n => {
            let (first, last) = (run[0], run[n - 1]);
            lines.push(format!(
                "{}..{} {n} reads errored, the last: {}",
                secs(first.issued),
                secs(last.completed),
                last.line()
            ));
            run.clear();
        }
    };
    let upto = history.iter().filter(|e| e.issued <= read.completed);
    for e in upto.clone() {
        if e.op == Op::Get && e.outcome != Outcome::Acked {
            errored_run.push(e);
            continue;
        }
        flush(&mut errored_run, &mut lines);
        errored_run.clear();
        let here = if std::ptr::eq(*e, read) { "   <== this read" } else { "" };
        lines.push(format!("{}{here}", e.line()));
    }
    flush(&mut errored_run, &mut lines);
    let shown = &lines[lines.len().saturating_sub(30)..];
    let mut text = format!(
        "{kind}: key {key}: read by {} at {}..{} s returned {}; allowed: {}\n    history of {key} \
         ({} operations up to the read{}):",
        read.client,
        secs(read.issued),
        secs(read.completed),
        show(&read.seen),
        allowed.join(" | "),
        upto.count(),
        if shown.len() < lines.len() { ", the last lines" } else { "" },
    );
    for line in shown {
        text.push_str(&format!("\n      {line}"));
    }
    text
}

// ---------------------------------------------------------------- clients

/// How long a client waits for an answer before calling the op timed out.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

fn http(timeout: Duration) -> Client {
    Client::builder().timeout(timeout).connect_timeout(Duration::from_secs(2)).build().unwrap()
}

/// One key operation through REST.
fn rest_op(http: &Client, url: &str, client: &str, key: &str, op: Op) -> Event {
    let target = format!("{url}/kv/{key}");
    let issued = now();
    let sent = match &op {
        Op::Put(v) => http.put(&target).body(v.clone()).send(),
        Op::Delete => http.delete(&target).send(),
        Op::Get => http.get(&target).send(),
    };
    let mut node = String::new();
    let (outcome, seen, detail) = match sent {
        Err(e) if e.is_connect() => (Outcome::Failed, None, "connection refused".to_string()),
        Err(e) if e.is_timeout() => (Outcome::TimedOut, None, "timed out".to_string()),
        Err(e) => (Outcome::Unknown, None, format!("{e}")),
        Ok(resp) => {
            let status = resp.status().as_u16();
            let header = resp.headers().get("x-shardscope-node").and_then(|h| h.to_str().ok());
            node = header.unwrap_or_default().to_string();
            match (resp.text(), &op, status) {
                (Err(e), _, _) if e.is_timeout() => (Outcome::TimedOut, None, "timed out".to_string()),
                (Err(e), _, _) => (Outcome::Unknown, None, format!("{status}, body lost: {e}")),
                (Ok(body), Op::Get, 200) => (Outcome::Acked, Some(body), String::new()),
                (Ok(_), Op::Get | Op::Delete, 404) => (Outcome::Acked, None, String::new()),
                (Ok(_), Op::Put(_) | Op::Delete, 200) => (Outcome::Acked, None, String::new()),
                (Ok(body), _, _) => (Outcome::Unknown, None, format!("{status} {}", brief(&body))),
            }
        }
    };
    Event { client: client.into(), key: key.into(), op, issued, completed: now(), outcome, seen, detail, node }
}

fn brief(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(160) {
        Some((cut, _)) => format!("{}..", &text[..cut]),
        None => text.to_string(),
    }
}

/// Opens `/ws` on serve at `url` (plain TCP, blocking).
fn ws_connect(url: &str) -> Result<WebSocket<TcpStream>, String> {
    let host = url.trim_start_matches("http://");
    let addr = host.parse().map_err(|e| format!("{host}: {e}"))?;
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let (ws, _) = tungstenite::client(format!("ws://{host}/ws"), stream).map_err(|e| e.to_string())?;
    Ok(ws)
}

fn is_timeout(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io) if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

/// A client of `/ws` that sends one key operation at a time and waits for
/// its reply (skipping pushed events), reconnecting when the socket dies.
struct WsClient {
    url: String,
    ws: Option<WebSocket<TcpStream>>,
    next_id: u64,
}

impl WsClient {
    fn op(&mut self, client: &str, key: &str, op: Op) -> Event {
        let issued = now();
        let ((outcome, seen, detail), node) = self.send(key, &op);
        let node = node.unwrap_or_default();
        Event { client: client.into(), key: key.into(), op, issued, completed: now(), outcome, seen, detail, node }
    }

    /// The op's outcome, and the node that answered for the key.
    fn send(&mut self, key: &str, op: &Op) -> ((Outcome, Value, String), Option<String>) {
        if self.ws.is_none() {
            match ws_connect(&self.url) {
                Ok(ws) => self.ws = Some(ws),
                Err(e) => return ((Outcome::Failed, None, format!("connect: {e}")), None),
            }
        }
        self.next_id += 1;
        let id = self.next_id;
        let msg = match op {
            Op::Put(v) => json!({"type": "put", "id": id, "key": key, "value": v}),
            Op::Delete => json!({"type": "delete", "id": id, "key": key}),
            Op::Get => json!({"type": "get", "id": id, "key": key}),
        };
        let ws = self.ws.as_mut().unwrap();
        if let Err(e) = ws.send(Message::text(msg.to_string())) {
            self.ws = None;
            return ((Outcome::Unknown, None, format!("send: {e}")), None);
        }
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
            let _ = ws.get_ref().set_read_timeout(Some(left));
            match ws.read() {
                Ok(Message::Text(text)) => {
                    let Ok(msg) = serde_json::from_str::<Json>(&text) else { continue };
                    if msg["type"] == "reply" && msg["id"] == id {
                        return (classify_ws(op, &msg["reply"]), msg["node"].as_str().map(str::to_string));
                    }
                }
                Ok(Message::Close(_)) => {
                    self.ws = None;
                    return ((Outcome::Unknown, None, "socket closed".into()), None);
                }
                Ok(_) => {}
                Err(e) if is_timeout(&e) && Instant::now() < deadline => {}
                Err(e) if is_timeout(&e) => {
                    self.ws = None;
                    return ((Outcome::TimedOut, None, "timed out".into()), None);
                }
                Err(e) => {
                    self.ws = None;
                    return ((Outcome::Unknown, None, format!("socket: {e}")), None);
                }
            }
        }
    }
}

/// The outcome a node reply (as the WebSocket relays it) gives an op.
fn classify_ws(op: &Op, reply: &Json) -> (Outcome, Value, String) {
    let not_found = reply["error"] == "not_found";
    match op {
        Op::Get if reply.get("value").is_some() => {
            let value = reply["value"].as_str().map_or_else(|| reply["value"].to_string(), str::to_string);
            (Outcome::Acked, Some(value), String::new())
        }
        Op::Get | Op::Delete if not_found => (Outcome::Acked, None, String::new()),
        Op::Put(_) | Op::Delete if reply["status"] == "ok" => (Outcome::Acked, None, String::new()),
        _ => (Outcome::Unknown, None, brief(&reply.to_string())),
    }
}

/// The writer threads: writer `w` owns the keys `i` with `i % n == w` and
/// runs PUT (40%), DELETE (10%) and GET (50%) on them, one at a time; even
/// writers go through REST, odd ones through a WebSocket each.
struct Writers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<Event>>>,
}

impl Writers {
    fn start(url: &str, keys: &[String], n: usize) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|w| {
                let mine: Vec<String> = keys.iter().skip(w).step_by(n).cloned().collect();
                let (url, stop) = (url.to_string(), stop.clone());
                std::thread::spawn(move || write_loop(w, &url, &mine, &stop))
            })
            .collect();
        Writers { stop, threads }
    }

    /// Stops the writers (each finishes its op in flight); their histories.
    fn stop(mut self) -> Vec<Event> {
        self.stop.store(true, Ordering::SeqCst);
        self.threads.drain(..).flat_map(|t| t.join().unwrap_or_default()).collect()
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn write_loop(w: usize, url: &str, keys: &[String], stop: &AtomicBool) -> Vec<Event> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w as u64 + 1));
    let via_ws = w % 2 == 1;
    let name = format!("w{w}/{}", if via_ws { "ws" } else { "rest" });
    let rest = http(CLIENT_TIMEOUT);
    let mut ws = WsClient { url: url.to_string(), ws: None, next_id: 0 };
    let mut events = Vec::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let key = &keys[rng.next() as usize % keys.len()];
        let op = match rng.next() % 10 {
            0..=3 => Op::Put(format!("w{w}-{seq}")),
            4 => Op::Delete,
            _ => Op::Get,
        };
        seq += 1;
        let event = if via_ws { ws.op(&name, key, op) } else { rest_op(&rest, url, &name, key, op) };
        // Errors come back fast; a writer that got one backs off a little.
        let pause = match event.outcome {
            Outcome::Acked => 3,
            Outcome::Unknown | Outcome::TimedOut => 20,
            Outcome::Failed => 50,
        };
        events.push(event);
        std::thread::sleep(Duration::from_millis(pause));
    }
    events
}

/// Records every message `/ws` pushes (cluster, rebalance_plan,
/// rebalance_progress, rebalance_done, rebalance_error), reconnecting
/// across restarts of serve.
struct Observer {
    events: Arc<Mutex<Vec<Json>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Observer {
    fn start(url: &str) -> Observer {
        let (events, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (e, s, url) = (events.clone(), stop.clone(), url.to_string());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let Ok(mut ws) = ws_connect(&url) else {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                };
                let _ = ws.get_ref().set_read_timeout(Some(Duration::from_millis(200)));
                while !s.load(Ordering::SeqCst) {
                    match ws.read() {
                        Ok(Message::Text(text)) => {
                            if let Ok(msg) = serde_json::from_str::<Json>(&text) {
                                e.lock().unwrap().push(msg);
                            }
                        }
                        Ok(Message::Close(_)) => break,
                        Ok(_) => {}
                        Err(err) if is_timeout(&err) => {}
                        Err(_) => break,
                    }
                }
            }
        });
        Observer { events, stop, thread: Some(thread) }
    }

    /// Where events from now on start.
    fn mark(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// The first event since `from` that `pred` accepts, waiting up to `timeout`.
    fn wait_for(&self, from: usize, timeout: Duration, pred: impl Fn(&Json) -> bool) -> Option<Json> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = self.events.lock().unwrap().iter().skip(from).find(|e| pred(e)) {
                return Some(found.clone());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Events since `from` of one type.
    fn of_type(&self, from: usize, kind: &str) -> Vec<Json> {
        self.events.lock().unwrap().iter().skip(from).filter(|e| e["type"] == kind).cloned().collect()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn is_progress_of(e: &Json, change: &str) -> bool {
    e["type"] == "rebalance_progress"
        && e["progress"]["change"] == change
        && e["progress"]["keys_moved"].as_u64() > Some(0)
}

fn is_done_of(e: &Json, change: &str) -> bool {
    e["type"] == "rebalance_done" && e["progress"]["change"] == change
}

// ---------------------------------------------------------------- the runs

/// The suite's size and bounds (the CI run, or the soak).
struct Config {
    /// Keys the writers work on.
    keys: usize,
    /// Keys written once before the writers start and only read after, so
    /// that rebalances take long enough to be hit in the middle.
    ballast: usize,
    writers: usize,
    /// serve's `--rebalance-rate` (keys/s) and `--rebalance-batch`.
    rate: u64,
    batch: usize,
    /// G4: every key served again within this long of the heal.
    bound: Duration,
    /// Rounds of each nemesis (on one cluster).
    rounds: usize,
    /// Writers run this long before a fault and between steps.
    settle: Duration,
    nemeses: Vec<Nemesis>,
    /// Whether `serve` and `node` take `--deregister-after` (branch `supervise`).
    serve_deregister_after: bool,
    node_deregister_after: bool,
    logs: PathBuf,
}

/// How long a node stays critical before the registry drops it, when the
/// binaries let the test say so.
const DEREGISTER_AFTER: &str = "2s";

impl Config {
    fn from_env() -> Config {
        let soak = std::env::var("SHARDSCOPE_FAULT_SOAK").is_ok_and(|v| v == "1");
        let bound = std::env::var("SHARDSCOPE_FAULT_BOUND_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
        let nemeses = match std::env::var("SHARDSCOPE_FAULT_NEMESES") {
            Ok(list) if list != "all" => {
                let mut chosen = vec![Nemesis::None];
                for slug in list.split(',').map(str::trim).filter(|s| !s.is_empty() && *s != "none") {
                    let n = Nemesis::ALL.into_iter().find(|n| n.slug() == slug);
                    let slugs: Vec<&str> = Nemesis::ALL.iter().map(|n| n.slug()).collect();
                    chosen.push(n.unwrap_or_else(|| panic!("no nemesis {slug:?}; there are {slugs:?}")));
                }
                chosen
            }
            _ => Nemesis::ALL.to_vec(),
        };
        let logs = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("faults");
        let _ = std::fs::remove_dir_all(&logs);
        std::fs::create_dir_all(&logs).unwrap();
        Config {
            keys: if soak { 1000 } else { 200 },
            ballast: if soak { 10_000 } else { 2000 },
            writers: 4,
            rate: if soak { 1500 } else { 300 },
            batch: 50,
            bound: Duration::from_secs(bound),
            rounds: if soak { 3 } else { 1 },
            settle: Duration::from_secs(if soak { 5 } else { 2 }),
            nemeses,
            serve_deregister_after: takes_flag("serve", "--deregister-after"),
            node_deregister_after: takes_flag("node", "--deregister-after"),
            logs,
        }
    }
}

/// Whether `shardscope SUBCOMMAND` has `flag`.
fn takes_flag(subcommand: &str, flag: &str) -> bool {
    let help = std::process::Command::new(common::shardscope_exe()).args([subcommand, "--help"]).output().unwrap();
    String::from_utf8_lossy(&help.stdout).contains(flag)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Nemesis {
    None,
    KillNode,
    NodePastDeregistration,
    SigstopDuringJoin,
    SigtermServe,
    KillServeMidJoin,
    KillServeMidLeave,
    KillServeMidPlacement,
    Churn,
}

impl Nemesis {
    const ALL: [Nemesis; 9] = [
        Nemesis::None,
        Nemesis::KillNode,
        Nemesis::NodePastDeregistration,
        Nemesis::SigstopDuringJoin,
        Nemesis::SigtermServe,
        Nemesis::KillServeMidJoin,
        Nemesis::KillServeMidLeave,
        Nemesis::KillServeMidPlacement,
        Nemesis::Churn,
    ];

    fn slug(self) -> &'static str {
        match self {
            Nemesis::None => "none",
            Nemesis::KillNode => "kill-node",
            Nemesis::NodePastDeregistration => "node-past-deregistration",
            Nemesis::SigstopDuringJoin => "sigstop-during-join",
            Nemesis::SigtermServe => "sigterm-serve",
            Nemesis::KillServeMidJoin => "kill-serve-mid-join",
            Nemesis::KillServeMidLeave => "kill-serve-mid-leave",
            Nemesis::KillServeMidPlacement => "kill-serve-mid-placement",
            Nemesis::Churn => "churn",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Nemesis::None => "none (control)",
            Nemesis::KillNode => "kill -9 a node (serve restarts it)",
            Nemesis::NodePastDeregistration => "kill -9 a node past deregistration, back on its data",
            Nemesis::SigstopDuringJoin => "SIGSTOP a member 10 s during a join",
            Nemesis::SigtermServe => "SIGTERM serve after a join and an algorithm change",
            Nemesis::KillServeMidJoin => "kill -9 serve mid-join",
            Nemesis::KillServeMidLeave => "kill -9 serve mid-leave",
            Nemesis::KillServeMidPlacement => "kill -9 serve mid-change of algorithm",
            Nemesis::Churn => "add and remove nodes",
        }
    }
}

/// One nemesis on its own cluster: serve, an observer of its events, the
/// writers, and everything the checker will read.
struct Run<'a> {
    cfg: &'a Config,
    title: &'static str,
    stack: RestartableStack,
    observer: Observer,
    writers: Option<Writers>,
    /// The writers' keys, then the ballast.
    all_keys: Vec<String>,
    history: Vec<Event>,
    /// Cluster-level violations (G2, G3, G4 beyond reads), in words.
    findings: Vec<String>,
    /// Per heal: how long until every key was served again, or why not.
    recoveries: Vec<Result<Duration, String>>,
    admin: Client,
    sweepers: Vec<Client>,
    log: PathBuf,
    /// Nodes the test started by hand: members until the run is over.
    hand_nodes: Vec<NodeProcess>,
}

/// The row a run adds to the table.
struct Row {
    title: &'static str,
    verdict: Verdict,
    findings: Vec<String>,
    recoveries: Vec<Result<Duration, String>>,
    log: PathBuf,
}

impl<'a> Run<'a> {
    fn start(cfg: &'a Config, nemesis: Nemesis) -> Run<'a> {
        let log = cfg.logs.join(format!("{}.log", nemesis.slug()));
        let (rate, batch) = (cfg.rate.to_string(), cfg.batch.to_string());
        let mut extra = vec!["--rebalance-rate", &rate, "--rebalance-batch", &batch];
        if cfg.serve_deregister_after {
            extra.extend(["--deregister-after", DEREGISTER_AFTER]);
        }
        let stack = RestartableStack::start(&extra, &log).unwrap_or_else(|e| panic!("serve: {e}"));
        let observer = Observer::start(&stack.url);
        let keys: Vec<String> = (0..cfg.keys).map(|i| format!("k{i:04}")).collect();
        let ballast = (0..cfg.ballast).map(|i| format!("b{i:05}"));
        let mut run = Run {
            cfg,
            title: nemesis.title(),
            observer,
            writers: None,
            all_keys: keys.iter().cloned().chain(ballast).collect(),
            history: Vec::new(),
            findings: Vec::new(),
            recoveries: Vec::new(),
            admin: http(Duration::from_secs(120)),
            sweepers: (0..4).map(|_| http(Duration::from_secs(10))).collect(),
            log,
            hand_nodes: Vec::new(),
            stack,
        };
        run.say(&format!("{} ({} keys + {} ballast)", run.stack.command(), cfg.keys, cfg.ballast));
        run.preload();
        run.writers = Some(Writers::start(&run.stack.url, &keys, cfg.writers));
        run
    }

    fn say(&self, what: &str) {
        println!("[faults {:>8} s] {}: {what}", secs(now()), self.title);
    }

    /// Writes every key once (`init-I`, `ballast-I`), eight at a time.
    fn preload(&mut self) {
        let url = &self.stack.url;
        let keys = &self.all_keys;
        let chunks: Vec<&[String]> = keys.chunks(keys.len().div_ceil(8)).collect();
        let events: Vec<Event> = std::thread::scope(|s| {
            let threads: Vec<_> = chunks
                .into_iter()
                .map(|chunk| {
                    s.spawn(move || {
                        let client = http(CLIENT_TIMEOUT);
                        let value = |k: &str| match k.strip_prefix('k') {
                            Some(i) => format!("init-{i}"),
                            None => format!("ballast-{}", &k[1..]),
                        };
                        chunk.iter().map(|k| rest_op(&client, url, "preload", k, Op::Put(value(k)))).collect::<Vec<_>>()
                    })
                })
                .collect();
            threads.into_iter().flat_map(|t| t.join().unwrap()).collect()
        });
        let acked = events.iter().filter(|e| e.outcome == Outcome::Acked).count();
        if acked < events.len() {
            self.findings
                .push(format!("preload: only {acked} of {} PUTs acknowledged on a fresh cluster", events.len()));
        }
        self.history.extend(events);
    }

    /// One GET of each of `keys`, four threads at a time; the events, and the
    /// keys that were not served (an error, not 200 or 404).
    fn sweep_pass(&self, keys: &[String]) -> (Vec<Event>, Vec<String>) {
        let chunks: Vec<&[String]> = keys.chunks(keys.len().div_ceil(self.sweepers.len()).max(1)).collect();
        std::thread::scope(|s| {
            let threads: Vec<_> = chunks
                .into_iter()
                .zip(&self.sweepers)
                .map(|(chunk, client)| {
                    let url = &self.stack.url;
                    s.spawn(move || chunk.iter().map(|k| rest_op(client, url, "sweep", k, Op::Get)).collect::<Vec<_>>())
                })
                .collect();
            let events: Vec<Event> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
            let pending = events.iter().filter(|e| e.outcome != Outcome::Acked).map(|e| e.key.clone()).collect();
            (events, pending)
        })
    }

    /// G4: reads every key until each has been served (200 or 404) once
    /// since `healed` (writers still running), or the bound has passed.
    fn heal(&mut self, healed: u64) {
        let deadline = healed + self.cfg.bound.as_nanos() as u64;
        let mut pending = self.all_keys.clone();
        let mut served_at = healed;
        loop {
            let (events, still) = self.sweep_pass(&pending);
            let served = events.iter().filter(|e| e.outcome == Outcome::Acked);
            served_at = served.map(|e| e.completed).fold(served_at, u64::max);
            let last_error: HashMap<String, String> = events
                .iter()
                .filter(|e| e.outcome != Outcome::Acked)
                .map(|e| (e.key.clone(), e.detail.clone()))
                .collect();
            self.history.extend(events);
            pending = still;
            if pending.is_empty() {
                let took = Duration::from_nanos(served_at - healed);
                self.say(&format!("every key served again {took:.2?} after the heal"));
                self.recoveries.push(match took <= self.cfg.bound {
                    true => Ok(took),
                    false => Err(format!("every key served again only {took:.1?} after the heal")),
                });
                return;
            }
            if now() >= deadline {
                let e = &pending[0];
                let why = format!(
                    "{} of {} keys not served within {:?} of the heal (e.g. {e}: {})",
                    pending.len(),
                    self.all_keys.len(),
                    self.cfg.bound,
                    last_error[e]
                );
                self.say(&why);
                self.recoveries.push(Err(why));
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the writers, reads every key a last time, checks the history.
    fn finish(mut self) -> Row {
        if let Some(writers) = self.writers.take() {
            self.history.extend(writers.stop());
        }
        let (last, _) = self.sweep_pass(&self.all_keys);
        self.history.extend(last);
        let verdict = check(&self.history);
        self.say(&format!(
            "{} ops, {} reads checked, {} violations, {} findings",
            verdict.ops,
            verdict.reads_checked,
            verdict.violations,
            self.findings.len()
        ));
        Row {
            title: self.title,
            verdict,
            findings: std::mem::take(&mut self.findings),
            recoveries: std::mem::take(&mut self.recoveries),
            log: self.log.clone(),
        }
    }

    fn finding(&mut self, what: String) {
        self.say(&format!("FINDING: {what}"));
        self.findings.push(what);
    }

    fn pause(&self) {
        std::thread::sleep(self.cfg.settle);
    }

    fn serve_pid(&self) -> u32 {
        self.stack.pid().expect("serve runs")
    }

    /// `POST /nodes`: the launched node's id.
    fn add_node(&mut self) -> Option<String> {
        match self.admin.post(format!("{}/nodes", self.stack.url)).header(WRITE_HEADER, "1").send() {
            Ok(resp) if resp.status() == 202 => {
                let info: Json = resp.json().unwrap_or_default();
                let id = info["id"].as_str().map(str::to_string);
                self.say(&format!("POST /nodes: {} launched", id.as_deref().unwrap_or("?")));
                id
            }
            Ok(resp) => {
                let status = resp.status();
                self.finding(format!("POST /nodes answered {status}: {}", brief(&resp.text().unwrap_or_default())));
                None
            }
            Err(e) => {
                self.finding(format!("POST /nodes: {e}"));
                None
            }
        }
    }

    /// An administrative request that blocks until its rebalance is done.
    fn admin_call(&mut self, req: reqwest::blocking::RequestBuilder, what: &str) -> bool {
        match req.send() {
            Ok(resp) if resp.status() == 200 => {
                self.say(&format!("{what}: done"));
                true
            }
            Ok(resp) => {
                let status = resp.status();
                self.finding(format!("{what} answered {status}: {}", brief(&resp.text().unwrap_or_default())));
                false
            }
            Err(e) => {
                self.finding(format!("{what}: {e}"));
                false
            }
        }
    }

    fn remove_node(&mut self, id: &str) -> bool {
        let req = self.admin.delete(format!("{}/nodes/{id}", self.stack.url));
        self.admin_call(req, &format!("DELETE /nodes/{id}"))
    }

    fn change_placement(&mut self, spec: &Json) -> bool {
        let req = self.admin.put(format!("{}/placement", self.stack.url)).body(spec.to_string());
        self.admin_call(req, &format!("PUT /placement {spec}"))
    }

    /// Waits for the rebalance `change` (e.g. `join node-4`) to finish.
    fn wait_done(&mut self, from: usize, change: &str) -> bool {
        if self.observer.wait_for(from, Duration::from_secs(60), |e| is_done_of(e, change)).is_some() {
            self.say(&format!("rebalance done: {change}"));
            return true;
        }
        let errors = self.observer.of_type(from, "rebalance_error");
        let first = errors.first().map(|e| e["message"].to_string()).unwrap_or_default();
        self.finding(format!("{change} did not finish within 60 s ({} rebalance_error events {first})", errors.len()));
        false
    }

    /// The cluster as a page sees it on connect: node ids (sorted) and the placement spec.
    fn snapshot(&self) -> Result<(Vec<String>, Json), String> {
        let mut ws = ws_connect(&self.stack.url)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match ws.read() {
                Ok(Message::Text(text)) => {
                    let msg: Json = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                    if msg["type"] == "cluster" {
                        let mut ids: Vec<String> = msg["nodes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|n| n["id"].as_str().map(str::to_string))
                            .collect();
                        ids.sort();
                        return Ok((ids, msg["placement"].clone()));
                    }
                }
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("no cluster message within 10 s".into())
    }

    /// `GET /nodes`.
    fn nodes(&self) -> Vec<Json> {
        let got = self.admin.get(format!("{}/nodes", self.stack.url)).send().and_then(|r| r.json::<Vec<Json>>());
        got.unwrap_or_default()
    }

    /// Waits (until `deadline`) for no rebalance to be running (`/metrics`).
    fn wait_idle(&self, deadline: u64) -> bool {
        loop {
            let metrics = self.admin.get(format!("{}/metrics", self.stack.url)).send().and_then(|r| r.text());
            if metrics.is_ok_and(|m| m.lines().any(|l| l == "shardscope_rebalance_running 0")) {
                return true;
            }
            if now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// G2: after a restart, the interrupted change is finished or rolled
    /// back: no rebalance running, and the cluster is one of `allowed`.
    fn expect_cluster(&mut self, healed: u64, allowed: &[(Vec<String>, Json)]) {
        let deadline = healed + self.cfg.bound.as_nanos() as u64;
        if !self.wait_idle(deadline) {
            self.finding(format!("G2: a rebalance still running {:?} after the restart", self.cfg.bound));
        }
        match self.snapshot() {
            Ok(got) if allowed.contains(&got) => self.say(&format!("cluster after the restart: {got:?}")),
            Ok((ids, placement)) => {
                let allowed: Vec<String> = allowed.iter().map(|(i, p)| format!("{i:?} {p}")).collect();
                self.finding(format!(
                    "G2: after the restart the cluster is {ids:?} {placement}; expected {}",
                    allowed.join(" or ")
                ));
            }
            Err(e) => self.finding(format!("G2: no cluster view after the restart: {e}")),
        }
    }

    /// Starts serve again with the same command, recording a failure.
    fn restart_serve(&mut self) -> bool {
        match self.stack.restart() {
            Ok(()) => {
                self.say("serve started again with the same command");
                true
            }
            Err(e) => {
                self.finding(format!("G2: serve did not start again with the same command: {e}"));
                false
            }
        }
    }
}

// ---------------------------------------------------------------- nemeses

/// Writers only: the harness itself must find nothing here.
fn control(run: &mut Run) {
    run.pause();
    run.pause();
    run.heal(now());
}

/// `kill -9` one of serve's node processes; serve must start it again (G3)
/// and its keys be served again (G4) with nothing lost (G1).
fn kill_node(run: &mut Run) {
    for round in 0..run.cfg.rounds {
        run.pause();
        let id = format!("node-{}", 1 + (round + 1) % 3);
        let Some(old) = node_pid(run.serve_pid(), &id) else {
            run.finding(format!("no process of serve's runs --id {id}"));
            continue;
        };
        signal(old, libc::SIGKILL);
        let killed = now();
        run.say(&format!("kill -9 {id} (pid {old})"));
        run.heal(killed);
        let deadline = killed + run.cfg.bound.as_nanos() as u64;
        loop {
            let restarted = node_pid(run.serve_pid(), &id).filter(|p| *p != old);
            let healthy = run.nodes().iter().any(|n| n["id"] == id.as_str() && n["healthy"] == true);
            if let (Some(pid), true) = (restarted, healthy) {
                run.say(&format!("{id} runs again (pid {pid}) and is healthy"));
                break;
            }
            if now() >= deadline {
                run.finding(format!(
                    "G3: {id} not back within {:?} of kill -9 (a new process: {}, healthy in /nodes: {healthy})",
                    run.cfg.bound,
                    restarted.map_or("none".into(), |p| format!("pid {p}")),
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A node the test started by hand (it joins through the registry) is
/// killed and stays down until the registry has deregistered it: it stays a
/// member (its keys answer 503, no other node answers for them). It comes
/// back on its data on a new port: it must be reconnected there, serve its
/// keys again and bring no old value back (G3, G1).
fn node_past_deregistration(run: &mut Run) {
    let dir = run.stack.data_dir().join("node-x");
    let dir = dir.display().to_string();
    let registry = run.stack.registry.clone();
    let mut args = vec!["--port", "0", "--id", "node-x", "--registry", &registry, "--data-dir", &dir];
    if run.cfg.node_deregister_after {
        args.extend(["--deregister-after", DEREGISTER_AFTER]);
    }
    let token_file = common::node_token_file(run.stack.data_dir());
    let token = std::fs::read_to_string(&token_file).unwrap().trim().to_string();
    let from = run.observer.mark();
    let mut node = NodeProcess::start(&args, Some(&token_file), &run.log);
    run.say(&format!("started node-x by hand at {}", node.endpoint));
    run.wait_done(from, "join node-x");
    for _ in 0..run.cfg.rounds {
        run.pause();
        node.kill9();
        let killed = now();
        run.say(&format!("kill -9 node-x (pid {})", node.pid()));
        if !run.cfg.node_deregister_after {
            // What the registry does once the check has been critical for
            // DeregisterCriticalServiceAfter (30 s when the flag is missing).
            let url = format!("{registry}/v1/agent/service/deregister/node-x");
            let _ = run.admin.put(url).header("X-Consul-Token", &token).send();
            run.say("deregistered node-x through the registry's API (`node` has no --deregister-after)");
        }
        // Deregistered (past --deregister-after), it stays a member: its
        // keys wait for it (503) rather than being answered by nodes that
        // do not hold them.
        let registered = || {
            let url = format!("{registry}/v1/health/service/{}", shardscope_consul::api::NODE_SERVICE);
            let entries: Vec<serde_json::Value> = run.admin.get(url).send().and_then(|r| r.json()).unwrap_or_default();
            entries.iter().any(|e| e["Service"]["ID"] == "node-x")
        };
        while registered() && now() < killed + 15_000_000_000 {
            std::thread::sleep(Duration::from_millis(100));
        }
        if registered() {
            run.finding(format!("node-x still registered 15 s after kill -9 (--deregister-after {DEREGISTER_AFTER})"));
        }
        run.say(&format!("node-x deregistered after {}", secs(now() - killed)));
        match run.nodes().into_iter().find(|n| n["id"] == "node-x") {
            Some(n) if n["healthy"] == false => {}
            other => {
                run.finding(format!("G3: node-x, down and deregistered, should be an unhealthy member: {other:?}"))
            }
        }
        run.pause();
        let healed = now();
        node = NodeProcess::start(&args, Some(&token_file), &run.log);
        run.say(&format!("node-x back on its data at {}", node.endpoint));
        run.heal(healed);
        let listed = run.nodes().into_iter().find(|n| n["id"] == "node-x");
        match listed {
            Some(n) if n["addr"] == node.endpoint.as_str() && n["healthy"] == true => {}
            other => run.finding(format!("G3: node-x came back at {} but /nodes says {other:?}", node.endpoint)),
        }
    }
    run.hand_nodes.push(node);
}

/// A join starts; a member (a source of the moves) is paused with SIGSTOP
/// for 10 s, then resumed: the join must finish and every key be served.
fn sigstop_during_join(run: &mut Run) {
    for round in 0..run.cfg.rounds {
        run.pause();
        let from = run.observer.mark();
        let Some(joiner) = run.add_node() else { continue };
        let change = format!("join {joiner}");
        if run.observer.wait_for(from, Duration::from_secs(20), |e| is_progress_of(e, &change)).is_none() {
            run.finding(format!("no rebalance_progress for {change} within 20 s"));
        }
        let victim = format!("node-{}", 1 + round % 3);
        let Some(pid) = node_pid(run.serve_pid(), &victim) else {
            run.finding(format!("no process of serve's runs --id {victim}"));
            continue;
        };
        {
            let _paused = Paused::new(pid);
            run.say(&format!("SIGSTOP {victim} (pid {pid}) for 10 s"));
            std::thread::sleep(Duration::from_secs(10));
        }
        let healed = now();
        run.say(&format!("SIGCONT {victim}"));
        run.heal(healed);
        run.wait_done(from, &change);
    }
}

/// A join and a change of algorithm, then SIGTERM serve and start it again
/// with the same command: the same nodes and algorithm, every key (G2).
fn sigterm_serve(run: &mut Run) {
    let specs = [
        json!({"algorithm": "jump"}),
        json!({"algorithm": "rendezvous"}),
        json!({"algorithm": "maglev", "table_size": 65537}),
    ];
    for round in 0..run.cfg.rounds {
        run.pause();
        let from = run.observer.mark();
        if let Some(joiner) = run.add_node() {
            run.wait_done(from, &format!("join {joiner}"));
        }
        run.change_placement(&specs[round % specs.len()]);
        let before = run.snapshot().unwrap_or_else(|e| panic!("cluster view: {e}"));
        run.say(&format!("cluster before SIGTERM: {before:?}"));
        run.pause();
        let status = run.stack.sigterm();
        run.say(&format!("SIGTERM serve: {status:?}"));
        if !status.is_some_and(|s| s.success()) {
            run.finding(format!("serve did not exit cleanly on SIGTERM: {status:?}"));
        }
        let healed = now();
        if run.restart_serve() {
            run.heal(healed);
            run.expect_cluster(healed, &[before]);
        }
    }
}

/// What change `kill_serve_mid` interrupts.
#[derive(Clone, Copy)]
enum Change {
    Join,
    Leave,
    Placement,
}

/// Starts a change (join, leave, algorithm), waits until keys are moving,
/// `kill -9` serve and starts it again with the same command: the change
/// is finished or rolled back, and nothing is lost (G2, G1).
fn kill_serve_mid(run: &mut Run, change: Change) {
    let specs = [
        json!({"algorithm": "jump"}),
        json!({"algorithm": "rendezvous"}),
        json!({"algorithm": "maglev", "table_size": 65537}),
        json!({"algorithm": "ring", "vnodes": 160}),
    ];
    for round in 0..run.cfg.rounds {
        run.pause();
        let Ok(before) = run.snapshot() else {
            run.finding("no cluster view before the change".into());
            continue;
        };
        let from = run.observer.mark();
        let (name, after, admin): (String, (Vec<String>, Json), Option<JoinHandle<String>>) = match change {
            Change::Join => {
                let Some(joiner) = run.add_node() else { continue };
                let mut ids = before.0.clone();
                ids.push(joiner.clone());
                ids.sort();
                (format!("join {joiner}"), (ids, before.1.clone()), None)
            }
            Change::Leave => {
                let leaver = before.0[0].clone();
                let ids = before.0.iter().filter(|i| **i != leaver).cloned().collect();
                let req = run.admin.delete(format!("{}/nodes/{leaver}", run.stack.url));
                let call = std::thread::spawn(move || format!("{:?}", req.send().map(|r| r.status())));
                (format!("leave {leaver}"), (ids, before.1.clone()), Some(call))
            }
            Change::Placement => {
                // The next algorithm that is not the current one (a change to
                // the same one would move nothing).
                let spec = (0..specs.len())
                    .map(|i| &specs[(round + i) % specs.len()])
                    .find(|s| s["algorithm"] != before.1["algorithm"])
                    .unwrap()
                    .clone();
                let req = run.admin.put(format!("{}/placement", run.stack.url)).body(spec.to_string());
                let call = std::thread::spawn(move || format!("{:?}", req.send().map(|r| r.status())));
                (format!("placement {}", spec["algorithm"].as_str().unwrap()), (before.0.clone(), spec), Some(call))
            }
        };
        match run.observer.wait_for(from, Duration::from_secs(20), |e| is_progress_of(e, &name)) {
            Some(p) => run.say(&format!(
                "{name}: {} of {} keys moved; kill -9 serve",
                p["progress"]["keys_moved"], p["progress"]["keys_total"]
            )),
            None => run.finding(format!("no rebalance_progress for {name} within 20 s; kill -9 serve anyway")),
        }
        let done_before_kill = run.observer.wait_for(from, Duration::ZERO, |e| is_done_of(e, &name)).is_some();
        run.stack.kill9();
        if done_before_kill {
            run.say(&format!("(the {name} had already finished: not a mid-change kill)"));
        }
        if let Some(call) = admin {
            run.say(&format!("the admin request ended: {}", call.join().unwrap()));
        }
        let healed = now();
        if run.restart_serve() {
            run.heal(healed);
            let allowed = if done_before_kill { vec![after] } else { vec![before, after] };
            run.expect_cluster(healed, &allowed);
        }
    }
}

/// Nodes join and leave one after another while the writers run.
fn churn(run: &mut Run) {
    for _ in 0..run.cfg.rounds {
        for step in 0..2 {
            run.pause();
            let from = run.observer.mark();
            if let Some(joiner) = run.add_node() {
                run.wait_done(from, &format!("join {joiner}"));
            }
            run.pause();
            let ids = run.snapshot().map(|s| s.0).unwrap_or_default();
            if let Some(leaver) = ids.get(step).cloned() {
                run.remove_node(&leaver);
            }
        }
    }
    run.heal(now());
}

// ---------------------------------------------------------------- the suite

fn run_nemesis(cfg: &Config, nemesis: Nemesis) -> Row {
    let mut run = Run::start(cfg, nemesis);
    match nemesis {
        Nemesis::None => control(&mut run),
        Nemesis::KillNode => kill_node(&mut run),
        Nemesis::NodePastDeregistration => node_past_deregistration(&mut run),
        Nemesis::SigstopDuringJoin => sigstop_during_join(&mut run),
        Nemesis::SigtermServe => sigterm_serve(&mut run),
        Nemesis::KillServeMidJoin => kill_serve_mid(&mut run, Change::Join),
        Nemesis::KillServeMidLeave => kill_serve_mid(&mut run, Change::Leave),
        Nemesis::KillServeMidPlacement => kill_serve_mid(&mut run, Change::Placement),
        Nemesis::Churn => churn(&mut run),
    }
    run.finish()
}

fn recovery_cell(recoveries: &[Result<Duration, String>], bound: Duration) -> String {
    if recoveries.is_empty() {
        return "-".into();
    }
    let cells: Vec<String> = recoveries
        .iter()
        .map(|r| match r {
            Ok(d) => format!("{:.1} s", d.as_secs_f64()),
            Err(_) => format!("not within {} s", bound.as_secs()),
        })
        .collect();
    cells.join(", ")
}

#[test]
fn under_faults_no_acknowledged_write_is_lost_and_every_key_is_served_again() {
    let cfg = Config::from_env();
    let started = Instant::now();
    println!(
        "fault suite: {} keys ({} writers, half REST, half WebSocket) + {} ballast, rebalance {} keys/s, bound {:?}, \
         {} round(s); serve --deregister-after: {}, node --deregister-after: {}; logs in {}",
        cfg.keys,
        cfg.writers,
        cfg.ballast,
        cfg.rate,
        cfg.bound,
        cfg.rounds,
        cfg.serve_deregister_after,
        cfg.node_deregister_after,
        cfg.logs.display()
    );
    let mut rows = Vec::new();
    for &nemesis in &cfg.nemeses {
        let row = std::panic::catch_unwind(AssertUnwindSafe(|| run_nemesis(&cfg, nemesis)));
        rows.push(row.unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Row {
                title: nemesis.title(),
                verdict: Verdict::default(),
                findings: vec![format!("the run panicked: {why}")],
                recoveries: Vec::new(),
                log: cfg.logs.join(format!("{}.log", nemesis.slug())),
            }
        }));
    }

    println!("\n## Fault suite ({:.0} s)\n", started.elapsed().as_secs_f64());
    println!(
        "| nemesis | ops | acknowledged | unknown | failed | reads checked | reads errored | violations | \
         time to serve every key again |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let v = &r.verdict;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.title,
            v.ops,
            v.acknowledged,
            v.unknown,
            v.failed,
            v.reads_checked,
            v.reads_errored,
            v.violations + r.findings.len(),
            recovery_cell(&r.recoveries, cfg.bound)
        );
    }
    let mut failures = Vec::new();
    for r in &rows {
        let late: Vec<&String> = r.recoveries.iter().filter_map(|x| x.as_ref().err()).collect();
        if r.verdict.violations == 0 && r.findings.is_empty() && late.is_empty() {
            continue;
        }
        println!("\n### {} (log: {})\n", r.title, r.log.display());
        if r.verdict.violations > 0 {
            println!("{} reads the history does not allow: {:?}", r.verdict.violations, r.verdict.kinds);
            for e in &r.verdict.examples {
                println!("- {e}");
            }
        }
        for f in &r.findings {
            println!("- {f}");
        }
        for l in &late {
            println!("- G4: {l}");
        }
        let kinds: Vec<String> = r.verdict.kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let mut what = kinds;
        what.extend(r.findings.iter().map(|f| f.split(':').next().unwrap_or(f).to_string()));
        what.extend(late.iter().map(|_| "G4: not every key served within the bound".to_string()));
        failures.push(format!("{}: {}", r.title, what.join("; ")));
    }
    assert!(failures.is_empty(), "the fault suite found violations:\n  {}", failures.join("\n  "));
}

// ---------------------------------------------------------------- the checker on small histories

#[cfg(test)]
mod checker {
    use super::*;

    /// An op by client `c` on key "k" from `t0` to `t1`.
    fn ev(c: &str, op: Op, t0: u64, t1: u64, outcome: Outcome, seen: Option<&str>) -> Event {
        Event {
            client: c.into(),
            key: "k".into(),
            op,
            issued: t0,
            completed: t1,
            outcome,
            seen: seen.map(str::to_string),
            detail: String::new(),
            node: String::new(),
        }
    }

    fn put(v: &str, t0: u64, t1: u64, outcome: Outcome) -> Event {
        ev("w0", Op::Put(v.into()), t0, t1, outcome, None)
    }

    fn get(t0: u64, t1: u64, seen: Option<&str>) -> Event {
        ev("w0", Op::Get, t0, t1, Outcome::Acked, seen)
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        let v = check(&[put("v1", 0, 1, Outcome::Acked), get(2, 3, None)]);
        assert_eq!(v.violations, 1);
        assert_eq!(v.kinds["lost write (read absent)"], 1);
        assert!(v.examples[0].contains("key k") && v.examples[0].contains("put \"v1\""), "{}", v.examples[0]);
    }

    #[test]
    fn a_deleted_key_that_comes_back_is_caught() {
        let delete = ev("w0", Op::Delete, 2, 3, Outcome::Acked, None);
        let v = check(&[put("v1", 0, 1, Outcome::Acked), delete, get(4, 5, Some("v1"))]);
        assert_eq!(v.violations, 1);
        assert_eq!(v.kinds["deleted key came back"], 1);
    }

    #[test]
    fn an_unknown_writes_value_is_allowed_and_so_is_the_last_acknowledged_one() {
        let history = [put("v1", 0, 1, Outcome::Acked), put("v2", 2, 3, Outcome::Unknown), get(4, 5, Some("v2"))];
        assert_eq!(check(&history).violations, 0);
        let history = [put("v1", 0, 1, Outcome::Acked), put("v2", 2, 3, Outcome::Unknown), get(4, 5, Some("v1"))];
        assert_eq!(check(&history).violations, 0);
        let history =
            [put("v1", 0, 1, Outcome::Acked), ev("w0", Op::Delete, 2, 3, Outcome::Unknown, None), get(4, 5, None)];
        assert_eq!(check(&history).violations, 0);
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_caught() {
        let v = check(&[put("v1", 0, 1, Outcome::Acked), put("v2", 2, 3, Outcome::Acked), get(4, 5, Some("v1"))]);
        assert_eq!(v.violations, 1);
        assert_eq!(v.kinds["stale value"], 1);
    }

    #[test]
    fn an_unknown_write_overwritten_by_an_acknowledged_one_may_not_be_read() {
        let v = check(&[put("v1", 0, 1, Outcome::Unknown), put("v2", 2, 3, Outcome::Acked), get(4, 5, Some("v1"))]);
        assert_eq!(v.violations, 1);
    }

    #[test]
    fn a_timed_out_write_may_land_at_any_later_time() {
        let history = [put("v1", 0, 20, Outcome::TimedOut), put("v2", 21, 22, Outcome::Acked), get(30, 31, Some("v1"))];
        assert_eq!(check(&history).violations, 0);
        // But not before it was issued.
        let history = [put("v0", 0, 1, Outcome::Acked), get(2, 3, Some("v1")), put("v1", 4, 24, Outcome::TimedOut)];
        assert_eq!(check(&history).violations, 1);
    }

    #[test]
    fn a_failed_write_and_a_value_nobody_wrote_are_never_read() {
        let v = check(&[put("v1", 0, 1, Outcome::Failed), get(2, 3, Some("v1"))]);
        assert_eq!(v.violations, 1);
        assert_eq!((v.failed, v.acknowledged), (1, 1));
        let v = check(&[put("v1", 0, 1, Outcome::Acked), get(2, 3, Some("forged"))]);
        assert_eq!(v.kinds["value never written"], 1);
    }

    #[test]
    fn a_read_concurrent_with_a_write_may_see_either_value() {
        let slow = put("v2", 2, 10, Outcome::Acked);
        for seen in ["v1", "v2"] {
            let sweep = ev("sweep", Op::Get, 5, 6, Outcome::Acked, Some(seen));
            assert_eq!(check(&[put("v1", 0, 1, Outcome::Acked), slow.clone(), sweep]).violations, 0, "{seen}");
        }
    }

    #[test]
    fn a_read_that_errored_is_counted_not_checked() {
        let errored = ev("w0", Op::Get, 2, 3, Outcome::Unknown, None);
        let v = check(&[put("v1", 0, 1, Outcome::Acked), errored]);
        assert_eq!((v.violations, v.reads_checked, v.reads_errored, v.unknown), (0, 0, 1, 1));
    }

    #[test]
    fn a_key_never_written_reads_absent() {
        assert_eq!(check(&[get(0, 1, None)]).violations, 0);
        assert_eq!(check(&[get(0, 1, Some("x"))]).violations, 1);
    }
}
