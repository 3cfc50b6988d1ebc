//! The walking skeleton end to end, with real processes: `shardscope serve`
//! launches node processes; REST and the CLI reach them through the backend.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{children_of, pid_alive, shardscope_exe, Stack};
use shardscope_shared::placement::{build, Member, PlacementSpec};
use shardscope_shared::protocol::NodeInfo;

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().unwrap()
}

#[test]
fn rest_put_then_get_returns_the_value_from_the_owner_shared_predicts() {
    let stack = Stack::start(3, &["--vnodes", "64"]);
    let http = http();
    let put = http.put(format!("{}/kv/k1", stack.url)).body("v1").send().unwrap();
    assert_eq!(put.status(), 200);
    let get = http.get(format!("{}/kv/k1", stack.url)).send().unwrap();
    assert_eq!(get.status(), 200);
    let owner = get.headers()["x-shardscope-node"].to_str().unwrap().to_string();
    assert_eq!(get.text().unwrap(), "v1");

    let nodes: Vec<NodeInfo> = http.get(format!("{}/nodes", stack.url)).send().unwrap().json().unwrap();
    assert_eq!(nodes.len(), 3);
    let members: Vec<Member> = nodes.iter().map(|n| Member::new(&n.id)).collect();
    let predicted = build(&PlacementSpec::Ring { vnodes: 64 }, &members);
    assert_eq!(predicted.owner_of(b"k1"), Some(owner.as_str()));

    let missing = http.get(format!("{}/kv/never-written", stack.url)).send().unwrap();
    assert_eq!(missing.status(), 404);
}

#[test]
fn keys_spread_over_nodes_and_get_all_returns_every_pair() {
    let stack = Stack::start(3, &[]);
    let http = http();
    let mut owners = std::collections::HashSet::new();
    for i in 0..60 {
        let resp = http.put(format!("{}/kv/key-{i}", stack.url)).body(format!("value-{i}")).send().unwrap();
        assert_eq!(resp.status(), 200);
        owners.insert(resp.headers()["x-shardscope-node"].to_str().unwrap().to_string());
    }
    assert_eq!(owners.len(), 3, "60 keys should land on all 3 nodes");
    let all: serde_json::Value = http.get(format!("{}/kv", stack.url)).send().unwrap().json().unwrap();
    let collection = all["collection"].as_array().unwrap();
    assert_eq!(collection.len(), 60);
    assert!(collection.iter().any(|e| e["key"] == "key-7" && e["value"] == "value-7"));

    // Paged, with a prefix: every key-1* exactly once, in order.
    let mut after: Option<String> = None;
    let mut paged = Vec::new();
    loop {
        let mut url = format!("{}/kv?prefix=key-1&limit=4", stack.url);
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page: serde_json::Value = http.get(url).send().unwrap().json().unwrap();
        paged.extend(page["page"].as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_string()),
            None => break,
        }
    }
    let mut want: Vec<String> = (0..60).map(|i| format!("key-{i}")).filter(|k| k.starts_with("key-1")).collect();
    want.sort();
    assert_eq!(paged, want);
    assert_eq!(http.get(format!("{}/kv?limit=0", stack.url)).send().unwrap().status(), 400);
}

#[test]
fn cli_get_exit_codes_follow_seed_004() {
    let stack = Stack::start(2, &[]);
    let cli = |args: &[&str]| Command::new(shardscope_exe()).args(args).args(["--addr", &stack.url]).output().unwrap();
    assert!(cli(&["put", "color", "blue"]).status.success());
    let found = cli(&["get", "color"]);
    assert_eq!(found.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&found.stdout).trim(), "blue");
    assert_eq!(cli(&["get", "no-such-key"]).status.code(), Some(2));
    // A backend that is not there is a failure: exit 1.
    let dead = Command::new(shardscope_exe()).args(["get", "color", "--addr", "http://127.0.0.1:9"]).output().unwrap();
    assert_eq!(dead.status.code(), Some(1));
}

