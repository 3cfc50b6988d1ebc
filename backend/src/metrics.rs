//! The backend's metrics, served at `GET /metrics` in the OpenMetrics text
//! format Prometheus scrapes: key requests by operation and outcome, their
//! latency, keys and bytes moved by rebalances, whether one is running, and
//! nodes by health.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use shardscope_shared::protocol::{ErrorCode, NodeReply};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    op: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HealthLabel {
    healthy: String,
}

/// Cheap to clone; every clone updates the same metrics.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<OpLabel, Histogram, fn() -> Histogram>,
    keys_moved: Counter,
    bytes_moved: Counter,
    rebalancing: Gauge,
    nodes: Family<HealthLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("shardscope");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Key requests answered, by operation and outcome", requests.clone());
        let latency: Family<OpLabel, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(25e-6, 2.0, 16)));
        registry.register("request_duration_seconds", "Key request latency at the gateway", latency.clone());
        let keys_moved = Counter::default();
        registry.register("rebalance_keys_moved", "Keys moved by rebalances", keys_moved.clone());
        let bytes_moved = Counter::default();
        registry.register("rebalance_bytes_moved", "Bytes of keys and values moved by rebalances", bytes_moved.clone());
        let rebalancing = Gauge::default();
        registry.register("rebalance_running", "1 while a rebalance is moving keys", rebalancing.clone());
        let nodes = Family::<HealthLabel, Gauge>::default();
        registry.register("nodes", "Member nodes, by health", nodes.clone());
        Metrics {
            registry: Arc::new(Mutex::new(registry)),
            requests,
            latency,
            keys_moved,
            bytes_moved,
            rebalancing,
            nodes,
        }
    }

    /// Records one answered key request.
    pub fn request(&self, op: &str, reply: &NodeReply, took: Duration) {
        let outcome = match reply {
            NodeReply::Error { error: ErrorCode::NotFound, .. } => "not_found",
            NodeReply::Error { error: ErrorCode::BadRequest, .. } => "bad_request",
            NodeReply::Error { error: ErrorCode::TooLarge, .. } => "too_large",
            NodeReply::Error { error: ErrorCode::Unavailable, .. } => "unavailable",
            _ => "ok",
        };
        self.requests.get_or_create(&RequestLabels { op: op.into(), outcome: outcome.into() }).inc();
        self.latency.get_or_create(&OpLabel { op: op.into() }).observe(took.as_secs_f64());
    }

    pub fn moved(&self, keys: u64, bytes: u64) {
        self.keys_moved.inc_by(keys);
        self.bytes_moved.inc_by(bytes);
    }

    pub fn set_rebalancing(&self, running: bool) {
        self.rebalancing.set(i64::from(running));
    }

    pub fn set_nodes(&self, healthy: usize, unhealthy: usize) {
        self.nodes.get_or_create(&HealthLabel { healthy: "true".into() }).set(healthy as i64);
        self.nodes.get_or_create(&HealthLabel { healthy: "false".into() }).set(unhealthy as i64);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry.lock().unwrap())
            .expect("writing to a String cannot fail");
        out
    }
}
