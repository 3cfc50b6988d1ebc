//! The WebSocket API against a real stack: key operations with request ids,
//! many in flight on one socket, administration, and error paths that give
//! clear errors and change nothing.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::Stack;
use futures::{SinkExt, StreamExt};
use shardscope_backend::guard::WRITE_HEADER;
use shardscope_shared::protocol::{ClientMsg, ErrorCode, NodeReply, NodeRequest, ServerMsg};
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn send(ws: &mut Ws, msg: &ClientMsg) {
    ws.send(Message::Text(serde_json::to_string(msg).unwrap().into())).await.unwrap();
}

/// The next reply-like message (skipping pushed events).
async fn next_reply(ws: &mut Ws) -> ServerMsg {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next()).await.expect("a reply").unwrap().unwrap();
        let msg: ServerMsg = serde_json::from_str(&msg.into_text().unwrap()).unwrap();
        if matches!(msg, ServerMsg::Reply { .. } | ServerMsg::AdminReply { .. } | ServerMsg::BatchReply { .. }) {
            return msg;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn key_operations_admin_and_errors_over_the_websocket() {
    let stack = Stack::start(2, &[]);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{}/ws", stack.url.replace("http://", "ws://"))).await.unwrap();

    // 200 PUTs in flight on one socket: every id answered once, all ok.
    for id in 0..200u64 {
        send(&mut ws, &ClientMsg::Put { id, key: format!("k{id}").into(), value: format!("v{id}").into() }).await;
    }
    let mut answered = HashMap::new();
    while answered.len() < 200 {
        let ServerMsg::Reply { id, node, reply } = next_reply(&mut ws).await else { panic!("a key reply") };
        assert_eq!(reply, NodeReply::ok(), "PUT {id}");
        assert!(node.is_some());
        assert!(answered.insert(id, node).is_none(), "id {id} answered twice");
    }
    send(&mut ws, &ClientMsg::Get { id: 500, key: "k7".into() }).await;
    let ServerMsg::Reply { id: 500, node, reply } = next_reply(&mut ws).await else { panic!() };
    // The value, with the version the gateway gave the write.
    let NodeReply::Value { key, value, version: Some(_) } = reply else { panic!("a versioned value: {reply:?}") };
    assert_eq!((key, value), ("k7".into(), "v7".into()));
    assert_eq!(node, answered[&7]);
    send(&mut ws, &ClientMsg::Delete { id: 501, key: "k7".into() }).await;
    assert!(matches!(next_reply(&mut ws).await, ServerMsg::Reply { id: 501, reply: NodeReply::Ok { .. }, .. }));
    send(&mut ws, &ClientMsg::Get { id: 502, key: "k7".into() }).await;
    let ServerMsg::Reply { id: 502, reply, .. } = next_reply(&mut ws).await else { panic!() };
    assert!(matches!(reply, NodeReply::Error { error: ErrorCode::NotFound, .. }));

    // Errors: bad JSON, unknown type, unknown node, unroutable placement.
    ws.send(Message::Text("{not json".into())).await.unwrap();
    let ServerMsg::Reply { reply: NodeReply::Error { error, message, .. }, .. } = next_reply(&mut ws).await else {
        panic!()
    };
    assert_eq!(error, ErrorCode::BadRequest);
    assert!(message.contains("malformed"), "{message}");
    ws.send(Message::Text(r#"{"type":"teleport","id":9}"#.into())).await.unwrap();
    let ServerMsg::Reply { reply: NodeReply::Error { message, .. }, .. } = next_reply(&mut ws).await else { panic!() };
    assert!(message.contains("teleport"), "{message}");
    send(&mut ws, &ClientMsg::RemoveNode { id: 600, node: "node-77".into(), rate: None }).await;
    let ServerMsg::AdminReply { id: 600, ok: false, message, .. } = next_reply(&mut ws).await else { panic!() };
    assert!(message.contains("node-77"));
    ws.send(Message::Text(r#"{"type":"change_placement","id":601,"placement":{"algorithm":"warp"}}"#.into()))
        .await
        .unwrap();
    let ServerMsg::Reply { reply: NodeReply::Error { error, message, .. }, .. } = next_reply(&mut ws).await else {
        panic!()
    };
    assert_eq!(error, ErrorCode::BadRequest);
    assert!(message.contains("warp"), "{message}");

    // Nothing changed: the 199 remaining keys are all there.
    let all: serde_json::Value = reqwest::get(format!("{}/kv", stack.url)).await.unwrap().json().await.unwrap();
    assert_eq!(all["collection"].as_array().unwrap().len(), 199);

    // A spec outside its bounds is refused, naming the field; nothing moves.
    let huge = shardscope_shared::placement::PlacementSpec::Maglev { table_size: 1 << 40 };
    send(&mut ws, &ClientMsg::ChangePlacement { id: 699, placement: huge, rate: None }).await;
    let ServerMsg::AdminReply { id: 699, ok: false, message, .. } = next_reply(&mut ws).await else { panic!() };
    assert!(message.contains("table_size: must be 7 to 1000003"), "{message}");
    let now: serde_json::Value = reqwest::get(format!("{}/placement", stack.url)).await.unwrap().json().await.unwrap();
    assert_eq!(now["algorithm"], "ring", "{now}");

    // Administration: change the algorithm over the socket; keys follow.
    let spec = shardscope_shared::placement::PlacementSpec::Rendezvous;
    send(&mut ws, &ClientMsg::ChangePlacement { id: 700, placement: spec, rate: None }).await;
    let ServerMsg::AdminReply { id: 700, ok: true, progress: Some(p), .. } = next_reply(&mut ws).await else {
        panic!()
    };
    assert_eq!(p.keys_total, 199);
    let all: serde_json::Value = reqwest::get(format!("{}/kv", stack.url)).await.unwrap().json().await.unwrap();
    assert_eq!(all["collection"].as_array().unwrap().len(), 199);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_runs_each_keys_operations_in_order_or_not_at_all() {
    let stack = Stack::start(3, &[]);
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{}/ws", stack.url.replace("http://", "ws://"))).await.unwrap();
    let put = |k: &str, v: &str| NodeRequest::Put { key: k.into(), value: v.into(), version: None };

    // A batch with one operation a batch may not hold runs none of them.
    let refused = vec![put("early", "1"), NodeRequest::Stats, put("late", "2")];
    send(&mut ws, &ClientMsg::Batch { id: 1, ops: refused }).await;
    let ServerMsg::Reply { id: 1, reply: NodeReply::Error { error, message, .. }, .. } = next_reply(&mut ws).await
    else {
        panic!("a refusal")
    };
    assert_eq!(error, ErrorCode::BadRequest);
    assert!(message.contains("batch operation 1"), "{message}");
    let oversize = vec![put("fine", "1"), put("big", &"x".repeat(shardscope_shared::protocol::MAX_VALUE + 1))];
    send(&mut ws, &ClientMsg::Batch { id: 2, ops: oversize }).await;
    let ServerMsg::Reply { id: 2, reply: NodeReply::Error { error, message, .. }, .. } = next_reply(&mut ws).await
    else {
        panic!("a refusal")
    };
    assert_eq!(error, ErrorCode::TooLarge);
    assert!(message.contains("batch operation 1") && message.contains("nothing was run"), "{message}");
    let all: serde_json::Value = reqwest::get(format!("{}/kv", stack.url)).await.unwrap().json().await.unwrap();
    assert_eq!(all["collection"].as_array().unwrap().len(), 0, "a refused batch changes nothing");

    // Each key's operations in order (k-i is written twice, odd ones then
    // deleted), many keys at once; GET_ALL after all of them.
    let mut ops = Vec::new();
    for i in 0..300 {
        ops.push(put(&format!("k-{i}"), "first"));
    }
    for i in 0..300 {
        ops.push(put(&format!("k-{i}"), &format!("second-{i}")));
        if i % 2 == 1 {
            ops.push(NodeRequest::Delete { key: format!("k-{i}").into(), version: None });
            ops.push(NodeRequest::GetOne { key: format!("k-{i}").into(), versioned: false });
        }
    }
    ops.push(NodeRequest::GetAll);
    send(&mut ws, &ClientMsg::Batch { id: 3, ops }).await;
    let ServerMsg::BatchReply { id: 3, summary } = next_reply(&mut ws).await else { panic!("a batch reply") };
    assert_eq!((summary.ok, summary.not_found, summary.failed), (600 + 150 + 1, 150, 0), "{summary:?}");
    let all: serde_json::Value = reqwest::get(format!("{}/kv", stack.url)).await.unwrap().json().await.unwrap();
    let mut got: Vec<(String, String)> = all["collection"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["key"].as_str().unwrap().to_string(), e["value"].as_str().unwrap().to_string()))
        .collect();
    got.sort();
    let mut want: Vec<(String, String)> =
        (0..300).filter(|i| i % 2 == 0).map(|i| (format!("k-{i}"), format!("second-{i}"))).collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_an_admin_token_administration_and_registry_writes_need_it() {
    let stack = Stack::start(2, &["--admin-token", "s3cret"]);
    let http = reqwest::Client::new();
    let node_count = || async {
        let nodes: Vec<serde_json::Value> =
            reqwest::get(format!("{}/nodes", stack.url)).await.unwrap().json().await.unwrap();
        nodes.len()
    };
    // REST: refused without the token or with a wrong one; nothing changes.
    let refused = [
        http.post(format!("{}/nodes", stack.url)).header(WRITE_HEADER, "1"),
        http.post(format!("{}/nodes", stack.url)).header(WRITE_HEADER, "1").bearer_auth("guess"),
        http.delete(format!("{}/nodes/node-1", stack.url)),
        http.put(format!("{}/placement", stack.url)).body(r#"{"algorithm":"jump"}"#),
    ];
    for req in refused {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        let body: NodeReply = resp.json().await.unwrap();
        let NodeReply::Error { error: ErrorCode::Unauthorized, message, .. } = body else { panic!("{body:?}") };
        assert!(message.contains("admin token"), "{message}");
    }
    assert_eq!(node_count().await, 2);
    // Key operations do not need it.
    assert_eq!(http.put(format!("{}/kv/open", stack.url)).body("yes").send().await.unwrap().status(), 200);

    // The CLI: refused without --token (exit 1, saying why), done with it.
    let cli = |token: Option<&str>| {
        let mut cmd = std::process::Command::new(common::shardscope_exe());
        cmd.args(["add-node", "--addr", &stack.url]).env_remove("SHARDSCOPE_ADMIN_TOKEN");
        if let Some(t) = token {
            cmd.args(["--token", t]);
        }
        cmd.output().unwrap()
    };
    let out = cli(None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin token"));
    assert!(cli(Some("s3cret")).status.success());

    // The WebSocket: a session opened without the token may not administer;
    // one opened with ?token= may.
    let ws_url = format!("{}/ws", stack.url.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await.unwrap();
    send(&mut ws, &ClientMsg::RemoveNode { id: 1, node: "node-1".into(), rate: None }).await;
    let ServerMsg::AdminReply { id: 1, ok: false, message, .. } = next_reply(&mut ws).await else { panic!() };
    assert!(message.contains("admin token"), "{message}");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{ws_url}?token=s3cret")).await.unwrap();
    let spec = shardscope_shared::placement::PlacementSpec::Jump;
    send(&mut ws, &ClientMsg::ChangePlacement { id: 2, placement: spec, rate: None }).await;
    let ServerMsg::AdminReply { id: 2, ok: true, .. } = next_reply(&mut ws).await else { panic!() };
    // The node the CLI added registered with the token and joined.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while node_count().await < 3 {
        assert!(std::time::Instant::now() < deadline, "the added node never joined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The embedded registry: reads are open, writes need the token (403 as Consul's ACLs answer).
    let kv = format!("{}/v1/kv/probe", stack.registry);
    assert_eq!(http.put(&kv).body("x").send().await.unwrap().status(), 403);
    assert_eq!(http.put(&kv).header("X-Consul-Token", "guess").body("x").send().await.unwrap().status(), 403);
    let register = format!("{}/v1/agent/service/register", stack.registry);
    let fake = r#"{"Name":"shardscope-node","ID":"impostor","Address":"127.0.0.1","Port":9}"#;
    assert_eq!(http.put(&register).body(fake).send().await.unwrap().status(), 403);
    assert_eq!(http.get(format!("{}/v1/kv/cluster_size", stack.registry)).send().await.unwrap().status(), 200);
    assert_eq!(http.put(&kv).header("X-Consul-Token", "s3cret").body("x").send().await.unwrap().status(), 200);
    assert_eq!(node_count().await, 3, "no impostor joined");
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_error_paths_are_clear_and_change_nothing() {
    let stack = Stack::start(1, &[]);
    let http = reqwest::Client::new();
    // Its own client: the server closes a connection whose body it refused.
    let huge = reqwest::Client::new().put(format!("{}/kv/big", stack.url)).body(vec![b'x'; 5 * 1024 * 1024]);
    let huge = huge.send().await.unwrap();
    assert_eq!(huge.status(), 413);
    let bad = http.put(format!("{}/placement", stack.url)).body("not json").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("placement"));
    assert_eq!(http.delete(format!("{}/nodes/ghost", stack.url)).send().await.unwrap().status(), 404);
    assert_eq!(http.get(format!("{}/kv/big", stack.url)).send().await.unwrap().status(), 404);
}
