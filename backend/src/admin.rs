//! Cluster administration, as the seeds order it. Add a node: launch it;
//! it registers, the membership watch sees it, and the rebalancer gives it
//! its share. Remove a node: move its keys off (rebalance), deregister it,
//! stop it. Change the algorithm: a rebalance like any other. Each may be
//! slowed to a `rate` (keys per second, within [`RATE`]). Failures are an
//! [`AdminError`], which REST and the WebSocket map to statuses.

use std::sync::Arc;

use shardscope_consul::client::Consul;
use shardscope_consul::token::Token;
use shardscope_shared::placement::{PlacementSpec, SpecError};
use shardscope_shared::protocol::{ErrorCode, NodeInfo, Progress, RATE};
use tokio::sync::Mutex;

use crate::cluster::Cluster;
use crate::rebalance::{Change, Rebalancer};
use crate::supervisor::Supervisor;

/// The Consul KV key holding the desired node count (seed 001).
pub const CLUSTER_SIZE: &str = "cluster_size";
/// The most storage nodes one `serve` runs (`--nodes`, `cluster_size`,
/// *Add node*): each is a process, so a count written by anyone on loopback
/// must not make it launch a million.
pub const MAX_NODES: usize = 256;

/// Handle for administrative actions; cheap to clone.
#[derive(Clone)]
pub struct Admin {
    pub cluster: Cluster,
    pub rebalancer: Rebalancer,
    pub supervisor: Arc<Mutex<Supervisor>>,
    pub consul: Consul,
    /// When set, administration needs it (see [`crate::token`]).
    pub token: Option<Token>,
}

impl Admin {
    /// Whether a request carrying `presented` may administer the cluster;
    /// the error says how to present the token.
    pub fn authorize(&self, presented: Option<&str>) -> Result<(), AdminError> {
        match &self.token {
            Some(token) if !token.accepts(presented) => Err(AdminError::Unauthorized(format!(
                "administration needs the admin token: send `Authorization: Bearer TOKEN` \
                 (the CLI's --token or {}), or open the page with ?token=TOKEN",
                crate::token::ENV
            ))),
            _ => Ok(()),
        }
    }

    /// Launches one more node; it joins through the registry, moving at
    /// most `rate` keys per second when given. Returns it before its keys
    /// have arrived (progress comes as events). The desired count is
    /// recorded first, and the new node's data dir, so a restart of `serve`
    /// relaunches it.
    pub async fn add_node(&self, rate: Option<u64>) -> Result<NodeInfo, AdminError> {
        check_rate(rate)?;
        let wanted = self.cluster.desired_nodes().max(self.cluster.nodes().len()) + 1;
        if wanted > MAX_NODES {
            return Err(AdminError::TooManyNodes(MAX_NODES));
        }
        self.set_desired(wanted).await?;
        self.launch_new(rate).await
    }

    /// Launches a node under the next unused id, its data dir noted first
    /// (so the cluster's state names it, and a restart relaunches it), and
    /// the rate of its join before it can register.
    pub async fn launch_new(&self, rate: Option<u64>) -> Result<NodeInfo, AdminError> {
        let mut supervisor = self.supervisor.lock().await;
        let id = supervisor.next_id();
        self.cluster.set_data_dir(&id, supervisor.dir_of(&id));
        self.rebalancer.pace_join(&id, rate);
        let launched = supervisor.launch_named(&id).await.map_err(|e| AdminError::Launch(format!("{e:#}")));
        if launched.is_err() {
            self.rebalancer.pace_join(&id, None);
        }
        launched
    }

    /// Records the desired node count, in the cluster's state and (seed
    /// 001) under `cluster_size`.
    pub async fn set_desired(&self, n: usize) -> Result<(), AdminError> {
        self.cluster.set_desired_nodes(n).await.map_err(|e| AdminError::Record(format!("{e:#}")))?;
        if let Err(e) = self.consul.kv_put(CLUSTER_SIZE, n.to_string().as_bytes(), None).await {
            tracing::warn!("could not record {CLUSTER_SIZE}={n} in Consul KV: {e:#}");
        }
        Ok(())
    }

