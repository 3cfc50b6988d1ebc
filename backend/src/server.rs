//! `shardscope serve`: starts the embedded registry (unless a Consul agent is
//! given), the membership watch and the storage nodes, waits until the nodes
//! have registered, and serves the page, the WebSocket and the REST API until
//! Ctrl-C or SIGTERM; then stops every node it started (they deregister) and
//! the registry.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRef};
use axum::routing::get;
use axum::Router;
use shardscope_shared::placement::PlacementSpec;
use shardscope_shared::protocol::MAX_VALUE;
use tokio::sync::Mutex;
use tower_http::services::{ServeDir, ServeFile};

use shardscope_node::consul::Consul;
use shardscope_shared::consul::NODE_SERVICE;

/// Nodes `serve` runs when neither `--nodes` nor Consul says.
const DEFAULT_NODES: usize = 3;
use shardscope_node::wal::FsyncPolicy;

use crate::admin::{Admin, CLUSTER_SIZE};
use crate::cluster::Cluster;
use crate::rebalance::{Rebalancer, Settings};
use crate::registry::Registry;
use crate::supervisor::Supervisor;

/// Settings of `shardscope serve`.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub bind: String,
    pub port: u16,
    /// Nodes to run; `None` takes `cluster_size` from Consul KV (default 3).
    pub nodes: Option<usize>,
    pub placement: PlacementSpec,
    pub data_dir: PathBuf,
    pub static_dir: PathBuf,
    /// A Consul agent to use; `None` runs the embedded registry.
    pub registry: Option<String>,
    /// Port of the embedded registry (0 picks a free one).
    pub registry_port: u16,
    /// The nodes' fsync policy.
    pub fsync: FsyncPolicy,
    /// How long the registry keeps a node with a critical check registered.
    pub deregister_after: Duration,
    /// How fast rebalances move keys.
    pub rebalance: Settings,
    /// The admin token; `None` generates one when `bind` is not loopback.
    pub admin_token: Option<String>,
}

/// What every handler can reach.
#[derive(Clone)]
pub struct App {
    pub cluster: Cluster,
    pub admin: Admin,
}

impl FromRef<App> for Cluster {
    fn from_ref(app: &App) -> Cluster {
        app.cluster.clone()
    }
}

impl FromRef<App> for Admin {
    fn from_ref(app: &App) -> Admin {
        app.admin.clone()
    }
}

/// The whole HTTP surface: REST, `/ws`, and the built page as static files.
pub fn app(state: App, static_dir: &std::path::Path) -> Router {
    let page = ServeDir::new(static_dir).fallback(ServeFile::new(static_dir.join("index.html")));
    crate::rest::routes()
        .route("/ws", get(crate::ws::upgrade))
        .fallback_service(page)
        // A body may carry one value of up to the node's limit.
        .layer(DefaultBodyLimit::max(MAX_VALUE))
        .with_state(state)
}

pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    // Installed first, so a signal at any moment of start-up stops what has
    // been started instead of killing the process with its nodes running.
    let mut shutdown = Box::pin(shutdown_signal());
    if !opts.static_dir.join("index.html").exists() {
        tracing::warn!(dir = %opts.static_dir.display(), "no built page here; the API still works (build it with scripts/run.sh)");
    }
    let token = crate::token::resolve(&opts.bind, opts.admin_token.as_deref())?;
    let listener = tokio::net::TcpListener::bind((opts.bind.as_str(), opts.port)).await?;
    let addr: SocketAddr = listener.local_addr()?;
    let token = token.map(|(token, generated)| {
        if generated {
            println!(
                "Admin token (generated: {} is not loopback; set {} to choose one): {}\n  \
                 open http://{addr}/?token={} to add and remove nodes from the page",
                opts.bind,
                crate::token::ENV,
                token.as_str(),
                token.as_str()
            );
        }
        token
    });

    // Membership: a real Consul agent, or the embedded stand-in.
    let (stop_registry, registry_stopped) = tokio::sync::oneshot::channel::<()>();
    // The embedded registry takes the admin token for writes; our nodes and
    // our own client present it. A real agent gets CONSUL_HTTP_TOKEN.
    let (consul, embedded) = match &opts.registry {
        Some(agent) => (Consul::new(agent), None),
        None => {
            let reg_listener = tokio::net::TcpListener::bind((opts.bind.as_str(), opts.registry_port)).await?;
            let reg_addr = reg_listener.local_addr()?;
            let registry = Registry::new().with_token(token.clone());
            let task = tokio::spawn(registry.serve(reg_listener, async {
                let _ = registry_stopped.await;
            }));
            tracing::info!(%reg_addr, "embedded registry (Consul HTTP API) listening");
            let consul = Consul::new(&format!("http://{reg_addr}"));
            let consul = match &token {
                Some(t) => consul.with_token(t.as_str()),
                None => consul,
            };
            (consul, Some(task))
        }
    };

    let cluster = Cluster::new(opts.placement.clone());
    let rebalancer = Rebalancer::spawn(cluster.clone(), opts.rebalance);
    let watch = tokio::spawn(crate::membership::watch(consul.clone(), cluster.clone(), rebalancer.clone()));
    let registry_token = token.as_ref().filter(|_| embedded.is_some()).map(|t| t.as_str().to_string());
    let supervisor = Supervisor::new(
        &opts.data_dir,
        &opts.bind,
        consul.base(),
        registry_token,
        opts.fsync,
        opts.deregister_after,
        cluster.clone(),
    )?;
    let admin = Admin {
        cluster: cluster.clone(),
        rebalancer,
        supervisor: Arc::new(Mutex::new(supervisor)),
        consul: consul.clone(),
        token,
    };
    let started = tokio::select! {
        started = start_nodes(&admin, opts.nodes) => Some(started),
        () = &mut shutdown => None,
    };
    let result = match started {
        None => {
            tracing::info!("signal during start-up");
            Ok(())
        }
        Some(Err(e)) => Err(e),
        Some(Ok(_)) => {
            println!(
                "ShardScope serving at http://{addr}/ with {} nodes, registry {} (Ctrl-C stops everything)",
                cluster.nodes().len(),
                consul.base()
            );
            let app = app(App { cluster, admin: admin.clone() }, &opts.static_dir);
            axum::serve(listener, app).with_graceful_shutdown(shutdown).await.map_err(Into::into)
        }
    };
    // Nodes deregister as they stop, so the registry goes last.
    tracing::info!("stopping nodes");
    admin.supervisor.lock().await.stop_all().await;
    watch.abort();
    let _ = stop_registry.send(());
    if let Some(task) = embedded {
        let _ = task.await;
    }
    result
}

/// Settles the desired node count in Consul KV under `cluster_size` (seed
/// 001): `--nodes` when given, else the value already there, else 3. Then
/// launches as many nodes as the registry lacks, and waits until that many
/// have registered and joined.
async fn start_nodes(admin: &Admin, requested: Option<usize>) -> anyhow::Result<usize> {
    let n = match requested {
        Some(n) => n,
        None => match admin.consul.kv_get(CLUSTER_SIZE).await? {
            Some(v) => {
                v.trim().parse().map_err(|_| anyhow::anyhow!("{CLUSTER_SIZE} in Consul KV is {v:?}, not a count"))?
            }
            None => DEFAULT_NODES,
        },
    };
    admin.consul.kv_put(CLUSTER_SIZE, n.to_string().as_bytes(), None).await?;
    let cluster = &admin.cluster;
    let mut events = cluster.subscribe();
    let (running, _) = admin.consul.health_service(NODE_SERVICE, true, None, Duration::from_secs(5)).await?;
    for _ in running.len()..n {
        admin.supervisor.lock().await.launch().await?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while cluster.nodes().len() < n {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(_) => {}
            Err(_) => anyhow::bail!("only {} of {n} nodes registered within 30 s", cluster.nodes().len()),
        }
    }
    Ok(n)
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when
/// this is called, not when the future is first polled, so a signal that
/// arrives while the caller is still starting up is not lost (and does not
/// kill the process with the default action).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    }
}
