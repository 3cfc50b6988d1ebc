//! The agent's endpoints (`/v1/agent/...`): its services and their checks
//! (register, deregister, maintenance mode), its own checks (register,
//! deregister, TTL updates), and what it says of itself (`self`,
//! `members`). The agent's node is [`AGENT`]; its services and checks are
//! the ones the registry runs. Checks are TTL, HTTP or TCP; scripts are
//! refused (the registry runs no commands), and probes stay at the
//! service's own address.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::catalog::{check_json, service_json};
use super::{
    bad_request, decoded, refuse, Check, Node, Presented, Probe, QueryParams, Refusal, Refused, Registry, Service,
    Tables, AGENT, AGENT_ADDRESS, DATACENTER, LEADER, MIN_CHECK_INTERVAL, STATUSES,
};
use crate::api::NODE_SERVICE;
use crate::api::{
    format_duration, id_taken, is_loopback, parse_duration, CheckDefinition, ServiceRegistration, Weights,
};

/// The Consul version the agent reports (`Config.Version`): the API level
/// it follows, for clients that check it.
const VERSION: &str = "1.20.0";
const SERVICE_MAINTENANCE: &str = "_service_maintenance:";
const NODE_MAINTENANCE: &str = "_node_maintenance";

/// Whether check `id` is a maintenance mode's (a status the agent sets, not a probe).
pub(super) fn is_maintenance(id: &str) -> bool {
    id.starts_with(SERVICE_MAINTENANCE) || id == NODE_MAINTENANCE
}

pub(super) fn routes() -> Router<Registry> {
    Router::new()
        .route("/v1/agent/self", get(agent_self))
        .route("/v1/agent/members", get(members))
        .route("/v1/agent/reload", put(|| async { StatusCode::OK }))
        .route("/v1/agent/maintenance", put(node_maintenance))
        .route("/v1/agent/force-leave/{node}", put(force_leave))
        .route("/v1/agent/services", get(services))
        .route("/v1/agent/service/{id}", get(service))
        .route("/v1/agent/service/register", put(register))
        .route("/v1/agent/service/deregister/{id}", put(deregister))
        .route("/v1/agent/service/maintenance/{id}", put(service_maintenance))
        .route("/v1/agent/checks", get(checks))
        .route("/v1/agent/check/register", put(register_check))
        .route("/v1/agent/check/deregister/{id}", put(deregister_check))
        .route("/v1/agent/check/{verb}/{id}", put(update_check))
}

/// There is no other member to force out: Consul's answer for a name it
/// does not know (and the agent may not force itself out).
async fn force_leave(Path(node): Path<String>) -> Response {
    if node == AGENT {
        return bad_request("The agent cannot force itself to leave");
    }
    (StatusCode::INTERNAL_SERVER_ERROR, format!("agent: No node found with name '{node}'\n")).into_response()
}

/// The agent as a gossip member (`/v1/agent/members`, `Member` of `self`).
fn member(wan: bool) -> Value {
    let name = if wan { format!("{AGENT}.{DATACENTER}") } else { AGENT.to_string() };
    json!({
        "Name": name, "Addr": AGENT_ADDRESS, "Port": if wan { 8302 } else { 8301 },
        "Tags": {"role": "consul", "dc": DATACENTER, "build": format!("{VERSION}:shardscope"), "port": "8300",
                 "bootstrap": "1", "vsn": "2", "vsn_min": "2", "vsn_max": "3"},
        "Status": 1, "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
        "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
    })
}

async fn agent_self() -> Json<Value> {
    Json(json!({
        "Config": {"Datacenter": DATACENTER, "PrimaryDatacenter": DATACENTER, "NodeName": AGENT, "NodeID": "",
                   "Revision": "shardscope", "Server": true, "Version": VERSION, "BuildDate": ""},
        "DebugConfig": {},
        "Coord": null,
        "Member": member(false),
        "Stats": {"consul": {"leader": "true", "leader_addr": LEADER, "server": "true", "known_datacenters": "1",
                             "bootstrap": "true"}},
        "Meta": {},
        "xDS": null,
    }))
}

async fn members(params: QueryParams, raw: axum::extract::RawQuery) -> Json<Value> {
    let wan = raw.0.is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "wan" && v != "0"));
    Json(Value::Array(params.filtered(vec![member(wan)])))
}

async fn services(State(reg): State<Registry>, params: QueryParams) -> Json<Value> {
    let t = reg.tables.lock().unwrap();
    let out = t.agent().services.values().map(|s| (s.id.clone(), agent_service(s))).filter(|(_, v)| params.keeps(v));
    Json(Value::Object(out.collect()))
}

