//! The storage node's memory and connection limits, against a real
//! `shardscope node` process and raw ZMTP peers over loopback TCP: peers
//! that ask and never read are paused (the node's RSS stays bounded and a
//! slow reader still gets every reply), connections past
//! `--max-connections` are closed at once, `GET_ALL` of a store past the
//! reply limit is `too_large`, and peers holding more than
//! `--max-buffered-mib` are shed.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::{rss, NodeProcess};
use serde_json::{json, Value};
use shardscope_node::server::PAUSE_OUTPUT;
use shardscope_node::zmtp;
use shardscope_shared::protocol::MAX_GET_ALL_BYTES;

/// Longest any read in these tests waits: a bound on the test, not a timing.
const PATIENCE: Duration = Duration::from_secs(30);

/// A DEALER peer spoken by hand: blocking reads and writes.
struct Peer {
    stream: TcpStream,
    decoder: zmtp::Decoder,
    buf: Vec<u8>,
    items: Vec<zmtp::Item>,
}

impl Peer {
    fn connect(endpoint: &str) -> Peer {
        Peer::over(TcpStream::connect(endpoint.trim_start_matches("tcp://")).unwrap())
    }

    fn over(stream: TcpStream) -> Peer {
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut hello = zmtp::greeting().to_vec();
        zmtp::encode_ready("DEALER", &mut hello);
        (&stream).write_all(&hello).unwrap();
        Peer { stream, decoder: zmtp::Decoder::new(1 << 30), buf: Vec::new(), items: Vec::new() }
    }

    /// Queues one request `["", payload]` without waiting for its reply.
    fn send(&mut self, payload: &[u8]) {
        let mut wire = Vec::new();
        zmtp::encode_message([&b""[..], payload].into_iter(), &mut wire);
        self.stream.write_all(&wire).unwrap();
    }

    /// The next reply's JSON.
    fn recv(&mut self) -> Value {
        serde_json::from_slice(&self.recv_raw()).unwrap()
    }

    /// The next reply, as sent.
    fn recv_raw(&mut self) -> Vec<u8> {
        loop {
            if let Some(pos) = self.items.iter().position(|i| matches!(i, zmtp::Item::Message(_))) {
                let zmtp::Item::Message(mut frames) = self.items.remove(pos) else { unreachable!() };
                return frames.pop().unwrap();
            }
            let mut chunk = vec![0; 1 << 16];
            let n = self.stream.read(&mut chunk).expect("a reply");
            assert!(n > 0, "the node closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
            let used = self.decoder.decode(&self.buf, &mut self.items).unwrap();
            self.buf.drain(..used);
        }
    }

    fn ask(&mut self, request: Value) -> Value {
        self.send(request.to_string().as_bytes());
        self.recv()
    }
}

/// Whether the node has closed `stream`: reads (discarding) until the end,
/// a reset, or [`PATIENCE`] without either (then `false`).
fn closed_by_node(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut sink = vec![0; 1 << 16];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => return true,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return false,
            Err(e) => panic!("reading: {e}"),
        }
    }
}

fn start_node(dir: &Path, extra: &[&str]) -> NodeProcess {
    let data = dir.join("data");
    let mut args = vec!["--port", "0", "--fsync", "never", "--data-dir", data.to_str().unwrap()];
    args.extend_from_slice(extra);
    NodeProcess::start(&args, None, &dir.join("node.log"))
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("node.log")).unwrap_or_default()
}

const MIB: usize = 1 << 20;

