//! The catalog and health views (`/v1/catalog/...`, `/v1/health/...`) in
//! Consul's JSON, and catalog registration of other nodes (external
//! services: their checks hold the status they are given; the registry
//! probes none of them). The agent's node also holds the `consul` service
//! (the server itself, as in Consul: in the catalog, not among the agent's
//! services) and its `serfHealth` check, always passing while it answers.
//! No Connect and no peers: the connect, ingress and gateway views and a
//! query naming a peer find nothing.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::agent::build_check;
use super::{
    bad_request, decoded, refuse, with_index, Check, Node, Presented, QueryParams, Refusal, Registry, Service, Tables,
    AGENT, DATACENTER, SERF_CHECK,
};
use crate::api::{CheckDefinition, ServiceRegistration, NODE_SERVICE};

pub(super) fn routes() -> Router<Registry> {
    Router::new()
        .route("/v1/catalog/datacenters", get(|| async { Json([DATACENTER]) }))
        .route("/v1/catalog/nodes", get(nodes))
        .route("/v1/catalog/node/{node}", get(node))
        .route("/v1/catalog/services", get(services))
        .route("/v1/catalog/service/{name}", get(service))
        .route("/v1/catalog/connect/{name}", get(nothing))
        .route("/v1/catalog/gateway-services/{name}", get(nothing))
        .route("/v1/catalog/register", put(register))
        .route("/v1/catalog/deregister", put(deregister))
        .route("/v1/health/service/{name}", get(health_service))
        .route("/v1/health/connect/{name}", get(nothing))
        .route("/v1/health/ingress/{name}", get(nothing))
        .route("/v1/health/checks/{name}", get(health_checks))
        .route("/v1/health/state/{state}", get(health_state))
        .route("/v1/health/node/{node}", get(health_node))
}

/// The `consul` service of the agent's node: the server itself.
fn consul_service() -> Service {
    let reg =
        ServiceRegistration { id: Some("consul".into()), name: "consul".into(), port: 8300, ..Default::default() };
    Service { reg, id: "consul".into(), create_index: 1, modify_index: 1 }
}

/// A node's services as the catalog holds them (the agent's with `consul`).
fn catalog_services(name: &str, node: &Node) -> Vec<Service> {
    let own = (name == AGENT).then(consul_service);
    own.into_iter().chain(node.services.values().cloned()).collect()
}

/// A node's checks (the agent's with `serfHealth`) that `keep` keeps, in id order.
fn node_checks(name: &str, node: &Node, keep: impl Fn(&Check) -> bool) -> Vec<Value> {
    let mut checks: Vec<(&str, Value)> =
        node.checks.values().filter(|c| keep(c)).map(|c| (c.id.as_str(), check_json(name, node, c))).collect();
    if name == AGENT {
        checks.push((SERF_CHECK, serf_check()));
    }
    checks.sort_by(|a, b| a.0.cmp(b.0));
    checks.into_iter().map(|(_, v)| v).collect()
}

fn serf_check() -> Value {
    json!({
        "Node": AGENT, "CheckID": SERF_CHECK, "Name": "Serf Health Status", "Status": "passing", "Notes": "",
        "Output": "Agent alive and reachable", "ServiceID": "", "ServiceName": "", "ServiceTags": [], "Type": "",
        "Interval": "", "Timeout": "", "ExposedPort": 0, "Definition": {}, "CreateIndex": 1, "ModifyIndex": 1,
    })
}

/// A check in Consul's JSON.
pub(super) fn check_json(node_name: &str, node: &Node, c: &Check) -> Value {
    let service = node.services.get(&c.service_id);
    let duration = |set: bool, d: std::time::Duration| if set { crate::api::format_duration(d) } else { String::new() };
    let probed = matches!(c.probe, super::Probe::Http(_) | super::Probe::Tcp(_));
    json!({
        "Node": node_name, "CheckID": c.id, "Name": c.name, "Status": c.status,
        "Notes": c.def.notes.clone().unwrap_or_default(), "Output": c.output, "ServiceID": c.service_id,
        "ServiceName": service.map(|s| s.reg.name.clone()).unwrap_or_default(),
        "ServiceTags": service.map(|s| s.reg.tags.clone()).unwrap_or_default(),
        "Type": c.probe.kind(), "Interval": duration(probed, c.interval), "Timeout": duration(probed, c.timeout),
        "ExposedPort": 0, "Definition": {}, "CreateIndex": c.create_index, "ModifyIndex": c.modify_index,
    })
}

