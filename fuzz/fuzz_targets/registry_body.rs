//! The embedded registry's writes (`consul/src/registry/`), through its own
//! axum router as a client's requests reach it (no socket): each line of
//! the input is one request, `R<registration JSON>`, `D<service id>`,
//! `P`/`W`/`F<check id>` (pass, warn, fail), `K<key> <value>` (KV put; the
//! key may carry `?cas=..&flags=..`) or `X<key>` (KV delete). With an odd
//! first byte the registry keeps a data dir.
//!
//! Checks: never a panic and never a 5xx (but Consul's for another
//! datacenter, `?dc=`); a refused request (4xx) leaves
//! the index as it was, and a request changes it by at most one; a
//! registration answered 200 is listed by the health endpoint under its id
//! with its check's status; a KV put answered `true` reads back its value,
//! a KV delete answered `true` leaves no key; with a data dir, a
//! registry reopened from it answers every read the same.
#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use libfuzzer_sys::fuzz_target;
use shardscope_consul::api::{ServiceEntry, ServiceRegistration};
use shardscope_consul::registry::Registry;
use shardscope_fuzz::scratch_dir;
use tower::ServiceExt as _;

/// One answer: status, `X-Consul-Index` (0 when absent) and body.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: StatusCode,
    index: u64,
    body: Vec<u8>,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap())
}

fn call(app: &Router, method: Method, uri: &str, body: &[u8]) -> Option<Answer> {
    let req = Request::builder().method(method).uri(uri).body(Body::from(body.to_vec())).ok()?;
    let resp = runtime().block_on(app.clone().oneshot(req)).unwrap();
    let status = resp.status();
    let index = resp.headers().get("x-consul-index").and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
    let body = runtime().block_on(axum::body::to_bytes(resp.into_body(), usize::MAX)).unwrap().to_vec();
    // Consul's one 5xx for a request's own fault: another datacenter.
    let other_dc = status == StatusCode::INTERNAL_SERVER_ERROR && body.starts_with(b"No path to datacenter");
    assert!(!status.is_server_error() || other_dc, "{uri} answered {status}: {}", String::from_utf8_lossy(&body));
    Some(Answer { status, index, body })
}

fn get(app: &Router, uri: &str) -> Answer {
    call(app, Method::GET, uri, b"").expect("a read's URI is valid")
}

fn index(app: &Router) -> u64 {
    get(app, "/v1/catalog/services").index
}