#[test]
fn peers_that_ask_and_never_read_are_paused_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), &[]);
    let mut client = Peer::connect(&node.endpoint);
    // A 2 MiB store: every GET_ALL reply is 2 MiB.
    let value = "v".repeat(64 * 1024);
    for i in 0..32 {
        assert_eq!(client.ask(json!({"op":"PUT","key":format!("k{i:02}"),"value":value}))["status"], "ok");
    }
    client.send(json!({"op":"GET_ALL"}).to_string().as_bytes());
    let whole = client.recv_raw();
    let reply_len = whole.len();
    assert!(reply_len > 2 * MIB);
    let baseline = rss(node.pid());
    let ops = |c: &mut Peer| c.ask(json!({"op":"STATS"}))["stats"]["ops"].as_u64().unwrap();
    let ops_before = ops(&mut client);

    // Two peers ask for 60 GET_ALLs each (240 MiB of replies) and read nothing.
    const ASKS: usize = 60;
    let mut greedy: Vec<Peer> = (0..2).map(|_| Peer::connect(&node.endpoint)).collect();
    let get_all = json!({"op":"GET_ALL"}).to_string();
    for peer in &mut greedy {
        for _ in 0..ASKS {
            peer.send(get_all.as_bytes());
        }
    }
    // Meanwhile another client is answered, correctly; the node's memory is sampled.
    let mut peak = 0;
    for round in 0..40 {
        let key = format!("k{:02}", round % 32);
        assert_eq!(client.ask(json!({"op":"GET_ONE","key":key})), json!({"key":key,"value":value}));
        if round % 10 == 0 {
            assert_eq!(client.ask(json!({"op":"GET_ALL"}))["collection"].as_array().unwrap().len(), 32);
        }
        peak = peak.max(rss(node.pid()));
    }
    // Each greedy peer holds at most the pause mark plus one reply (in
    // buffers that may have grown to twice that); unbounded, it would be
    // 120 MiB each.
    let bound = baseline + greedy.len() * 2 * (PAUSE_OUTPUT + reply_len) + 64 * MIB;
    assert!(peak < bound, "RSS peaked at {} MiB, over {} MiB", peak / MIB, bound / MIB);
    // They were paused, not served to the end: most of their requests wait.
    let served = ops(&mut client) - ops_before - 40 - 4 - 1;
    assert!(served < (greedy.len() * ASKS / 2) as u64, "{served} of the greedy peers' requests answered");

    // A peer that does read, however late, gets every reply; one that
    // leaves instead leaves nothing behind.
    drop(greedy.pop());
    for _ in 0..ASKS {
        assert!(greedy[0].recv_raw() == whole, "every reply is the whole store");
    }
    assert_eq!(client.ask(json!({"op":"GET_ONE","key":"k07"})), json!({"key":"k07","value":value}));
    assert!(!log_of(dir.path()).contains("buffer budget"), "nobody was disconnected");
}

#[test]
fn connections_past_the_limit_are_closed_at_once_and_the_rest_keep_working() {
    const LIMIT: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), &["--max-connections", &LIMIT.to_string()]);
    let mut peers: Vec<Peer> = (0..LIMIT).map(|_| Peer::connect(&node.endpoint)).collect();
    for (i, peer) in peers.iter_mut().enumerate() {
        assert_eq!(peer.ask(json!({"op":"PUT","key":format!("k{i}"),"value":"v"}))["status"], "ok");
    }
    // Past the limit the TCP connect still succeeds (as the registry's TCP
    // check needs), and the node closes the connection without a word.
    let addr = node.endpoint.trim_start_matches("tcp://").to_string();
    for _ in 0..4 {
        let mut extra = TcpStream::connect(&addr).unwrap();
        let mut hello = zmtp::greeting().to_vec();
        zmtp::encode_ready("DEALER", &mut hello);
        let _ = extra.write_all(&hello);
        assert!(closed_by_node(&mut extra), "a connection past the limit is closed");
    }
    // The ones in keep working.
    for (i, peer) in peers.iter_mut().enumerate() {
        assert_eq!(peer.ask(json!({"op":"GET_ONE","key":format!("k{i}")}))["value"], "v");
    }
    // Once two leave (the node sees them go by the time it answers one
    // still in), a newcomer gets in.
    peers.truncate(LIMIT - 2);
    assert_eq!(peers[0].ask(json!({"op":"GET_ONE","key":"k0"}))["value"], "v");
    let mut newcomer = Peer::connect(&node.endpoint);
    assert_eq!(newcomer.ask(json!({"op":"GET_ONE","key":"k0"}))["value"], "v");
    assert_eq!(peers[0].ask(json!({"op":"GET_ONE","key":"k1"}))["value"], "v");
    let log = log_of(dir.path());
    assert_eq!(log.matches("at the connection limit").count(), 1, "one warning per burst:\n{log}");
}

