//! Rebalance and gateway speed on a real `shardscope serve`:
//! - 1,000,000 keys with 100-byte values over 4 nodes, then a 5th node
//!   joins: wall time from `POST /nodes` to `rebalance_done`, and keys/s;
//! - GET throughput through the gateway (REST, and the WebSocket with many
//!   requests in flight) against the same GETs sent to the nodes directly.
//!
//! Run with `scripts/bench-rebalance.sh`. Prints a markdown table.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use shardscope_backend::guard::WRITE_HEADER;
use shardscope_backend::node_client::NodeClient;
use shardscope_shared::placement::{build, Member, PlacementSpec};
use shardscope_shared::protocol::{ClientMsg, Entry, NodeInfo, NodeReply, NodeRequest, ServerMsg};

const KEYS: usize = 1_000_000;
const VALUE: usize = 100;
const CELL: Duration = Duration::from_secs(3);
const IN_FLIGHT: usize = 64;

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the serve process this bench started; SIGTERM
        // lets it stop its nodes.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

fn key(i: usize) -> String {
    format!("key:{i:07}")
}

async fn nodes(url: &str) -> Vec<NodeInfo> {
    reqwest::get(format!("{url}/nodes")).await.unwrap().json().await.unwrap()
}

/// `IN_FLIGHT` concurrent loops of `get(i)` for [`CELL`]; returns ops/s.
async fn rate<F, Fut>(get: F) -> f64
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..IN_FLIGHT {
        let get = get.clone();
        tasks.push(tokio::spawn(async move {
            let (mut n, mut i) = (0usize, t * 7919);
            while start.elapsed() < CELL {
                get(i % KEYS).await;
                n += 1;
                i += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    if std::env::var("SHARDSCOPE_BENCH_REBALANCE").is_err() {
        eprintln!("rebalance: run it with scripts/bench-rebalance.sh");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardscope"))
        .args(["serve", "--port", "0", "--registry-port", "0", "--nodes", "4"])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("CONSUL_HTTP_ADDR")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let serve = Serve(child);
    let url = stdout
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("ShardScope serving at ").map(|r| r.split_whitespace().next().unwrap().to_string())
        })
        .expect("serve reports its URL")
        .trim_end_matches('/')
        .to_string();

    // Preload 1M keys straight into their owners (set-up, not measured).
    let members: Vec<NodeInfo> = nodes(&url).await;
    let placement =
        build(&PlacementSpec::Ring { vnodes: 160 }, &members.iter().map(|n| Member::new(&n.id)).collect::<Vec<_>>());
    let mut clients = std::collections::HashMap::new();
    for n in &members {
        clients.insert(n.id.clone(), NodeClient::connect(&n.addr).await.unwrap());
    }
    let value = "x".repeat(VALUE);
    let preload = Instant::now();
    let mut by_owner: std::collections::HashMap<String, Vec<Entry>> = Default::default();
    for i in 0..KEYS {
        let k = key(i);
        let owner = placement.owner_of(k.as_bytes()).unwrap().to_string();
        let batch = by_owner.entry(owner.clone()).or_default();
        batch.push(Entry::new(k, value.as_str()));
        if batch.len() == 5000 {
            let entries = std::mem::take(batch);
            let reply = clients[&owner].request(&NodeRequest::PutBatch { entries }).await;
            assert!(matches!(reply, NodeReply::Ok { .. }), "{reply:?}");
        }
    }
    for (owner, entries) in by_owner {
        clients[&owner].request(&NodeRequest::PutBatch { entries }).await;
    }
    eprintln!("preloaded {KEYS} keys in {:.1} s", preload.elapsed().as_secs_f64());

    // Gateway vs direct GETs, 64 in flight.
    let http = reqwest::Client::new();
    let rest = {
        let (http, url) = (http.clone(), url.clone());
        rate(move |i| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let r = http.get(format!("{url}/kv/{}", key(i))).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
        })
        .await
    };
    let direct = {
        let clients = std::sync::Arc::new(clients.clone());
        let placement = std::sync::Arc::new(placement);
        rate(move |i| {
            let (clients, placement) = (clients.clone(), placement.clone());
            async move {
                let k = key(i);
                let owner = placement.owner_of(k.as_bytes()).unwrap().to_string();
                let r = clients[&owner].request(&NodeRequest::GetOne { key: k.into(), versioned: false }).await;
                assert!(matches!(r, NodeReply::Value { .. }));
            }
        })
        .await
    };
    let ws_rate = {
        let (ws, _) =
            tokio_tungstenite::connect_async(format!("{}/ws", url.replace("http://", "ws://"))).await.unwrap();
        let (mut tx, mut rx) = ws.split();
        let start = Instant::now();
        let (mut sent, mut got) = (0u64, 0u64);
        use tokio_tungstenite::tungstenite::Message;
        let get = |id: u64| {
            let msg = ClientMsg::Get { id, key: key(id as usize % KEYS).into() };
            Message::Text(serde_json::to_string(&msg).unwrap().into())
        };
        while sent < IN_FLIGHT as u64 {
            tx.send(get(sent)).await.unwrap();
            sent += 1;
        }
        while start.elapsed() < CELL {
            let text = rx.next().await.unwrap().unwrap().into_text().unwrap();
            if let Ok(ServerMsg::Reply { .. }) = serde_json::from_str(&text) {
                got += 1;
                tx.send(get(sent)).await.unwrap();
                sent += 1;
            }
        }
        got as f64 / start.elapsed().as_secs_f64()
    };

    // The join: 4 -> 5 nodes.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{}/ws", url.replace("http://", "ws://"))).await.unwrap();
    let started = Instant::now();
    let resp = http.post(format!("{url}/nodes")).header(WRITE_HEADER, "1").send().await.unwrap();
    assert_eq!(resp.status(), 202);
    let progress = loop {
        let text = ws.next().await.unwrap().unwrap().into_text().unwrap();
        if let Ok(ServerMsg::RebalanceDone { progress }) = serde_json::from_str(&text) {
            break progress;
        }
    };
    let wall = started.elapsed().as_secs_f64();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| keys in the cluster | {} |", progress.keys_total);
    println!(
        "| keys moved by the join (4 -> 5 nodes) | {} ({:.1}%, ideal {:.1}%) |",
        progress.keys_moved,
        100.0 * progress.fraction,
        100.0 * progress.ideal
    );
    println!("| join wall time, POST /nodes to rebalance_done | {wall:.2} s |");
    println!("| keys moved per second | {:.0} |", progress.keys_moved as f64 / wall);
    println!(
        "| keys read from nodes per second (only the moving arcs) | {:.0} |",
        progress.keys_scanned as f64 / progress.seconds
    );
    println!("| GET via REST, 64 in flight | {rest:.0} ops/s ({:.2}x direct) |", rest / direct);
    println!("| GET via WebSocket, one socket, 64 in flight | {ws_rate:.0} ops/s ({:.2}x direct) |", ws_rate / direct);
    println!("| GET direct to the nodes, 64 in flight | {direct:.0} ops/s |");
    drop(serve);
}
