//! Test support: starts a real `shardscope serve` (backend, node processes)
//! or `shardscope registry` on fresh loopback ports and stops it, children
//! included, when dropped.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
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
    /// The data dir, when the stack made it.
    _data: Option<tempfile::TempDir>,
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
        let mut stack = Self::serve_in(data.path(), args, env);
        stack._data = Some(data);
        stack
    }

    /// Like [`Stack::serve`], on the data dir `dir` (which outlives it).
    pub fn serve_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Stack {
        let mut child = Command::new(shardscope_exe())
            .args(["serve", "--port", "0", "--registry-port", "0"])
            .env_remove("CONSUL_HTTP_ADDR")
            .env_remove("SHARDSCOPE_ADMIN_TOKEN")
            .arg("--data-dir")
            .arg(dir)
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
        Stack { child, url, registry, _data: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        terminate(&mut self.child)
    }

    /// Kills serve outright (SIGKILL) and reaps it; its nodes get their
    /// parent-death signal.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            terminate(&mut self.child);
        }
    }
}

/// A running `shardscope registry`, stopped (SIGTERM) when dropped.
pub struct RegistryProcess {
    child: Child,
    /// Its base URL, as it printed it.
    pub url: String,
}

/// `shardscope registry --port 0 --data-dir DIR`, not started.
pub fn registry_command(data_dir: &Path) -> Command {
    let mut cmd = Command::new(shardscope_exe());
    cmd.args(["registry", "--port", "0", "--data-dir"])
        .arg(data_dir)
        .env_remove("SHARDSCOPE_ADMIN_TOKEN")
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()));
    cmd
}

impl RegistryProcess {
    /// Starts `shardscope registry --port 0` on `data_dir` and reads the
    /// address it prints once it listens.
    pub fn start(data_dir: &Path) -> RegistryProcess {
        let mut child = registry_command(data_dir).stdout(Stdio::piped()).spawn().expect("shardscope registry starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let Some(url) = line.trim().strip_prefix("Embedded registry (Consul HTTP API subset) at ") else {
            let _ = child.kill();
            panic!("not the registry's ready line: {line:?} ({:?})", child.wait());
        };
        RegistryProcess { url: url.to_string(), child }
    }

    /// Sends SIGTERM and waits for the exit; returns the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        terminate(&mut self.child)
    }

    /// Kills it outright (SIGKILL) and reaps it.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            terminate(&mut self.child);
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
