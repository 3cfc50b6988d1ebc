//! Supervision with real processes: how long the registry keeps a dead
//! node (`--deregister-after`), `serve` restarting the nodes it owns, nodes
//! re-registering when their registration vanishes, and the backend
//! reconnecting a known node that comes back at a new address.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{children_of, shardscope_exe, Stack};
use shardscope_consul::api::NODE_SERVICE;
use shardscope_consul::client::Consul;

/// The command line of process `pid`, one argument per item.
fn cmdline(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

/// The value following `flag` on process `pid`'s command line.
fn flag_of(pid: u32, flag: &str) -> Option<String> {
    let args = cmdline(pid);
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned()
}

/// Starts `shardscope node --port 0` by hand, registering with `registry`.
fn node_by_hand(registry: &str, data: &std::path::Path, id: &str, extra: &[&str]) -> (Child, String) {
    let mut node = Command::new(shardscope_exe())
        .args(["node", "--port", "0", "--registry", registry, "--id", id])
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (_, endpoint) = common::node_ready(&mut node);
    (node, endpoint)
}

/// The ids registered as `shardscope-node`, passing or not.
async fn registered(consul: &Consul) -> Vec<String> {
    let (entries, _) = consul.health_service(NODE_SERVICE, false, None, Duration::from_secs(1)).await.unwrap();
    entries.into_iter().map(|e| e.service.id).collect()
}

/// Polls `check` every 50 ms until it holds, for at most `limit`.
async fn eventually<F: std::future::Future<Output = bool>>(limit: Duration, what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deregister_after_sets_how_long_a_dead_node_stays_registered() {
    let stack = Stack::start(1, &["--deregister-after", "7s"]);
    let launched = children_of(stack.pid());
    assert_eq!(launched.len(), 1);
    assert_eq!(flag_of(launched[0], "--deregister-after").as_deref(), Some("7s"), "serve passes it to its nodes");

    let consul = Consul::new(&stack.registry);
    let data = tempfile::tempdir().unwrap();
    let (mut node, _) = node_by_hand(&stack.registry, data.path(), "by-hand", &["--deregister-after", "1s"]);
    eventually(Duration::from_secs(5), "registered", || async {
        registered(&consul).await.contains(&"by-hand".into())
    })
    .await;
    node.kill().unwrap();
    node.wait().unwrap();
    let killed = Instant::now();
    // Critical within a check interval (1 s), gone 1 s after that.
    eventually(Duration::from_secs(6), "deregistered", || async {
        !registered(&consul).await.contains(&"by-hand".into())
    })
    .await;
    println!("killed -> deregistered: {:?}", killed.elapsed());

    let bad = Command::new(shardscope_exe())
        .args(["node", "--port", "0", "--data-dir", "/nonexistent", "--deregister-after", "soon"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a positive duration"));
}
