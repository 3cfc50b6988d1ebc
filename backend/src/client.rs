//! Where the client commands send requests: the backend's REST API, or one
//! node directly over ZeroMQ (`--direct`). One connection, reused.

use shardscope_shared::protocol::{NodeReply, NodeRequest};

use crate::node_client::NodeClient;

pub enum Remote {
    Http { http: reqwest::Client, base: String },
    Direct(NodeClient),
}

impl Remote {
    /// The backend at `addr`, or the node at `direct` when given.
    pub async fn connect(addr: &str, direct: Option<&str>) -> anyhow::Result<Remote> {
        Ok(match direct {
            Some(endpoint) => Remote::Direct(NodeClient::connect(endpoint).await?),
            None => Remote::Http { http: reqwest::Client::new(), base: addr.trim_end_matches('/').to_string() },
        })
    }

    /// Sends one request; through REST, single-key operations and `GET_ALL`
    /// only (keys must be UTF-8 there).
    pub async fn request(&self, req: &NodeRequest) -> anyhow::Result<NodeReply> {
        let (http, base) = match self {
            Remote::Direct(client) => return Ok(client.request(req).await),
            Remote::Http { http, base } => (http, base),
        };
        let url = |key: &[u8]| format!("{base}/kv/{}", urlencode(key));
        let resp = match req {
            NodeRequest::Put { key, value, .. } => http.put(url(key.as_bytes())).body(value.0.clone()).send().await?,
            NodeRequest::GetOne { key, .. } => http.get(url(key.as_bytes())).send().await?,
            NodeRequest::Delete { key, .. } => http.delete(url(key.as_bytes())).send().await?,
            NodeRequest::GetAll => http.get(format!("{base}/kv")).send().await?,
            other => anyhow::bail!("{other:?} is a node operation: use --direct"),
        };
        let status = resp.status();
        let body = resp.bytes().await?;
        if let (NodeRequest::GetOne { key, .. }, true) = (req, status.is_success()) {
            return Ok(NodeReply::Value { key: key.clone(), value: body.to_vec().into(), version: None });
        }
        serde_json::from_slice(&body).map_err(|e| anyhow::anyhow!("unexpected answer from {base} ({status}): {e}"))
    }
}

/// Percent-encodes bytes for use as one URL path segment.
pub fn urlencode(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len());
    for &b in key {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
