//! The storage node as a real process: the seeds' protocol from pyzmq (a
//! libzmq client with no Rust in it), durability across `kill -9` under each
//! fsync policy, and malformed input that must get error replies while the
//! node keeps serving.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{shardscope_exe, terminate};
use shardscope_backend::node_client::NodeClient;
use shardscope_shared::protocol::{ErrorCode, NodeReply, NodeRequest, MAX_MESSAGE};
use zeromq::{Socket, SocketRecv, SocketSend, ZmqMessage};

/// A node process on a fresh loopback port, killed on drop.
struct Node {
    child: Child,
    endpoint: String,
}

impl Node {
    /// A node on a port the system picks.
    fn start(dir: &Path, fsync: &str) -> Node {
        Node::start_on(dir, fsync, 0)
    }

    /// A node on `port` (0: any); returns once it says it listens.
    fn start_on(dir: &Path, fsync: &str, port: u16) -> Node {
        let mut child = Command::new(shardscope_exe())
            .args(["node", "--port", &port.to_string(), "--fsync", fsync])
            .arg("--data-dir")
            .arg(dir)
            .env_remove("CONSUL_HTTP_ADDR")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let (_, endpoint) = common::node_ready(&mut child);
        Node { child, endpoint }
    }

    fn port(&self) -> u16 {
        self.endpoint.rsplit(':').next().unwrap().parse().unwrap()
    }

    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn pyzmq_client_speaks_the_seed_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), "always");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../node/tests/seed_client.py");
    let out = Command::new("python3").arg(script).arg(&node.endpoint).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "pyzmq client failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("passed, 0 failed"), "{stdout}");
}

