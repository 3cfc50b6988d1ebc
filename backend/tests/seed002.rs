//! Seed 002's REST API (`PUT /set`, `POST /fetch`, `GET /fetch`, `POST
//! /query`) against a real `shardscope serve` with three node processes,
//! in the seed's own JSON: string and binary keys and values, a partial
//! failure in `keys_failed`, and bad input refused with nothing changed.

mod common;

use std::time::Duration;

use common::browser::members_of;
use common::Stack;
use serde_json::{json, Value};
use shardscope_shared::placement::{build, PlacementSpec};
use shardscope_shared::protocol::{NodeInfo, MAX_KEY};

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

fn string(s: &str) -> Value {
    json!({"encoding": "string", "data": s})
}

fn binary(b64: &str) -> Value {
    json!({"encoding": "binary", "data": b64})
}

/// POST or PUT `body` as JSON to `path`; the status and the JSON answer.
fn send(stack: &Stack, method: reqwest::Method, path: &str, body: &Value) -> (u16, Value) {
    let resp = http().request(method, format!("{}{path}", stack.url)).json(body).send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap())
}

/// Every pair, by `GET /fetch`, sorted by key for comparison.
fn everything(stack: &Stack) -> Vec<Value> {
    let resp = http().get(format!("{}/fetch", stack.url)).send().unwrap();
    assert_eq!(resp.status(), 200);
    let mut all: Vec<Value> = resp.json().unwrap();
    all.sort_by_key(|p| p["key"].to_string());
    all
}

#[test]
fn set_fetch_and_query_speak_seed_002s_json_with_string_and_binary_data() {
    let stack = Stack::start(3, &[]);
    // "key1" -> "data1"; a binary key 00 9f 92 96 -> binary ff fe; a string
    // key -> a binary value; and "key1" listed again: the last value wins.
    let items = json!([
        {"key": string("key1"), "value": string("first")},
        {"key": binary("AJ+Slg=="), "value": binary("//4=")},
        {"key": string("ünïcode key"), "value": binary("AAECAw==")},
        {"key": string("key1"), "value": string("data1")},
    ]);
    let (status, outcome) = send(&stack, reqwest::Method::PUT, "/set", &items);
    assert_eq!(status, 200);
    assert_eq!(outcome, json!([{"keys_added": 4, "keys_failed": []}]));

    // Each key is where shared's placement puts it (the node that answers /kv).
    let nodes: Vec<NodeInfo> = http().get(format!("{}/nodes", stack.url)).send().unwrap().json().unwrap();
    let ring = build(&PlacementSpec::Ring { vnodes: 160 }, &members_of(&nodes));
    let get = http().get(format!("{}/kv/key1", stack.url)).send().unwrap();
    assert_eq!(get.headers()["x-shardscope-node"].to_str().unwrap(), ring.owner_of(b"key1").unwrap());
    assert_eq!(get.text().unwrap(), "data1");

    // POST /fetch: the pairs found, in the order asked, in the seed's form;
    // a key that is not there is left out.
    let asked = json!([binary("AJ+Slg=="), string("never written"), string("key1"), string("ünïcode key")]);
    let (status, pairs) = send(&stack, reqwest::Method::POST, "/fetch", &asked);
    assert_eq!(status, 200);
    assert_eq!(
        pairs,
        json!([
            {"key": binary("AJ+Slg=="), "value": binary("//4=")},
            {"key": string("key1"), "value": string("data1")},
            {"key": string("ünïcode key"), "value": binary("AAECAw==")},
        ])
    );

    // POST /query: whether each exists, in order.
    let (status, presence) =
        send(&stack, reqwest::Method::POST, "/query", &json!([string("key1"), string("nope"), binary("AJ+Slg==")]));
    assert_eq!(status, 200);
    assert_eq!(
        presence,
        json!([
            {"key": string("key1"), "value": true},
            {"key": string("nope"), "value": false},
            {"key": binary("AJ+Slg=="), "value": true},
        ])
    );

    // GET /fetch: every pair, once.
    let mut want = vec![
        json!({"key": string("key1"), "value": string("data1")}),
        json!({"key": binary("AJ+Slg=="), "value": binary("//4=")}),
        json!({"key": string("ünïcode key"), "value": binary("AAECAw==")}),
    ];
    want.sort_by_key(|p| p["key"].to_string());
    assert_eq!(everything(&stack), want);
}

