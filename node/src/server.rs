//! The node's ZeroMQ ROUTER: one thread running an event loop (mio) over
//! the listening socket and every peer, speaking ZMTP 3 ([`crate::zmtp`]).
//!
//! Every incoming message is `[envelope.., payload]`: a REQ client's
//! envelope is one empty delimiter frame, a DEALER client may add its own
//! frames (the backend sends a request id). The reply goes back on the same
//! connection as `[envelope.., reply]`, so each client gets its envelope
//! back, as from a libzmq ROUTER.
//!
//! Group commit: each round reads every peer with data waiting, applies
//! their requests in order, makes the writes durable with one log commit,
//! and only then sends the replies. A peer whose frames exceed twice the
//! message limit is dropped (as libzmq's `ZMQ_MAXMSGSIZE` does); a payload
//! up to that gets a `too_large` reply.
//!
//! Memory is bounded whatever peers do:
//! - A peer with [`PAUSE_OUTPUT`] of replies unsent is paused: none of its
//!   requests are served, nor more of them read, until it takes its
//!   replies, so a peer that asks and never reads holds at most that plus
//!   one reply, and one that reads slowly is just served slowly.
//! - At most `max_connections` peers: more are accepted and closed at once.
//! - All peers together hold at most `max_buffered` bytes (what they sent
//!   that is not yet served, replies not yet taken); past it the peer
//!   holding the most is disconnected, until the rest fit.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use shardscope_consul::api::{
    format_duration, id_taken, CheckDefinition, ServiceEntry, ServiceRegistration, INSTANCE_META, NODE_SERVICE,
};
use shardscope_consul::client::{Consul, HttpError};
use shardscope_shared::protocol::{parse_request, ErrorCode, NodeReply, MAX_MESSAGE};

use crate::store::Store;
use crate::wal::FsyncPolicy;
use crate::zmtp;

/// How to run a node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Interface to bind (loopback by default).
    pub bind: String,
    /// TCP port of the ROUTER socket; 0 takes one the system picks.
    pub port: u16,
    /// Directory for the node's files.
    pub data_dir: PathBuf,
    /// Service id in the registry (e.g. `node-3`); `None` is `node-` and the
    /// first 8 hex digits of the instance id kept in the data dir.
    pub id: Option<String>,
    /// Host other machines reach this node at (defaults to `bind`).
    pub advertise: Option<String>,
    /// Where to register; `None` runs the node unregistered.
    pub registry: Option<Consul>,
    /// When acknowledged writes reach the disk.
    pub fsync: FsyncPolicy,
    /// How long deleted keys' tombstones are kept.
    pub tombstone_grace: Duration,
    /// How long the registry keeps this node registered while its check is
    /// critical (`DeregisterCriticalServiceAfter`).
    pub deregister_after: Duration,
    /// Most peers connected at once; a connection past it is closed as soon
    /// as it is accepted.
    pub max_connections: usize,
    /// Most bytes all peers together may hold in the node: what they sent
    /// that is not yet served, and replies they have not yet taken.
    pub max_buffered: usize,
}

/// [`NodeConfig::max_connections`] unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// [`NodeConfig::max_buffered`] unless told otherwise: 1 GiB.
pub const DEFAULT_MAX_BUFFERED: usize = 1 << 30;

