//! Launches the storage node processes that `shardscope serve` owns, keeps
//! them running, and stops them.
//!
//! Each node is this same binary run as `shardscope node --port 0 --id ID
//! --data-dir DATA/ID`. One task per node owns its process: when the process
//! exits without having been asked to stop, the task starts it again with the
//! same id and data dir (it recovers its data from its log) on a fresh port,
//! after a back-off of 100 ms that doubles with each exit in the last minute;
//! a node that exits more than 5 times within a minute is given up on
//! (`failed`). Each change of state reaches the cluster view, hence `GET
//! /nodes` and the pages ([`Supervision`]).
//!
//! No orphans: stopping a node is a message to its task, which stops the
//! process it is running or starting and starts no other, so no restart can
//! race past [`Supervisor::stop_all`]. Children also get `PR_SET_PDEATHSIG`,
//! so they stop even if `serve` is killed outright.

use std::collections::{BTreeMap, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use shardscope_consul::api::format_duration;
use shardscope_node::wal::FsyncPolicy;
use shardscope_shared::protocol::{NodeInfo, Supervision, SupervisionState};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use crate::cluster::Cluster;

/// How long a node may take to recover its data and listen.
const STARTUP: Duration = Duration::from_secs(60);
/// The wait before the first restart; it doubles with each exit in the window.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Exits counted for the back-off and the crash-loop limit.
const CRASH_WINDOW: Duration = Duration::from_secs(60);
/// More exits than this within the window: the node is not started again.
const CRASH_LIMIT: usize = 5;
/// How long a stopped node may take to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How to start a node process; shared by the supervising tasks.
struct Launcher {
    exe: PathBuf,
    data_dir: PathBuf,
    bind: String,
    registry: String,
    /// Sent by the nodes as `CONSUL_HTTP_TOKEN` (the embedded registry's node token).
    registry_token: Option<String>,
    fsync: FsyncPolicy,
    /// Given to every node as `--deregister-after`.
    deregister_after: Duration,
}

/// A node this supervisor runs: the task that owns its process.
struct ManagedNode {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Owns the node processes of one `serve`.
pub struct Supervisor {
    launcher: Arc<Launcher>,
    cluster: Cluster,
    nodes: BTreeMap<String, ManagedNode>,
    /// Set by [`Supervisor::stop_all`]: no node starts after it.
    closed: bool,
}

impl Supervisor {
    /// Nodes will register with the Consul agent at `registry`; their
    /// supervision is shown in `cluster`.
    pub fn new(
        data_dir: &Path,
        bind: &str,
        registry: &str,
        registry_token: Option<String>,
        fsync: FsyncPolicy,
        deregister_after: Duration,
        cluster: Cluster,
    ) -> anyhow::Result<Self> {
        let launcher = Launcher {
            exe: std::env::current_exe()?,
            data_dir: data_dir.to_path_buf(),
            bind: bind.to_string(),
            registry: registry.to_string(),
            registry_token,
            fsync,
            deregister_after,
        };
        Ok(Supervisor { launcher: Arc::new(launcher), cluster, nodes: BTreeMap::new(), closed: false })
    }

    /// Starts the next node ([`Supervisor::next_id`]); see
    /// [`Supervisor::launch_named`].
    pub async fn launch(&mut self) -> anyhow::Result<NodeInfo> {
        let id = self.next_id();
        self.launch_named(&id).await
    }

    /// The next id: `node-N` past every node this supervisor runs and every
    /// `node-N` directory in the data dir (so no node starts on another's
    /// data).
    pub fn next_id(&self) -> String {
        let number = |name: &str| name.strip_prefix("node-").and_then(|n| n.parse::<u64>().ok());
        let on_disk: Vec<u64> = std::fs::read_dir(&self.launcher.data_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| number(&entry.file_name().to_string_lossy()))
            .collect();
        let last = self.nodes.keys().filter_map(|id| number(id)).chain(on_disk).max().unwrap_or(0);
        format!("node-{}", last + 1)
    }

    /// Where node `id` keeps its data.
    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.launcher.data_dir.join(id)
    }

    /// Starts node `id` on its data dir (`DATA/ID`, where it recovers what it
    /// held) on a port the system picks (the node binds port 0 and says which
    /// it got, so no other process can take the port in between); returns
    /// once it listens. It registers itself, and the membership watch sees
    /// it. From then on it is restarted whenever it exits unasked. A node
    /// that `failed` may be launched again.
    pub async fn launch_named(&mut self, id: &str) -> anyhow::Result<NodeInfo> {
        let plain = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if id.is_empty() || id.starts_with('.') || !id.chars().all(plain) {
            anyhow::bail!("{id:?} is not a node id (letters, digits, '-', '_', '.')");
        }
        if self.closed {
            anyhow::bail!("serve is stopping: not starting {id}");
        }
        if self.nodes.get(id).is_some_and(|n| !n.task.is_finished()) {
            anyhow::bail!("{id} is already running here");
        }
        let (stop, stopped) = watch::channel(false);
        let (ready, listening) = oneshot::channel();
        let task = tokio::spawn(supervise(self.launcher.clone(), self.cluster.clone(), id.to_string(), stopped, ready));
        // Kept before it listens, so that stop_all stops it even if this
        // call is abandoned while it starts.
        self.nodes.insert(id.to_string(), ManagedNode { stop, task });
        let outcome = listening.await.unwrap_or_else(|_| Err(anyhow::anyhow!("{id} was stopped before it listened")));
        if outcome.is_err() {
            self.nodes.remove(id);
        }
        outcome
    }

    /// Stops node `id` if this supervisor started it; `false` otherwise.
    pub async fn stop(&mut self, id: &str) -> bool {
        let Some(node) = self.nodes.remove(id) else { return false };
        node.stop.send_replace(true);
        let _ = node.task.await;
        self.cluster.set_supervision(id, None);
        true
    }

    /// Stops every node (SIGTERM, then SIGKILL for any still alive after
    /// 5 s), including any being started or restarted, and starts no more.
    pub async fn stop_all(&mut self) {
        self.closed = true;
        for node in self.nodes.values() {
            node.stop.send_replace(true);
        }
        for (_, node) in std::mem::take(&mut self.nodes) {
            let _ = node.task.await;
        }
    }
}

/// How one attempt to start a node ended.
enum Started {
    Listening(Child, String),
    /// It could not start, exited, or did not listen in time: why.
    Failed(String),
    /// Asked to stop meanwhile; the process is gone.
    Stopped,
}

impl Launcher {
    /// Starts node `id` and waits until it says where it listens.
    async fn start(&self, id: &str, stop: &mut watch::Receiver<bool>) -> Started {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("node")
            .args(["--port", "0", "--bind", &self.bind, "--id", id])
            .args(["--registry", &self.registry])
            .args(["--fsync", &self.fsync.to_string()])
            .args(["--deregister-after", &format_duration(self.deregister_after)])
            .arg("--data-dir")
            .arg(self.data_dir.join(id))
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
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => return Started::Failed(format!("could not be started: {e}")),
        };
        let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let ready = tokio::select! {
            ready = tokio::time::timeout(STARTUP, lines.next_line()) => ready,
            () = stop_requested(stop) => {
                terminate(&mut child).await;
                return Started::Stopped;
            }
        };
        match ready {
            Ok(Ok(Some(line))) => {
                let addr = line.rsplit(' ').next().unwrap_or_default().to_string();
                // Nothing more is expected on stdout; read it anyway so the node never blocks on it.
                tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
                Started::Listening(child, addr)
            }
            Err(_) => {
                terminate(&mut child).await;
                Started::Failed(format!("did not listen within {STARTUP:?}"))
            }
            Ok(_) => {
                let status = terminate(&mut child).await;
                Started::Failed(format!("{} before it listened", describe(status)))
            }
        }
    }
}