/// A service as the agent and a node's catalog entry list it.
pub(super) fn service_json(s: &Service) -> Value {
    let r = &s.reg;
    let mut v = json!({
        "ID": s.id, "Service": r.name, "Tags": r.tags, "Meta": r.meta, "Port": r.port, "Address": r.address,
        "Weights": r.weights.clone().map_or(json!({"Passing": 1, "Warning": 1}), |w| json!(w)),
        "EnableTagOverride": r.enable_tag_override, "CreateIndex": s.create_index, "ModifyIndex": s.modify_index,
    });
    if !r.tagged_addresses.is_empty() {
        v["TaggedAddresses"] = json!(r.tagged_addresses);
    }
    v
}

fn node_json(name: &str, node: &Node) -> Value {
    let tagged = if name == AGENT {
        let a = &node.address;
        json!({"lan": a, "lan_ipv4": a, "wan": a, "wan_ipv4": a})
    } else {
        json!(node.tagged_addresses)
    };
    json!({
        "ID": "", "Node": name, "Address": node.address, "Datacenter": DATACENTER, "TaggedAddresses": tagged,
        "Meta": node.meta, "CreateIndex": node.create_index, "ModifyIndex": node.modify_index,
    })
}

/// A service instance as `/v1/catalog/service` lists it.
fn catalog_entry(name: &str, node: &Node, s: &Service) -> Value {
    let r = &s.reg;
    json!({
        "ID": "", "Node": name, "Address": node.address, "Datacenter": DATACENTER,
        "TaggedAddresses": node_json(name, node)["TaggedAddresses"], "NodeMeta": node.meta, "ServiceKind": "",
        "ServiceID": s.id, "ServiceName": r.name, "ServiceTags": r.tags, "ServiceAddress": r.address,
        "ServicePort": r.port, "ServiceMeta": r.meta, "ServiceTaggedAddresses": r.tagged_addresses,
        "ServiceWeights": r.weights.clone().map_or(json!({"Passing": 1, "Warning": 1}), |w| json!(w)),
        "ServiceEnableTagOverride": r.enable_tag_override, "CreateIndex": s.create_index, "ModifyIndex": s.modify_index,
    })
}

/// Whether `s` carries every tag of `?tag=`.
fn tagged(params: &QueryParams, s: &Service) -> bool {
    params.tags.iter().all(|t| s.reg.tags.contains(t))
}

/// Every instance of service `name`, on every node.
fn instances<'a>(t: &'a Tables, name: &str) -> Vec<(&'a str, &'a Node, Service)> {
    let mut found = Vec::new();
    for (n, node) in &t.nodes {
        found.extend(
            catalog_services(n, node).into_iter().filter(|s| s.reg.name == name).map(|s| (n.as_str(), node, s)),
        );
    }
    found
}

/// Runs a read: waits for a blocking query, then answers `view` of the
/// tables with the index.
async fn read(
    reg: &Registry,
    params: &QueryParams,
    presented: &Presented,
    view: impl FnOnce(&Tables) -> Value,
) -> Response {
    if let Err(refused) = reg.block(params, presented).await {
        return refused;
    }
    let t = reg.tables.lock().unwrap();
    with_index(t.index, Json(view(&t)))
}

async fn nothing(State(reg): State<Registry>, params: QueryParams, presented: Presented) -> Response {
    read(&reg, &params, &presented, |_| json!([])).await
}

async fn nodes(State(reg): State<Registry>, params: QueryParams, presented: Presented) -> Response {
    read(&reg, &params, &presented, |t| {
        Value::Array(params.filtered(t.nodes.iter().map(|(n, node)| node_json(n, node)).collect()))
    })
    .await
}

async fn node(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    params: QueryParams,
    presented: Presented,
) -> Response {
    read(&reg, &params, &presented, |t| match t.nodes.get(&name) {
        None => Value::Null,
        Some(node) => {
            let services = catalog_services(&name, node).into_iter().map(|s| (s.id.clone(), service_json(&s)));
            let services: serde_json::Map<String, Value> = services.filter(|(_, v)| params.keeps(v)).collect();
            json!({"Node": node_json(&name, node), "Services": services})
        }
    })
    .await
}