async fn service(State(reg): State<Registry>, Path(id): Path<String>) -> Response {
    let t = reg.tables.lock().unwrap();
    match t.agent().services.get(&id) {
        Some(s) => Json(agent_service(s)).into_response(),
        None => (StatusCode::NOT_FOUND, format!("unknown service ID: {id}\n")).into_response(),
    }
}

/// A service as the agent lists it: without the catalog's indexes.
fn agent_service(s: &Service) -> Value {
    let mut v = service_json(s);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("Datacenter".into(), json!(DATACENTER));
        obj.remove("CreateIndex");
        obj.remove("ModifyIndex");
    }
    v
}

async fn checks(State(reg): State<Registry>, params: QueryParams) -> Json<Value> {
    let t = reg.tables.lock().unwrap();
    let agent = t.agent();
    let out =
        agent.checks.values().map(|c| (c.id.clone(), check_json(AGENT, agent, c))).filter(|(_, v)| params.keeps(v));
    Json(Value::Object(out.collect()))
}

/// Checks that a probe of `host` stays at the service's own address
/// (`address`, or the agent's when empty): the same host, or both on
/// loopback. A check may not turn the registry into a prober of others.
fn own_address(address: &str, host: &str, kind: &str) -> Result<(), String> {
    let address = if address.is_empty() { AGENT_ADDRESS } else { address };
    let ip = |h: &str| h.parse::<std::net::IpAddr>().ok();
    let same = host.eq_ignore_ascii_case(address) || ip(host).is_some_and(|a| ip(address) == Some(a));
    if same || (is_loopback(address) && is_loopback(host)) {
        return Ok(());
    }
    Err(format!(
        "{kind} check probes {host:?}, not the service's own address {address:?}: a check may only probe its service"
    ))
}

/// The host an HTTP check's URL names (http or https only).
fn http_host(url: &str) -> Result<String, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("Invalid HTTP check URL {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("Invalid HTTP check URL {url:?}: the scheme must be http or https"));
    }
    match parsed.host_str() {
        Some(host) => Ok(host.trim_start_matches('[').trim_end_matches(']').to_string()),
        None => Err(format!("Invalid HTTP check URL {url:?}: no host")),
    }
}

/// The host of a TCP check's `host:port`.
fn tcp_host(addr: &str) -> Result<String, String> {
    let bad = || format!("Invalid TCP check address {addr:?}: expected host:port");
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if host.is_empty() {
        return Err(bad());
    }
    Ok(host.to_string())
}

/// A check from its definition, whose `CheckID`, `Name` and `ServiceID`
/// are resolved: one of TTL, HTTP (to `address`, the service's own, or the
/// agent's when empty) or TCP (likewise), probed no more often than
/// [`MIN_CHECK_INTERVAL`]; or, when `fixed` allows it, none of them (a
/// status its registrant sets: catalog registrations, maintenance).
pub(super) fn build_check(def: CheckDefinition, address: &str, fixed: bool, index: u64) -> Result<Check, String> {
    let dur = |field: &str, v: &Option<String>| -> Result<Option<std::time::Duration>, String> {
        v.as_deref().map(|s| parse_duration(s).ok_or(format!("Invalid {field} duration {s:?}"))).transpose()
    };
    if !def.args.is_empty() {
        return Err("Scripts are disabled on this agent: it runs TTL, HTTP and TCP checks only".into());
    }
    let interval = dur("Interval", &def.interval)?;
    let timeout = dur("Timeout", &def.timeout)?;
    let probe = match (&def.ttl, &def.http, &def.tcp) {
        (Some(ttl), None, None) => Probe::Ttl(parse_duration(ttl).ok_or(format!("Invalid TTL duration {ttl:?}"))?),
        (None, Some(url), None) => {
            own_address(address, &http_host(url)?, "HTTP")?;
            Probe::Http(url.clone())
        }
        (None, None, Some(addr)) => {
            own_address(address, &tcp_host(addr)?, "TCP")?;
            Probe::Tcp(addr.clone())
        }
        (None, None, None) if fixed => Probe::Fixed,
        (None, None, None) => return Err("Check must be one of TTL, HTTP or TCP".into()),
        _ => return Err("Check has more than one of TTL, HTTP, TCP".into()),
    };
    if matches!(probe, Probe::Http(_) | Probe::Tcp(_)) {
        if interval.is_none() {
            return Err("Interval must be > 0 for HTTP and TCP checks".into());
        }
        for (field, d) in [("Interval", interval), ("Timeout", timeout)] {
            if d.is_some_and(|d| d < MIN_CHECK_INTERVAL) {
                return Err(format!(
                    "{field} {} is below the minimum of {} for HTTP and TCP checks",
                    format_duration(d.unwrap_or_default()),
                    format_duration(MIN_CHECK_INTERVAL)
                ));
            }
        }
    }
    let status = def.status.clone().unwrap_or_else(|| "critical".into());
    if !STATUSES.contains(&status.as_str()) {
        return Err(format!("Invalid check status {status:?}"));
    }
    let (Some(id), Some(name)) = (def.check_id.clone(), def.name.clone()) else {
        return Err("Missing check name".into());
    };
    if id.is_empty() || name.is_empty() {
        return Err("Missing check name".into());
    }
    let now = Instant::now();
    Ok(Check {
        id,
        name,
        service_id: def.service_id.clone().unwrap_or_default(),
        ttl_deadline: match probe {
            Probe::Ttl(ttl) => Some(now + ttl),
            _ => None,
        },
        probe,
        interval: interval.unwrap_or(std::time::Duration::from_secs(10)),
        timeout: timeout.unwrap_or(std::time::Duration::from_secs(10)),
        critical_since: (status == "critical").then_some(now),
        status,
        output: String::new(),
        deregister_after: dur("DeregisterCriticalServiceAfter", &def.deregister_critical_service_after)?,
        next_probe: now,
        probing: false,
        create_index: index,
        modify_index: index,
        def,
    })
}

