//! `shardscope serve`: starts the storage nodes, joins them into the cluster
//! view, and serves the page, the WebSocket and the REST API until Ctrl-C or
//! SIGTERM, then stops every node it started.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::routing::get;
use axum::Router;
use shardscope_shared::placement::PlacementSpec;
use tower_http::services::{ServeDir, ServeFile};

use crate::cluster::Cluster;
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
}

/// The whole HTTP surface: REST, `/ws`, and the built page as static files.
pub fn app(cluster: Cluster, static_dir: &std::path::Path) -> Router {
    let page = ServeDir::new(static_dir).fallback(ServeFile::new(static_dir.join("index.html")));
    crate::rest::routes()
        .route("/ws", get(crate::ws::upgrade))
        .fallback_service(page)
        .with_state(cluster)
}

pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    if !opts.static_dir.join("index.html").exists() {
        tracing::warn!(dir = %opts.static_dir.display(), "no built page here; the API still works (build it with scripts/run.sh)");
    }
    let listener = tokio::net::TcpListener::bind((opts.bind.as_str(), opts.port)).await?;
    let addr: SocketAddr = listener.local_addr()?;
    let cluster = Cluster::new(opts.placement.clone());
    let mut supervisor = Supervisor::new(&opts.data_dir, &opts.bind)?;
    let started = start_nodes(&mut supervisor, &cluster, opts.nodes).await;
    if let Err(e) = started {
        supervisor.stop_all().await;
        return Err(e);
    }
    println!(
        "ShardScope serving at http://{addr}/ with {} nodes (Ctrl-C stops everything)",
        opts.nodes
    );
    let app = app(cluster, &opts.static_dir);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await;
    tracing::info!("stopping nodes");
    supervisor.stop_all().await;
    Ok(result?)
}

async fn start_nodes(
    supervisor: &mut Supervisor,
    cluster: &Cluster,
    n: usize,
) -> anyhow::Result<()> {
    for _ in 0..n {
        let info = supervisor.launch().await?;
        cluster.add_node(info).await?;
    }
    Ok(())
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
