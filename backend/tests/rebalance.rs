//! Rebalancing with real processes: the keys a join moves are exactly the
//! ones `shared/`'s `moved_keys` predicts; a leave drains the node; and a
//! history of concurrent PUT/DELETE/GET through the backend, across a join, a
//! leave and two changes of algorithm (to jump, then to bounded loads), loses
//! no acknowledged write and never reads a value that was not written.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Rng, Stack};
use futures::StreamExt;
use shardscope_backend::guard::WRITE_HEADER;
use shardscope_backend::node_client::NodeClient;
use shardscope_shared::hash::key_hash;
use shardscope_shared::placement::analysis::moved_keys;
use shardscope_shared::placement::{build, Member, PlacementSpec};
use shardscope_shared::protocol::{NodeInfo, NodeReply, NodeRequest, ServerMsg};

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_ws(stack: &Stack) -> Ws {
    let url = format!("{}/ws", stack.url.replace("http://", "ws://"));
    tokio_tungstenite::connect_async(&url).await.unwrap().0
}

/// Waits for the end of the next rebalance and returns its progress.
async fn rebalance_done(ws: &mut Ws) -> shardscope_shared::protocol::Progress {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next()).await.expect("rebalance within 60 s");
        let text = msg.unwrap().unwrap().into_text().unwrap();
        if let Ok(ServerMsg::RebalanceDone { progress }) = serde_json::from_str(&text) {
            return progress;
        }
    }
}

async fn nodes(stack: &Stack) -> Vec<NodeInfo> {
    reqwest::get(format!("{}/nodes", stack.url)).await.unwrap().json().await.unwrap()
}

/// Which node holds each key, read from the nodes themselves.
async fn holders(nodes: &[NodeInfo]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for n in nodes {
        let client = NodeClient::connect(&n.addr).await.unwrap();
        let NodeReply::Collection { collection } = client.request(&NodeRequest::GetAll).await else { panic!() };
        for e in collection {
            assert!(out.insert(e.key.to_text_lossy(), n.id.clone()).is_none(), "a key on two nodes");
        }
    }
    out
}