#[test]
fn get_all_over_the_reply_limit_is_too_large_and_a_small_store_is_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), &[]);
    let mut client = Peer::connect(&node.endpoint);
    // The seeds' GET_ALL, exactly.
    for (k, v) in [("b", "2"), ("a", "1")] {
        assert_eq!(client.ask(json!({"op":"PUT","key":k,"value":v})), json!({"status":"ok"}));
    }
    let small = json!({"collection":[{"key":"a","value":"1"},{"key":"b","value":"2"}]});
    assert_eq!(client.ask(json!({"op":"GET_ALL"})), small);
    // Five 4 MiB values: 20 MiB, past the 16 MiB reply limit.
    let big = "x".repeat(4 * MIB - 64);
    for i in 0..5 {
        assert_eq!(client.ask(json!({"op":"PUT","key":format!("big{i}"),"value":big}))["status"], "ok");
    }
    assert!(5 * big.len() > MAX_GET_ALL_BYTES);
    let refused = client.ask(json!({"op":"GET_ALL"}));
    assert_eq!(refused["error"], "too_large", "{}", &refused.to_string()[..200.min(refused.to_string().len())]);
    assert!(refused["message"].as_str().unwrap().contains("SCAN"), "{refused}");
    // The node keeps serving, SCAN pages through it all, and nothing changed.
    assert_eq!(client.ask(json!({"op":"GET_ONE","key":"a"})), json!({"key":"a","value":"1"}));
    let (mut cursor, mut keys) = (Value::Null, 0);
    loop {
        let page = client.ask(json!({"op":"SCAN","limit":1000,"cursor":cursor}));
        keys += page["page"].as_array().unwrap().len();
        cursor = page["next"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(keys, 7);
    // Back under the limit, GET_ALL answers as before.
    for i in 0..5 {
        assert_eq!(client.ask(json!({"op":"DELETE","key":format!("big{i}")})), json!({"status":"ok"}));
    }
    assert_eq!(client.ask(json!({"op":"GET_ALL"})), small);
}

#[test]
fn peers_holding_more_than_the_buffer_budget_are_shed_largest_first() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(dir.path(), &["--max-buffered-mib", "64"]);
    let mut client = Peer::connect(&node.endpoint);
    assert_eq!(client.ask(json!({"op":"PUT","key":"k","value":"v"}))["status"], "ok");
    // Six peers each send 12 MiB of a 30 MiB message (each within the
    // message limit) and stop: 72 MiB held, over the 64 MiB budget.
    // Each says whether the node hung up on it; the ones it keeps wait
    // until the node stops.
    let (hung_up, hang_ups) = std::sync::mpsc::channel();
    for _ in 0..6 {
        let mut hog = Peer::connect(&node.endpoint);
        let hung_up = hung_up.clone();
        std::thread::spawn(move || {
            let mut wire = vec![0x02];
            wire.extend_from_slice(&(30 * MIB as u64).to_be_bytes());
            wire.resize(wire.len() + 12 * MIB, b'x');
            let _ = hog.stream.write_all(&wire);
            let _ = hung_up.send(closed_by_node(&mut hog.stream));
        });
    }
    assert_eq!(hang_ups.recv_timeout(PATIENCE), Ok(true), "a peer over the budget is disconnected");
    // The small client was not, and is served.
    assert_eq!(client.ask(json!({"op":"GET_ONE","key":"k"})), json!({"key":"k","value":"v"}));
    let log = log_of(dir.path());
    let shed =
        log.lines().find(|l| l.contains("buffer budget")).unwrap_or_else(|| panic!("no shedding logged:\n{log}"));
    assert!(shed.contains("127.0.0.1:"), "the log names the peer: {shed}");
}