impl NodeConfig {
    /// The registration this node makes: service `shardscope-node`, its id,
    /// address and port, its `instance` (in `Meta`), and a TCP check on the
    /// ZeroMQ port every second; a node critical for `deregister_after` is
    /// deregistered by the registry.
    pub fn registration(&self, instance: &str) -> ServiceRegistration {
        let host = self.advertise.clone().unwrap_or_else(|| self.bind.clone());
        ServiceRegistration {
            id: self.id.clone(),
            name: NODE_SERVICE.to_string(),
            address: host.clone(),
            port: self.port,
            meta: [(INSTANCE_META.to_string(), instance.to_string())].into(),
            check: Some(CheckDefinition {
                tcp: Some(format!("{host}:{}", self.port)),
                interval: Some("1s".into()),
                timeout: Some("1s".into()),
                deregister_critical_service_after: Some(format_duration(self.deregister_after)),
                status: Some("passing".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// Runs a node until `shutdown` completes: recovers the data, binds, prints
/// `listening ID tcp://HOST:PORT` on stdout (how a supervisor learns the port
/// of a node started with port 0), registers, and registers again whenever
/// the registration vanishes; on shutdown deregisters, answers what is in
/// flight, and returns. A registry that refuses the registration (another
/// live node holds the id, or the token is missing) is an error.
pub async fn run(mut config: NodeConfig, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let store = Store::open(&config.data_dir, config.fsync, config.tombstone_grace)?;
    tracing::info!(keys = store.len(), data_dir = %config.data_dir.display(), "data recovered");
    let instance = crate::identity::instance_id(&config.data_dir)?;
    let listener = std::net::TcpListener::bind((config.bind.as_str(), config.port))?;
    listener.set_nonblocking(true)?;
    config.port = listener.local_addr()?.port();
    let id = config.id.get_or_insert_with(|| crate::identity::default_id(&instance)).clone();
    let endpoint = format!("tcp://{}", listener.local_addr()?);
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening {id} {endpoint}")?;
        out.flush()?;
    }
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
    let stop = Arc::new(AtomicBool::new(false));
    tracing::info!(%endpoint, "node listening");
    let worker_stop = stop.clone();
    let worker = std::thread::Builder::new().name("zmtp-router".into()).spawn(move || {
        Router {
            poll,
            listener: TcpListener::from_std(listener),
            conns: HashMap::new(),
            next: FIRST_CONN,
            store,
            chunk: vec![0; 64 * 1024],
            items: Vec::new(),
            max_connections: config.max_connections,
            max_buffered: config.max_buffered,
            refused: 0,
            accept_more: false,
        }
        .run(&worker_stop)
    })?;

    match &config.registry {
        Some(consul) => {
            let registration = config.registration(&instance);
            register_with_retries(consul, &registration).await?;
            tracing::info!(%id, registry = consul.base(), "registered");
            let (stopping, stop_keeping) = tokio::sync::watch::channel(false);
            let keeper = tokio::spawn(keep_registered(consul.clone(), registration, stop_keeping));
            shutdown.await;
            // The keeper finishes any registration it has begun before the
            // node deregisters, so it cannot bring the node back after.
            stopping.send_replace(true);
            let _ = keeper.await;
            match consul.deregister(&id).await {
                Ok(()) => tracing::info!(%id, "deregistered"),
                Err(e) => tracing::warn!(%id, "could not deregister: {e:#}"),
            }
        }
        None => shutdown.await,
    }
    stop.store(true, Ordering::SeqCst);
    waker.wake()?;
    let outcome = tokio::task::spawn_blocking(move || worker.join()).await?;
    outcome.map_err(|_| anyhow::anyhow!("the node's loop panicked"))??;
    tracing::info!("node stopped");
    Ok(())
}

const LISTENER: Token = Token(0);
const WAKE: Token = Token(1);
const FIRST_CONN: usize = 2;
/// Bytes read from one peer per round, so that one busy peer cannot starve
/// the others (the rest is read next round).
const READ_PER_ROUND: usize = 1 << 20;
/// Unsent reply bytes at which a peer is paused: none of its requests are
/// served, and no more read, until it takes its replies.
pub const PAUSE_OUTPUT: usize = 8 << 20;
/// Connections accepted per round, so that a flood of them (say, past the
/// limit, each closed at once) cannot keep the loop from serving the peers
/// it has.
const ACCEPT_PER_ROUND: usize = 64;
/// Capacity a peer's buffers keep once emptied; more is given back.
const KEEP_CAPACITY: usize = 64 * 1024;
/// How long a stopping node keeps sending replies already made.
const DRAIN: Duration = Duration::from_secs(2);
/// How often a registered node checks that its registration is still there.
const RESYNC: Duration = Duration::from_secs(1);
/// How long one re-registration may take.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);

/// One peer: its socket, what it sent that is not yet decoded or not yet
/// served, and what we have not yet sent it.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    decoder: zmtp::Decoder,
    inbuf: Vec<u8>,
    /// Decoded, not yet served: the peer was paused partway through a read.
    pending: VecDeque<zmtp::Item>,
    /// What `pending` holds, in bytes.
    pending_bytes: usize,
    outbuf: Vec<u8>,
    sent: usize,
    /// Read stopped before the socket was drained: read again next round.
    more_to_read: bool,
    closed: bool,
}

/// What an item holds, in bytes (each frame counting 32 more).
fn item_bytes(item: &zmtp::Item) -> usize {
    match item {
        zmtp::Item::Message(frames) => frames.iter().map(|f| f.len() + 32).sum(),
        zmtp::Item::Ping(context) => context.len(),
    }
}

impl Conn {
    fn unsent(&self) -> usize {
        self.outbuf.len() - self.sent
    }

    /// Too much of its output is unsent: serve and read nothing of it until
    /// it takes some.
    fn paused(&self) -> bool {
        self.unsent() >= PAUSE_OUTPUT
    }

    /// The next round has something to do for it.
    fn ready(&self) -> bool {
        !self.paused() && (self.more_to_read || !self.pending.is_empty())
    }

    /// Bytes of the node's memory this peer holds.
    fn held(&self) -> usize {
        self.inbuf.capacity() + self.decoder.held() + self.pending_bytes + self.outbuf.capacity()
    }

    /// Reads what is there (up to a round's share) through `chunk` and
    /// decodes it into `pending` (by way of `items`).
    fn read(&mut self, chunk: &mut [u8], items: &mut Vec<zmtp::Item>) {
        self.more_to_read = false;
        let mut taken = 0;
        while taken < READ_PER_ROUND {
            match self.stream.read(chunk) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(n) => {
                    self.inbuf.extend_from_slice(&chunk[..n]);
                    taken += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = true;
                    break;
                }
            }
        }
        self.more_to_read = taken >= READ_PER_ROUND;
        match self.decoder.decode(&self.inbuf, items) {
            Ok(used) => {
                self.inbuf.drain(..used);
                if self.inbuf.is_empty() {
                    self.inbuf.shrink_to(KEEP_CAPACITY);
                }
            }
            Err(e) => {
                tracing::debug!(peer = %self.peer, "dropping a peer: {e}");
                // Sent after this round's commit, with the replies before it.
                zmtp::encode_error(&e.0, &mut self.outbuf);
                self.closed = true;
            }
        }
        for item in items.drain(..) {
            self.pending_bytes += item_bytes(&item);
            self.pending.push_back(item);
        }
    }

    /// Sends what it can without blocking.
    fn flush(&mut self) {
        while self.sent < self.outbuf.len() {
            match self.stream.write(&self.outbuf[self.sent..]) {
                Ok(0) => {
                    self.closed = true;
                    break;
                }
                Ok(n) => self.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.closed = true;
                    break;
                }
            }
        }
        if self.sent == self.outbuf.len() {
            self.outbuf.clear();
            self.outbuf.shrink_to(KEEP_CAPACITY);
            self.sent = 0;
        } else if self.sent > (1 << 20) {
            self.outbuf.drain(..self.sent);
            self.sent = 0;
        }
    }
}

/// The node's event loop: one thread, every peer, the store.
struct Router {
    poll: Poll,
    listener: TcpListener,
    conns: HashMap<Token, Conn>,
    next: usize,
    store: Store,
    /// Where reads land before they are appended to a peer's buffer.
    chunk: Vec<u8>,
    /// Where a peer's decoded items land before they join its `pending`.
    items: Vec<zmtp::Item>,
    max_connections: usize,
    max_buffered: usize,
    /// Connections closed at the limit since the last one accepted.
    refused: u64,
    /// The listener may have connections waiting.
    accept_more: bool,
}

impl Router {
    /// Serves until `stop` is set: each round reads every ready peer,
    /// applies their requests in order, commits the log once, then sends
    /// the replies. After `stop`, answers what has arrived and syncs.
    fn run(mut self, stop: &AtomicBool) -> anyhow::Result<()> {
        self.poll.registry().register(&mut self.listener, LISTENER, Interest::READABLE)?;
        let mut events = Events::with_capacity(1024);
        loop {
            let busy = self.accept_more || self.conns.values().any(Conn::ready);
            let timeout = if busy { Some(Duration::ZERO) } else { self.store.sync_due_in() };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_more = true,
                    WAKE => {}
                    token => {
                        if let Some(conn) = self.conns.get_mut(&token) {
                            if event.is_writable() {
                                conn.flush();
                            }
                            if event.is_readable() || event.is_read_closed() || event.is_error() {
                                conn.more_to_read = true;
                            }
                        }
                    }
                }
            }
            let stopping = stop.load(Ordering::SeqCst);
            self.serve_round(stopping)?;
            // After the round, so that the places of peers that left are free.
            if self.accept_more {
                self.accept()?;
            }
            self.store.maintain();
            if self.store.sync_due_in() == Some(Duration::ZERO) {
                self.store.sync()?;
            }
            if stopping {
                self.drain();
                self.store.sync()?;
                return Ok(());
            }
        }
    }

