//! Browser-side exposure against a real `shardscope serve` (and a real
//! `shardscope registry`): what another site's page could do through a
//! user's browser. Cross-origin WebSocket upgrades, DNS-rebinding `Host`s
//! (on the backend and on the embedded registry) and simple cross-site
//! POSTs are refused with a clear answer and change nothing; the server's
//! own origin, clients that send no Origin (the CLI), and the hosts and
//! origins the operator lists keep working. Requests are written by hand
//! over TCP, so every header is exactly what a browser (or an attacker)
//! would send.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{children_of, RegistryProcess, Stack};
use shardscope_shared::protocol::ServerMsg;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

/// An answer to a hand-written request.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

/// Sends one HTTP/1.1 request to `addr` (`host:port`) with exactly
/// `headers` (Host included, or not) and reads the answer; a 101 is read up
/// to the end of its head, everything else to the end of its body.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()));
    stream.write_all(head.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
    let mut length = None;
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let mut body = Vec::new();
    match (status, length) {
        (101, _) => {}
        (_, Some(n)) => {
            body.resize(n, 0);
            reader.read_exact(&mut body).unwrap();
        }
        (_, None) => {
            reader.read_to_end(&mut body).unwrap();
        }
    }
    Answer { status, body: String::from_utf8_lossy(&body).into_owned() }
}

/// The headers of a WebSocket upgrade with `host` and, if given, `origin`.
fn upgrade<'a>(host: &'a str, origin: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut headers = vec![
        ("Host", host),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ];
    headers.extend(origin.map(|o| ("Origin", o)));
    headers
}

fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://").trim_end_matches('/').to_string()
}

fn get_json(url: &str) -> serde_json::Value {
    reqwest::blocking::get(url).unwrap().error_for_status().unwrap().json().unwrap()
}

fn node_count(stack: &Stack) -> usize {
    get_json(&format!("{}/nodes", stack.url)).as_array().unwrap().len()
}

