//! The storage node against redis-server, same machine, same run, same
//! client shape: 100-byte values, SET/PUT and GET, concurrency 1, 16 and 64
//! (one connection per in-flight request: unpipelined), and one connection
//! with 64 in flight (pipelined). Both sides persist: the node with
//! `--fsync always` vs Redis `appendfsync always`, and `--fsync periodic:1s`
//! vs `appendfsync everysec`.
//!
//! The node is driven by a minimal ZMTP DEALER written like the minimal RESP
//! client Redis gets (requests written in one go, replies framed and checked
//! for errors, not decoded), so the two servers are compared through equally
//! thin clients; a last column gives the node's throughput through the
//! backend's own `NodeClient` (JSON replies decoded, one task per request).
//!
//! Run with `scripts/bench-node.sh`. Prints a markdown table.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shardscope_backend::node_client::NodeClient;
use shardscope_node::zmtp;
use shardscope_shared::protocol::{Entry, NodeReply, NodeRequest};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const KEYS: usize = 10_000;
const VALUE: usize = 100;
const CELL: Duration = Duration::from_secs(2);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server on {port} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server process, killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A minimal RESP client: commands written in one go, replies read in order.
struct Resp {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
    line: String,
}

impl Resp {
    async fn connect(port: u16) -> Resp {
        let (r, w) = TcpStream::connect(("127.0.0.1", port)).await.unwrap().into_split();
        Resp { reader: BufReader::new(r), writer: w, line: String::new() }
    }

    async fn run(&mut self, cmds: &[Vec<Vec<u8>>]) {
        let mut buf = Vec::new();
        for args in cmds {
            buf.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
            for a in args {
                buf.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
                buf.extend_from_slice(a);
                buf.extend_from_slice(b"\r\n");
            }
        }
        self.writer.write_all(&buf).await.unwrap();
        for _ in cmds {
            self.line.clear();
            self.reader.read_line(&mut self.line).await.unwrap();
            match self.line.as_bytes()[0] {
                b'+' => {}
                b'$' => {
                    let n: i64 = self.line[1..].trim().parse().unwrap();
                    if n >= 0 {
                        let mut body = vec![0; n as usize + 2];
                        self.reader.read_exact(&mut body).await.unwrap();
                    }
                }
                _ => panic!("redis error: {}", self.line),
            }
        }
    }
}

/// A minimal ZMTP DEALER, the twin of [`Resp`]: requests `["", json]`
/// written in one go, replies read in order and checked for errors.
struct Zmtp {
    stream: TcpStream,
    decoder: zmtp::Decoder,
    buf: Vec<u8>,
    items: Vec<zmtp::Item>,
}

impl Zmtp {
    async fn connect(port: u16) -> Zmtp {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut hello = zmtp::greeting().to_vec();
        zmtp::encode_ready("DEALER", &mut hello);
        stream.write_all(&hello).await.unwrap();
        Zmtp { stream, decoder: zmtp::Decoder::new(1 << 30), buf: Vec::new(), items: Vec::new() }
    }