#[test]
fn a_pair_that_cannot_be_stored_is_in_keys_failed_and_the_rest_are_stored() {
    let stack = Stack::start(3, &[]);
    let too_long = "k".repeat(MAX_KEY + 1);
    let items = json!([
        {"key": string("a"), "value": string("1")},
        {"key": string(&too_long), "value": string("2")},
        {"key": string("b"), "value": string("3")},
    ]);
    let (status, outcome) = send(&stack, reqwest::Method::PUT, "/set", &items);
    assert_eq!(status, 200);
    assert_eq!(outcome, json!([{"keys_added": 2, "keys_failed": [string(&too_long)]}]));
    assert_eq!(
        everything(&stack),
        vec![json!({"key": string("a"), "value": string("1")}), json!({"key": string("b"), "value": string("3")})]
    );
    // Asking for a key no node could hold is bad input: 400, nothing read.
    let (status, error) = send(&stack, reqwest::Method::POST, "/fetch", &json!([string("a"), string(&too_long)]));
    assert_eq!(status, 400, "{error}");
    assert!(error["message"].as_str().unwrap().starts_with("key 1: "), "{error}");
}

#[test]
fn bad_input_is_refused_with_a_clear_error_and_changes_nothing() {
    let stack = Stack::start(2, &[]);
    let (status, _) =
        send(&stack, reqwest::Method::PUT, "/set", &json!([{"key": string("keep"), "value": string("v")}]));
    assert_eq!(status, 200);
    let before = everything(&stack);
    let bad = [
        json!({"key": string("x"), "value": string("y")}),
        json!([{"key": {"encoding": "hex", "data": "00"}, "value": string("y")}]),
        json!([{"key": binary("not base64!"), "value": string("y")}]),
        json!([{"key": string("no value")}]),
    ];
    for body in &bad {
        let (status, error) = send(&stack, reqwest::Method::PUT, "/set", body);
        assert_eq!(status, 400, "{body}: {error}");
        assert_eq!(error["error"], "bad_request", "{error}");
        assert!(error["message"].as_str().unwrap().contains("expected a JSON list"), "{error}");
    }
    let (status, _) = send(&stack, reqwest::Method::POST, "/query", &json!("keep"));
    assert_eq!(status, 400);
    let many: Vec<Value> = (0..10_001).map(|i| string(&i.to_string())).collect();
    let (status, error) = send(&stack, reqwest::Method::POST, "/query", &Value::Array(many));
    assert_eq!(status, 400);
    assert!(error["message"].as_str().unwrap().contains("at most 10000"), "{error}");
    assert_eq!(everything(&stack), before);

    // A form POST, as curl sends without -H 'Content-Type: application/json',
    // is what a cross-site page could send: refused, with the fix named.
    let form = http().post(format!("{}/fetch", stack.url)).body("[]").send().unwrap();
    assert_eq!(form.status(), 415);
    assert!(form.text().unwrap().contains("application/json"));
}

#[test]
fn a_node_that_cannot_answer_fails_its_keys_only_and_reads_say_so() {
    let stack = Stack::start(3, &[]);
    let nodes: Vec<NodeInfo> = http().get(format!("{}/nodes", stack.url)).send().unwrap().json().unwrap();
    let ring = build(&PlacementSpec::Ring { vnodes: 160 }, &members_of(&nodes));
    let owner = |k: &str| ring.owner_of(k.as_bytes()).unwrap().to_string();
    // Two keys on different nodes; the first one's node is paused.
    let a = "held-up".to_string();
    let b = (0..).map(|i| format!("other-{i}")).find(|k| owner(k) != owner(&a)).unwrap();
    let pid = common::node_pid(stack.pid(), &owner(&a)).expect("serve's node process");
    let paused = common::Paused::new(pid);
    let items = json!([{"key": string(&a), "value": string("1")}, {"key": string(&b), "value": string("2")}]);
    let (status, outcome) = send(&stack, reqwest::Method::PUT, "/set", &items);
    assert_eq!(status, 200);
    assert_eq!(outcome, json!([{"keys_added": 1, "keys_failed": [string(&a)]}]));
    let (status, error) = send(&stack, reqwest::Method::POST, "/query", &json!([string(&b), string(&a)]));
    assert_eq!(status, 503, "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.starts_with(&format!("1 of 2 keys could not be read (first: {a:?}")), "{message}");
    drop(paused);
    let (status, presence) = send(&stack, reqwest::Method::POST, "/query", &json!([string(&b)]));
    assert_eq!((status, presence), (200, json!([{"key": string(&b), "value": true}])));
}