async fn services(State(reg): State<Registry>, params: QueryParams, presented: Presented) -> Response {
    read(&reg, &params, &presented, |t| {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (n, node) in &t.nodes {
            for s in catalog_services(n, node) {
                if !params.keeps(&catalog_entry(n, node, &s)) {
                    continue;
                }
                let tags = out.entry(s.reg.name.clone()).or_default();
                for tag in &s.reg.tags {
                    if !tags.contains(tag) {
                        tags.push(tag.clone());
                    }
                }
            }
        }
        json!(out)
    })
    .await
}

async fn service(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    params: QueryParams,
    presented: Presented,
) -> Response {
    read(&reg, &params, &presented, |t| {
        let found = instances(t, &name).into_iter().filter(|(_, _, s)| tagged(&params, s) && !params.peer);
        Value::Array(params.filtered(found.map(|(n, node, s)| catalog_entry(n, node, &s)).collect()))
    })
    .await
}

async fn health_service(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    params: QueryParams,
    presented: Presented,
) -> Response {
    read(&reg, &params, &presented, |t| {
        let mut entries = Vec::new();
        for (n, node, s) in instances(t, &name).into_iter().filter(|(_, _, s)| tagged(&params, s) && !params.peer) {
            let checks = node_checks(n, node, |c| c.service_id.is_empty() || c.service_id == s.id);
            if params.passing && checks.iter().any(|c| c["Status"] != "passing") {
                continue;
            }
            entries.push(json!({"Node": node_json(n, node), "Service": service_json(&s), "Checks": checks}));
        }
        Value::Array(params.filtered(entries))
    })
    .await
}

async fn health_checks(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    params: QueryParams,
    presented: Presented,
) -> Response {
    read(&reg, &params, &presented, |t| {
        let checks = t.nodes.iter().flat_map(|(n, node)| {
            node.checks
                .values()
                .filter(|c| node.services.get(&c.service_id).is_some_and(|s| s.reg.name == name))
                .map(move |c| check_json(n, node, c))
        });
        Value::Array(params.filtered(checks.collect()))
    })
    .await
}

async fn health_state(
    State(reg): State<Registry>,
    Path(state): Path<String>,
    params: QueryParams,
    presented: Presented,
) -> Response {
    if !matches!(state.as_str(), "any" | "passing" | "warning" | "critical") {
        return bad_request(format!("Bad check state {state:?}: one of any, passing, warning, critical"));
    }
    read(&reg, &params, &presented, |t| {
        let checks = t.nodes.iter().flat_map(|(n, node)| node_checks(n, node, |_| true));
        Value::Array(params.filtered(checks.filter(|c| state == "any" || c["Status"] == state.as_str()).collect()))
    })
    .await
}

async fn health_node(
    State(reg): State<Registry>,
    Path(name): Path<String>,
    params: QueryParams,
    presented: Presented,
) -> Response {
    read(&reg, &params, &presented, |t| {
        let checks = t.nodes.get(&name).map(|node| node_checks(&name, node, |_| true)).unwrap_or_default();
        Value::Array(params.filtered(checks))
    })
    .await
}