/// A service from its registration, checked as Consul checks it, and its
/// checks (`Check` and `Checks`: `service:ID`, or `service:ID:1`, `:2`, ...
/// when there are several); the service keeps its registration without them.
pub(super) fn new_service(mut reg: ServiceRegistration, index: u64) -> Result<(Service, Vec<Check>), String> {
    if reg.name.is_empty() {
        return Err("Missing service name".into());
    }
    let id = reg.id.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| reg.name.clone());
    let defs: Vec<CheckDefinition> = reg.check.take().into_iter().chain(std::mem::take(&mut reg.checks)).collect();
    let several = defs.len() > 1;
    let mut checks: Vec<Check> = Vec::new();
    for (i, mut def) in defs.into_iter().enumerate() {
        let default_id = if several { format!("service:{id}:{}", i + 1) } else { format!("service:{id}") };
        def.check_id = Some(def.check_id.filter(|c| !c.is_empty()).unwrap_or(default_id));
        def.name = Some(def.name.filter(|n| !n.is_empty()).unwrap_or_else(|| format!("Service '{}' check", reg.name)));
        def.service_id = Some(id.clone());
        let check = build_check(def, &reg.address, false, index)?;
        if checks.iter().any(|c| c.id == check.id) {
            return Err(format!("Check ID {:?} is given twice", check.id));
        }
        checks.push(check);
    }
    reg.weights.get_or_insert(Weights { passing: 1, warning: 1 });
    reg.id = Some(id.clone());
    Ok((Service { reg, id, create_index: index, modify_index: index }, checks))
}

/// Whether a change to the agent's check `id` (now of service `sid`, if
/// any) touches the storage nodes: a check of a `shardscope-node` service,
/// or one of the agent node's own (it decides every service's health).
fn nodes_check(agent: &Node, id: &str, sid: &str) -> bool {
    let of_nodes = |sid: &str| sid.is_empty() || agent.services.get(sid).is_some_and(|s| s.reg.name == NODE_SERVICE);
    of_nodes(sid) || agent.checks.get(id).is_some_and(|c| of_nodes(&c.service_id))
}

