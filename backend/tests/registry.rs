//! The embedded registry keeps its catalog and KV in its data dir, with real
//! processes: `shardscope registry --data-dir` restarted after SIGTERM, or
//! after SIGKILL right after an acknowledged write, has the same KV pairs
//! (values, flags, indexes), services and checks, and an index that did not
//! go backwards; a state file that does not read back stops the start with
//! an error naming it, and so does one past the registry's limits. `serve`
//! keeps its registry in DATA_DIR/registry, so a restart, clean or not,
//! comes back with its cluster.
//!
//! Node identity end to end: without serve's node token no local process
//! registers a `shardscope-node` (403), and one that has it cannot make a
//! second member of a live node's address; a node id another live node
//! holds is refused (the node exits with the error), while a node killed
//! and restarted on its own data at a new port is taken back at once.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    children_of, node_ready, pid_alive, registry_command, shardscope_exe, KillOnDrop, RegistryProcess, Stack,
};
use shardscope_consul::api::{CatalogService, CheckDefinition, KvPair, ServiceEntry, ServiceRegistration};
use shardscope_shared::protocol::NodeInfo;

/// `PUT {url}/v1/{path}`: the registry's answer (`true` / `false` for KV).
async fn put(url: &str, path: &str, body: impl Into<reqwest::Body>) -> String {
    let resp = reqwest::Client::new().put(format!("{url}/v1/{path}")).body(body).send().await.unwrap();
    assert!(resp.status().is_success(), "PUT {path}: {}", resp.status());
    resp.text().await.unwrap()
}

/// `GET {url}/v1/{path}` decoded, and its `X-Consul-Index`.
async fn get<T: serde::de::DeserializeOwned>(url: &str, path: &str) -> (T, u64) {
    let resp = reqwest::get(format!("{url}/v1/{path}")).await.unwrap();
    assert_eq!(resp.status(), 200, "GET {path}");
    let index = resp.headers()["x-consul-index"].to_str().unwrap().parse().unwrap();
    (resp.json().await.unwrap(), index)
}

async fn kv_tree(url: &str) -> Vec<KvPair> {
    get(url, "kv/app/?recurse").await.0
}

async fn index_of(url: &str) -> u64 {
    get::<serde_json::Value>(url, "catalog/services").await.1
}

async fn register(url: &str, id: &str, check: CheckDefinition) {
    let reg = ServiceRegistration {
        id: Some(id.into()),
        name: "web".into(),
        address: "127.0.0.1".into(),
        port: 8080,
        tags: vec!["blue".into()],
        check: Some(check),
        ..Default::default()
    };
    put(url, "agent/service/register", serde_json::to_vec(&reg).unwrap()).await;
}