    /// Drains `id` (its keys move to the others), deregisters it, and stops it
    /// if this backend started it. A node that is down is removed too: the
    /// keys only it held are lost (the answer says so) rather than the
    /// cluster waiting for it forever.
    pub async fn remove_node(&self, id: &str, rate: Option<u64>) -> Result<Progress, AdminError> {
        check_rate(rate)?;
        let members = self.cluster.nodes();
        if !members.iter().any(|n| n.id == id) {
            return Err(AdminError::NotAMember(id.to_string()));
        }
        if members.len() == 1 {
            return Err(AdminError::LastNode(id.to_string()));
        }
        let progress = self.rebalancer.run(Change::Leave(id.to_string()), rate).await.map_err(AdminError::Rebalance)?;
        // Recorded as removed (and the smaller count) before it is stopped,
        // so that nothing brings it back as a member.
        self.cluster.retire(id);
        self.set_desired(self.cluster.nodes().len()).await?;
        self.supervisor.lock().await.stop(id).await;
        if let Err(e) = self.consul.deregister(id).await {
            tracing::warn!(%id, "drained, but deregistering failed: {e:#}");
        }
        self.cluster.disconnect(id);
        Ok(progress)
    }

    /// Moves every key to where `spec` places it, then routes with it; a
    /// spec outside its bounds is refused before anything is built.
    pub async fn change_placement(&self, spec: PlacementSpec, rate: Option<u64>) -> Result<Progress, AdminError> {
        check_rate(rate)?;
        spec.validate()?;
        self.rebalancer.run(Change::Placement(spec), rate).await.map_err(AdminError::Rebalance)
    }
}

/// A change's own rate, refused outside [`RATE`].
fn check_rate(rate: Option<u64>) -> Result<(), AdminError> {
    match rate {
        Some(r) if !RATE.contains(&r) => Err(AdminError::InvalidRate(r)),
        _ => Ok(()),
    }
}

/// Why an administrative request failed; REST and the WebSocket map each
/// to its own status.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Unauthorized(String),
    #[error("no node {0:?} in the cluster")]
    NotAMember(String),
    #[error("{0} is the last node: its keys would have nowhere to go")]
    LastNode(String),
    #[error("invalid placement: {0}")]
    InvalidSpec(#[from] SpecError),
    #[error("rate {0}: keys per second must be within {lo}..={hi}", lo = RATE.start(), hi = RATE.end())]
    InvalidRate(u64),
    #[error("the cluster has its most nodes ({0}); remove one first")]
    TooManyNodes(usize),
    #[error("cannot launch a node: {0}")]
    Launch(String),
    #[error("cannot record the cluster's state: {0}")]
    Record(String),
    #[error("the change did not finish: {0}")]
    Rebalance(String),
}

impl AdminError {
    /// The HTTP status for it.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            AdminError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AdminError::NotAMember(_) => StatusCode::NOT_FOUND,
            AdminError::LastNode(_) | AdminError::TooManyNodes(_) => StatusCode::CONFLICT,
            AdminError::InvalidSpec(_) | AdminError::InvalidRate(_) => StatusCode::BAD_REQUEST,
            AdminError::Launch(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AdminError::Record(_) | AdminError::Rebalance(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The error code in the JSON body.
    pub fn code(&self) -> ErrorCode {
        match self {
            AdminError::Unauthorized(_) => ErrorCode::Unauthorized,
            AdminError::NotAMember(_) => ErrorCode::NotFound,
            AdminError::LastNode(_)
            | AdminError::InvalidSpec(_)
            | AdminError::InvalidRate(_)
            | AdminError::TooManyNodes(_) => ErrorCode::BadRequest,
            _ => ErrorCode::Unavailable,
        }
    }
}
