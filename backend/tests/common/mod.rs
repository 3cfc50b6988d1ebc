//! Test support: starts a real `shardscope serve` (backend, node processes)
//! or `shardscope registry` on fresh loopback ports and stops it, children
//! included, when dropped.

#![allow(dead_code)] // each test binary uses its own part of this module

pub mod browser;

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
    /// serve's data dir.
    dir: PathBuf,
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
        let mut all: Vec<String> = ["--port", "0", "--registry-port", "0", "--data-dir"].map(String::from).into();
        all.push(dir.display().to_string());
        all.extend(args.iter().map(|a| a.to_string()));
        let (child, url, registry) =
            spawn_serve(&all, env, Stdio::inherit()).unwrap_or_else(|e| panic!("shardscope serve: {e}"));
        Stack { child, url, registry, dir: dir.to_path_buf(), _data: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Serve's `--data-dir` (one `node-N` directory per node it launched).
    pub fn data_dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// The embedded registry's node token file, for nodes started by hand.
    pub fn token_file(&self) -> PathBuf {
        node_token_file(&self.dir)
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

/// Where `serve --data-dir DIR` keeps its embedded registry's node token:
/// a node started by hand registers with `CONSUL_HTTP_TOKEN_FILE` set to it.
pub fn node_token_file(data_dir: &Path) -> PathBuf {
    data_dir.join("registry").join("token")
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

/// Spawns `shardscope serve ARGS` and waits (60 s at most) for the line
/// that names its URL; returns it with the backend's and the registry's URLs.
fn spawn_serve(args: &[String], env: &[(&str, &str)], stderr: Stdio) -> Result<(Child, String, String), String> {
    let mut child = Command::new(shardscope_exe())
        .arg("serve")
        .args(args)
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("SHARDSCOPE_ADMIN_TOKEN")
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
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
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok((url, registry)) => Ok((child, url, registry)),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let _ = child.kill();
            let _ = child.wait();
            Err("did not report its URL within 60 s".into())
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            Err(format!("exited before it served ({status})"))
        }
    }
}

/// A free loopback port: bound, read and released. Another process could
/// take it before it is used, so this is only for ports that must stay the
/// same across restarts (serve started again "with the same command").
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `shardscope serve` on two fixed loopback ports and a data dir that
/// outlive the process, so it can be stopped or killed and started again
/// with the same command. Its stderr (and its nodes') is appended to a log
/// file. Dropping it stops serve and every node process it had started.
pub struct RestartableStack {
    pub url: String,
    pub registry: String,
    args: Vec<String>,
    child: Option<Child>,
    log: PathBuf,
    data: tempfile::TempDir,
}

impl RestartableStack {
    /// `shardscope serve --port P --registry-port R --data-dir D EXTRA..`
    /// with P and R free now and D fresh.
    pub fn start(extra: &[&str], log: &std::path::Path) -> Result<RestartableStack, String> {
        let data = tempfile::tempdir().unwrap();
        let (port, registry_port) = (free_port(), free_port());
        let mut args: Vec<String> = vec!["--port".into(), port.to_string()];
        args.extend(["--registry-port".into(), registry_port.to_string(), "--data-dir".into()]);
        args.push(data.path().display().to_string());
        args.extend(extra.iter().map(|a| a.to_string()));
        let mut stack = RestartableStack {
            url: format!("http://127.0.0.1:{port}"),
            registry: format!("http://127.0.0.1:{registry_port}"),
            args,
            child: None,
            log: log.to_path_buf(),
            data,
        };
        stack.restart()?;
        Ok(stack)
    }

    /// Starts serve (again) with the same command; returns once it serves.
    pub fn restart(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "serve is still running");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
        let (child, url, registry) = spawn_serve(&self.args, &[("RUST_LOG", &level)], Stdio::from(log))?;
        if url != self.url || registry != self.registry {
            return Err(format!("serves at {url} (registry {registry}), not {} ({})", self.url, self.registry));
        }
        self.child = Some(child);
        Ok(())
    }

    /// The command line, for reports.
    pub fn command(&self) -> String {
        format!("shardscope serve {}", self.args.join(" "))
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.data.path()
    }

    /// Serve's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `kill -9` serve; then waits (10 s at most, then SIGKILL) for the node
    /// processes it had started, which get SIGTERM from their parent-death
    /// signal, so that the next start does not share a data dir with them
    /// (as a service manager stops a unit's whole process group first).
    pub fn kill9(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let nodes = children_of(child.id());
        let _ = child.kill();
        let _ = child.wait();
        reap(&nodes, Duration::from_secs(10));
    }

    /// SIGTERM serve and wait for it (10 s, then SIGKILL) and its nodes.
    pub fn sigterm(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let nodes = children_of(child.id());
        let status = terminate(&mut child);
        reap(&nodes, Duration::from_secs(10));
        Some(status)
    }
}

impl Drop for RestartableStack {
    fn drop(&mut self) {
        self.sigterm();
    }
}

/// Waits for `pids` (not our children) to exit; SIGKILLs those left after `grace`.
fn reap(pids: &[u32], grace: Duration) {
    let deadline = std::time::Instant::now() + grace;
    while pids.iter().any(|p| pid_alive(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in pids.iter().filter(|p| pid_alive(**p)) {
        // SAFETY: kill(2) on a node process this test's serve started.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
}

/// A `shardscope node` started by the test itself (as an operator would,
/// with `--registry` and serve's node token file); stopped with SIGTERM when dropped.
pub struct NodeProcess {
    child: Child,
    pub id: String,
    pub endpoint: String,
}

impl NodeProcess {
    /// `shardscope node ARGS` with `CONSUL_HTTP_TOKEN_FILE=token_file` (for
    /// a node that registers), stderr appended to `log`; returns once it listens.
    pub fn start(args: &[&str], token_file: Option<&Path>, log: &std::path::Path) -> NodeProcess {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let mut command = Command::new(shardscope_exe());
        command.arg("node").args(args).env_remove("CONSUL_HTTP_ADDR").env_remove("CONSUL_HTTP_TOKEN");
        if let Some(file) = token_file {
            command.env("CONSUL_HTTP_TOKEN_FILE", file);
        }
        let mut child = command
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("shardscope node starts");
        let (id, endpoint) = node_ready(&mut child);
        NodeProcess { child, id, endpoint }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `kill -9`, and wait for it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            terminate(&mut self.child);
        }
    }
}

/// The arguments a process was started with (from /proc).
pub fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into()).collect()
        })
        .unwrap_or_default()
}

/// The pid of the node process `serve` runs as `--id id`.
pub fn node_pid(serve: u32, id: &str) -> Option<u32> {
    children_of(serve).into_iter().find(|pid| {
        let args = cmdline(*pid);
        args.iter().any(|a| a == "node") && args.windows(2).any(|w| w[0] == "--id" && w[1] == id)
    })
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

/// A tiny deterministic generator (xorshift64*), so a test's choices (a
/// history, a writer's operations) are the same every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A process's resident memory, in bytes.
pub fn rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS in /proc/PID/status");
    line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 1024
}

/// A node process paused with SIGSTOP; SIGCONT when dropped (even on a panic).
pub struct Paused(u32);

impl Paused {
    pub fn new(pid: u32) -> Paused {
        signal(pid, libc::SIGSTOP);
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a process this test (or its serve) started.
    unsafe { libc::kill(pid as i32, sig) };
}
