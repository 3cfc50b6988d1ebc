//! The embedded registry keeps its catalog and KV in its data dir, with real
//! processes: `shardscope registry --data-dir` restarted after SIGTERM, or
//! after SIGKILL right after an acknowledged write, has the same KV pairs
//! (values, flags, indexes), services and checks, and an index that did not
//! go backwards; a state file that does not read back stops the start with
//! an error naming it. `serve` keeps its registry in DATA_DIR/registry, so a
//! restart, clean or not, comes back with its cluster.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{children_of, pid_alive, registry_command, RegistryProcess, Stack};
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
    entries.into_iter().map(|e| (e.service.id, e.checks[0].status.clone())).collect()
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