/// The check statuses of service `web`, by service id.
async fn statuses(url: &str) -> Vec<(String, String)> {
    let (entries, _): (Vec<ServiceEntry>, _) = get(url, "health/service/web").await;
    entries
        .into_iter()
        .map(|e| (e.service.id, e.checks.iter().find(|c| !c.service_id.is_empty()).unwrap().status.clone()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn ttl_check() -> CheckDefinition {
    CheckDefinition {
        check_id: Some("web-1-ttl".into()),
        ttl: Some("30s".into()),
        status: Some("passing".into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn kv_services_and_index_survive_a_sigterm_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("registry"); // made by the registry
    let reg = RegistryProcess::start(&data);
    let url = reg.url.clone();
    assert_eq!(put(&url, "kv/app/size?flags=7", "3").await, "true");
    assert_eq!(put(&url, "kv/app/lock?cas=0", "a").await, "true");
    let lock = kv_tree(&url).await.into_iter().find(|p| p.key == "app/lock").unwrap();
    assert_eq!(put(&url, &format!("kv/app/lock?cas={}", lock.modify_index), "b").await, "true");
    assert_eq!(put(&url, &format!("kv/app/lock?cas={}", lock.modify_index), "c").await, "false");
    assert_eq!(put(&url, "kv/app/bin", vec![0u8, 255, b'\n']).await, "true");
    register(&url, "web-1", ttl_check()).await;
    let alive = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = |addr: String| CheckDefinition {
        tcp: Some(addr),
        interval: Some("100ms".into()),
        timeout: Some("1s".into()),
        ..Default::default()
    };
    register(&url, "web-2", tcp(alive.local_addr().unwrap().to_string())).await;
    let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    register(&url, "web-3", tcp(gone.local_addr().unwrap().to_string())).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while statuses(&url).await.iter().any(|(_, status)| status != "passing") {
        assert!(Instant::now() < deadline, "checks passing: {:?}", statuses(&url).await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kv = kv_tree(&url).await;
    assert_eq!(kv.len(), 3);
    let index = index_of(&url).await;
    assert!(reg.stop().success());
    assert!(data.join(shardscope_consul::registry::STATE_FILE).exists());

    // web-3's endpoint goes away while the registry is down.
    drop(gone);
    let reg = RegistryProcess::start(&data);
    let url = reg.url.clone();
    assert_eq!(
        statuses(&url).await,
        pairs(&[("web-1", "passing"), ("web-2", "passing"), ("web-3", "critical")]),
        "checks restored in their status, and probed again before the first answer"
    );
    assert_eq!(kv_tree(&url).await, kv, "values, flags and indexes are back");
    assert!(index_of(&url).await >= index, "the index did not go backwards");
    let (catalog, _): (Vec<CatalogService>, _) = get(&url, "catalog/service/web").await;
    assert_eq!(catalog[0].service_id, "web-1");
    assert_eq!((catalog[0].service_port, catalog[0].service_tags.clone()), (8080, Some(vec!["blue".to_string()])));
    // The check definitions are back: web-1's TTL check answers to its id.
    put(&url, "agent/check/warn/web-1-ttl", "").await;
    assert_eq!(statuses(&url).await[0].1, "warning");
    // KV goes on from where it was: cas against the restored index, new
    // writes above the old index.
    let lock = kv.iter().find(|p| p.key == "app/lock").unwrap();
    assert_eq!(put(&url, &format!("kv/app/lock?cas={}", lock.modify_index), "d").await, "true");
    let lock = kv_tree(&url).await.into_iter().find(|p| p.key == "app/lock").unwrap();
    assert!(lock.modify_index > index);
    assert_eq!(lock.create_index, kv.iter().find(|p| p.key == "app/lock").unwrap().create_index);
    drop(alive);
}

#[tokio::test]
async fn an_acknowledged_write_survives_sigkill_right_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let reg = RegistryProcess::start(dir.path());
    let url = reg.url.clone();
    assert_eq!(put(&url, "kv/app/a", "1").await, "true");
    register(&url, "web-1", ttl_check()).await;
    let before = index_of(&url).await;
    assert_eq!(put(&url, "kv/app/b?flags=9", "2").await, "true");
    reg.kill();

    let reg = RegistryProcess::start(dir.path());
    let kv = kv_tree(&reg.url).await;
    let b = kv.iter().find(|p| p.key == "app/b").expect("the last acknowledged write is there");
    assert_eq!((b.value.as_deref(), b.flags, b.modify_index), (Some("Mg=="), 9, before + 1));
    assert_eq!(kv.len(), 2);
    assert!(index_of(&reg.url).await > before);
    assert_eq!(statuses(&reg.url).await, pairs(&[("web-1", "passing")]));
}

/// Starts `shardscope registry` on `dir` expecting it to fail; its stderr.
fn failed_start(dir: &Path) -> String {
    let mut child =
        registry_command(dir).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the registry started on a broken state file");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_truncated_or_corrupt_state_file_stops_the_start_and_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let reg = RegistryProcess::start(dir.path());
    put(&reg.url, "kv/app/a", "1").await;
    register(&reg.url, "web-1", ttl_check()).await;
    assert!(reg.stop().success());
    let state = dir.path().join(shardscope_consul::registry::STATE_FILE);
    let good = std::fs::read(&state).unwrap();

    let truncated: [&[u8]; 4] = [&good[..good.len() - 10], &good[..1], b"", b"\0\0\0\0"];
    for broken in truncated {
        std::fs::write(&state, broken).unwrap();
        let stderr = failed_start(dir.path());
        assert!(stderr.contains(&state.display().to_string()), "{stderr}");
        assert_eq!(std::fs::read(&state).unwrap(), broken, "the file is left as it was");
    }

    // Well-formed, but past the limits (a hand-edited file): not loaded.
    let text = String::from_utf8(good.clone()).unwrap();
    let big_value = "QUFB".repeat(200 * 1024); // 600 KiB once decoded, past 512 KiB
    let oversized = text.replacen("\"Value\":\"MQ==\"", &format!("\"Value\":\"{big_value}\""), 1);
    assert_ne!(oversized, text);
    std::fs::write(&state, &oversized).unwrap();
    let stderr = failed_start(dir.path());
    assert!(stderr.contains(&state.display().to_string()) && stderr.contains("too large"), "{stderr}");
    let huge = vec![b' '; shardscope_consul::registry::MAX_STATE + 1];
    std::fs::write(&state, &huge).unwrap();
    let stderr = failed_start(dir.path());
    assert!(stderr.contains(&state.display().to_string()) && stderr.contains("larger than"), "{stderr}");

    // A temp file left by a save a crash interrupted is removed; the state
    // file is what counts.
    std::fs::write(&state, &good).unwrap();
    let temp = dir.path().join("state.json.tmp");
    std::fs::write(&temp, &good[..good.len() / 2]).unwrap();
    let reg = RegistryProcess::start(dir.path());
    assert_eq!(kv_tree(&reg.url).await.len(), 1);
    assert!(!temp.exists());
}

async fn nodes(stack: &Stack) -> Vec<NodeInfo> {
    reqwest::get(format!("{}/nodes", stack.url)).await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_comes_back_with_its_registry_after_sigterm_or_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::serve_in(dir.path(), &["--nodes", "2"], &[]);
    let http = reqwest::Client::new();
    for i in 0..20 {
        let resp = http.put(format!("{}/kv/k{i}", stack.url)).body(format!("v{i}")).send().await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert!(stack.stop().success());
    assert!(dir.path().join("registry").join(shardscope_consul::registry::STATE_FILE).exists());

    // Without --nodes: the cluster size serve recorded in its registry's KV.
    let stack = Stack::serve_in(dir.path(), &[], &[]);
    assert_eq!(nodes(&stack).await.len(), 2);
    let (kv, _): (Vec<KvPair>, _) = get(&stack.registry, "kv/cluster_size").await;
    assert_eq!(kv[0].value.as_deref(), Some("Mg=="));

    // Killed outright, serve leaves its nodes' registrations behind; a
    // restart finds them dead and starts its nodes again.
    let children = children_of(stack.pid());
    stack.kill();
    let deadline = Instant::now() + Duration::from_secs(15);
    while children.iter().any(|&pid| pid_alive(pid)) {
        assert!(Instant::now() < deadline, "nodes outlived serve");
        std::thread::sleep(Duration::from_millis(50));
    }
    let stack = Stack::serve_in(dir.path(), &[], &[]);
    let now = nodes(&stack).await;
    assert_eq!(
        now.iter().map(|n| (n.id.as_str(), n.healthy)).collect::<Vec<_>>(),
        [("node-1", true), ("node-2", true)]
    );
    for i in 0..20 {
        let got = http.get(format!("{}/kv/k{i}", stack.url)).send().await.unwrap();
        assert_eq!(got.text().await.unwrap(), format!("v{i}"));
    }
}

/// `shardscope node --port 0 --registry URL --data-dir DATA ARGS`, with
/// `CONSUL_HTTP_TOKEN_FILE` when given, its stderr piped.
fn node_cmd(registry: &str, token_file: Option<&Path>, data: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(shardscope_exe());
    cmd.args(["node", "--port", "0", "--registry", registry])
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("CONSUL_HTTP_TOKEN")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(file) = token_file {
        cmd.env("CONSUL_HTTP_TOKEN_FILE", file);
    }
    cmd
}

/// Waits (10 s at most) for `node` to exit; its status and stderr.
fn exit_of(mut node: KillOnDrop) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the node kept running");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stderr = String::new();
    std::io::Read::read_to_string(node.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    (node.wait().unwrap(), stderr)
}

/// The `shardscope-node` registrations: id and port.
async fn registered_nodes(stack: &Stack) -> Vec<(String, u16)> {
    let (entries, _): (Vec<ServiceEntry>, _) = get(&stack.registry, "health/service/shardscope-node").await;
    entries.into_iter().map(|e| (e.service.id, e.service.port)).collect()
}

/// Waits (20 s at most) until `pred` holds for the backend's node list.
async fn until_nodes(stack: &Stack, what: &str, pred: impl Fn(&[NodeInfo]) -> bool) -> Vec<NodeInfo> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = nodes(stack).await;
        if pred(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "{what}: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_impostor_node_is_refused_and_the_cluster_keeps_its_nodes() {
    let stack = Stack::start(2, &[]);
    let http = reqwest::Client::new();
    for i in 0..20 {
        http.put(format!("{}/kv/k{i}", stack.url)).body(format!("v{i}")).send().await.unwrap();
    }
    let members = nodes(&stack).await;
    let registered = registered_nodes(&stack).await;
    let token_file = common::node_token_file(stack.data_dir());
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&token_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the node token is for this user only");

    // Any local process: no token, no registration.
    let impostor = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake = ServiceRegistration {
        id: Some("impostor".into()),
        name: shardscope_consul::api::NODE_SERVICE.into(),
        address: "127.0.0.1".into(),
        port: impostor.local_addr().unwrap().port(),
        ..Default::default()
    };
    let refused = http.put(format!("{}/v1/agent/service/register", stack.registry)).json(&fake).send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.unwrap().contains("Permission denied"));
    let (status, stderr) =
        exit_of(KillOnDrop(node_cmd(&stack.registry, None, tempfile::tempdir().unwrap().path(), &[]).spawn().unwrap()));
    assert!(!status.success() && stderr.contains("403") && stderr.contains("token"), "{status}: {stderr}");
    assert_eq!(registered_nodes(&stack).await, registered, "nothing registered");

    // With the token, a second id for node-1's address is registered but
    // not admitted: one process is one member. A real node that joins after
    // it shows the watch has seen both.
    let node1 = members.iter().find(|n| n.id == "node-1").unwrap();
    let port: u16 = node1.addr.rsplit(':').next().unwrap().parse().unwrap();
    let alias = ServiceRegistration { id: Some("alias".into()), port, ..fake.clone() };
    let token = std::fs::read_to_string(&token_file).unwrap();
    let url = format!("{}/v1/agent/service/register", stack.registry);
    let accepted = http.put(&url).header("X-Consul-Token", token.trim()).json(&alias).send().await.unwrap();
    assert_eq!(accepted.status(), 200);
    let data = tempfile::tempdir().unwrap();
    let mut real =
        KillOnDrop(node_cmd(&stack.registry, Some(&token_file), data.path(), &["--id", "real"]).spawn().unwrap());
    node_ready(&mut real);
    let now = until_nodes(&stack, "the real node joins", |n| n.iter().any(|n| n.id == "real" && n.healthy)).await;
    assert_eq!(now.iter().map(|n| n.id.as_str()).collect::<Vec<_>>(), ["node-1", "node-2", "real"], "no alias");
    for i in 0..20 {
        let got = http.get(format!("{}/kv/k{i}", stack.url)).send().await.unwrap();
        assert_eq!(got.text().await.unwrap(), format!("v{i}"), "the nodes keep serving");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_node_id_is_refused_and_a_node_restarted_on_its_data_is_taken_back() {
    let stack = Stack::start(1, &[]);
    let token_file = common::node_token_file(stack.data_dir());
    let (first_data, other_data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let by_hand = ["--id", "by-hand"];
    let mut first =
        KillOnDrop(node_cmd(&stack.registry, Some(&token_file), first_data.path(), &by_hand).spawn().unwrap());
    let (_, endpoint) = node_ready(&mut first);
    until_nodes(&stack, "by-hand joins", |n| n.iter().any(|n| n.id == "by-hand" && n.healthy)).await;
    let registered = registered_nodes(&stack).await;

    // Another node (another data dir) under the same id: refused, it exits.
    let second = KillOnDrop(node_cmd(&stack.registry, Some(&token_file), other_data.path(), &by_hand).spawn().unwrap());
    let (status, stderr) = exit_of(second);
    assert!(!status.success(), "{stderr}");
    let port = endpoint.rsplit(':').next().unwrap();
    assert!(stderr.contains("\"by-hand\" is taken by a live node") && stderr.contains(port), "{stderr}");
    assert_eq!(registered_nodes(&stack).await, registered, "the first keeps its registration");
    assert!(nodes(&stack).await.iter().any(|n| n.id == "by-hand" && n.addr == endpoint && n.healthy));

    // kill -9, and back on its data at a new port before its check has
    // failed: the same instance, taken back at once.
    first.kill().unwrap();
    first.wait().unwrap();
    let mut again =
        KillOnDrop(node_cmd(&stack.registry, Some(&token_file), first_data.path(), &by_hand).spawn().unwrap());
    let (_, moved) = node_ready(&mut again);
    assert_ne!(moved, endpoint);
    until_nodes(&stack, "reconnected at the new port", |n| {
        n.iter().any(|n| n.id == "by-hand" && n.addr == moved && n.healthy)
    })
    .await;
    assert!(again.try_wait().unwrap().is_none(), "it keeps running");
}