async fn register(State(reg): State<Registry>, presented: Presented, body: Result<Bytes, BytesRejection>) -> Response {
    let r: ServiceRegistration = match decoded(body, reg.limits.registration) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let mut t = reg.tables.lock().unwrap();
    let (service, checks) = match new_service(r, t.index + 1) {
        Ok(s) => s,
        Err(e) => return bad_request(e),
    };
    let agent = t.agent();
    let held = agent.services.get(&service.id);
    let nodes = service.reg.name == NODE_SERVICE || held.is_some_and(|h| h.reg.name == NODE_SERVICE);
    if let Err(refused) = reg.authorize(&presented, nodes, &format!("'service:write' on {:?}", service.reg.name)) {
        return refuse(refused);
    }
    if let Some(held) = held {
        if held.reg.name == NODE_SERVICE && held.instance() != service.instance() && agent.passing(&held.id) {
            let message = id_taken(&service.id, held.address(), held.reg.port, held.instance());
            return refuse((StatusCode::CONFLICT, message));
        }
    }
    if let Some(c) = checks.iter().find(|c| agent.checks.get(&c.id).is_some_and(|o| o.service_id != service.id)) {
        return bad_request(format!("Check ID {:?} is taken by another check; give this one another CheckID", c.id));
    }
    let outcome = reg.commit(&mut t, reg.trusted(&presented), |t, _| {
        let agent = t.agent_mut();
        agent.remove_service(&service.id);
        agent.checks.extend(checks.into_iter().map(|c| (c.id.clone(), c)));
        agent.services.insert(service.id.clone(), service);
        Ok(())
    });
    outcome.map(|()| StatusCode::OK).into_response()
}

fn unknown_service(id: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        format!("Unknown service ID {id:?}. Ensure that the service ID is passed, not the service name.\n"),
    )
        .into_response()
}

async fn deregister(State(reg): State<Registry>, Path(id): Path<String>, presented: Presented) -> Response {
    let mut t = reg.tables.lock().unwrap();
    let name = t.agent().services.get(&id).map(|s| s.reg.name.clone()).unwrap_or_default();
    if let Err(refused) = reg.authorize(&presented, name == NODE_SERVICE, &format!("'service:write' on {name:?}")) {
        return refuse(refused);
    }
    if !t.agent().services.contains_key(&id) {
        return unknown_service(&id);
    }
    let outcome = reg.commit(&mut t, reg.trusted(&presented), |t, _| {
        t.agent_mut().remove_service(&id);
        Ok(())
    });
    outcome.map(|()| StatusCode::OK).into_response()
}

async fn register_check(
    State(reg): State<Registry>,
    presented: Presented,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut def: CheckDefinition = match decoded(body, reg.limits.registration) {
        Ok(d) => d,
        Err(e) => return *e,
    };
    let mut t = reg.tables.lock().unwrap();
    let agent = t.agent();
    let sid = def.service_id.clone().unwrap_or_default();
    let address = match agent.services.get(&sid) {
        Some(s) => s.reg.address.clone(),
        None if sid.is_empty() => String::new(),
        None => return (StatusCode::NOT_FOUND, format!("ServiceID {sid:?} does not exist\n")).into_response(),
    };
    def.check_id = def.check_id.filter(|c| !c.is_empty()).or_else(|| def.name.clone());
    let id = def.check_id.clone().unwrap_or_default();
    if is_maintenance(&id) {
        return bad_request(format!("Check ID {id:?} is the agent's own (maintenance mode)"));
    }
    if let Err(refused) =
        reg.authorize(&presented, nodes_check(agent, &id, &sid), &format!("'node:write' on {AGENT:?}"))
    {
        return refuse(refused);
    }
    let check = match build_check(def, &address, false, t.index + 1) {
        Ok(c) => c,
        Err(e) => return bad_request(e),
    };
    let outcome = reg.commit(&mut t, reg.trusted(&presented), |t, _| {
        t.agent_mut().checks.insert(check.id.clone(), check);
        Ok(())
    });
    outcome.map(|()| StatusCode::OK).into_response()
}

fn unknown_check(id: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("Unknown check ID {id:?}\n")).into_response()
}

async fn deregister_check(State(reg): State<Registry>, Path(id): Path<String>, presented: Presented) -> Response {
    let mut t = reg.tables.lock().unwrap();
    let agent = t.agent();
    let Some(check) = agent.checks.get(&id) else { return unknown_check(&id) };
    if let Err(refused) =
        reg.authorize(&presented, nodes_check(agent, &id, &check.service_id), &format!("'node:write' on {AGENT:?}"))
    {
        return refuse(refused);
    }
    let outcome = reg.commit(&mut t, reg.trusted(&presented), |t, _| {
        t.agent_mut().checks.remove(&id);
        Ok(())
    });
    outcome.map(|()| StatusCode::OK).into_response()
}

/// Consul's body of `PUT /v1/agent/check/update/:id`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CheckUpdate {
    #[serde(default)]
    status: String,
    #[serde(default)]
    output: String,
}

