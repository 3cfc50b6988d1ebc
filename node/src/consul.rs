//! A small Consul HTTP API client, used by nodes (self-registration) and the
//! backend (membership watch, KV). Talks to a real Consul agent or to the
//! embedded registry alike. The address comes from a flag or
//! `CONSUL_HTTP_ADDR` (with or without `http://`); `CONSUL_HTTP_TOKEN` is
//! sent as `X-Consul-Token` when set.

use std::time::Duration;

use anyhow::{bail, Context};
use shardscope_shared::consul::{ServiceEntry, ServiceRegistration};

#[derive(Clone, Debug)]
pub struct Consul {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Consul {
    /// A client for the agent at `addr` (`host:port` or a URL).
    pub fn new(addr: &str) -> Self {
        let base = if addr.contains("://") {
            addr.to_string()
        } else {
            format!("http://{addr}")
        };
        Consul {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            token: std::env::var("CONSUL_HTTP_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        }
    }

    /// The agent named by `flag`, else by `CONSUL_HTTP_ADDR`, else none.
    pub fn from_flag_or_env(flag: Option<&str>) -> Option<Self> {
        let env = std::env::var("CONSUL_HTTP_ADDR")
            .ok()
            .filter(|a| !a.is_empty());
        flag.map(str::to_string).or(env).map(|a| Consul::new(&a))
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.header("X-Consul-Token", t),
            None => req,
        }
    }

    async fn expect_ok(resp: reqwest::Response, what: &str) -> anyhow::Result<reqwest::Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        bail!("{what}: HTTP {status}: {}", body.trim())
    }

    /// `PUT /v1/agent/service/register`.
    pub async fn register(&self, reg: &ServiceRegistration) -> anyhow::Result<()> {
        let resp = self
            .request(reqwest::Method::PUT, "/v1/agent/service/register")
            .json(reg)
            .send()
            .await?;
        Self::expect_ok(resp, "service register").await.map(|_| ())
    }

    /// `PUT /v1/agent/service/deregister/{id}`.
    pub async fn deregister(&self, service_id: &str) -> anyhow::Result<()> {
        let path = format!("/v1/agent/service/deregister/{service_id}");
        let resp = self.request(reqwest::Method::PUT, &path).send().await?;
        Self::expect_ok(resp, "service deregister")
            .await
            .map(|_| ())
    }

    /// `PUT /v1/agent/check/{pass|warn|fail}/{check_id}`.
    pub async fn update_check(&self, verb: &str, check_id: &str) -> anyhow::Result<()> {
        let path = format!("/v1/agent/check/{verb}/{check_id}");
        let resp = self.request(reqwest::Method::PUT, &path).send().await?;
        Self::expect_ok(resp, "check update").await.map(|_| ())
    }

    /// `GET /v1/health/service/{name}`, optionally only passing instances,
    /// as a blocking query when `index` is given: returns once the data
    /// changes past `index` or `wait` passes. Returns the entries and the
    /// new `X-Consul-Index`.
    pub async fn health_service(
        &self,
        name: &str,
        passing: bool,
        index: Option<u64>,
        wait: Duration,
    ) -> anyhow::Result<(Vec<ServiceEntry>, u64)> {
        let mut path = format!("/v1/health/service/{name}?wait={}ms", wait.as_millis());
        if passing {
            path.push_str("&passing=1");
        }
        if let Some(i) = index {
            path.push_str(&format!("&index={i}"));
        }
        let resp = self
            .request(reqwest::Method::GET, &path)
            // Consul may add up to wait/16 of jitter; leave room for it.
            .timeout(wait + wait / 8 + Duration::from_secs(5))
            .send()
            .await?;
        let resp = Self::expect_ok(resp, "health service").await?;
        let index = consul_index(&resp)?;
        let entries = resp.json().await.context("decoding health entries")?;
        Ok((entries, index))
    }

    /// `GET /v1/kv/{key}`: the raw value, or `None` when the key is absent.
    pub async fn kv_get(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let resp = self
            .request(reqwest::Method::GET, &format!("/v1/kv/{key}?raw=1"))
            .send()
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = Self::expect_ok(resp, "kv get").await?;
        Ok(Some(resp.bytes().await?.to_vec()))
    }

    /// `PUT /v1/kv/{key}` (with `?cas=` when given): whether it was written.
    pub async fn kv_put(&self, key: &str, value: &[u8], cas: Option<u64>) -> anyhow::Result<bool> {
        let mut path = format!("/v1/kv/{key}");
        if let Some(c) = cas {
            path.push_str(&format!("?cas={c}"));
        }
        let resp = self
            .request(reqwest::Method::PUT, &path)
            .body(value.to_vec())
            .send()
            .await?;
        let resp = Self::expect_ok(resp, "kv put").await?;
        Ok(resp.text().await?.trim() == "true")
    }

    /// `DELETE /v1/kv/{key}`.
    pub async fn kv_delete(&self, key: &str) -> anyhow::Result<()> {
        let resp = self
            .request(reqwest::Method::DELETE, &format!("/v1/kv/{key}"))
            .send()
            .await?;
        Self::expect_ok(resp, "kv delete").await.map(|_| ())
    }
}

fn consul_index(resp: &reqwest::Response) -> anyhow::Result<u64> {
    let header = resp
        .headers()
        .get("x-consul-index")
        .context("no X-Consul-Index header")?;
    header
        .to_str()?
        .parse()
        .context("bad X-Consul-Index header")
}
