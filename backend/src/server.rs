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

use shardscope_consul::api::NODE_SERVICE;
use shardscope_consul::client::Consul;
use shardscope_consul::registry::Registry;
use shardscope_node::wal::FsyncPolicy;

use crate::admin::{Admin, CLUSTER_SIZE, MAX_NODES};
use crate::cluster::Cluster;
use crate::guard::Guard;
use crate::rebalance::{Change, Rebalancer, Settings};
use crate::state::StateStore;
use crate::supervisor::Supervisor;

/// Nodes `serve` runs when neither `--nodes` nor Consul says.
const DEFAULT_NODES: usize = 3;
/// Where, in the data dir, the embedded registry keeps its catalog and KV
/// (the nodes' dirs are `node-N`).
pub const REGISTRY_DIR: &str = "registry";

/// The file in [`REGISTRY_DIR`] naming where the embedded registry listens
/// (`http://HOST:PORT`), for nodes started by hand (and seed 004's `svr`).
pub const REGISTRY_ADDRESS_FILE: &str = "address";

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
    /// The Host and Origin checks, for the page's server and the embedded registry.
    pub guard: Guard,
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

/// The whole HTTP surface: REST, `/ws`, and the built page as static
/// files, every route behind `guard`.
pub fn app(state: App, static_dir: &std::path::Path, guard: &Guard) -> Router {
    let page = ServeDir::new(static_dir).fallback(ServeFile::new(static_dir.join("index.html")));
    let routes = crate::rest::routes()
        .merge(crate::seed002::routes())
        .route("/ws", get(crate::ws::upgrade))
        .fallback_service(page)
        // A body may carry one value of up to the node's limit.
        .layer(DefaultBodyLimit::max(MAX_VALUE));
    guard.wrap(routes).with_state(state)
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
    // The embedded registry takes the admin token for every write, and its
    // node token for the nodes' (see crate::token): our nodes present the
    // node token, our own client the admin token if there is one (it also
    // writes cluster_size), else the node token. A real agent gets
    // CONSUL_HTTP_TOKEN (or CONSUL_HTTP_TOKEN_FILE).
    let (consul, embedded, node_token) = match &opts.registry {
        Some(agent) => (Consul::from_env(agent)?, None, None),
        None => {
            let dir = opts.data_dir.join(REGISTRY_DIR);
            let registry = Registry::with_data_dir(&dir)?;
            let (node_token, token_file) = crate::token::node_token(&dir)?;
            let registry = registry.with_token(token.clone()).with_node_token(node_token.clone());
            let reg_listener = tokio::net::TcpListener::bind((opts.bind.as_str(), opts.registry_port)).await?;
            let reg_addr = reg_listener.local_addr()?;
            let guard = opts.guard.clone();
            let stopped = async {
                let _ = registry_stopped.await;
            };
            let task = tokio::spawn(registry.serve_wrapped(reg_listener, stopped, move |r| guard.wrap(r)));
            tracing::info!(%reg_addr, "embedded registry (Consul HTTP API) listening");
            let address_file = dir.join(REGISTRY_ADDRESS_FILE);
            shardscope_consul::file::replace(&address_file, format!("http://{reg_addr}\n").as_bytes(), 0o644)
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", address_file.display()))?;
            println!(
                "Nodes started by hand register with CONSUL_HTTP_TOKEN_FILE={} (the registry's node token) \
                 at the address in {}",
                token_file.display(),
                address_file.display()
            );
            let consul =
                Consul::new(&format!("http://{reg_addr}")).with_token(token.as_ref().unwrap_or(&node_token).as_str());
            (consul, Some(task), Some(node_token))
        }
    };

    // The recorded cluster, if there is one, comes back as it was: its
    // members (relaunched below on their data), its placement and history,
    // and the change it was making.
    let store = StateStore::new(consul.clone());
    let recorded = match tokio::select! { r = store.load() => Some(r), () = &mut shutdown => None } {
        Some(recorded) => recorded?,
        None => None,
    };
    let cluster = Cluster::new(opts.placement.clone(), Some(store));
    if let Some(state) = &recorded {
        cluster.restore(state)?;
        if state.placement != opts.placement && opts.placement != PlacementSpec::default() {
            tracing::warn!(
                recorded = state.placement.name(),
                "the cluster keeps its recorded placement; change it with PUT /placement"
            );
        }
    }
    let rebalancer = Rebalancer::spawn(cluster.clone(), opts.rebalance);
    let watch = tokio::spawn(crate::membership::watch(consul.clone(), cluster.clone(), rebalancer.clone()));
    let registry_token = node_token.map(|t| t.as_str().to_string());
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
        started = start_nodes(&admin, opts.nodes, recorded.is_some()) => Some(started),
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
            let app = app(App { cluster, admin: admin.clone() }, &opts.static_dir, &opts.guard);
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

/// Brings the cluster up. A recorded cluster: relaunches the members this
/// `serve` owns on their own data, waits until every member is back (they
/// register, the watch reconnects them), rebuilds a bounded placement from
/// where the keys are, and resumes the change that was in progress. A new
/// one: settles the desired node count (`--nodes`, else `cluster_size` in
/// Consul KV, seed 001, else 3) and launches as many nodes as the registry
/// lacks; they join one by one. Either way, launches nodes until the
/// desired count is met.
async fn start_nodes(admin: &Admin, requested: Option<usize>, recorded: bool) -> anyhow::Result<usize> {
    let cluster = &admin.cluster;
    let mut events = cluster.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let n = if recorded {
        for (id, _) in cluster.owned_members() {
            admin.supervisor.lock().await.launch_named(&id).await?;
        }
        let all_back = |c: &Cluster| c.member_ids().iter().all(|id| c.is_connected(id));
        while !all_back(cluster) {
            if tokio::time::timeout_at(deadline, events.recv()).await.is_err() {
                let missing: Vec<String> =
                    cluster.member_ids().into_iter().filter(|id| !cluster.is_connected(id)).collect();
                tracing::warn!(?missing, "members not back within 60 s: their keys answer 503 until they are");
                break;
            }
        }
        cluster.relocate().await;
        if cluster.pending().is_some() {
            tracing::info!("a change was in progress: finishing it");
            admin.rebalancer.submit(Change::Resume);
        }
        desired(admin, requested).await?.unwrap_or(cluster.desired_nodes()).max(cluster.member_ids().len())
    } else {
        desired(admin, requested).await?.unwrap_or(DEFAULT_NODES)
    };
    admin.set_desired(n).await?;
    let (running, _) = admin.consul.health_service(NODE_SERVICE, true, None, Duration::from_secs(5)).await?;
    let have = if recorded { cluster.member_ids().len() } else { running.len() };
    for _ in have..n {
        admin.launch_new(None).await?;
    }
    // Serving starts once the nodes launched have joined. A recorded
    // cluster may still be finishing a long change it resumed: past the
    // deadline it serves anyway (keys are routed correctly meanwhile).
    while cluster.nodes().len() < n {
        if tokio::time::timeout_at(deadline, events.recv()).await.is_err() {
            let joined = cluster.nodes().len();
            if !recorded {
                anyhow::bail!("only {joined} of {n} nodes registered within 60 s");
            }
            tracing::warn!(joined, "still finishing the change in progress: serving meanwhile");
            break;
        }
    }
    Ok(n)
}

/// The node count asked for: `--nodes`, else `cluster_size` in Consul KV
/// (seed 001: whoever sets it there sets the cluster's size).
async fn desired(admin: &Admin, requested: Option<usize>) -> anyhow::Result<Option<usize>> {
    let (n, from) = match requested {
        Some(n) => (n, "--nodes".to_string()),
        None => match admin.consul.kv_get(CLUSTER_SIZE).await? {
            Some(v) => {
                let n = v
                    .trim()
                    .parse()
                    .map_err(|_| anyhow::anyhow!("{CLUSTER_SIZE} in Consul KV is {v:?}, not a count"))?;
                (n, format!("{CLUSTER_SIZE} in Consul KV"))
            }
            None => return Ok(None),
        },
    };
    if n > MAX_NODES {
        anyhow::bail!("{from} asks for {n} nodes; one serve runs at most {MAX_NODES}");
    }
    Ok(Some(n))
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