async fn update_check(
    State(reg): State<Registry>,
    Path((verb, id)): Path<(String, String)>,
    params: QueryParams,
    presented: Presented,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (status, output) = match verb.as_str() {
        "pass" => ("passing".to_string(), params.note.unwrap_or_default()),
        "warn" => ("warning".to_string(), params.note.unwrap_or_default()),
        "fail" => ("critical".to_string(), params.note.unwrap_or_default()),
        "update" => match decoded::<CheckUpdate>(body, reg.limits.registration) {
            Ok(u) if STATUSES.contains(&u.status.as_str()) => (u.status, u.output),
            Ok(u) => return bad_request(format!("Invalid check status: {:?}", u.status)),
            Err(e) => return *e,
        },
        _ => return (StatusCode::NOT_FOUND, "Unsupported endpoint\n").into_response(),
    };
    let now = Instant::now();
    let mut t = reg.tables.lock().unwrap();
    let index = t.index + 1;
    let agent = t.agent();
    let Some(check) = agent.checks.get(&id) else { return unknown_check(&id) };
    if let Err(refused) =
        reg.authorize(&presented, nodes_check(agent, &id, &check.service_id), &format!("'service:write' on {id:?}"))
    {
        return refuse(refused);
    }
    if matches!(check.probe, Probe::Fixed) {
        return bad_request(format!("Check {id:?} is not a TTL check"));
    }
    if check.status == status {
        // A heartbeat: the TTL window starts again, nothing else changes.
        if let Some(check) = t.agent_mut().checks.get_mut(&id) {
            check.set(&status, output, now, index);
        }
        return StatusCode::OK.into_response();
    }
    let outcome = reg.commit(&mut t, reg.trusted(&presented), |t, index| {
        if let Some(check) = t.agent_mut().checks.get_mut(&id) {
            check.set(&status, output, now, index);
        }
        Ok(())
    });
    outcome.map(|()| StatusCode::OK).into_response()
}

/// Maintenance mode as a critical check `id` (of service `sid`, or the
/// node's when empty) with the reason as its notes; `enable=false` removes it.
fn maintenance(
    t: &mut Tables,
    id: String,
    sid: &str,
    enable: bool,
    notes: String,
    name: &str,
    index: u64,
) -> Result<(), Refusal> {
    let agent = t.agent_mut();
    if !enable {
        agent.checks.remove(&id);
        return Ok(());
    }
    let def = CheckDefinition {
        check_id: Some(id),
        name: Some(name.into()),
        notes: Some(notes),
        service_id: (!sid.is_empty()).then(|| sid.to_string()),
        status: Some("critical".into()),
        ..Default::default()
    };
    let check = build_check(def, "", true, index).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    agent.checks.insert(check.id.clone(), check);
    Ok(())
}

fn enable_flag(params: &QueryParams) -> Result<bool, Refused> {
    params.enable.ok_or_else(|| Refused((StatusCode::BAD_REQUEST, "Missing value for enable".into())))
}

async fn service_maintenance(
    State(reg): State<Registry>,
    Path(sid): Path<String>,
    params: QueryParams,
    presented: Presented,
) -> Response {
    let enable = match enable_flag(&params) {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    let notes = params.reason.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| {
        "Maintenance mode is enabled for this service, but no reason was provided. This is a default message.".into()
    });
    let mut t = reg.tables.lock().unwrap();
    let Some(service) = t.agent().services.get(&sid) else { return unknown_service(&sid) };
    let nodes = service.reg.name == NODE_SERVICE;
    if let Err(refused) = reg.authorize(&presented, nodes, &format!("'service:write' on {:?}", service.reg.name)) {
        return refuse(refused);
    }
    let id = format!("{SERVICE_MAINTENANCE}{sid}");
    let outcome = reg.commit(&mut t, reg.trusted(&presented), |t, index| {
        maintenance(t, id, &sid, enable, notes, "Service Maintenance Mode", index)
    });
    outcome.map(|()| StatusCode::OK).into_response()
}

async fn node_maintenance(State(reg): State<Registry>, params: QueryParams, presented: Presented) -> Response {
    let enable = match enable_flag(&params) {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    let notes = params.reason.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| {
        "Maintenance mode is enabled for this node, but no reason was provided. This is a default message.".into()
    });
    if let Err(refused) = reg.authorize(&presented, true, &format!("'node:write' on {AGENT:?}")) {
        return refuse(refused);
    }
    let mut t = reg.tables.lock().unwrap();
    let outcome = reg.commit(&mut t, reg.trusted(&presented), |t, index| {
        maintenance(t, NODE_MAINTENANCE.into(), "", enable, notes, "Node Maintenance Mode", index)
    });
    outcome.map(|()| StatusCode::OK).into_response()
}