/// Runs node `id` until asked to stop: starts it, answers `ready` with the
/// first start's outcome (a first start that fails is not retried), and
/// restarts it whenever it exits, with back-off, until it exits more than
/// [`CRASH_LIMIT`] times within [`CRASH_WINDOW`].
async fn supervise(
    launcher: Arc<Launcher>,
    cluster: Cluster,
    id: String,
    mut stop: watch::Receiver<bool>,
    ready: oneshot::Sender<anyhow::Result<NodeInfo>>,
) {
    let mut ready = Some(ready);
    let mut status = Supervision { state: SupervisionState::Running, restarts: 0, last_exit: None };
    let mut exits: VecDeque<Instant> = VecDeque::new();
    loop {
        let exit = match launcher.start(&id, &mut stop).await {
            Started::Stopped => return,
            Started::Failed(why) => match ready.take() {
                Some(ready) => {
                    let _ = ready.send(Err(anyhow::anyhow!("{id}: {why}; see its log above")));
                    return;
                }
                None => why,
            },
            Started::Listening(mut child, addr) => {
                status.state = SupervisionState::Running;
                cluster.set_supervision(&id, Some(status.clone()));
                tracing::info!(%id, %addr, pid = child.id(), restarts = status.restarts, "node started");
                if let Some(ready) = ready.take() {
                    let info = NodeInfo { id: id.clone(), addr, healthy: true, supervision: Some(status.clone()) };
                    let _ = ready.send(Ok(info));
                }
                tokio::select! {
                    exited = child.wait() => match exited {
                        Ok(exited) => describe(Some(exited)),
                        Err(e) => format!("lost track of it: {e}"),
                    },
                    () = stop_requested(&mut stop) => {
                        terminate(&mut child).await;
                        return;
                    }
                }
            }
        };
        let now = Instant::now();
        exits.push_back(now);
        while exits.front().is_some_and(|&t| now.duration_since(t) > CRASH_WINDOW) {
            exits.pop_front();
        }
        status.last_exit = Some(exit.clone());
        if exits.len() > CRASH_LIMIT {
            status.state = SupervisionState::Failed;
            cluster.set_supervision(&id, Some(status));
            tracing::error!(%id, last_exit = %exit, "node exited {} times within {CRASH_WINDOW:?}: not restarting it", exits.len());
            return;
        }
        let delay = FIRST_BACKOFF * 2u32.pow(exits.len() as u32 - 1);
        status.state = SupervisionState::Restarting;
        status.restarts += 1;
        cluster.set_supervision(&id, Some(status.clone()));
        tracing::warn!(%id, last_exit = %exit, ?delay, "node exited unasked: restarting it");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop_requested(&mut stop) => return,
        }
    }
}

/// Completes once the node is asked to stop (or its supervisor is gone).
async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|&stop| stop).await;
}

/// `exit status 1`, `killed by signal 9`.
fn describe(status: Option<ExitStatus>) -> String {
    match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => format!("ended ({s})"),
        },
        None => "exited, status unknown".to_string(),
    }
}

/// SIGTERM, then SIGKILL after [`STOP_GRACE`]; how the process ended.
async fn terminate(child: &mut Child) -> Option<ExitStatus> {
    if let Some(pid) = child.id() {
        // SAFETY: plain kill(2) on a child we own.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(status) => status.ok(),
        Err(_) => {
            let _ = child.kill().await;
            child.wait().await.ok()
        }
    }
}
