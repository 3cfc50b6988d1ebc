//! `shardscope serve`: starts the embedded registry (unless a Consul agent is
//! given), the membership watch and the storage nodes, waits until the nodes
//! have registered, and serves the page, the WebSocket and the REST API until
//! Ctrl-C or SIGTERM; then stops every node it started (they deregister) and
//! the registry.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use shardscope_shared::placement::PlacementSpec;
use tower_http::services::{ServeDir, ServeFile};

use shardscope_node::consul::Consul;
use shardscope_node::wal::FsyncPolicy;

use crate::cluster::Cluster;
use crate::registry::Registry;
use crate::supervisor::Supervisor;

/// Settings of `shardscope serve`.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub bind: String,
    pub port: u16,
    pub nodes: usize,
    pub placement: PlacementSpec,
    pub data_dir: PathBuf,
    pub static_dir: PathBuf,
    /// A Consul agent to use; `None` runs the embedded registry.
    pub registry: Option<String>,
    /// Port of the embedded registry (0 picks a free one).
    pub registry_port: u16,
    /// The nodes' fsync policy.
    pub fsync: FsyncPolicy,
}

/// The whole HTTP surface: REST, `/ws`, and the built page as static files.
pub fn app(cluster: Cluster, static_dir: &std::path::Path) -> Router {
    let page = ServeDir::new(static_dir).fallback(ServeFile::new(static_dir.join("index.html")));
    crate::rest::routes().route("/ws", get(crate::ws::upgrade)).fallback_service(page).with_state(cluster)
}

pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    if !opts.static_dir.join("index.html").exists() {
        tracing::warn!(dir = %opts.static_dir.display(), "no built page here; the API still works (build it with scripts/run.sh)");
    }
    let listener = tokio::net::TcpListener::bind((opts.bind.as_str(), opts.port)).await?;
    let addr: SocketAddr = listener.local_addr()?;

    // Membership: a real Consul agent, or the embedded stand-in.
    let (stop_registry, registry_stopped) = tokio::sync::oneshot::channel::<()>();
    let (consul, embedded) = match &opts.registry {
        Some(agent) => (Consul::new(agent), None),
        None => {
            let reg_listener = tokio::net::TcpListener::bind((opts.bind.as_str(), opts.registry_port)).await?;
            let reg_addr = reg_listener.local_addr()?;
            let task = tokio::spawn(Registry::new().serve(reg_listener, async {
                let _ = registry_stopped.await;
            }));
            tracing::info!(%reg_addr, "embedded registry (Consul HTTP API) listening");
            (Consul::new(&format!("http://{reg_addr}")), Some(task))
        }
    };

    let cluster = Cluster::new(opts.placement.clone());
    let watch = tokio::spawn(crate::membership::watch(consul.clone(), cluster.clone()));
    let mut supervisor = Supervisor::new(&opts.data_dir, &opts.bind, consul.base(), opts.fsync)?;
    let started = start_nodes(&mut supervisor, &cluster, opts.nodes).await;
    let result = match started {
        Err(e) => Err(e),
        Ok(()) => {
            println!(
                "ShardScope serving at http://{addr}/ with {} nodes, registry {} (Ctrl-C stops everything)",
                cluster.nodes().len(),
                consul.base()
            );
            let app = app(cluster, &opts.static_dir);
            axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await.map_err(Into::into)
        }
    };
    // Nodes deregister as they stop, so the registry goes last.
    tracing::info!("stopping nodes");
    supervisor.stop_all().await;
    watch.abort();
    let _ = stop_registry.send(());
    if let Some(task) = embedded {
        let _ = task.await;
    }
    result
}

/// Launches `n` nodes and waits until the membership watch has seen them all
/// registered and healthy.
async fn start_nodes(supervisor: &mut Supervisor, cluster: &Cluster, n: usize) -> anyhow::Result<()> {
    let mut events = cluster.subscribe();
    for _ in 0..n {
        supervisor.launch().await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while cluster.nodes().len() < n {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(_) => {}
            Err(_) => anyhow::bail!("only {} of {n} nodes registered within 30 s", cluster.nodes().len()),
        }
    }
    Ok(())
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
