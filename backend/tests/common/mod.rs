//! Test support: starts a real `shardscope serve` (backend, node processes)
//! on fresh loopback ports and stops it, children included, when dropped.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub fn shardscope_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_shardscope"))
}

/// The workspace root (where dist/ is built).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A running `shardscope serve`.
pub struct Stack {
    child: Child,
    pub url: String,
    /// The embedded registry's base URL.
    pub registry: String,
    _data: tempfile::TempDir,
}

impl Stack {
    /// Starts `shardscope serve --port 0 --nodes N` with extra arguments and
    /// waits for the line that names its URL.
    pub fn start(nodes: usize, extra: &[&str]) -> Stack {
        Self::start_with_env(nodes, extra, &[])
    }

    /// Like [`Stack::start`], with extra environment variables.
    pub fn start_with_env(nodes: usize, extra: &[&str], env: &[(&str, &str)]) -> Stack {
        let mut args = vec!["--nodes".to_string(), nodes.to_string()];
        args.extend(extra.iter().map(|a| a.to_string()));
        Self::serve(&args.iter().map(String::as_str).collect::<Vec<_>>(), env)
    }

    /// `shardscope serve --port 0 --registry-port 0` with `args`, on a fresh data dir.
    pub fn serve(args: &[&str], env: &[(&str, &str)]) -> Stack {
        let data = tempfile::tempdir().unwrap();
        let mut child = Command::new(shardscope_exe())
            .args(["serve", "--port", "0", "--registry-port", "0"])
            .env_remove("CONSUL_HTTP_ADDR")
            .env_remove("SHARDSCOPE_ADMIN_TOKEN")
            .arg("--data-dir")
            .arg(data.path())
            .args(args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("shardscope serve starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("ShardScope serving at ") {
                    let url = rest.split_whitespace().next().unwrap().trim_end_matches('/').to_string();
                    let registry = rest.split(", registry ").nth(1).and_then(|r| r.split_whitespace().next());
                    let _ = tx.send((url, registry.unwrap_or_default().to_string()));
                }
            }
        });
        let (url, registry) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(found) => found,
            Err(_) => {
                let _ = child.kill();
                panic!("shardscope serve did not report its URL within 60 s");
            }
        };
        Stack { child, url, registry, _data: data }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Serve's `--data-dir` (one `node-N` directory per node it launched).
    pub fn data_dir(&self) -> &std::path::Path {
        self._data.path()
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        terminate(&mut self.child)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            terminate(&mut self.child);
        }
    }
}

/// A process started by a test, killed when dropped, so that a failing test
/// leaves none behind.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// SIGTERM, then SIGKILL if the process is still alive after 10 s.
pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    // SAFETY: kill(2) on a child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    for _ in 0..100 {
        if let Ok(Some(status)) = child.try_wait() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    child.wait().unwrap()
}

/// Reads the line a `shardscope node` prints once it listens,
/// `listening ID tcp://HOST:PORT`; returns the id and the endpoint.
pub fn node_ready(node: &mut Child) -> (String, String) {
    let mut ready = String::new();
    BufReader::new(node.stdout.take().expect("the node's stdout is piped")).read_line(&mut ready).unwrap();
    match ready.split_whitespace().collect::<Vec<_>>()[..] {
        ["listening", id, endpoint] => (id.to_string(), endpoint.to_string()),
        _ => panic!("not a node's ready line: {ready:?}"),
    }
}

/// Pids of the live children of `pid` (from /proc).
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // Field 4 (after the parenthesised name) is the parent pid.
        let Some(after) = stat.rsplit_once(") ") else {
            continue;
        };
        let fields: Vec<&str> = after.1.split_whitespace().collect();
        if fields.first() == Some(&"Z") {
            continue;
        }
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            out.push(child);
        }
    }
    out
}

pub fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')).unwrap_or(false))
        .unwrap_or(false)
}