fn members(nodes: &[NodeInfo]) -> Vec<Member> {
    nodes.iter().map(|n| Member::new(&n.id)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_moves_exactly_the_keys_shared_predicts_and_a_leave_drains() {
    let stack = Stack::start(3, &["--vnodes", "64", "--rebalance-batch", "300"]);
    let http = reqwest::Client::new();
    let keys: Vec<String> = (0..3000).map(|i| format!("key-{i}")).collect();
    for k in &keys {
        assert_eq!(
            http.put(format!("{}/kv/{k}", stack.url)).body(format!("v-{k}")).send().await.unwrap().status(),
            200
        );
    }
    let before_nodes = nodes(&stack).await;
    let before = holders(&before_nodes).await;
    assert_eq!(before.len(), keys.len());

    let mut ws = open_ws(&stack).await;
    let added: NodeInfo =
        http.post(format!("{}/nodes", stack.url)).header(WRITE_HEADER, "1").send().await.unwrap().json().await.unwrap();
    let progress = rebalance_done(&mut ws).await;
    let after_nodes = nodes(&stack).await;
    assert_eq!(after_nodes.len(), 4);
    let after = holders(&after_nodes).await;
    assert_eq!(after.len(), keys.len(), "no key lost or duplicated");

    // The keys that actually changed node are exactly shared/'s prediction.
    let spec = PlacementSpec::Ring { vnodes: 64 };
    let (old, new) = (build(&spec, &members(&before_nodes)), build(&spec, &members(&after_nodes)));
    let hashes: Vec<u64> = keys.iter().map(|k| key_hash(k.as_bytes())).collect();
    let predicted = moved_keys(old.as_ref(), new.as_ref(), &hashes);
    let mut predicted_keys: Vec<&str> = predicted.moves.iter().map(|m| keys[m.key].as_str()).collect();
    let mut actual: Vec<&str> = keys.iter().filter(|k| before[*k] != after[*k]).map(String::as_str).collect();
    predicted_keys.sort_unstable();
    actual.sort_unstable();
    assert_eq!(actual, predicted_keys);
    assert!(actual.iter().all(|k| after[*k] == added.id), "moves go only to the joiner");
    assert_eq!(progress.keys_moved as usize, actual.len());
    assert_eq!(progress.keys_total as usize, keys.len());
    assert!((progress.ideal - 0.25).abs() < 1e-9);
    // Prometheus metrics count the same.
    let metrics = http.get(format!("{}/metrics", stack.url)).send().await.unwrap().text().await.unwrap();
    let line = |name: &str| {
        metrics.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {metrics}")).to_string()
    };
    assert_eq!(
        line("shardscope_rebalance_keys_moved_total"),
        format!("shardscope_rebalance_keys_moved_total {}", actual.len())
    );
    assert_eq!(
        line("shardscope_requests_total{op=\"put\",outcome=\"ok\"}"),
        "shardscope_requests_total{op=\"put\",outcome=\"ok\"} 3000"
    );
    assert_eq!(line("shardscope_rebalance_running"), "shardscope_rebalance_running 0");
    assert!(metrics.contains("shardscope_request_duration_seconds_bucket"));

    // Every value is intact and reads route to the new owners.
    for k in keys.iter().step_by(97) {
        let resp = http.get(format!("{}/kv/{k}", stack.url)).send().await.unwrap();
        assert_eq!(resp.headers()["x-shardscope-node"].to_str().unwrap(), after[k]);
        assert_eq!(resp.text().await.unwrap(), format!("v-{k}"));
    }

    // A leave: the node is drained, then gone from the cluster and the registry.
    let leaver = "node-2";
    let drained = http.delete(format!("{}/nodes/{leaver}", stack.url)).send().await.unwrap();
    assert_eq!(drained.status(), 200);
    let last = nodes(&stack).await;
    assert!(last.iter().all(|n| n.id != leaver) && last.len() == 3);
    let final_holders = holders(&last).await;
    assert_eq!(final_holders.len(), keys.len());
    let moved_off: Vec<&String> = keys.iter().filter(|k| after[*k] != final_holders[*k]).collect();
    assert!(moved_off.iter().all(|k| after[*k] == leaver), "only the leaver's keys moved");
    let consul = shardscope_consul::client::Consul::new(&stack.registry);
    let (entries, _) = consul.health_service("shardscope-node", false, None, Duration::from_secs(1)).await.unwrap();
    assert!(entries.iter().all(|e| e.service.id != leaver));

    // Bounded loads: every key placed afresh, no node over c x the mean
    // (rounded up), and new keys still land within the bound.
    let bounded =
        http.put(format!("{}/placement", stack.url)).body(r#"{"algorithm":"bounded","vnodes":8,"capacity":1.1}"#);
    let bounded = bounded.send().await.unwrap();
    assert_eq!(bounded.status(), 200, "{}", bounded.text().await.unwrap());
    for i in 0..300 {
        let resp = http.put(format!("{}/kv/new-{i}", stack.url)).body("n").send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    let last = nodes(&stack).await;
    let placed = holders(&last).await;
    assert_eq!(placed.len(), keys.len() + 300);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for owner in placed.values() {
        *counts.entry(owner.as_str()).or_default() += 1;
    }
    let cap = (1.1 * placed.len() as f64 / last.len() as f64).ceil() as usize;
    assert!(counts.values().all(|&c| c <= cap), "{counts:?} over {cap}");
    for k in keys.iter().step_by(131).chain(["new-7".to_string()].iter()) {
        let resp = http.get(format!("{}/kv/{k}", stack.url)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{k}");
        assert_eq!(resp.headers()["x-shardscope-node"].to_str().unwrap(), placed[k.as_str()]);
    }

    // Bad admin requests change nothing.
    assert_eq!(http.delete(format!("{}/nodes/node-99", stack.url)).send().await.unwrap().status(), 404);
    let bad = http.put(format!("{}/placement", stack.url)).body("{\"algorithm\":\"warp\"}").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    // Specs outside their bounds (a 4 TB Maglev table, a ring with no
    // points) are refused with the field named, before anything is built.
    for (spec, field) in [
        (r#"{"algorithm":"maglev","table_size":1000000000000}"#, "table_size"),
        (r#"{"algorithm":"ring","vnodes":0}"#, "vnodes"),
        (r#"{"algorithm":"ring","vnodes":4294967295}"#, "vnodes"),
        (r#"{"algorithm":"bounded","vnodes":160,"capacity":0.5}"#, "capacity"),
    ] {
        let bad = http.put(format!("{}/placement", stack.url)).body(spec).send().await.unwrap();
        assert_eq!(bad.status(), 400, "{spec}");
        let body: serde_json::Value = bad.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains(&format!("{field}: must be")), "{body}");
    }
    let now: serde_json::Value = reqwest::get(format!("{}/placement", stack.url)).await.unwrap().json().await.unwrap();
    assert_eq!(now["algorithm"], "bounded", "{now}");
    assert_eq!(nodes(&stack).await, last);
    for k in keys.iter().step_by(97) {
        assert_eq!(http.get(format!("{}/kv/{k}", stack.url)).send().await.unwrap().status(), 200, "{k}");
    }
}

/// Per key: the values it may hold — the last acknowledged one (None =
/// absent) and those of writes whose outcome is unknown since.
type Model = HashMap<String, Vec<Option<String>>>;

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_history_across_join_leave_and_algorithm_change_loses_nothing() {
    const KEYS: usize = 10_000;
    const WRITERS: usize = 8;
    // Throttled, so that the writers overlap every move for seconds.
    let stack = Stack::start(3, &["--rebalance-batch", "200", "--rebalance-rate", "3000"]);
    let http = reqwest::Client::new();
    let model: Arc<Mutex<Model>> = Arc::default();
    // Preload every key through the backend.
    let entries = (0..KEYS).map(|i| (format!("k{i:05}"), format!("init-{i}")));
    let preload = futures::stream::iter(entries).for_each_concurrent(32, |(k, v)| {
        let (http, url, model) = (http.clone(), stack.url.clone(), model.clone());
        async move {
            let resp = http.put(format!("{url}/kv/{k}")).body(v.clone()).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            model.lock().unwrap().insert(k, vec![Some(v)]);
        }
    });
    preload.await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let violations: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (http, url, model, stop, violations) =
            (http.clone(), stack.url.clone(), model.clone(), stop.clone(), violations.clone());
        writers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w as u64 + 1));
            let mut ops = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Writer w owns the keys i with i % WRITERS == w: one writer per key.
                let i = (rng.next() as usize % (KEYS / WRITERS)) * WRITERS + w;
                let key = format!("k{i:05}");
                let url = format!("{url}/kv/{key}");
                match rng.next() % 10 {
                    0..=3 => {
                        let value = format!("w{w}-{ops}");
                        let acked =
                            matches!(http.put(&url).body(value.clone()).send().await, Ok(r) if r.status() == 200);
                        let mut m = model.lock().unwrap();
                        let states = m.get_mut(&key).unwrap();
                        if acked {
                            *states = vec![Some(value)];
                        } else {
                            states.push(Some(value));
                        }
                    }
                    4 => {
                        let resp = http.delete(&url).send().await;
                        let acked = matches!(&resp, Ok(r) if r.status() == 200 || r.status() == 404);
                        let mut m = model.lock().unwrap();
                        let states = m.get_mut(&key).unwrap();
                        if acked {
                            *states = vec![None];
                        } else {
                            states.push(None);
                        }
                    }
                    _ => {
                        let resp = http.get(&url).send().await.unwrap();
                        let seen = match resp.status().as_u16() {
                            200 => Some(resp.text().await.unwrap()),
                            404 => None,
                            other => {
                                violations.lock().unwrap().push(format!("GET {key}: status {other}"));
                                continue;
                            }
                        };
                        let mut m = model.lock().unwrap();
                        let states = m.get_mut(&key).unwrap();
                        if states.contains(&seen) {
                            // What was read is what the key holds now.
                            *states = vec![seen];
                        } else {
                            violations.lock().unwrap().push(format!("GET {key} saw {seen:?}, allowed {states:?}"));
                        }
                    }
                }
                ops += 1;
            }
            ops
        }));
    }

    // While they run: a join, a leave, and a change of algorithm.
    let mut ws = open_ws(&stack).await;
    let joiner: NodeInfo =
        http.post(format!("{}/nodes", stack.url)).header(WRITE_HEADER, "1").send().await.unwrap().json().await.unwrap();
    let joined = rebalance_done(&mut ws).await;
    assert_eq!(joined.change, format!("join {}", joiner.id));
    let left = http.delete(format!("{}/nodes/node-1", stack.url)).send().await.unwrap();
    assert_eq!(left.status(), 200, "{}", left.text().await.unwrap());
    let jump = http.put(format!("{}/placement", stack.url)).body(r#"{"algorithm":"jump"}"#).send().await.unwrap();
    assert_eq!(jump.status(), 200, "{}", jump.text().await.unwrap());
    // Bounded loads place by the key set, which the writers keep changing.
    let bounded = r#"{"algorithm":"bounded","vnodes":40,"capacity":1.2}"#;
    let bounded = http.put(format!("{}/placement", stack.url)).body(bounded).send().await.unwrap();
    assert_eq!(bounded.status(), 200, "{}", bounded.text().await.unwrap());
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total_ops = 0;
    for w in writers {
        total_ops += w.await.unwrap();
    }
    println!("{total_ops} operations by {WRITERS} writers across join, leave and placement change");
    let violations = violations.lock().unwrap().clone();
    assert!(
        violations.is_empty(),
        "{} bad reads, first: {:?}",
        violations.len(),
        &violations[..violations.len().min(5)]
    );

    // GET_ALL equals the model, key for key.
    let all: serde_json::Value = http.get(format!("{}/kv", stack.url)).send().await.unwrap().json().await.unwrap();
    let stored: HashMap<String, String> = all["collection"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["key"].as_str().unwrap().to_string(), e["value"].as_str().unwrap().to_string()))
        .collect();
    let model = model.lock().unwrap().clone();
    for (key, states) in model.iter() {
        let got = stored.get(key).cloned();
        assert!(states.contains(&got), "{key}: stored {got:?}, allowed {states:?}");
    }
    assert!(stored.keys().all(|k| model.contains_key(k)), "no key appeared from nowhere");
    // The cluster now routes with bounded loads over node-2, node-3 and the joiner.
    let ids: Vec<String> = nodes(&stack).await.into_iter().map(|n| n.id).collect();
    assert_eq!(ids, ["node-2", "node-3", joiner.id.as_str()]);
}
