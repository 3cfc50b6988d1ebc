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
