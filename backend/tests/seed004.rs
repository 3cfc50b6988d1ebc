//! Seed 004's four tests, as its text describes them, through its own
//! executables and flags: `master-svr -p MASTER_PORT`, `svr -p PORT -m
//! MASTER_PORT`, `clt -p PORT -o GET|PUT -k KEY -v VALUE -m MASTER_PORT -d
//! 0|1` (exit 0 ok, 1 failed, 2 a GET of a missing key). Real processes on
//! fresh loopback ports, in a directory of the test's own.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::browser::members_of;
use common::{free_port, KillOnDrop};
use shardscope_shared::placement::{build, PlacementSpec};
use shardscope_shared::protocol::NodeInfo;

/// The seed's processes, run from one directory (as the seed runs them).
struct Harness {
    dir: tempfile::TempDir,
    master: u16,
    _master: KillOnDrop,
    servers: Vec<(u16, KillOnDrop)>,
}

fn exe(name: &str) -> Command {
    let path = match name {
        "master-svr" => env!("CARGO_BIN_EXE_master-svr"),
        "svr" => env!("CARGO_BIN_EXE_svr"),
        _ => env!("CARGO_BIN_EXE_clt"),
    };
    Command::new(path)
}

fn spawn(mut cmd: Command, dir: &Path) -> KillOnDrop {
    let child = cmd.current_dir(dir).env("RUST_LOG", "warn").stdout(Stdio::null()).spawn().unwrap();
    KillOnDrop(child)
}

impl Harness {
    /// `master-svr -p MASTER_PORT`, answering once it serves.
    fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let master = free_port();
        let mut cmd = exe("master-svr");
        cmd.args(["-p", &master.to_string()]);
        let process = spawn(cmd, dir.path());
        let harness = Harness { dir, master, _master: process, servers: Vec::new() };
        harness.wait_for("the master to serve", || harness.nodes().map(|_| ()));
        harness
    }

    /// `svr -p PORT -m MASTER_PORT`, answering once the master lists it.
    fn add_server(&mut self) -> u16 {
        let port = free_port();
        let mut cmd = exe("svr");
        cmd.args(["-p", &port.to_string(), "-m", &self.master.to_string()]);
        self.servers.push((port, spawn(cmd, self.dir.path())));
        let want = self.servers.len();
        self.wait_for("the server to join", || self.nodes().filter(|n| n.len() == want).map(|_| ()));
        port
    }

    fn nodes(&self) -> Option<Vec<NodeInfo>> {
        let url = format!("http://127.0.0.1:{}/nodes", self.master);
        reqwest::blocking::get(url).ok()?.json().ok()
    }

    /// `clt` with `args`: its exit code and what it printed.
    fn clt(&self, args: &[&str]) -> (i32, String) {
        let out = exe("clt").args(args).current_dir(self.dir.path()).env("RUST_LOG", "warn").output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    fn put(&self, key: &str, value: &str) -> i32 {
        self.clt(&["-o", "PUT", "-k", key, "-v", value, "-m", &self.master.to_string(), "-d", "0"]).0
    }

    fn get(&self, key: &str) -> (i32, String) {
        self.clt(&["-o", "GET", "-k", key, "-m", &self.master.to_string(), "-d", "0"])
    }

    /// GET straight from the server on `port`.
    fn get_direct(&self, port: u16, key: &str) -> (i32, String) {
        self.clt(&["-p", &port.to_string(), "-o", "GET", "-k", key, "-m", &self.master.to_string(), "-d", "1"])
    }

    /// The port of the server shared's placement gives `key` (the master
    /// routes with the ring, 160 virtual nodes).
    fn owner_port(&self, key: &str) -> u16 {
        let nodes = self.nodes().unwrap();
        let ring = build(&PlacementSpec::Ring { vnodes: 160 }, &members_of(&nodes));
        let owner = ring.owner_of(key.as_bytes()).unwrap();
        let addr = &nodes.iter().find(|n| n.id == owner).unwrap().addr;
        addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Every key is on exactly the server that owns it, and no other.
    fn placed_as_shared_says(&self, keys: &[(String, String)]) -> bool {
        keys.iter().all(|(k, v)| {
            let owner = self.owner_port(k);
            self.servers.iter().all(|(port, _)| {
                let got = self.get_direct(*port, k);
                if *port == owner {
                    got == (0, v.clone())
                } else {
                    got.0 == 2
                }
            })
        })
    }

    fn wait_for<T>(&self, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = probe() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn pairs(n: usize) -> Vec<(String, String)> {
    (0..n).map(|i| (format!("key-{i}"), format!("value-{i}"))).collect()
}

/// Test 1: a single shard serves PUT and GET; a missing key exits 2; usage
/// errors exit 1 (not clap's 2, which means a missing key here).
#[test]
fn test_1_single_shard() {
    let mut h = Harness::start();
    let port = h.add_server();
    assert_eq!(h.put("k1", "v1"), 0);
    assert_eq!(h.get("k1"), (0, "v1".to_string()));
    assert_eq!(h.get_direct(port, "k1"), (0, "v1".to_string()));
    assert_eq!(h.get("never-written").0, 2);
    assert_eq!(h.get_direct(port, "never-written").0, 2);
    assert_eq!(h.clt(&["-o", "PUT", "-k", "k2", "-m", &h.master.to_string(), "-d", "0"]).0, 1, "PUT without -v");
    assert_eq!(h.clt(&["-o", "FETCH", "-k", "k1", "-m", &h.master.to_string()]).0, 1, "unknown operation");
    assert_eq!(h.clt(&["-o", "GET", "-k", "k1", "-d", "1"]).0, 1, "-d 1 without -p");
}

/// Tests 2-4: two shards serve PUT and GET; each key lives on exactly the
/// shard the placement gives it; a third server joins and the keys are
/// redistributed over all three, none lost.
#[test]
fn tests_2_to_4_two_shards_sharding_and_a_new_server_joining() {
    let mut h = Harness::start();
    h.add_server();
    h.add_server();
    let keys = pairs(40);
    for (k, v) in &keys {
        assert_eq!(h.put(k, v), 0, "PUT {k}");
    }
    // Test 2: two shards serve every key.
    for (k, v) in &keys {
        assert_eq!(h.get(k), (0, v.clone()), "GET {k}");
    }
    // Test 3: sharding: each key on its own shard only, and both used.
    assert!(h.placed_as_shared_says(&keys));
    let used: std::collections::HashSet<u16> = keys.iter().map(|(k, _)| h.owner_port(k)).collect();
    assert_eq!(used.len(), 2);

    // Test 4: a new server joins; the master moves its share to it.
    let new = h.add_server();
    h.wait_for("the keys to be redistributed", || h.placed_as_shared_says(&keys).then_some(()));
    let on_new = keys.iter().filter(|(k, _)| h.get_direct(new, k).0 == 0).count();
    assert!(on_new > 0, "the new server got none of the 40 keys");
    for (k, v) in &keys {
        assert_eq!(h.get(k), (0, v.clone()), "GET {k} after the join");
    }
}
