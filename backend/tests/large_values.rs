//! Large values and damaged logs with real processes, the three ways they
//! broke a node or the cluster: a log rewrite over 3 MiB values followed by
//! a restart (it once packed more than replay accepts into one record and
//! the next start served an empty store), a node holding 3 MiB values
//! removed from the cluster (its batches once passed the message limit),
//! and a record damaged in the middle of the log (once truncated away with
//! everything after it, like a torn tail).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{shardscope_exe, NodeProcess, Stack};
use shardscope_backend::node_client::NodeClient;
use shardscope_shared::protocol::{NodeReply, NodeRequest, NodeStats};

const BIG: usize = 3 << 20;

/// A 3 MiB value that says which key and which write it is.
fn big_value(key: usize, round: usize) -> Vec<u8> {
    let mut v = vec![(key * 7 + round) as u8; BIG];
    v[..16].copy_from_slice(format!("{key:08}/{round:07}").as_bytes());
    v
}

async fn stats(client: &NodeClient) -> NodeStats {
    match client.request(&NodeRequest::Stats).await {
        NodeReply::Stats { stats } => stats,
        other => panic!("STATS: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_rewritten_over_3_mib_values_replays_whole_after_a_restart() {
    const KEYS: usize = 30;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let data = dir.path().join("data");
    let args = ["--port", "0", "--fsync", "never", "--data-dir", data.to_str().unwrap()];
    let node = NodeProcess::start(&args, None, &log);
    let client = NodeClient::connect(&node.endpoint).await.unwrap();
    // Each key written three times: 270 MiB of log for 90 MiB live, so the
    // node rewrites its log on the way.
    for round in 0..3 {
        for key in 0..KEYS {
            let put = NodeRequest::Put {
                key: format!("big-{key:02}").into(),
                value: big_value(key, round).into(),
                version: None,
            };
            assert_eq!(client.request(&put).await, NodeReply::ok(), "key {key} round {round}");
        }
    }
    let before = stats(&client).await;
    assert_eq!(before.keys, KEYS as u64);
    assert!(before.log_bytes < 200 << 20, "the log was rewritten: {} bytes", before.log_bytes);
    drop(client);
    drop(node); // SIGTERM, a clean stop

    let node = NodeProcess::start(&args, None, &log);
    let client = NodeClient::connect(&node.endpoint).await.unwrap();
    assert_eq!(stats(&client).await.keys, KEYS as u64, "every key replayed");
    for key in 0..KEYS {
        let get = NodeRequest::GetOne { key: format!("big-{key:02}").into(), versioned: false };
        let NodeReply::Value { value, .. } = client.request(&get).await else { panic!("big-{key:02} is gone") };
        assert!(value.0 == big_value(key, 2), "big-{key:02} holds its last value");
    }
}

#[test]
fn removing_a_node_that_holds_3_mib_values_moves_every_one() {
    const KEYS: usize = 20;
    let stack = Stack::start(2, &[]);
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let mut held: std::collections::HashMap<String, usize> = Default::default();
    for key in 0..KEYS {
        let resp = http.put(format!("{}/kv/big-{key:02}", stack.url)).body(big_value(key, 0)).send().unwrap();
        assert_eq!(resp.status(), 200);
        *held.entry(resp.headers()["x-shardscope-node"].to_str().unwrap().to_string()).or_default() += 1;
    }
    let (leaver, count) = held.iter().max_by_key(|(_, n)| **n).map(|(id, n)| (id.clone(), *n)).unwrap();
    assert!(count * BIG > 16 << 20, "the leaver holds more than one message's worth: {count} values");
    let removed = http.delete(format!("{}/nodes/{leaver}", stack.url)).send().unwrap();
    assert_eq!(removed.status(), 200, "{}", removed.text().unwrap());
    for key in 0..KEYS {
        let resp = http.get(format!("{}/kv/big-{key:02}", stack.url)).send().unwrap();
        assert_eq!(resp.status(), 200, "big-{key:02}");
        assert_ne!(resp.headers()["x-shardscope-node"].to_str().unwrap(), leaver);
        assert!(resp.bytes().unwrap()[..] == big_value(key, 0)[..], "big-{key:02} arrived whole");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_damaged_mid_log_refuses_to_start_and_leaves_the_log_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let data = dir.path().join("data");
    let args = ["--port", "0", "--data-dir", data.to_str().unwrap()];
    let node = NodeProcess::start(&args, None, &log);
    let client = NodeClient::connect(&node.endpoint).await.unwrap();
    for i in 0..200 {
        let put = NodeRequest::Put { key: format!("k{i:03}").into(), value: vec![b'v'; 100].into(), version: None };
        assert_eq!(client.request(&put).await, NodeReply::ok());
    }
    drop(client);
    drop(node);

    let wal = data.join("wal.log");
    let mut bytes = std::fs::read(&wal).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x55;
    std::fs::write(&wal, &bytes).unwrap();

    let mut child = Command::new(shardscope_exe())
        .arg("node")
        .args(args)
        .env_remove("CONSUL_HTTP_ADDR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("a node with a corrupt log started serving");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{stderr}");
    assert!(out.stdout.is_empty(), "it never said it listens: {}", String::from_utf8_lossy(&out.stdout));
    assert!(stderr.contains(wal.to_str().unwrap()), "names the file: {stderr}");
    assert!(stderr.contains("truncate -s"), "says how to salvage: {stderr}");
    assert_eq!(std::fs::read(&wal).unwrap(), bytes, "the log is left as it was");
}

#[tokio::test(flavor = "multi_thread")]
async fn listings_over_large_values_are_paged_by_bytes_or_streamed() {
    use futures::{SinkExt, StreamExt};
    use shardscope_shared::protocol::{ClientMsg, ErrorCode, ServerMsg, MAX_MESSAGE, MAX_SCAN_BYTES};
    const KEYS: usize = 8; // 24 MiB: more than one message holds
    let stack = Stack::start(2, &[]);
    let http = reqwest::Client::new();
    for key in 0..KEYS {
        let resp = http.put(format!("{}/kv/big-{key:02}", stack.url)).body(big_value(key, 0)).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    const { assert!(KEYS * BIG > MAX_MESSAGE) };

    // Unpaged, the seeds' collection: streamed whole, in key order.
    let all = http.get(format!("{}/kv", stack.url)).send().await.unwrap();
    assert_eq!(all.status(), 200);
    let NodeReply::Collection { collection } = serde_json::from_slice(&all.bytes().await.unwrap()).unwrap() else {
        panic!("not a collection")
    };
    assert_eq!(collection.len(), KEYS);
    for (key, e) in collection.iter().enumerate() {
        assert_eq!(e.key.as_bytes(), format!("big-{key:02}").as_bytes());
        assert!(e.value.0 == big_value(key, 0), "big-{key:02} whole");
    }

    // Paged with a generous limit: each page ends by bytes, and the pages
    // together hold every key once.
    let mut seen = Vec::new();
    let mut url = format!("{}/kv?limit=10000", stack.url);
    loop {
        let page: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        let entries = page["page"].as_array().unwrap();
        let bytes: usize = entries.len() * BIG;
        assert!(bytes <= MAX_SCAN_BYTES + BIG, "a page of {} values", entries.len());
        seen.extend(entries.iter().map(|e| e["key"].as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(next) => url = format!("{}/kv?limit=10000&after={next}", stack.url),
            None => break,
        }
    }
    assert_eq!(seen, (0..KEYS).map(|k| format!("big-{k:02}")).collect::<Vec<_>>());

    // One WebSocket message cannot hold it: a clear error, naming paging.
    let ws_url = format!("{}/ws", stack.url.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let ask = serde_json::to_string(&ClientMsg::GetAll { id: 9, prefix: None, after: None, limit: None }).unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::text(ask)).await.unwrap();
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next()).await.unwrap().unwrap().unwrap();
        let Ok(ServerMsg::Reply { id: 9, reply, .. }) = serde_json::from_str(&msg.into_text().unwrap()) else {
            continue;
        };
        let NodeReply::Error { error: ErrorCode::TooLarge, message, .. } = reply else { panic!("{reply:?}") };
        assert!(message.contains("limit"), "{message}");
        break;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_page_that_never_reads_its_replies_does_not_grow_the_backend() {
    use futures::{SinkExt, StreamExt};
    use shardscope_shared::protocol::{ClientMsg, ServerMsg};
    use tokio_tungstenite::tungstenite::Message;
    const ASKS: u64 = 400; // 400 replies of 4 MiB (base64): 1.6 GB if they piled up
    let stack = Stack::start(2, &[]);
    let http = reqwest::Client::new();
    let resp = http.put(format!("{}/kv/big", stack.url)).body(big_value(1, 0)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let ws_url = format!("{}/ws", stack.url.replace("http://", "ws://"));
    let baseline = common::rss(stack.pid());

    // It asks and asks, and never reads a reply.
    let (mut hog, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let mut sent = 0;
    for id in 0..ASKS {
        let ask = serde_json::to_string(&ClientMsg::Get { id, key: "big".into() }).unwrap();
        match tokio::time::timeout(Duration::from_secs(3), hog.send(Message::text(ask))).await {
            Ok(Ok(())) => sent += 1,
            _ => break, // the backend stopped reading it: back-pressure
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown = common::rss(stack.pid()).saturating_sub(baseline);
    assert!(grown < 300 << 20, "the backend grew by {} MiB for {sent} unread replies", grown >> 20);

    // Everyone else is served meanwhile.
    let (mut other, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    let ask = serde_json::to_string(&ClientMsg::Get { id: 7, key: "big".into() }).unwrap();
    other.send(Message::text(ask)).await.unwrap();
    let value = loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), other.next()).await.unwrap().unwrap().unwrap();
        if let Ok(ServerMsg::Reply { id: 7, reply: NodeReply::Value { value, .. }, .. }) =
            serde_json::from_str(&msg.into_text().unwrap())
        {
            break value;
        }
    };
    assert!(value.0 == big_value(1, 0));
    let grown = common::rss(stack.pid()).saturating_sub(baseline);
    assert!(grown < 300 << 20, "the backend grew by {} MiB for {sent} unread replies", grown >> 20);
    drop(hog);
}
