//! The `shardscope` command line: `serve`, `node`, and the client commands.
//!
//! Client commands talk to a running backend over HTTP (`--addr`, default
//! `$SHARDSCOPE_ADDR`, then `http://127.0.0.1:8080`), or with `--direct
//! tcp://HOST:PORT` straight to one node over ZeroMQ. `get` exits 0 when the
//! key is found, 2 when it is not, 1 on any other failure (seed 004).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use shardscope_shared::placement::{self, Algorithm, PlacementSpec};
use shardscope_shared::protocol::{ErrorCode, NodeReply, NodeRequest};

use shardscope_consul::registry::Registry;
use shardscope_node::wal::FsyncPolicy;

use crate::client::{urlencode, Remote};
use crate::guard::Guard;
use crate::rebalance::Settings;
use crate::server::ServeOptions;

#[derive(Parser, Debug)]
#[command(name = "shardscope", version, about = "A sharded key-value store you can watch")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the backend, its storage nodes and the page.
    Serve(ServeArgs),
    /// Run one storage node.
    Node(NodeArgs),
    /// Run the embedded registry alone: a single-node Consul (README: Consul compatibility).
    Registry {
        #[arg(long, default_value_t = 8500)]
        port: u16,
        /// Address to bind; loopback unless you say otherwise.
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        /// Token every write (register, check, KV) must carry; made and
        /// printed when --bind is not loopback and none is given.
        #[arg(long, env = crate::token::ENV, hide_env_values = true)]
        token: Option<String>,
        /// Keep the catalog and KV in this directory (state.json), across
        /// restarts; without it they live in memory only.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        exposure: ExposureArgs,
    },
    /// Store VALUE under KEY.
    Put {
        key: String,
        value: String,
        #[command(flatten)]
        target: Target,
    },
    /// Print the value of KEY (exit 0 found, 2 not found, 1 failure).
    Get {
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete KEY.
    Delete {
        key: String,
        #[command(flatten)]
        target: Target,
    },
    /// Print every key-value pair as JSON.
    GetAll {
        #[command(flatten)]
        target: Target,
    },
    /// Key count, bytes and operations served: per node through the
    /// backend, or of one node with --direct.
    Stats {
        #[command(flatten)]
        target: Target,
    },
    /// Run a key set (lines, CSV, JSON lines) or the seeds' operations file
    /// against the cluster, with a progress bar and a summary.
    Load {
        file: PathBuf,
        /// Requests in flight (one key's operations stay in order).
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[command(flatten)]
        target: Target,
    },
    /// Launch one more node; it joins and gets its share of the keys.
    AddNode {
        #[command(flatten)]
        target: Target,
    },
    /// Move a node's keys to the others, then deregister and stop it.
    RemoveNode {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// List the cluster's nodes.
    Nodes {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// HTTP port of the page and API (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to bind; loopback unless you say otherwise.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Storage nodes to run (recorded in Consul KV as `cluster_size`); without
    /// it, the `cluster_size` already in Consul, else 3. Nodes already
    /// registered count.
    #[arg(long)]
    pub nodes: Option<usize>,
    /// Placement algorithm.
    #[arg(long, value_enum, default_value_t = Algorithm::Ring)]
    pub placement: Algorithm,
    /// Bounded loads: no node holds more than this times the mean (1 to 10).
    #[arg(long, default_value_t = placement::Settings::default().capacity)]
    pub capacity: f64,
    /// Virtual nodes per node (ring, bounded; 1 to 1000).
    #[arg(long, default_value_t = placement::Settings::default().vnodes)]
    pub vnodes: u32,
    /// Lookup table size (maglev; 7 to 1000003, rounded up to a prime).
    #[arg(long, default_value_t = placement::Settings::default().table_size)]
    pub table_size: u64,
    /// Where the nodes keep their files (one sub-directory each) and the
    /// embedded registry its catalog and KV (`registry/`).
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// The built page (Trunk's dist/).
    #[arg(long, default_value = "./dist")]
    pub static_dir: PathBuf,
    /// A Consul agent (`host:port` or URL); without one, the embedded
    /// registry runs on --registry-port.
    #[arg(long, env = "CONSUL_HTTP_ADDR")]
    pub registry: Option<String>,
    /// Port of the embedded registry (0 picks a free one).
    #[arg(long, default_value_t = 8500)]
    pub registry_port: u16,
    /// The nodes' fsync policy (see `shardscope node --help`).
    #[arg(long, default_value = "always")]
    pub fsync: FsyncPolicy,
    /// How long the registry keeps a node whose check is critical before it
    /// deregisters it (given to every node serve launches; see `shardscope
    /// node --help`).
    #[arg(long, default_value = "30s", value_parser = consul_duration)]
    pub deregister_after: Duration,
    /// Keys a rebalance scans per batch (routing pauses for one batch at a time).
    #[arg(long, default_value_t = 1000)]
    pub rebalance_batch: usize,
    /// Most keys a rebalance moves per second (0: as fast as it goes).
    #[arg(long, default_value_t = 0)]
    pub rebalance_rate: u64,
    /// Token that adding and removing nodes, changing the algorithm and
    /// writing to the embedded registry need. Without one, a fresh token is
    /// made (and printed) when --bind is not loopback; on loopback none is needed.
    #[arg(long, env = crate::token::ENV, hide_env_values = true)]
    pub admin_token: Option<String>,
    #[command(flatten)]
    pub exposure: ExposureArgs,
}

/// Who else the HTTP servers answer to (see `guard`): by default only
/// requests naming an IP address or localhost in `Host`, and, for WebSocket
/// upgrades and changes, browsers on the server's own origin.
#[derive(Args, Debug)]
pub struct ExposureArgs {
    /// A host name (NAME or NAME:PORT) requests may name in `Host`, besides
    /// IP addresses, localhost and the --bind name; repeat for more (the
    /// variable takes a comma-separated list).
    #[arg(long = "allowed-host", value_name = "NAME", env = "SHARDSCOPE_ALLOWED_HOSTS", value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// An origin (scheme://host[:port]) whose pages may open the WebSocket
    /// and send changes, besides the server's own; repeat for more (the
    /// variable takes a comma-separated list).
    #[arg(long = "allowed-origin", value_name = "ORIGIN", env = "SHARDSCOPE_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub origins: Vec<String>,
}

impl ExposureArgs {
    fn guard(&self, bind: &str) -> anyhow::Result<Guard> {
        Guard::new(bind, &self.hosts, &self.origins)
    }
}

impl ServeArgs {
    /// The placement the flags describe, checked against its bounds.
    pub fn placement_spec(&self) -> anyhow::Result<PlacementSpec> {
        let settings =
            placement::Settings { vnodes: self.vnodes, table_size: self.table_size, capacity: self.capacity };
        let spec = self.placement.spec(settings);
        spec.validate().map_err(|e| anyhow::anyhow!("--{}", e.to_string().replace('_', "-")))?;
        Ok(spec)
    }
}

#[derive(Args, Debug)]
pub struct NodeArgs {
    /// ZeroMQ ROUTER port (0: one the system picks; the node prints
    /// `listening ID tcp://HOST:PORT` on stdout once it listens).
    #[arg(long)]
    pub port: u16,
    /// Directory for this node's files.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Address to bind; loopback unless you say otherwise.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
    /// Service id to register (default `node-` and the first 8 hex digits of
    /// the instance id the node keeps in DATA_DIR/node-id, so ids are unique
    /// across machines). A registry refuses an id another live node holds.
    #[arg(long)]
    pub id: Option<String>,
    /// Host to register for others to reach this node (default: --bind).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Consul agent to register with (`host:port` or URL); none: unregistered.
    /// The token it needs comes from CONSUL_HTTP_TOKEN, else the file
    /// CONSUL_HTTP_TOKEN_FILE names (serve's embedded registry: DATA_DIR/registry/token).
    #[arg(long, env = "CONSUL_HTTP_ADDR")]
    pub registry: Option<String>,
    /// When acknowledged writes reach the disk: `always` (fsync before every
    /// ack, shared by concurrent requests), `periodic:10ms` (write before
    /// ack, fsync at most that often), or `never` (write before ack).
    #[arg(long, default_value = "always")]
    pub fsync: FsyncPolicy,
    /// How long a deleted key's tombstone is kept (so that an older copy
    /// arriving later, say from a node that was away, cannot bring the key
    /// back), e.g. `24h`, `30m`.
    #[arg(long, default_value = "24h", value_parser = consul_duration)]
    pub tombstone_grace: Duration,
    /// How long the registry keeps this node registered while its check is
    /// critical (Consul's `DeregisterCriticalServiceAfter`: `2s`, `30s`,
    /// `5m`; a real Consul agent reaps no sooner than after 1 minute).
    #[arg(long, default_value = "30s", value_parser = consul_duration)]
    pub deregister_after: Duration,
    /// Most clients connected at once (the backend holds one connection,
    /// the registry's health check one for a moment each second); a
    /// connection past it is closed as soon as it is accepted. Keep
    /// `ulimit -n` above it.
    #[arg(long, default_value_t = shardscope_node::server::DEFAULT_MAX_CONNECTIONS as u64,
          value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub max_connections: u64,
    /// Most MiB all clients together may hold in the node (requests sent
    /// but not yet served, replies not yet taken); past it the client
    /// holding the most is disconnected. A client with 8 MiB of replies
    /// unread is paused instead: nothing more of it is read until it reads.
    #[arg(long, default_value_t = (shardscope_node::server::DEFAULT_MAX_BUFFERED >> 20) as u64,
          value_parser = clap::value_parser!(u64).range(64..=1 << 20))]
    pub max_buffered_mib: u64,
}