    /// Accepts up to [`ACCEPT_PER_ROUND`] connections; `accept_more` says
    /// whether more may be waiting.
    fn accept(&mut self) -> anyhow::Result<()> {
        for _ in 0..ACCEPT_PER_ROUND {
            match self.listener.accept() {
                // Closed at once, so the listen backlog never fills.
                Ok((stream, peer)) if self.conns.len() >= self.max_connections => {
                    drop(stream);
                    if self.refused == 0 {
                        tracing::warn!(
                            limit = self.max_connections,
                            %peer,
                            "at the connection limit: closing new connections until some close"
                        );
                    }
                    self.refused += 1;
                }
                Ok((mut stream, peer)) => {
                    if self.refused > 0 {
                        tracing::info!(refused = self.refused, "below the connection limit again: accepting");
                        self.refused = 0;
                    }
                    let _ = stream.set_nodelay(true);
                    let token = Token(self.next);
                    self.next += 1;
                    self.poll.registry().register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
                    let mut outbuf = zmtp::greeting().to_vec();
                    zmtp::encode_ready("ROUTER", &mut outbuf);
                    let mut conn = Conn {
                        stream,
                        peer,
                        decoder: zmtp::Decoder::new(2 * MAX_MESSAGE),
                        inbuf: Vec::new(),
                        pending: VecDeque::new(),
                        pending_bytes: 0,
                        outbuf,
                        sent: 0,
                        more_to_read: true,
                        closed: false,
                    };
                    conn.flush();
                    self.conns.insert(token, conn);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    self.accept_more = false;
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // Out of descriptors and the like: keep serving who is here.
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    self.accept_more = false;
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Reads every peer with something to read, applies the requests in
    /// arrival order (a peer's until it is paused), commits once, then sends
    /// the replies. Replies are queued as they are made but sent only after
    /// the commit: nothing is flushed between the two.
    fn serve_round(&mut self, stopping: bool) -> anyhow::Result<()> {
        let (chunk, items) = (&mut self.chunk, &mut self.items);
        for conn in self.conns.values_mut() {
            if conn.pending.is_empty() && !conn.paused() && (conn.more_to_read || stopping) {
                conn.read(chunk, items);
            }
            while !conn.paused() {
                let Some(item) = conn.pending.pop_front() else { break };
                conn.pending_bytes -= item_bytes(&item);
                match item {
                    zmtp::Item::Message(frames) => {
                        if let Some(reply) = serve_one(&mut self.store, frames) {
                            zmtp::encode_message(reply.iter().map(Vec::as_slice), &mut conn.outbuf);
                        }
                    }
                    zmtp::Item::Ping(context) => zmtp::encode_command("PONG", &context, &mut conn.outbuf),
                }
            }
        }
        if let Err(e) = self.store.commit() {
            // Nothing here was acknowledged; stop rather than ack what the log lacks.
            tracing::error!("write-ahead log failed: {e}; stopping");
            return Err(e.into());
        }
        let mut gone = Vec::new();
        let mut held = 0usize;
        for (&token, conn) in self.conns.iter_mut() {
            if conn.unsent() > 0 {
                conn.flush();
            }
            if conn.closed {
                gone.push(token);
            } else {
                held = held.saturating_add(conn.held());
            }
        }
        if held > self.max_buffered {
            gone.extend(self.shed(held));
        }
        for token in gone {
            if let Some(mut conn) = self.conns.remove(&token) {
                let _ = self.poll.registry().deregister(&mut conn.stream);
            }
        }
        Ok(())
    }

    /// Marks peers closed, the one holding the most first, until those left
    /// hold at most the budget (of `held` in all); returns them.
    fn shed(&mut self, mut held: usize) -> Vec<Token> {
        let mut by_size: Vec<(usize, Token)> =
            self.conns.iter().filter(|(_, c)| !c.closed).map(|(&t, c)| (c.held(), t)).collect();
        by_size.sort_unstable_by(|a, b| b.cmp(a));
        let mut shed = Vec::new();
        for (size, token) in by_size {
            if held <= self.max_buffered {
                break;
            }
            if let Some(conn) = self.conns.get_mut(&token) {
                tracing::warn!(
                    peer = %conn.peer,
                    held = size,
                    all_peers = held,
                    budget = self.max_buffered,
                    "peers hold more than the node's buffer budget: disconnecting the one holding the most"
                );
                conn.closed = true;
                held = held.saturating_sub(size);
                shed.push(token);
            }
        }
        shed
    }

    /// Sends the replies still queued, for a little while.
    fn drain(&mut self) {
        let deadline = Instant::now() + DRAIN;
        let mut events = Events::with_capacity(64);
        while self.conns.values().any(|c| c.unsent() > 0 && !c.closed) && Instant::now() < deadline {
            let _ = self.poll.poll(&mut events, Some(Duration::from_millis(50)));
            for conn in self.conns.values_mut() {
                conn.flush();
            }
        }
    }
}

/// Handles one message `[envelope.., payload]`; the reply is
/// `[envelope.., reply]`. `None` for a message with no frames.
fn serve_one(store: &mut Store, mut frames: Vec<Vec<u8>>) -> Option<Vec<Vec<u8>>> {
    let payload = frames.pop()?;
    let reply = if payload.len() > MAX_MESSAGE {
        let message = format!("message of {} bytes is over the {MAX_MESSAGE}-byte limit", payload.len());
        NodeReply::error(ErrorCode::TooLarge, message)
    } else {
        match parse_request(&payload) {
            Ok(req) => store.apply(req),
            Err(e) => NodeReply::error(ErrorCode::BadRequest, format!("malformed request: {e}")),
        }
    };
    frames.push(serde_json::to_vec(&reply).expect("replies always serialize"));
    Some(frames)
}

/// The instance of a node registered as `entry`.
fn instance_of(entry: &ServiceEntry) -> Option<&str> {
    entry.service.meta.as_ref()?.get(INSTANCE_META).map(String::as_str)
}

/// Another live node instance holds the id (see [`claimable`]).
#[derive(Debug)]
struct IdTaken(String);

impl std::fmt::Display for IdTaken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for IdTaken {}

/// Whether `reg` may take its id, by what the registry lists: free, held by
/// this same instance (a restart on the same data), or held by one whose
/// checks fail. An id another live instance holds is [`IdTaken`] (a real
/// Consul agent would replace its registration silently; the embedded
/// registry refuses it too).
fn claimable(entries: &[ServiceEntry], reg: &ServiceRegistration) -> Result<(), IdTaken> {
    let id = reg.id.as_deref().unwrap_or(&reg.name);
    let Some(held) = entries.iter().find(|e| e.service.id == id) else { return Ok(()) };
    let ours = reg.meta.get(INSTANCE_META).map(String::as_str);
    if instance_of(held) == ours || held.checks.iter().any(|c| c.status != "passing") {
        return Ok(());
    }
    let address = if held.service.address.is_empty() { &held.node.address } else { &held.service.address };
    Err(IdTaken(id_taken(id, address, held.service.port, instance_of(held))))
}

/// Whether a registration failed for good: the id is taken, or the
/// registry refused the request itself (403 without the token, 409, 400).
fn refused_for_good(e: &anyhow::Error) -> bool {
    e.downcast_ref::<IdTaken>().is_some() || e.downcast_ref::<HttpError>().is_some_and(|h| h.status.is_client_error())
}

/// Checks that the node is still registered every [`RESYNC`] and registers
/// it again when it is not (the registry restarted empty, or someone
/// deregistered it), as a Consul agent re-syncs its services. An unreachable
/// registry is retried quietly, and so is an id another live instance
/// took meanwhile (logged: this node is then not the one registered).
/// Returns once `stopping` is set.
async fn keep_registered(consul: Consul, reg: ServiceRegistration, mut stopping: tokio::sync::watch::Receiver<bool>) {
    let id = reg.id.clone().unwrap_or_default();
    let ours = reg.meta.get(INSTANCE_META).cloned();
    let mut failures = 0u64;
    loop {
        tokio::select! {
            () = tokio::time::sleep(RESYNC) => {}
            _ = stopping.wait_for(|&s| s) => return,
        }
        let listed = tokio::select! {
            listed = consul.health_entries(&reg.name) => listed,
            _ = stopping.wait_for(|&s| s) => return,
        };
        let outcome = match listed {
            Ok(entries) if entries.iter().any(|e| e.service.id == id && instance_of(e) == ours.as_deref()) => Ok(false),
            Ok(entries) => match claimable(&entries, &reg) {
                Err(taken) => Err(anyhow::Error::new(taken)),
                // Not cancelled by `stopping`: the node deregisters only after this.
                Ok(()) => match tokio::time::timeout(REGISTER_TIMEOUT, consul.register(&reg)).await {
                    Ok(registered) => registered.map(|()| true),
                    Err(_) => Err(anyhow::anyhow!("no answer within {REGISTER_TIMEOUT:?}")),
                },
            },
            Err(e) => Err(e),
        };
        match outcome {
            Ok(registered_again) => {
                if failures > 0 {
                    tracing::info!(%id, registry = consul.base(), "registry reachable again");
                }
                if registered_again {
                    tracing::info!(%id, registry = consul.base(), "registration was gone: registered again");
                }
                failures = 0;
            }
            Err(e) => {
                failures += 1;
                // The first failure and then about one a minute are warnings.
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(%id, registry = consul.base(), failures, "cannot check the registration: {e:#}");
                } else {
                    tracing::debug!(%id, "cannot check the registration: {e:#}");
                }
            }
        }
    }
}

/// Registers, retrying for up to 5 s while the registry comes up; first
/// checks that no other live node instance holds the id. A refusal
/// ([`refused_for_good`]) is not retried.
async fn register_with_retries(consul: &Consul, reg: &ServiceRegistration) -> anyhow::Result<()> {
    let mut last = None;
    for _ in 0..25 {
        let attempt = async {
            claimable(&consul.health_entries(&reg.name).await?, reg)?;
            consul.register(reg).await
        };
        match attempt.await {
            Ok(()) => return Ok(()),
            Err(e) if refused_for_good(&e) => return Err(e.context(format!("registering with {}", consul.base()))),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last.unwrap().context(format!("registering with {}", consul.base())))
}