    async fn run(&mut self, requests: &[Vec<u8>]) {
        let mut out = Vec::new();
        for r in requests {
            zmtp::encode_message([&b""[..], r].into_iter(), &mut out);
        }
        self.stream.write_all(&out).await.unwrap();
        let mut replies = 0;
        while replies < requests.len() {
            self.buf.reserve(64 * 1024);
            assert!(self.stream.read_buf(&mut self.buf).await.unwrap() > 0, "the node hung up");
            let used = self.decoder.decode(&self.buf, &mut self.items).unwrap();
            self.buf.drain(..used);
            for item in self.items.drain(..) {
                let zmtp::Item::Message(frames) = item else { continue };
                let reply = frames.last().unwrap();
                assert!(!reply.starts_with(br#"{"error""#), "node error: {}", String::from_utf8_lossy(reply));
                replies += 1;
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Put,
    Get,
}

fn key(i: usize) -> String {
    format!("key:{:06}", i % KEYS)
}

struct Cell {
    ops_per_sec: f64,
    p50_us: u32,
    p99_us: u32,
}

/// Runs `conns` connections, each sending `depth` requests at a time and
/// timing each round, for [`CELL`]. A round takes the connection and gives
/// it back.
async fn measure<C, F, Fut>(conns: Vec<C>, depth: usize, round: F) -> Cell
where
    C: Send + 'static,
    F: Fn(C, usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = C> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, conn) in conns.into_iter().enumerate() {
        let round = round.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut i, mut conn) = (Vec::new(), c * 7919, conn);
            while start.elapsed() < CELL {
                let t = Instant::now();
                conn = round(conn, i).await;
                lat.push(t.elapsed().as_micros() as u32);
                i += depth;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    Cell { ops_per_sec: (lat.len() * depth) as f64 / elapsed.as_secs_f64(), p50_us: pct(0.50), p99_us: pct(0.99) }
}

async fn bench_node(port: u16, op: Op, conns: usize, depth: usize) -> Cell {
    let mut clients = Vec::new();
    for _ in 0..conns {
        clients.push(Zmtp::connect(port).await);
    }
    measure(clients, depth, move |mut conn: Zmtp, i| {
        let value = "x".repeat(VALUE);
        let reqs: Vec<Vec<u8>> = (0..depth)
            .map(|d| match op {
                Op::Put => NodeRequest::Put { key: key(i + d).into(), value: value.as_str().into(), version: None },
                Op::Get => NodeRequest::GetOne { key: key(i + d).into(), versioned: false },
            })
            .map(|r| serde_json::to_vec(&r).unwrap())
            .collect();
        async move {
            conn.run(&reqs).await;
            conn
        }
    })
    .await
}

async fn bench_node_client(endpoint: &str, op: Op, conns: usize, depth: usize) -> Cell {
    let mut clients = Vec::new();
    for _ in 0..conns {
        clients.push(NodeClient::connect(endpoint).await.unwrap());
    }
    measure(clients, depth, move |client: NodeClient, i| async move {
        let value = "x".repeat(VALUE);
        let reqs: Vec<NodeRequest> = (0..depth)
            .map(|d| match op {
                Op::Put => NodeRequest::Put { key: key(i + d).into(), value: value.as_str().into(), version: None },
                Op::Get => NodeRequest::GetOne { key: key(i + d).into(), versioned: false },
            })
            .collect();
        let replies = futures::future::join_all(reqs.iter().map(|r| client.request(r))).await;
        assert!(replies.iter().all(|r| !matches!(r, NodeReply::Error { .. })), "{:?}", replies[0]);
        client
    })
    .await
}

async fn bench_redis(port: u16, op: Op, conns: usize, depth: usize) -> Cell {
    let mut clients = Vec::new();
    for _ in 0..conns {
        clients.push(Resp::connect(port).await);
    }
    measure(clients, depth, move |mut conn: Resp, i| {
        let cmds: Vec<Vec<Vec<u8>>> = (0..depth)
            .map(|d| match op {
                Op::Put => vec![b"SET".to_vec(), key(i + d).into_bytes(), vec![b'x'; VALUE]],
                Op::Get => vec![b"GET".to_vec(), key(i + d).into_bytes()],
            })
            .collect();
        async move {
            conn.run(&cmds).await;
            conn
        }
    })
    .await
}

async fn preload(endpoint: &str, redis_port: u16) {
    let client = NodeClient::connect(endpoint).await.unwrap();
    let mut redis = Resp::connect(redis_port).await;
    let value = "x".repeat(VALUE);
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
        let entries = chunk.iter().map(|&i| Entry::new(key(i), value.as_str())).collect();
        assert!(matches!(client.request(&NodeRequest::PutBatch { entries }).await, NodeReply::Ok { .. }));
        let cmds: Vec<Vec<Vec<u8>>> =
            chunk.iter().map(|&i| vec![b"SET".to_vec(), key(i).into_bytes(), vec![b'x'; VALUE]]).collect();
        redis.run(&cmds).await;
    }
}

#[tokio::main]
async fn main() {
    if std::env::var("SHARDSCOPE_BENCH_NODE").is_err() {
        eprintln!("node_vs_redis: run it with scripts/bench-node.sh (it needs redis-server)");
        return;
    }
    let shapes = [("1", 1, 1), ("16", 16, 1), ("64", 64, 1), ("1 conn x 64 pipelined", 1, 64)];
    println!("| durability (ours / redis) | op | in flight | shardscope ops/s | p50 us | p99 us | redis ops/s | p50 us | p99 us | ours / redis | ours via NodeClient ops/s |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for (ours, theirs) in [("always", "always"), ("periodic:1s", "everysec")] {
        let dir = tempfile::tempdir().unwrap();
        let node_port = free_port();
        let _node = Proc(
            Command::new(env!("CARGO_BIN_EXE_shardscope"))
                .args(["node", "--port", &node_port.to_string(), "--fsync", ours])
                .arg("--data-dir")
                .arg(dir.path().join("node"))
                .env_remove("CONSUL_HTTP_ADDR")
                .env("RUST_LOG", "warn")
                .spawn()
                .unwrap(),
        );
        let redis_port = free_port();
        std::fs::create_dir_all(dir.path().join("redis")).unwrap();
        let _redis = Proc(
            Command::new("redis-server")
                .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1", "--save", ""])
                .args(["--appendonly", "yes", "--appendfsync", theirs])
                .arg("--dir")
                .arg(dir.path().join("redis"))
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server is installed (scripts/setup.sh installs it for tests)"),
        );
        wait_listening(node_port);
        wait_listening(redis_port);
        let endpoint = format!("tcp://127.0.0.1:{node_port}");
        preload(&endpoint, redis_port).await;
        for op in [Op::Put, Op::Get] {
            for (label, conns, depth) in shapes {
                let a = bench_node(node_port, op, conns, depth).await;
                let b = bench_redis(redis_port, op, conns, depth).await;
                let c = bench_node_client(&endpoint, op, conns, depth).await;
                let name = if op == Op::Put { "PUT / SET" } else { "GET" };
                println!(
                    "| {ours} / {theirs} | {name} | {label} | {:.0} | {} | {} | {:.0} | {} | {} | {:.2}x | {:.0} |",
                    a.ops_per_sec,
                    a.p50_us,
                    a.p99_us,
                    b.ops_per_sec,
                    b.p50_us,
                    b.p99_us,
                    a.ops_per_sec / b.ops_per_sec,
                    c.ops_per_sec
                );
            }
        }
    }
}