/// Streams PUTs and DELETEs with many in flight, kills the node with SIGKILL
/// in the middle, restarts it, and checks every acknowledged operation.
async fn acknowledged_writes_survive_kill_9(fsync: &str) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), fsync);
    let port = node.port();
    let client = NodeClient::connect(&node.endpoint).await.unwrap();
    // key -> Some(value) for an acknowledged PUT, None for an acknowledged DELETE.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(HashMap::<String, Option<String>>::new()));
    // The one operation per writer in flight when the node died: it may or
    // may not have been applied, so either outcome is correct for its key.
    let in_flight = std::sync::Arc::new(std::sync::Mutex::new(HashMap::<String, Option<String>>::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, acked, in_flight) = (client.clone(), acked.clone(), in_flight.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..100_000 {
                let key = format!("w{w}-k{}", i % 500);
                let req = if i % 7 == 6 {
                    NodeRequest::Delete { key: key.as_str().into(), version: None }
                } else {
                    NodeRequest::Put { key: key.as_str().into(), value: format!("v{i}").into(), version: None }
                };
                let outcome = match &req {
                    NodeRequest::Put { value, .. } => Some(value.to_text_lossy()),
                    _ => None,
                };
                match client.request(&req).await {
                    NodeReply::Ok { .. } => {
                        acked.lock().unwrap().insert(key, outcome);
                    }
                    // Deleting a key that is not there is fine; it stays absent.
                    NodeReply::Error { error: ErrorCode::NotFound, .. } => {
                        acked.lock().unwrap().insert(key, None);
                    }
                    _ => {
                        // The node died: this one is unknown; stop writing.
                        in_flight.lock().unwrap().insert(key, outcome);
                        return;
                    }
                }
            }
        }));
    }
    // Let a good stream of writes through, then kill -9 mid-stream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 2000 {
        assert!(Instant::now() < deadline, "{fsync}: 2000 writes not acknowledged within 60 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.kill_9();
    for w in writers {
        w.await.unwrap();
    }
    drop(client);
    let acked = acked.lock().unwrap().clone();
    let in_flight = in_flight.lock().unwrap().clone();
    assert!(acked.len() >= 2000);

    let node = Node::start_on(dir.path(), fsync, port);
    let client = NodeClient::connect(&node.endpoint).await.unwrap();
    let mut checked = 0;
    for (key, want) in &acked {
        let got = client.request(&NodeRequest::GetOne { key: key.as_str().into(), versioned: false }).await;
        let found = match got {
            NodeReply::Value { value, .. } => Some(value.to_text_lossy()),
            NodeReply::Error { error: ErrorCode::NotFound, .. } => None,
            other => panic!("{fsync}: {key}: unexpected reply {other:?}"),
        };
        let maybe = in_flight.get(key);
        assert!(
            &found == want || maybe == Some(&found),
            "{fsync}: {key}: acknowledged {want:?} (in flight {maybe:?}), found {found:?}"
        );
        checked += 1;
    }
    println!("{fsync}: {checked} acknowledged keys checked after kill -9");
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_kill_9_with_fsync_always() {
    acknowledged_writes_survive_kill_9("always").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_kill_9_with_periodic_fsync() {
    acknowledged_writes_survive_kill_9("periodic:50ms").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn acknowledged_writes_survive_kill_9_without_fsync() {
    acknowledged_writes_survive_kill_9("never").await;
}

/// A raw DEALER: sends `["", frames..]`, returns the reply's last frame.
struct Raw(zeromq::DealerSocket);

impl Raw {
    async fn connect(endpoint: &str) -> Raw {
        let mut s = zeromq::DealerSocket::new();
        s.connect(endpoint).await.unwrap();
        Raw(s)
    }

    async fn ask(&mut self, frames: Vec<Vec<u8>>) -> serde_json::Value {
        let mut all = vec![Bytes::new()];
        all.extend(frames.into_iter().map(Bytes::from));
        self.0.send(ZmqMessage::try_from(all).unwrap()).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(10), self.0.recv()).await.expect("a reply").unwrap();
        serde_json::from_slice(reply.into_vec().last().unwrap()).unwrap()
    }
}

fn error_of(reply: &serde_json::Value) -> &str {
    reply["error"].as_str().unwrap_or_else(|| panic!("expected an error reply, got {reply}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_input_gets_error_replies_and_the_node_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), "always");
    let mut raw = Raw::connect(&node.endpoint).await;
    assert_eq!(raw.ask(vec![br#"{"op":"PUT","key":"k","value":"v"}"#.to_vec()]).await["status"], "ok");

    let cases: &[(&str, &[u8], &str)] = &[
        ("truncated JSON", br#"{"op":"PUT","key":"k""#, "bad_request"),
        ("not JSON", b"\xff\xfe\x00garbage", "bad_request"),
        ("wrong key type", br#"{"op":"PUT","key":7,"value":"x"}"#, "bad_request"),
        ("missing value", br#"{"op":"PUT","key":"k"}"#, "bad_request"),
        ("unknown op", br#"{"op":"EXPLODE"}"#, "bad_request"),
        ("no op", br#"{"key":"k"}"#, "bad_request"),
        ("invalid base64", br#"{"op":"PUT","key":"k","value":{"encoding":"binary","data":"***"}}"#, "bad_request"),
        ("unknown encoding", br#"{"op":"PUT","key":"k","value":{"encoding":"rot13","data":"x"}}"#, "bad_request"),
        ("scan limit 0", br#"{"op":"SCAN","limit":0}"#, "bad_request"),
        ("empty message", b"", "bad_request"),
    ];
    for (name, payload, want) in cases {
        let reply = raw.ask(vec![payload.to_vec()]).await;
        assert_eq!(error_of(&reply), *want, "{name}: {reply}");
        assert!(!reply["message"].as_str().unwrap().is_empty(), "{name}: the error names the problem");
    }
    // Multi-frame garbage: the envelope comes back, the last frame is answered.
    let reply = raw.ask(vec![b"junk".to_vec(), vec![0, 159, 146, 150], b"{".to_vec()]).await;
    assert_eq!(error_of(&reply), "bad_request");
    // Oversize key and value: too_large, nothing stored.
    let big_key = serde_json::json!({"op":"PUT","key":"k".repeat(70_000),"value":"v"}).to_string();
    assert_eq!(error_of(&raw.ask(vec![big_key.into_bytes()]).await), "too_large");
    let huge = vec![b' '; MAX_MESSAGE + 10];
    assert_eq!(error_of(&raw.ask(vec![huge]).await), "too_large");
    // A frame past the transport limit: the node drops that peer, nobody else.
    let mut abuser = zeromq::DealerSocket::new();
    abuser.connect(&node.endpoint).await.unwrap();
    let monster = vec![Bytes::new(), Bytes::from(vec![b'x'; 2 * MAX_MESSAGE + 1024])];
    abuser.send(ZmqMessage::try_from(monster).unwrap()).await.unwrap();
    // Nothing changed, and the node still answers.
    let reply = raw.ask(vec![br#"{"op":"GET_ONE","key":"k"}"#.to_vec()]).await;
    assert_eq!(reply, serde_json::json!({"key":"k","value":"v"}));
    let stats = raw.ask(vec![br#"{"op":"STATS"}"#.to_vec()]).await;
    assert_eq!(stats["stats"]["keys"], 1);
    let mut fresh = Raw::connect(&node.endpoint).await;
    assert_eq!(fresh.ask(vec![br#"{"op":"GET_ALL"}"#.to_vec()]).await["collection"].as_array().unwrap().len(), 1);
}

/// The backend's client outlives a node restart: what was in flight fails
/// with `unavailable`, and the next request connects again.
#[tokio::test(flavor = "multi_thread")]
async fn the_backends_client_reconnects_after_a_node_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), "always");
    let port = node.port();
    let client = NodeClient::connect(&node.endpoint).await.unwrap();
    let put = NodeRequest::Put { key: "k".into(), value: "v".into(), version: None };
    assert_eq!(client.request(&put).await, NodeReply::ok());
    node.kill_9();
    let down = client.request(&NodeRequest::GetOne { key: "k".into(), versioned: false }).await;
    let NodeReply::Error { error: ErrorCode::Unavailable, message, .. } = down else { panic!("{down:?}") };
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    let _again = Node::start_on(dir.path(), "always", port);
    let back = client.request(&NodeRequest::GetOne { key: "k".into(), versioned: false }).await;
    assert_eq!(back, NodeReply::Value { key: "k".into(), value: "v".into(), version: None });
}

/// Raw bytes at the node's port: whatever they claim, nothing big is
/// allocated, the offender is disconnected, and everyone else is served.
#[tokio::test(flavor = "multi_thread")]
async fn forged_and_foreign_bytes_on_the_wire_are_refused() {
    use shardscope_node::zmtp;
    use std::io::{Read, Write};

    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), "always");
    let addr = format!("127.0.0.1:{}", node.port());
    // Reads until the node hangs up (a close, or a reset when our bytes
    // were left unread); returns what it sent.
    let hung_up = |mut s: std::net::TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        match s.read_to_end(&mut got) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the node did not close the connection: {e}"),
        }
        got
    };
    let handshake = || {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        let mut hello = zmtp::greeting().to_vec();
        zmtp::encode_ready("DEALER", &mut hello);
        s.write_all(&hello).unwrap();
        s
    };

    // A frame header claiming 2^62 bytes (zmq.rs would try to reserve them).
    let mut forged = handshake();
    let mut header = vec![0x02];
    header.extend_from_slice(&(1u64 << 62).to_be_bytes());
    forged.write_all(&header).unwrap();
    let answer = hung_up(forged);
    assert!(String::from_utf8_lossy(&answer).contains("ERROR"), "the node says why before closing");
    // Two million empty frames of one message: each counts 32 bytes against
    // the 32 MiB limit, so they cannot pile up either.
    let mut frames = handshake();
    let flood: Vec<u8> = std::iter::repeat_n([0x01u8, 0x00], 1 << 21).flatten().collect();
    let _ = frames.write_all(&flood);
    hung_up(frames);
    // Not ZeroMQ at all, and a ZeroMQ peer of a socket type a ROUTER does not serve.
    let mut http = std::net::TcpStream::connect(&addr).unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    hung_up(http);
    let mut publisher = std::net::TcpStream::connect(&addr).unwrap();
    let mut hello = zmtp::greeting().to_vec();
    zmtp::encode_ready("PUB", &mut hello);
    publisher.write_all(&hello).unwrap();
    hung_up(publisher);
    // A peer that stops halfway through its greeting holds nothing up.
    let mut stalled = std::net::TcpStream::connect(&addr).unwrap();
    stalled.write_all(&zmtp::greeting()[..20]).unwrap();

    let mut raw = Raw::connect(&node.endpoint).await;
    assert_eq!(raw.ask(vec![br#"{"op":"PUT","key":"k","value":"v"}"#.to_vec()]).await["status"], "ok");
    let stats = raw.ask(vec![br#"{"op":"STATS"}"#.to_vec()]).await;
    assert_eq!(stats["stats"]["keys"], 1, "nothing the offenders sent was stored");
    drop(stalled);
}

#[test]
fn sigterm_exits_zero_after_answering() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), "always");
    let status = terminate(&mut node.child);
    assert!(status.success(), "{status:?}");
}
