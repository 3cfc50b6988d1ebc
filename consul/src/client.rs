//! The Consul client, used by nodes (self-registration) and the backend
//! (membership watch, KV). Talks to a real Consul agent or to the embedded
//! registry alike. Health and KV go through `rs-consul`; the three agent
//! endpoints it lacks (service register, deregister, check updates) are
//! direct HTTP calls. The address comes from a flag or `CONSUL_HTTP_ADDR`
//! (with or without `http://`); `CONSUL_HTTP_TOKEN` is sent when set (or,
//! with [`Consul::from_env`], the token in `CONSUL_HTTP_TOKEN_FILE`, as
//! Consul's own CLI reads it). A refused request is an [`HttpError`].

use std::sync::Arc;
use std::time::Duration;

use crate::api::{ServiceEntry, ServiceRegistration};
use anyhow::Context as _;
/// One instance in a health answer (rs-consul's decoding of Consul's JSON).
pub use rs_consul::types::ServiceNode;
use rs_consul::types::{
    CreateOrUpdateKeyRequest, DeleteKeyRequest, GetServiceNodesRequest, QueryOptions, ReadKeyRequest,
};

/// An answer that is not a success: its status and body.
#[derive(Debug)]
pub struct HttpError {
    pub what: &'static str,
    pub status: reqwest::StatusCode,
    pub body: String,
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: HTTP {}: {}", self.what, self.status, self.body.trim())
    }
}

impl std::error::Error for HttpError {}

#[derive(Clone, Debug)]
pub struct Consul {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
    api: Arc<rs_consul::Consul>,
}

impl Consul {
    /// A client for the agent at `addr` (`host:port` or a URL).
    pub fn new(addr: &str) -> Self {
        let base = if addr.contains("://") { addr.to_string() } else { format!("http://{addr}") };
        let base = base.trim_end_matches('/').to_string();
        let token = std::env::var("CONSUL_HTTP_TOKEN").ok().filter(|t| !t.is_empty());
        Self::build(base, token)
    }

    /// Like [`Consul::new`]; without `CONSUL_HTTP_TOKEN`, the token is read
    /// from the file `CONSUL_HTTP_TOKEN_FILE` names, if set (an unreadable
    /// or empty file is an error naming it).
    pub fn from_env(addr: &str) -> anyhow::Result<Self> {
        let consul = Self::new(addr);
        let file = std::env::var_os("CONSUL_HTTP_TOKEN_FILE").filter(|f| !f.is_empty());
        let (None, Some(file)) = (&consul.token, file) else { return Ok(consul) };
        let path = std::path::Path::new(&file);
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading CONSUL_HTTP_TOKEN_FILE {}", path.display()))?;
        match text.trim() {
            "" => anyhow::bail!("CONSUL_HTTP_TOKEN_FILE {} is empty", path.display()),
            token => Ok(consul.with_token(token)),
        }
    }

    /// The same agent, sending `token` (instead of `CONSUL_HTTP_TOKEN`).
    pub fn with_token(self, token: &str) -> Self {
        Self::build(self.base, Some(token.to_string()))
    }

    fn build(base: String, token: Option<String>) -> Self {
        let config = rs_consul::Config { address: base.clone(), token: token.clone(), ..Default::default() };
        Consul { api: Arc::new(rs_consul::Consul::new(config)), base, http: reqwest::Client::new(), token }
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

    async fn expect_ok(resp: reqwest::Response, what: &'static str) -> anyhow::Result<reqwest::Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        Err(HttpError { what, status, body }.into())
    }

    /// `GET /v1/health/service/{name}` whole (meta and checks included),
    /// not blocking.
    pub async fn health_entries(&self, name: &str) -> anyhow::Result<Vec<ServiceEntry>> {
        let path = format!("/v1/health/service/{name}");
        let resp = self.request(reqwest::Method::GET, &path).timeout(Duration::from_secs(10)).send().await?;
        Ok(Self::expect_ok(resp, "health query").await?.json().await?)
    }

    /// `PUT /v1/agent/service/register`.
    pub async fn register(&self, reg: &ServiceRegistration) -> anyhow::Result<()> {
        let resp = self.request(reqwest::Method::PUT, "/v1/agent/service/register").json(reg).send().await?;
        Self::expect_ok(resp, "service register").await.map(|_| ())
    }

    /// `PUT /v1/agent/service/deregister/{id}`; a service already gone is
    /// not an error.
    pub async fn deregister(&self, service_id: &str) -> anyhow::Result<()> {
        let path = format!("/v1/agent/service/deregister/{service_id}");
        let resp = self.request(reqwest::Method::PUT, &path).send().await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        Self::expect_ok(resp, "service deregister").await.map(|_| ())
    }

    /// `PUT /v1/agent/check/{pass|warn|fail}/{check_id}`.
    pub async fn update_check(&self, verb: &str, check_id: &str) -> anyhow::Result<()> {
        let path = format!("/v1/agent/check/{verb}/{check_id}");
        let resp = self.request(reqwest::Method::PUT, &path).send().await?;
        Self::expect_ok(resp, "check update").await.map(|_| ())
    }

    /// `GET /v1/health/service/{name}`, optionally only passing instances,
    /// as a blocking query when `index` is given: returns once the data
    /// changes past `index` or `wait` passes. Returns the instances and the
    /// new `X-Consul-Index`.
    pub async fn health_service(
        &self,
        name: &str,
        passing: bool,
        index: Option<u64>,
        wait: Duration,
    ) -> anyhow::Result<(Vec<ServiceNode>, u64)> {
        let request = GetServiceNodesRequest { service: name, passing, ..Default::default() };
        // Consul may add up to wait/16 of jitter; the timeout leaves room for it.
        let opts = QueryOptions {
            index,
            wait: Some(wait),
            timeout: Some(wait + wait / 8 + Duration::from_secs(5)),
            ..Default::default()
        };
        let meta = self.api.get_service_nodes(request, Some(opts)).await?;
        Ok((meta.response, meta.index))
    }

    /// `GET /v1/kv/{key}`: the value (UTF-8), or `None` when the key is absent.
    pub async fn kv_get(&self, key: &str) -> anyhow::Result<Option<String>> {
        match self.api.read_key(ReadKeyRequest { key, ..Default::default() }).await {
            Ok(meta) => Ok(meta.response.into_iter().next().map(|r| r.value.unwrap_or_default())),
            Err(rs_consul::ConsulError::UnexpectedResponseCode(status, _)) if status.as_u16() == 404 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The key's `ModifyIndex` (for `cas`), or `None` when it is absent.
    pub async fn kv_modify_index(&self, key: &str) -> anyhow::Result<Option<u64>> {
        match self.api.read_key(ReadKeyRequest { key, ..Default::default() }).await {
            Ok(meta) => Ok(meta.response.first().map(|r| r.modify_index as u64)),
            Err(rs_consul::ConsulError::UnexpectedResponseCode(status, _)) if status.as_u16() == 404 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `PUT /v1/kv/{key}` (check-and-set when `cas` is given): whether it was written.
    pub async fn kv_put(&self, key: &str, value: &[u8], cas: Option<u64>) -> anyhow::Result<bool> {
        let request = CreateOrUpdateKeyRequest { key, check_and_set: cas.map(|c| c as i64), ..Default::default() };
        let (written, _) = self.api.create_or_update_key(request, value.to_vec()).await?;
        Ok(written)
    }

    /// `DELETE /v1/kv/{key}`.
    pub async fn kv_delete(&self, key: &str) -> anyhow::Result<()> {
        self.api.delete_key(DeleteKeyRequest { key, ..Default::default() }).await?;
        Ok(())
    }
}