/// Waits (up to 60 s) until the cluster lists `n` nodes.
fn wait_for_nodes(stack: &Stack, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while node_count(stack) != n {
        assert!(Instant::now() < deadline, "the cluster never listed {n} nodes: {}", node_count(stack));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Opens `/ws` with `origin` (if any) through a real WebSocket client and
/// reads the first message: the cluster.
fn websocket_works(addr: &str, origin: Option<&str>) {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some(origin) = origin {
        req.headers_mut().insert("origin", origin.parse().unwrap());
    }
    let (mut ws, resp) = tungstenite::connect(req).unwrap_or_else(|e| panic!("upgrade with Origin {origin:?}: {e}"));
    assert_eq!(resp.status(), 101);
    let first = ws.read().unwrap().into_text().unwrap();
    let msg: ServerMsg = serde_json::from_str(&first).unwrap();
    assert!(matches!(msg, ServerMsg::Cluster { .. }), "{first}");
    let _ = ws.close(None);
}

#[test]
fn cross_site_pages_and_rebinding_hosts_are_refused_and_change_nothing() {
    let stack = Stack::start(1, &[]);
    let addr = addr_of(&stack.url);
    let reg = addr_of(&stack.registry);
    let port = addr.rsplit_once(':').unwrap().1;
    let evil_host = format!("evil.example:{port}");
    let evil_origin = format!("http://{evil_host}");
    let own_origin = format!("http://{addr}");
    let before = get_json(&format!("{}/cluster", stack.url));
    let processes = children_of(stack.pid()).len();
    assert_eq!(node_count(&stack), 1);

    // Cross-site WebSocket hijacking: refused before the upgrade.
    for origin in ["http://evil.example", "http://127.0.0.1:1", "null", &format!("https://{addr}")] {
        let answer = request(&addr, "GET", "/ws", &upgrade(&addr, Some(origin)), "");
        assert_eq!(answer.status, 403, "Origin {origin}: {answer:?}");
        assert!(answer.body.contains("--allowed-origin"), "{answer:?}");
    }
    // The same machine under another name is another origin.
    let localhost = format!("localhost:{port}");
    assert_eq!(request(&addr, "GET", "/ws", &upgrade(&localhost, Some(&own_origin)), "").status, 403);

    // DNS rebinding: the attacker's name, re-resolved to 127.0.0.1, makes
    // its page "same-origin"; the Host gives it away.
    let rebound = [
        ("GET", "/kv", vec![("Host", evil_host.as_str())]),
        ("GET", "/", vec![("Host", evil_host.as_str())]),
        ("GET", "/ws", upgrade(&evil_host, Some(&evil_origin))),
        (
            "POST",
            "/nodes",
            vec![("Host", evil_host.as_str()), ("Origin", &evil_origin), ("Content-Type", "application/json")],
        ),
    ];
    for (method, path, headers) in &rebound {
        let answer = request(&addr, method, path, headers, "");
        assert_eq!(answer.status, 403, "{method} {path}: {answer:?}");
        assert!(answer.body.contains("--allowed-host evil.example"), "{answer:?}");
    }
    // The embedded registry too, reads and writes.
    let reg_port = reg.rsplit_once(':').unwrap().1;
    let evil_reg = format!("evil.example:{reg_port}");
    let answer = request(&reg, "GET", "/v1/kv/shardscope/cluster", &[("Host", &evil_reg)], "");
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(answer.body.contains("--allowed-host"), "{answer:?}");
    assert_eq!(request(&reg, "PUT", "/v1/kv/planted", &[("Host", &evil_reg)], "x").status, 403);
    // With its own Host the same reads answer, and nothing was planted.
    assert_eq!(request(&reg, "GET", "/v1/kv/shardscope/cluster", &[("Host", &reg)], "").status, 200);
    let local_reg = format!("localhost:{reg_port}");
    assert_eq!(request(&reg, "GET", "/v1/kv/shardscope/cluster", &[("Host", &local_reg)], "").status, 200);
    assert_eq!(request(&reg, "GET", "/v1/kv/planted", &[("Host", &reg)], "").status, 404);
    // A page from another origin may not write to the registry either.
    let foreign_write = [("Host", reg.as_str()), ("Origin", "http://evil.example")];
    assert_eq!(request(&reg, "PUT", "/v1/kv/planted", &foreign_write, "x").status, 403);
    assert_eq!(request(&reg, "GET", "/v1/kv/planted", &[("Host", &reg)], "").status, 404);
    assert_eq!(request(&addr, "GET", "/kv", &[("Host", &addr)], "").status, 200);

    // Simple POSTs (no preflight) launch nothing, whatever their Origin.
    let text = ("Content-Type", "text/plain");
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let simple = [
        (vec![("Host", addr.as_str()), ("Origin", "http://evil.example"), text], 403),
        (vec![("Host", addr.as_str()), ("Sec-Fetch-Site", "cross-site"), text], 403),
        (vec![("Host", addr.as_str()), text], 415),
        (vec![("Host", addr.as_str()), ("Origin", own_origin.as_str()), form], 415),
        (vec![("Host", addr.as_str())], 415),
    ];
    for (headers, status) in &simple {
        let answer = request(&addr, "POST", "/nodes", headers, "{}");
        assert_eq!(answer.status, *status, "{headers:?}: {answer:?}");
    }
    let answer = request(&addr, "POST", "/nodes", &[("Host", &addr), text], "");
    assert!(answer.body.contains("X-ShardScope: 1"), "{answer:?}");
    // A foreign page may not remove the node or change the algorithm either.
    let foreign = [("Host", addr.as_str()), ("Origin", "http://evil.example")];
    assert_eq!(request(&addr, "DELETE", "/nodes/node-1", &foreign, "").status, 403);
    assert_eq!(request(&addr, "PUT", "/placement", &foreign, r#"{"algorithm":"jump"}"#).status, 403);
    assert_eq!(request(&addr, "PUT", "/kv/planted", &foreign, "x").status, 403);

    // Nothing changed: no process launched, the same nodes, state and keys.
    assert_eq!(children_of(stack.pid()).len(), processes);
    assert_eq!(node_count(&stack), 1);
    assert_eq!(get_json(&format!("{}/cluster", stack.url)), before);
    assert_eq!(reqwest::blocking::get(format!("{}/kv/planted", stack.url)).unwrap().status(), 404);

    // The page's own origin and clients without an Origin keep working.
    websocket_works(&addr, Some(&own_origin));
    websocket_works(&addr, None);
    let json = [("Host", addr.as_str()), ("Origin", own_origin.as_str()), ("Content-Type", "application/json")];
    let answer = request(&addr, "POST", "/nodes", &json, "");
    assert_eq!(answer.status, 202, "{answer:?}");
    wait_for_nodes(&stack, 2);
    // The CLI sends X-ShardScope.
    let out = std::process::Command::new(common::shardscope_exe())
        .args(["add-node", "--addr", &stack.url])
        .env_remove("SHARDSCOPE_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for_nodes(&stack, 3);
}

#[test]
fn listed_hosts_and_origins_are_served() {
    let origins = ("SHARDSCOPE_ALLOWED_ORIGINS", "http://dash.example:3000,https://ops.example");
    let stack =
        Stack::start_with_env(1, &["--allowed-host", "kv.example", "--allowed-host", "pinned.example:1"], &[origins]);
    let addr = addr_of(&stack.url);
    let reg = addr_of(&stack.registry);
    let port = addr.rsplit_once(':').unwrap().1;
    let named = format!("kv.example:{port}");

    // A listed name is served, page, REST and WebSocket on its own origin.
    assert_eq!(request(&addr, "GET", "/kv", &[("Host", &named)], "").status, 200);
    assert_eq!(request(&addr, "GET", "/ws", &upgrade(&named, Some(&format!("http://{named}"))), "").status, 101);
    let reg_named = format!("kv.example:{}", reg.rsplit_once(':').unwrap().1);
    assert_eq!(request(&reg, "GET", "/v1/status/leader", &[("Host", &reg_named)], "").status, 200);
    // A name listed with a port only on that port; unlisted names not at all.
    let pinned = format!("pinned.example:{port}");
    assert_eq!(request(&addr, "GET", "/kv", &[("Host", &pinned)], "").status, 403);
    assert_eq!(request(&addr, "GET", "/kv", &[("Host", &format!("other.example:{port}"))], "").status, 403);

    // Listed origins (from the environment) may open the WebSocket and write.
    for origin in ["http://dash.example:3000", "https://ops.example"] {
        assert_eq!(request(&addr, "GET", "/ws", &upgrade(&addr, Some(origin)), "").status, 101, "{origin}");
        let put = [("Host", addr.as_str()), ("Origin", origin)];
        assert_eq!(request(&addr, "PUT", "/kv/from-dash", &put, "yes").status, 200, "{origin}");
    }
    assert_eq!(request(&addr, "GET", "/ws", &upgrade(&addr, Some("http://dash.example")), "").status, 403);
}

#[test]
fn the_standalone_registry_refuses_rebinding_hosts() {
    let dir = tempfile::tempdir().unwrap();
    let registry = RegistryProcess::start(dir.path());
    let addr = addr_of(&registry.url);
    let port = addr.rsplit_once(':').unwrap().1;
    let answer = request(&addr, "GET", "/v1/status/leader", &[("Host", &format!("evil.example:{port}"))], "");
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(answer.body.contains("--allowed-host evil.example"), "{answer:?}");
    assert_eq!(request(&addr, "GET", "/v1/status/leader", &[("Host", &addr)], "").status, 200);
    // Writes from another origin's page are refused; consul clients send none.
    let foreign = [("Host", addr.as_str()), ("Origin", "http://evil.example")];
    assert_eq!(request(&addr, "PUT", "/v1/kv/x", &foreign, "1").status, 403);
    assert_eq!(request(&addr, "PUT", "/v1/kv/x", &[("Host", &addr)], "1").status, 200);
}
