//! Launches and stops the storage node processes that `shardscope serve` owns.
//!
//! Each node is this same binary run as `shardscope node --port P --data-dir
//! D`. Children get `PR_SET_PDEATHSIG`, so they stop even if `serve` is
//! killed outright; on a clean exit `serve` stops them itself with SIGTERM.

use std::path::{Path, PathBuf};
use std::time::Duration;

use shardscope_consul::api::format_duration;
use shardscope_node::wal::FsyncPolicy;
use shardscope_shared::protocol::NodeInfo;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long a node may take to recover its data and listen.
const STARTUP: Duration = Duration::from_secs(60);

/// A node process started by this backend.
pub struct ManagedNode {
    pub info: NodeInfo,
    child: Child,
}

/// Owns the node processes of one `serve`.
pub struct Supervisor {
    exe: PathBuf,
    data_dir: PathBuf,
    bind: String,
    registry: String,
    /// Sent by the nodes as `CONSUL_HTTP_TOKEN` (the embedded registry's token).
    registry_token: Option<String>,
    fsync: FsyncPolicy,
    /// Given to every node as `--deregister-after`.
    deregister_after: Duration,
    nodes: Vec<ManagedNode>,
    launched: usize,
}

impl Supervisor {
    /// Nodes will register with the Consul agent at `registry`.
    pub fn new(
        data_dir: &Path,
        bind: &str,
        registry: &str,
        registry_token: Option<String>,
        fsync: FsyncPolicy,
        deregister_after: Duration,
    ) -> anyhow::Result<Self> {
        Ok(Supervisor {
            exe: std::env::current_exe()?,
            data_dir: data_dir.to_path_buf(),
            bind: bind.to_string(),
            registry: registry.to_string(),
            registry_token,
            fsync,
            deregister_after,
            nodes: Vec::new(),
            launched: 0,
        })
    }

    /// Starts the next node (`node-1`, `node-2`, ..., see [`Supervisor::next_id`]) on a port the system
    /// picks (the node binds port 0 and says which it got, so no other
    /// process can take the port in between); returns once it listens. It
    /// registers itself, and the membership watch sees it.
    pub async fn launch(&mut self) -> anyhow::Result<NodeInfo> {
        let id = self.next_id();
        self.launch_named(&id).await
    }

    /// The next unused id: `node-N` above every id launched and every
    /// `node-N` directory already in the data dir.
    pub fn next_id(&mut self) -> String {
        let on_disk = std::fs::read_dir(&self.data_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("node-")?.parse::<usize>().ok())
            .max()
            .unwrap_or(0);
        self.launched = self.launched.max(on_disk) + 1;
        format!("node-{}", self.launched)
    }

    /// Where node `id` keeps its data.
    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.data_dir.join(id)
    }

    /// Starts node `id` on its own data dir (a known node, relaunched after
    /// a restart of `serve`, recovers its data); returns once it listens.
    pub async fn launch_named(&mut self, id: &str) -> anyhow::Result<NodeInfo> {
        let id = id.to_string();
        let dir = self.dir_of(&id);
        let mut cmd = Command::new(&self.exe);
        cmd.arg("node")
            .args(["--port", "0", "--bind", &self.bind, "--id", &id])
            .args(["--registry", &self.registry])
            .args(["--fsync", &self.fsync.to_string()])
            .args(["--deregister-after", &format_duration(self.deregister_after)])
            .arg("--data-dir")
            .arg(&dir)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(token) = &self.registry_token {
            cmd.env("CONSUL_HTTP_TOKEN", token);
        }
        // SAFETY: prctl is async-signal-safe; it only sets this child's
        // parent-death signal between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let ready = tokio::time::timeout(STARTUP, lines.next_line()).await;
        let addr = match ready {
            Ok(Ok(Some(line))) => line.rsplit(' ').next().unwrap_or_default().to_string(),
            outcome => {
                terminate(&mut child).await;
                let why = match outcome {
                    Err(_) => format!("did not listen within {STARTUP:?}"),
                    _ => {
                        format!("exited ({:?}) before it listened; see its log above", child.try_wait().ok().flatten())
                    }
                };
                anyhow::bail!("{id} {why}");
            }
        };
        // Nothing more is expected on stdout; read it anyway so the node never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let info = NodeInfo { id, addr, healthy: true };
        tracing::info!(id = %info.id, addr = %info.addr, pid = child.id(), "node started");
        self.nodes.push(ManagedNode { info: info.clone(), child });
        Ok(info)
    }

    /// Stops node `id` if this supervisor started it; `false` otherwise.
    pub async fn stop(&mut self, id: &str) -> bool {
        let Some(i) = self.nodes.iter().position(|n| n.info.id == id) else { return false };
        let mut node = self.nodes.remove(i);
        terminate(&mut node.child).await;
        true
    }

    /// Stops every node: SIGTERM, then SIGKILL for any still alive after 5 s.
    pub async fn stop_all(&mut self) {
        for node in &self.nodes {
            if let Some(pid) = node.child.id() {
                // SAFETY: plain kill(2) on a child we own.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
        }
        for node in &mut self.nodes {
            terminate(&mut node.child).await;
        }
        self.nodes.clear();
    }
}

/// SIGTERM (again, harmlessly, if already sent), then SIGKILL after 5 s.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: plain kill(2) on a child we own.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}
