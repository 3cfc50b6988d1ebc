//! Membership end to end with real processes: a node started by hand
//! registers in serve's embedded registry, the backend's blocking-query watch
//! adds it, and connected pages get the change as a pushed event; a node that
//! stops deregisters (SIGTERM) and leaves the cluster view.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{shardscope_exe, terminate, Stack};
use futures::StreamExt;
use shardscope_consul::api::NODE_SERVICE;
use shardscope_consul::client::Consul;
use shardscope_shared::protocol::{NodeInfo, ServerMsg};

async fn next_cluster(
    ws: &mut (impl StreamExt<Item = Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>>
              + Unpin),
) -> Vec<NodeInfo> {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.expect("an event within 10 s");
        let text = msg.unwrap().unwrap().into_text().unwrap();
        if let Ok(ServerMsg::Cluster { nodes, .. }) = serde_json::from_str(&text) {
            return nodes;
        }
    }
}

/// `shardscope node` started by hand against `stack`'s registry, with its
/// node token, on a port the system picks.
fn node_by_hand(stack: &Stack, data: &std::path::Path, extra: &[&str]) -> std::process::Child {
    Command::new(shardscope_exe())
        .args(["node", "--port", "0", "--registry", &stack.registry])
        .args(extra)
        .arg("--data-dir")
        .arg(data)
        .env("CONSUL_HTTP_TOKEN_FILE", stack.token_file())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_started_by_hand_joins_and_leaves_through_the_registry() {
    let stack = Stack::start(2, &[]);
    let consul = Consul::new(&stack.registry);
    let ws_url = format!("{}/ws", stack.url.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    assert_eq!(next_cluster(&mut ws).await.len(), 2);

    // Port 0: the node takes a port the system picks and says which, with
    // its default id, node- and the first 8 digits of the instance id it
    // keeps in its data dir. It registers with serve's node token.
    let data = tempfile::tempdir().unwrap();
    let start_node = || node_by_hand(&stack, data.path(), &[]);
    let started = Instant::now();
    let mut node = start_node();
    let (id, endpoint) = common::node_ready(&mut node);
    let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
    assert!(port > 0);
    let instance = std::fs::read_to_string(data.path().join("node-id")).unwrap();
    assert_eq!(id, format!("node-{}", &instance[..8]));

    // The page hears about it without asking, at the port it got.
    let nodes = next_cluster(&mut ws).await;
    println!("node start -> page event: {:?}", started.elapsed());
    assert!(nodes.iter().any(|n| n.id == id && n.addr == format!("tcp://127.0.0.1:{port}")), "{nodes:?}");
    let rest: Vec<NodeInfo> = reqwest::get(format!("{}/nodes", stack.url)).await.unwrap().json().await.unwrap();
    assert_eq!(rest.len(), 3);

    // Keys now reach it too.
    let mut served_by_it = false;
    for i in 0..200 {
        let resp = reqwest::Client::new().put(format!("{}/kv/k{i}", stack.url)).body("v").send().await.unwrap();
        assert_eq!(resp.status(), 200);
        served_by_it |= resp.headers()["x-shardscope-node"] == id.as_str();
    }
    assert!(served_by_it, "some of 200 keys should route to the new node");

    // SIGTERM: it deregisters, and stays a member whose keys wait for it
    // (no other node answers for them).
    let status = terminate(&mut node);
    assert!(status.success(), "node exits 0 on SIGTERM: {status:?}");
    let nodes = loop {
        let nodes = next_cluster(&mut ws).await;
        if nodes.iter().any(|n| n.id == id && !n.healthy) {
            break nodes;
        }
    };
    assert_eq!(nodes.len(), 3);
    let (entries, _) = consul.health_service(NODE_SERVICE, false, None, Duration::from_secs(1)).await.unwrap();
    assert!(entries.iter().all(|e| e.service.id != id), "no stale registration");
    assert_eq!(entries.len(), 2);
    let mut unavailable = 0;
    for i in 0..200 {
        let resp = reqwest::get(format!("{}/kv/k{i}", stack.url)).await.unwrap();
        if resp.headers().get("x-shardscope-node").is_some_and(|n| n == id.as_str()) {
            assert_eq!(resp.status(), 503, "its keys answer 503, not another node's 404");
            unavailable += 1;
        } else {
            assert_eq!(resp.status(), 200);
        }
    }
    assert!(unavailable > 0);

    // Started again on the same data it is the same node: same id.
    let mut again = common::KillOnDrop(start_node());
    assert_eq!(common::node_ready(&mut again).0, id);
    while !next_cluster(&mut ws).await.iter().any(|n| n.id == id && n.healthy) {}
    assert!(terminate(&mut again).success());
    while !next_cluster(&mut ws).await.iter().any(|n| n.id == id && !n.healthy) {}

    // The operator removes it while it is down: its keys are reported lost.
    let resp = reqwest::Client::new().delete(format!("{}/nodes/{id}", stack.url)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let progress: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(progress["unreachable"], serde_json::json!([id]));
    let rest: Vec<NodeInfo> = reqwest::get(format!("{}/nodes", stack.url)).await.unwrap().json().await.unwrap();
    assert_eq!(rest.len(), 2);
    assert!(rest.iter().all(|n| n.healthy && n.id != id));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_node_turns_unhealthy_and_its_keys_get_503() {
    let stack = Stack::start(2, &[]);
    let ws_url = format!("{}/ws", stack.url.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    assert_eq!(next_cluster(&mut ws).await.len(), 2);
    // A node started by hand: one that serve launched would be restarted.
    let data = tempfile::tempdir().unwrap();
    let mut node = common::KillOnDrop(node_by_hand(&stack, data.path(), &["--id", "by-hand"]));
    common::node_ready(&mut node);
    while next_cluster(&mut ws).await.len() < 3 {}
    let http = reqwest::Client::new();
    let mut owner_of = std::collections::HashMap::new();
    for i in 0..60 {
        let resp = http.put(format!("{}/kv/k{i}", stack.url)).body("v").send().await.unwrap();
        owner_of.insert(i, resp.headers()["x-shardscope-node"].to_str().unwrap().to_string());
    }
    assert!(owner_of.values().any(|owner| owner == "by-hand"), "some of 60 keys should route to by-hand");
    node.kill().unwrap();
    node.wait().unwrap();
    // Its TCP check fails (every 1 s): the page hears it is unhealthy.
    let nodes = loop {
        let nodes = next_cluster(&mut ws).await;
        if nodes.iter().any(|n| !n.healthy) {
            break nodes;
        }
    };
    let victim = nodes.iter().find(|n| !n.healthy).unwrap().id.clone();
    assert_eq!(victim, "by-hand");
    assert_eq!(nodes.len(), 3, "an unhealthy node stays a member until it is removed");
    // Its keys answer 503 with a clear message; everyone else's still work.
    for (i, owner) in &owner_of {
        let resp = http.get(format!("{}/kv/k{i}", stack.url)).send().await.unwrap();
        if owner == &victim {
            assert_eq!(resp.status(), 503);
            let body: serde_json::Value = resp.json().await.unwrap();
            assert!(body["message"].as_str().unwrap().contains(&victim), "{body}");
        } else {
            assert_eq!(resp.status(), 200, "k{i} on {owner}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_uses_the_agent_in_consul_http_addr_and_leaves_no_registration() {
    // A standalone registry process plays the Consul agent.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut agent = Command::new(shardscope_exe())
        .args(["registry", "--port", &port.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}"); // as Consul users write it: no scheme
    let consul = Consul::new(&addr);
    let deadline = Instant::now() + Duration::from_secs(10);
    while consul.kv_get("probe").await.is_err() {
        assert!(Instant::now() < deadline, "registry did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let stack = Stack::start_with_env(2, &[], &[("CONSUL_HTTP_ADDR", &addr)]);
    assert_eq!(stack.registry, format!("http://{addr}"));
    let (entries, _) = consul.health_service(NODE_SERVICE, true, None, Duration::from_secs(1)).await.unwrap();
    assert_eq!(entries.len(), 2, "serve's nodes registered in the agent");
    let put = reqwest::Client::new().put(format!("{}/kv/k", stack.url)).body("v").send().await.unwrap();
    assert_eq!(put.status(), 200);

    assert_eq!(consul.kv_get("cluster_size").await.unwrap().as_deref(), Some("2"), "serve records the desired size");

    let status = stack.stop();
    assert!(status.success());
    let (entries, _) = consul.health_service(NODE_SERVICE, false, None, Duration::from_secs(1)).await.unwrap();
    assert!(entries.is_empty(), "stale registrations after serve stopped: {entries:?}");

    // Without --nodes, serve runs as many nodes as cluster_size says (seed 001).
    consul.kv_put("cluster_size", b"4", None).await.unwrap();
    let stack = Stack::serve(&[], &[("CONSUL_HTTP_ADDR", &addr)]);
    let nodes: Vec<NodeInfo> = reqwest::get(format!("{}/nodes", stack.url)).await.unwrap().json().await.unwrap();
    assert_eq!(nodes.len(), 4);
    assert!(stack.stop().success());
    assert!(terminate(&mut agent).success());
}