/// A positive duration in Consul's syntax (`500ms`, `30s`, `1m30s`).
fn consul_duration(text: &str) -> Result<Duration, String> {
    match shardscope_consul::api::parse_duration(text) {
        Some(d) if !d.is_zero() => Ok(d),
        _ => Err(format!("{text:?} is not a positive duration like 2s, 500ms or 1m30s")),
    }
}

#[derive(Args, Debug)]
pub struct Target {
    /// The backend's URL.
    #[arg(long, env = "SHARDSCOPE_ADDR", default_value = "http://127.0.0.1:8080")]
    pub addr: String,
    /// Talk to one node directly, e.g. tcp://127.0.0.1:5601.
    #[arg(long)]
    pub direct: Option<String>,
    /// The backend's admin token, for add-node and remove-node.
    #[arg(long, env = crate::token::ENV, hide_env_values = true)]
    pub token: Option<String>,
}

pub fn main(cli: Cli) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(a) => {
            let placement = a.placement_spec()?;
            let guard = a.exposure.guard(&a.bind)?;
            crate::server::serve(ServeOptions {
                bind: a.bind,
                port: a.port,
                nodes: a.nodes,
                placement,
                data_dir: a.data_dir,
                static_dir: a.static_dir,
                registry: a.registry,
                registry_port: a.registry_port,
                fsync: a.fsync,
                deregister_after: a.deregister_after,
                rebalance: Settings {
                    batch: a.rebalance_batch.clamp(1, shardscope_shared::protocol::MAX_SCAN_LIMIT),
                    max_keys_per_sec: (a.rebalance_rate > 0).then_some(a.rebalance_rate),
                },
                admin_token: a.admin_token,
                guard,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Node(a) => {
            let config = shardscope_node::NodeConfig {
                id: a.id,
                registry: a.registry.as_deref().map(shardscope_consul::client::Consul::from_env).transpose()?,
                advertise: a.advertise,
                bind: a.bind,
                port: a.port,
                data_dir: a.data_dir,
                fsync: a.fsync,
                tombstone_grace: a.tombstone_grace,
                deregister_after: a.deregister_after,
                max_connections: usize::try_from(a.max_connections)?,
                max_buffered: usize::try_from(a.max_buffered_mib << 20)?,
            };
            shardscope_node::run(config, crate::server::shutdown_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Registry { port, bind, token, data_dir, exposure } => {
            let shutdown = crate::server::shutdown_signal();
            let guard = exposure.guard(&bind)?;
            let token = crate::token::resolve(&bind, token.as_deref())?;
            let registry = match &data_dir {
                Some(dir) => Registry::with_data_dir(dir)?,
                None => Registry::new(),
            };
            let listener = tokio::net::TcpListener::bind((bind.as_str(), port)).await?;
            println!("Embedded registry (Consul HTTP API subset) at http://{}", listener.local_addr()?);
            if let Some((token, true)) = &token {
                println!(
                    "Write token (generated: {bind} is not loopback): {}; nodes send it as CONSUL_HTTP_TOKEN",
                    token.as_str()
                );
            }
            let registry = registry.with_token(token.map(|(t, _)| t));
            registry.serve_wrapped(listener, shutdown, |r| guard.wrap(r)).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Put { key, value, target } => {
            let req = NodeRequest::Put { key: key.as_str().into(), value: value.into(), version: None };
            report(send(&target, req).await?)
        }
        Command::Get { key, target } => {
            let req = NodeRequest::GetOne { key: key.as_str().into(), versioned: false };
            report(send(&target, req).await?)
        }
        Command::Delete { key, target } => {
            let req = NodeRequest::Delete { key: key.as_str().into(), version: None };
            report(send(&target, req).await?)
        }
        Command::GetAll { target } => report(send(&target, NodeRequest::GetAll).await?),
        Command::Stats { target } if target.direct.is_some() => report(send(&target, NodeRequest::Stats).await?),
        Command::Stats { target } => {
            let body = reqwest::get(format!("{}/stats", target.addr.trim_end_matches('/'))).await?;
            let stats: serde_json::Value = body.error_for_status()?.json().await?;
            println!("{}", serde_json::to_string_pretty(&stats)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Load { file, concurrency, target } => {
            let remote = Remote::connect(&target.addr, target.direct.as_deref()).await?;
            crate::load::load(&remote, &file, concurrency).await
        }
        Command::AddNode { target } => {
            let url = format!("{}/nodes", target.addr.trim_end_matches('/'));
            let post = reqwest::Client::new().post(url).header(crate::guard::WRITE_HEADER, "1");
            print_json(admin_request(post, &target).send().await?).await
        }
        Command::RemoveNode { id, target } => {
            let url = format!("{}/nodes/{}", target.addr.trim_end_matches('/'), urlencode(id.as_bytes()));
            print_json(admin_request(reqwest::Client::new().delete(url), &target).send().await?).await
        }
        Command::Nodes { target } => {
            let body = reqwest::get(format!("{}/nodes", target.addr.trim_end_matches('/'))).await?.text().await?;
            println!("{body}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// An administrative request, with the admin token when one is given.
fn admin_request(req: reqwest::RequestBuilder, target: &Target) -> reqwest::RequestBuilder {
    match &target.token {
        Some(token) => req.bearer_auth(token),
        None => req,
    }
}

/// Prints a JSON answer; a non-2xx status is a failure (exit 1), shown
/// with its message (or its plain-text body, as the guard's refusals are).
async fn print_json(resp: reqwest::Response) -> anyhow::Result<ExitCode> {
    let status = resp.status();
    let text = resp.text().await?;
    let body = serde_json::from_str::<serde_json::Value>(&text);
    match (status.is_success(), body) {
        (true, Ok(body)) => {
            println!("{}", serde_json::to_string_pretty(&body)?);
            Ok(ExitCode::SUCCESS)
        }
        (true, Err(e)) => anyhow::bail!("not JSON from the backend ({status}): {e}"),
        (false, body) => {
            let message = body.ok().and_then(|b| b["message"].as_str().map(str::to_string));
            eprintln!("error ({status}): {}", message.unwrap_or_else(|| text.trim().to_string()));
            Ok(ExitCode::from(1))
        }
    }
}

/// Sends one request to one node (`--direct`) or through the backend.
async fn send(target: &Target, req: NodeRequest) -> anyhow::Result<NodeReply> {
    Remote::connect(&target.addr, target.direct.as_deref()).await?.request(&req).await
}

/// Prints a reply; the exit code follows seed 004.
fn report(reply: NodeReply) -> anyhow::Result<ExitCode> {
    match reply {
        NodeReply::Value { value, .. } => {
            println!("{}", value.to_text_lossy());
            Ok(ExitCode::SUCCESS)
        }
        NodeReply::Error { error: ErrorCode::NotFound, message, .. } => {
            eprintln!("not found: {message}");
            Ok(ExitCode::from(2))
        }
        NodeReply::Error { message, .. } => {
            eprintln!("error: {message}");
            Ok(ExitCode::from(1))
        }
        other => {
            println!("{}", serde_json::to_string_pretty(&other)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
