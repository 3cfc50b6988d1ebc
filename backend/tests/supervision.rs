//! Supervision with real processes: how long the registry keeps a dead
//! node (`--deregister-after`), `serve` restarting the nodes it owns, nodes
//! re-registering when their registration vanishes, and the backend
//! reconnecting a known node that comes back at a new address.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{children_of, pid_alive, shardscope_exe, terminate, KillOnDrop, Stack};
use shardscope_consul::api::NODE_SERVICE;
use shardscope_consul::client::Consul;
use shardscope_shared::protocol::{NodeInfo, Supervision, SupervisionState};

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

/// The pid of the node process with `--id id` that serve runs.
fn pid_of(stack: &Stack, id: &str) -> Option<u32> {
    children_of(stack.pid()).into_iter().find(|&pid| flag_of(pid, "--id").as_deref() == Some(id))
}

/// Live processes whose command line names `path` (e.g. a data dir).
fn processes_using(path: &std::path::Path) -> Vec<u32> {
    let path = path.to_string_lossy();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if pid_alive(pid) && cmdline(pid).iter().any(|a| a.contains(path.as_ref())) {
            found.push(pid);
        }
    }
    found
}

fn kill9(pid: u32) {
    // SAFETY: kill(2) on a node process this test started, or its serve did.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

/// `GET /nodes`.
async fn nodes(stack: &Stack) -> Vec<NodeInfo> {
    reqwest::get(format!("{}/nodes", stack.url)).await.unwrap().json().await.unwrap()
}

async fn node_info(stack: &Stack, id: &str) -> NodeInfo {
    nodes(stack).await.into_iter().find(|n| n.id == id).unwrap_or_else(|| panic!("{id} is not in /nodes"))
}

/// PUTs `key-i` = `value-i` for i in 0..n; returns each key's owner.
async fn put_keys(stack: &Stack, n: usize) -> BTreeMap<String, String> {
    let http = reqwest::Client::new();
    let mut owners = BTreeMap::new();
    for i in 0..n {
        let resp = http.put(format!("{}/kv/key-{i}", stack.url)).body(format!("value-{i}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "PUT key-{i}");
        owners.insert(format!("key-{i}"), resp.headers()["x-shardscope-node"].to_str().unwrap().to_string());
    }
    owners
}

/// GETs every key whose owner passes `which` and checks its value.
async fn check_keys(stack: &Stack, owners: &BTreeMap<String, String>, which: impl Fn(&str) -> bool) {
    let http = reqwest::Client::new();
    for (key, owner) in owners.iter().filter(|(_, owner)| which(owner)) {
        let resp = http.get(format!("{}/kv/{key}", stack.url)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "GET {key} (on {owner})");
        assert_eq!(resp.headers()["x-shardscope-node"], owner.as_str());
        assert_eq!(resp.text().await.unwrap(), key.replace("key-", "value-"));
    }
}

/// Starts `shardscope node --port 0` by hand, registering with `registry`
/// (with serve's node token when it runs the registry: `token_file`).
fn node_by_hand(
    registry: &str,
    token_file: Option<&std::path::Path>,
    data: &std::path::Path,
    id: &str,
    extra: &[&str],
) -> (KillOnDrop, String) {
    let mut cmd = Command::new(shardscope_exe());
    cmd.args(["node", "--port", "0", "--registry", registry, "--id", id])
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped());
    if let Some(file) = token_file {
        cmd.env("CONSUL_HTTP_TOKEN_FILE", file);
    }
    let mut node = KillOnDrop(cmd.spawn().unwrap());
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
    let (mut node, _) =
        node_by_hand(&stack.registry, Some(&stack.token_file()), data.path(), "by-hand", &["--deregister-after", "1s"]);
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

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_node_is_restarted_on_its_data_at_a_new_port_and_serves_its_keys_again() {
    let stack = Stack::start(3, &[]);
    let owners = put_keys(&stack, 60).await;
    let victim = "node-2";
    assert!(owners.values().any(|o| o == victim), "some of 60 keys should be on {victim}");
    let before = node_info(&stack, victim).await;
    let running = Supervision { state: SupervisionState::Running, restarts: 0, last_exit: None };
    assert_eq!(before.supervision, Some(running));
    let pid = pid_of(&stack, victim).expect("serve runs node-2");

    kill9(pid);
    let killed = Instant::now();
    eventually(Duration::from_secs(15), "node-2 restarted, reconnected and healthy", || async {
        let n = node_info(&stack, victim).await;
        n.addr != before.addr && n.healthy && n.supervision.is_some_and(|s| s.state == SupervisionState::Running)
    })
    .await;
    println!("kill -9 -> serving again at a new port: {:?}", killed.elapsed());
    let after = node_info(&stack, victim).await;
    let restarted =
        Supervision { state: SupervisionState::Running, restarts: 1, last_exit: Some("killed by signal 9".into()) };
    assert_eq!(after.supervision, Some(restarted));
    let new_pid = pid_of(&stack, victim).expect("node-2 runs again");
    assert_ne!(new_pid, pid);
    assert!(!pid_alive(pid));
    assert_eq!(
        flag_of(new_pid, "--data-dir").map(std::path::PathBuf::from),
        Some(stack.data_dir().join(victim)),
        "same data dir"
    );
    // Every key reads back, node-2's recovered from its log, serve never restarted.
    check_keys(&stack, &owners, |_| true).await;
    assert_eq!(children_of(stack.pid()).len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_keeps_dying_is_given_up_on_and_the_others_keep_serving() {
    let stack = Stack::start(3, &[]);
    let owners = put_keys(&stack, 60).await;
    let victim = "node-1";
    // A directory where its log should be: every start fails at recovery.
    let wal = stack.data_dir().join(victim).join("wal.log");
    std::fs::remove_file(&wal).unwrap();
    std::fs::create_dir(&wal).unwrap();
    kill9(pid_of(&stack, victim).unwrap());

    // Killed, then 5 failed restarts (0.1 + 0.2 + 0.4 + 0.8 + 1.6 s apart): failed.
    eventually(Duration::from_secs(30), "node-1 failed", || async {
        node_info(&stack, victim).await.supervision.is_some_and(|s| s.state == SupervisionState::Failed)
    })
    .await;
    let failed = node_info(&stack, victim).await.supervision.unwrap();
    assert_eq!(failed.restarts, 5);
    assert!(failed.last_exit.as_deref().unwrap().starts_with("exit status 1"), "{failed:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pid_of(&stack, victim), None, "a failed node is not started again");
    assert_eq!(node_info(&stack, victim).await.supervision.unwrap(), failed);
    assert_eq!(children_of(stack.pid()).len(), 2);
    check_keys(&stack, &owners, |owner| owner != victim).await;
}

#[test]
fn sigterm_while_a_node_is_being_restarted_leaves_no_node_running() {
    let stack = Stack::start(2, &[]);
    let data = stack.data_dir().to_path_buf();
    let wal = data.join("node-1").join("wal.log");
    std::fs::remove_file(&wal).unwrap();
    std::fs::create_dir(&wal).unwrap();
    let victim = pid_of(&stack, "node-1").unwrap();
    kill9(victim);
    // Serve is now restarting node-1 again and again (backing off, or
    // starting a process that is about to fail) when it is told to stop.
    std::thread::sleep(Duration::from_millis(400));
    let status = stack.stop();
    assert!(status.success(), "serve exits cleanly on SIGTERM: {status:?}");
    assert_eq!(processes_using(&data), Vec::<u32>::new(), "node processes outlived serve");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_registration_is_deleted_registers_again() {
    let stack = Stack::start(1, &[]);
    let consul = Consul::new(&stack.registry);
    let data = tempfile::tempdir().unwrap();
    let (mut node, _) = node_by_hand(&stack.registry, Some(&stack.token_file()), data.path(), "by-hand", &[]);
    let listed = || async { registered(&consul).await.contains(&"by-hand".to_string()) };
    eventually(Duration::from_secs(5), "registered", listed).await;

    let deregister = format!("{}/v1/agent/service/deregister/by-hand", stack.registry);
    let token = std::fs::read_to_string(stack.token_file()).unwrap();
    let deregistered = reqwest::Client::new().put(&deregister).header("X-Consul-Token", token.trim()).send().await;
    assert_eq!(deregistered.unwrap().status(), 200);
    let deleted = Instant::now();
    eventually(Duration::from_secs(5), "registered again", listed).await;
    println!("deregistered -> registered again: {:?}", deleted.elapsed());
    // It joins again too.
    eventually(Duration::from_secs(5), "a member again", || async {
        nodes(&stack).await.iter().any(|n| n.id == "by-hand" && n.healthy)
    })
    .await;

    // Once it stops it deregisters, and stays gone.
    assert!(terminate(&mut node).success());
    assert!(!listed().await, "deregistered on SIGTERM");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!listed().await, "a stopped node does not come back");
}

#[tokio::test(flavor = "multi_thread")]
async fn nodes_register_again_with_a_registry_that_restarted_empty() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let start_registry = || {
        KillOnDrop(
            Command::new(shardscope_exe())
                .args(["registry", "--port", &port.to_string()])
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let addr = format!("127.0.0.1:{port}");
    let consul = Consul::new(&addr);
    let mut registry = start_registry();
    eventually(Duration::from_secs(10), "registry up", || async { consul.kv_get("probe").await.is_ok() }).await;
    let data = tempfile::tempdir().unwrap();
    let (mut node, _) = node_by_hand(&addr, None, data.path(), "by-hand", &[]);
    let listed = || async {
        consul
            .health_service(NODE_SERVICE, true, None, Duration::ZERO)
            .await
            .is_ok_and(|(e, _)| e.iter().any(|e| e.service.id == "by-hand"))
    };
    eventually(Duration::from_secs(5), "registered", listed).await;

    // The registry dies (the node keeps retrying) and comes back with no memory.
    registry.kill().unwrap();
    registry.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut registry = start_registry();
    eventually(Duration::from_secs(10), "registered in the new registry", listed).await;
    assert!(node.try_wait().unwrap().is_none(), "the node kept running without its registry");

    assert!(terminate(&mut node).success());
    assert!(!listed().await);
    assert!(terminate(&mut registry).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_started_again_at_a_new_port_is_reconnected_there() {
    let stack = Stack::start(2, &[]);
    let data = tempfile::tempdir().unwrap();
    let (mut node, first) = node_by_hand(&stack.registry, Some(&stack.token_file()), data.path(), "by-hand", &[]);
    eventually(Duration::from_secs(5), "by-hand joined", || async {
        nodes(&stack).await.iter().any(|n| n.id == "by-hand" && n.healthy)
    })
    .await;
    let owners = put_keys(&stack, 60).await;
    assert!(owners.values().any(|o| o == "by-hand"), "some of 60 keys should be on by-hand");

    // Stopped without deregistering, started again on its data elsewhere.
    node.kill().unwrap();
    node.wait().unwrap();
    let (mut node, second) = node_by_hand(&stack.registry, Some(&stack.token_file()), data.path(), "by-hand", &[]);
    assert_ne!(first, second, "port 0 gave another port");
    eventually(Duration::from_secs(10), "by-hand reconnected at its new address", || async {
        nodes(&stack).await.iter().any(|n| n.id == "by-hand" && n.addr == second && n.healthy)
    })
    .await;
    let by_hand = node_info(&stack, "by-hand").await;
    assert_eq!(by_hand.supervision, None, "serve does not supervise a node it did not start");
    check_keys(&stack, &owners, |_| true).await;
    assert!(terminate(&mut node).success());
}