/// A path segment with everything but unreserved characters percent-encoded.
fn segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, script)) = data.split_first() else { return };
    let dir = (mode & 1 == 1).then(scratch_dir);
    let registry = match &dir {
        Some(dir) => Registry::with_data_dir(dir.path()).unwrap(),
        None => Registry::new(),
    };
    let app = registry.router();
    let (mut names, mut keys) = (BTreeSet::new(), BTreeSet::new());
    for line in script.split(|&b| b == b'\n').take(32) {
        let Some((&op, arg)) = line.split_first() else { continue };
        let before = index(&app);
        let text = String::from_utf8_lossy(arg);
        let answer = match op {
            b'R' => {
                let answer = call(&app, Method::PUT, "/v1/agent/service/register", arg);
                if let (Some(a), Ok(reg)) = (&answer, serde_json::from_slice::<ServiceRegistration>(arg)) {
                    names.insert(reg.name.clone());
                    if a.status == StatusCode::OK && spelled_as_the_model_reads(arg) {
                        check_registered(&app, &reg);
                    }
                }
                answer
            }
            b'D' => call(&app, Method::PUT, &format!("/v1/agent/service/deregister/{}", segment(&text)), b""),
            b'P' | b'W' | b'F' => {
                let verb = match op {
                    b'P' => "pass",
                    b'W' => "warn",
                    _ => "fail",
                };
                call(&app, Method::PUT, &format!("/v1/agent/check/{verb}/{}", segment(&text)), b"")
            }
            b'K' => {
                let (key, value) = text.split_once(' ').unwrap_or((&text, ""));
                let (key, query) = key.split_once('?').unwrap_or((key, ""));
                keys.insert(key.to_string());
                let uri = format!("/v1/kv/{}?{query}", segment(key));
                let answer = call(&app, Method::PUT, &uri, value.as_bytes());
                if answer.as_ref().is_some_and(|a| a.status == StatusCode::OK && a.body == b"true") {
                    let read = get(&app, &format!("/v1/kv/{}?raw", segment(key)));
                    assert_eq!(read.body, value.as_bytes(), "a KV put answered true does not read back");
                }
                answer
            }
            b'X' => {
                keys.insert(text.to_string());
                let answer = call(&app, Method::DELETE, &format!("/v1/kv/{}", segment(&text)), b"");
                if answer.as_ref().is_some_and(|a| a.status == StatusCode::OK && a.body == b"true") {
                    let read = get(&app, &format!("/v1/kv/{}", segment(&text)));
                    assert_eq!(read.status, StatusCode::NOT_FOUND, "a KV delete answered true left the key");
                }
                answer
            }
            _ => continue,
        };
        let Some(answer) = answer else { continue };
        let after = index(&app);
        if answer.status.is_client_error() {
            assert_eq!(after, before, "a refused request ({}) changed the index", answer.status);
        }
        assert!(after == before || after == before + 1, "one request moved the index from {before} to {after}");
    }
    if let Some(dir) = dir {
        let reads = |app: &Router| -> Vec<Answer> {
            let mut uris = vec!["/v1/catalog/services".to_string()];
            uris.extend(names.iter().map(|n| format!("/v1/health/service/{}", segment(n))));
            uris.extend(names.iter().map(|n| format!("/v1/catalog/service/{}", segment(n))));
            uris.extend(keys.iter().map(|k| format!("/v1/kv/{}", segment(k))));
            uris.iter().map(|u| get(app, u)).collect()
        };
        let want = reads(&app);
        drop(app);
        let reopened = Registry::with_data_dir(dir.path()).expect("the registry reopens its own data dir").router();
        assert_eq!(reads(&reopened), want, "a reopened registry answers otherwise");
    }
});

/// Whether the fields the model compares are spelled as its serde types
/// read them: the registry reads field names in any case and with or
/// without underscores, as Consul does (`CHeck` is `Check`), the model
/// only the exact ones.
fn spelled_as_the_model_reads(body: &[u8]) -> bool {
    const FIELDS: [&str; 6] = ["ID", "Name", "Port", "Check", "Checks", "Status"];
    fn keys_ok(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Object(map) => map.iter().all(|(k, v)| {
                let folded = k.to_lowercase().replace('_', "");
                let other_spelling = FIELDS.iter().any(|f| f.to_lowercase() == folded && *f != k.as_str());
                !other_spelling && keys_ok(v)
            }),
            serde_json::Value::Array(items) => items.iter().all(keys_ok),
            _ => true,
        }
    }
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| keys_ok(&v))
}

/// The health endpoint lists a registration answered 200, under its id,
/// with its checks in the status they were given (critical by default).
fn check_registered(app: &Router, reg: &ServiceRegistration) {
    let health = get(app, &format!("/v1/health/service/{}", segment(&reg.name)));
    let entries: Vec<ServiceEntry> = serde_json::from_slice(&health.body).expect("health answers entries");
    let id = reg.id.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| reg.name.clone());
    let entry = entries.iter().find(|e| e.service.id == id).expect("a registered service is listed");
    assert_eq!(entry.service.port, reg.port);
    let mut want: Vec<&str> =
        reg.check.iter().chain(&reg.checks).map(|c| c.status.as_deref().unwrap_or("critical")).collect();
    let mut got: Vec<&str> = entry.checks.iter().filter(|c| c.service_id == id).map(|c| c.status.as_str()).collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
}