/// A service in a catalog registration (`Service` is its name there).
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct CatalogServiceDef {
    #[serde(rename = "ID", default)]
    id: Option<String>,
    service: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    address: String,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    meta: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CatalogRegistration {
    node: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    datacenter: Option<String>,
    #[serde(default)]
    tagged_addresses: BTreeMap<String, String>,
    #[serde(default)]
    node_meta: BTreeMap<String, String>,
    #[serde(default)]
    service: Option<CatalogServiceDef>,
    #[serde(default)]
    check: Option<CheckDefinition>,
    #[serde(default)]
    checks: Vec<CheckDefinition>,
    #[serde(default)]
    skip_node_update: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CatalogDeregistration {
    node: String,
    #[serde(default)]
    datacenter: Option<String>,
    #[serde(rename = "ServiceID", default)]
    service_id: Option<String>,
    #[serde(rename = "CheckID", default)]
    check_id: Option<String>,
}

/// Refuses another datacenter, as Consul does (500), and the agent's own
/// node (its services and checks are the agent's: use `/v1/agent/...`).
fn node_writable(node: &str, dc: &Option<String>) -> Result<(), Refusal> {
    if dc.as_deref().is_some_and(|d| !d.is_empty() && d != DATACENTER) {
        return Err((StatusCode::INTERNAL_SERVER_ERROR, "No path to datacenter".into()));
    }
    if node.is_empty() {
        return Err((StatusCode::BAD_REQUEST, "Must provide node".into()));
    }
    if node == AGENT {
        let message = format!("Node {AGENT:?} is the agent's own: register its services and checks with /v1/agent/...");
        return Err((StatusCode::BAD_REQUEST, message));
    }
    Ok(())
}

async fn register(State(reg): State<Registry>, presented: Presented, body: Result<Bytes, BytesRejection>) -> Response {
    let r: CatalogRegistration = match decoded(body, reg.limits.registration) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    if let Err(e) = node_writable(&r.node, &r.datacenter) {
        return refuse(e);
    }
    if r.address.is_empty() {
        return bad_request("Must provide address");
    }
    let mut t = reg.tables.lock().unwrap();
    let index = t.index + 1;
    let held = t.nodes.get(&r.node);
    let service = match r.service.map(|s| {
        let reg = ServiceRegistration {
            id: s.id.filter(|i| !i.is_empty()).or(Some(s.service.clone())),
            name: s.service,
            address: s.address,
            port: s.port,
            tags: s.tags,
            meta: s.meta,
            ..Default::default()
        };
        super::agent::new_service(reg, index)
    }) {
        None => None,
        Some(Ok((s, _))) => Some(s),
        Some(Err(e)) => return bad_request(e),
    };
    let mut checks = Vec::new();
    for mut def in r.check.into_iter().chain(r.checks) {
        // A catalog check holds the status it is given: nothing probes it.
        (def.ttl, def.http, def.tcp, def.args) = (None, None, None, Vec::new());
        def.check_id = def.check_id.filter(|c| !c.is_empty()).or_else(|| def.name.clone());
        let sid = def.service_id.clone().unwrap_or_default();
        let known = sid.is_empty()
            || service.as_ref().is_some_and(|s| s.id == sid)
            || held.is_some_and(|n| n.services.contains_key(&sid));
        if !known {
            return bad_request(format!("Unknown service ID {sid:?} for check {:?}", def.check_id.unwrap_or_default()));
        }
        match build_check(def, "", true, index) {
            Ok(c) => checks.push(c),
            Err(e) => return bad_request(e),
        }
    }
    // A storage node's service, or any change to a node that holds one.
    let nodes = service.as_ref().is_some_and(|s| s.reg.name == NODE_SERVICE)
        || held.is_some_and(|n| n.services.values().any(|s| s.reg.name == NODE_SERVICE));
    if let Err(refused) = reg.authorize(&presented, nodes, &format!("'node:write' on {:?}", r.node)) {
        return refuse(refused);
    }
    let outcome = reg.commit(&mut t, reg.trusted(&presented), |t, index| {
        let node = t.nodes.entry(r.node.clone()).or_insert_with(|| Node {
            address: r.address.clone(),
            tagged_addresses: BTreeMap::new(),
            meta: BTreeMap::new(),
            services: BTreeMap::new(),
            checks: BTreeMap::new(),
            create_index: index,
            modify_index: index,
        });
        if !r.skip_node_update {
            node.address = r.address;
            node.tagged_addresses = r.tagged_addresses;
            node.meta = r.node_meta;
            node.modify_index = index;
        }
        if let Some(s) = service {
            node.services.insert(s.id.clone(), s);
        }
        node.checks.extend(checks.into_iter().map(|c| (c.id.clone(), c)));
        Ok(())
    });
    outcome.map(|()| Json(true)).into_response()
}

async fn deregister(
    State(reg): State<Registry>,
    presented: Presented,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let d: CatalogDeregistration = match decoded(body, reg.limits.registration) {
        Ok(d) => d,
        Err(e) => return *e,
    };
    if let Err(e) = node_writable(&d.node, &d.datacenter) {
        return refuse(e);
    }
    let mut t = reg.tables.lock().unwrap();
    let Some(node) = t.nodes.get(&d.node) else { return Json(true).into_response() };
    let nodes = node.services.values().any(|s| s.reg.name == NODE_SERVICE);
    if let Err(refused) = reg.authorize(&presented, nodes, &format!("'node:write' on {:?}", d.node)) {
        return refuse(refused);
    }
    let outcome = reg.commit(&mut t, reg.trusted(&presented), |t, _| {
        match (&d.service_id, &d.check_id) {
            (Some(sid), _) => {
                if let Some(node) = t.nodes.get_mut(&d.node) {
                    node.remove_service(sid);
                }
            }
            (None, Some(cid)) => {
                if let Some(node) = t.nodes.get_mut(&d.node) {
                    node.checks.remove(cid);
                }
            }
            (None, None) => {
                t.nodes.remove(&d.node);
            }
        }
        Ok(())
    });
    outcome.map(|()| Json(true)).into_response()
}