#[test]
fn sigterm_stops_serve_and_every_node_it_started() {
    let stack = Stack::start(3, &[]);
    let pid = stack.pid();
    let nodes = children_of(pid);
    assert_eq!(nodes.len(), 3, "serve should have 3 node children, has {nodes:?}");
    let status = stack.stop();
    assert!(status.success(), "serve exits cleanly on SIGTERM: {status:?}");
    for node in nodes {
        assert!(!pid_alive(node), "node process {node} outlived serve");
    }
}

#[test]
fn sigterm_during_start_up_still_stops_every_node() {
    let data = tempfile::tempdir().unwrap();
    let mut serve = Command::new(shardscope_exe())
        .args(["serve", "--port", "0", "--registry-port", "0", "--nodes", "3"])
        .env_remove("CONSUL_HTTP_ADDR")
        .arg("--data-dir")
        .arg(data.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The signal lands as soon as the first node process exists: while
    // serve is still waiting for its nodes to register.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut nodes = children_of(serve.id());
    while nodes.is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
        nodes = children_of(serve.id());
    }
    assert!(!nodes.is_empty(), "serve launched no node within 30 s");
    let status = common::terminate(&mut serve);
    assert!(status.success(), "serve exits cleanly on SIGTERM during start-up: {status:?}");
    for node in nodes {
        assert!(!pid_alive(node), "node process {node} outlived serve");
    }
}

#[test]
fn serve_refuses_flags_outside_their_bounds_before_launching_anything() {
    for (flags, expected) in [
        (&["--placement", "maglev", "--table-size", "1000000000000"][..], "--table-size: must be 7 to 1000003"),
        (&["--vnodes", "0"][..], "--vnodes: must be 1 to 1000"),
        (&["--placement", "bounded", "--capacity", "0.5"][..], "--capacity: must be 1 to 10"),
        (&["--nodes", "1000000"][..], "--nodes asks for 1000000 nodes; one serve runs at most 256"),
    ] {
        let data = tempfile::tempdir().unwrap();
        let out = Command::new(shardscope_exe())
            .args(["serve", "--port", "0", "--registry-port", "0"])
            .args(flags)
            .env_remove("CONSUL_HTTP_ADDR")
            .arg("--data-dir")
            .arg(data.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {stderr}");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
        let launched = std::fs::read_dir(data.path())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("node-"));
        assert!(!launched, "{flags:?} launched a node");
    }
}

#[test]
fn cli_load_runs_key_sets_and_operation_files() {
    let stack = Stack::start(2, &[]);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("users.csv");
    let mut text = String::from("key,value\n");
    for i in 0..500 {
        text.push_str(&format!("user:{i},\"name, {i}\"\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let load = |file: &std::path::Path| {
        Command::new(shardscope_exe()).arg("load").arg(file).args(["--addr", &stack.url]).output().unwrap()
    };
    let out = load(&csv);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("500 operations") && summary.contains("500 ok"), "{summary}");
    let got = http().get(format!("{}/kv/user:42", stack.url)).send().unwrap().text().unwrap();
    assert_eq!(got, "name, 42");

    // The seeds' operations, in order per key: PUT, GET, DELETE, GET (not found).
    let ops = dir.path().join("operations.txt");
    std::fs::write(
        &ops,
        "{\"op\":\"PUT\",\"key\":\"k\",\"value\":\"v\"}\n{\"op\":\"GET_ONE\",\"key\":\"k\"}\n\
         {\"op\":\"DELETE\",\"key\":\"k\"}\n{\"op\":\"GET_ONE\",\"key\":\"k\"}\n{\"op\":\"GET_ALL\",}\n",
    )
    .unwrap();
    let out = load(&ops);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("4 ok, 1 not found, 0 failed"), "{summary}");

    // A bad line: a clear error naming it, and nothing loaded.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"key\":\"fine\"}\n{\"nokey\":1}\n").unwrap();
    let out = load(&bad);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 2"));
    assert_eq!(http().get(format!("{}/kv/fine", stack.url)).send().unwrap().status(), 404);
}
