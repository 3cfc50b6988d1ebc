//! The Consul client against the embedded registry, over real HTTP on
//! loopback: registration with each check kind, TTL and TCP/HTTP checks
//! turning critical, auto-deregistration, blocking queries, KV with cas, bad
//! input; and decoding of Consul's own documented response bodies.

use std::time::{Duration, Instant};

use rs_consul::types::ReadKeyResponse;
use shardscope_consul::api::{CatalogService, CheckDefinition, KvPair, ServiceEntry, ServiceRegistration};
use shardscope_consul::client::{Consul, ServiceNode};
use shardscope_consul::registry::Registry;

/// Starts an embedded registry on a fresh loopback port; it stops with the test.
async fn registry() -> (Consul, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(Registry::new().serve(listener, std::future::pending()));
    (Consul::new(&url), url)
}

fn service(id: &str, check: CheckDefinition) -> ServiceRegistration {
    ServiceRegistration {
        id: Some(id.into()),
        name: "svc".into(),
        address: "127.0.0.1".into(),
        port: 9,
        check: Some(check),
        ..Default::default()
    }
}

/// The registry's full health answer for `svc` (checks included) and its
/// index, as a blocking query when `index` is given.
async fn health(url: &str, index: Option<u64>) -> (Vec<ServiceEntry>, u64) {
    let q = index.map(|i| format!("?index={i}&wait=2s")).unwrap_or_default();
    let resp = reqwest::get(format!("{url}/v1/health/service/svc{q}")).await.unwrap();
    let i = resp.headers()["x-consul-index"].to_str().unwrap().parse().unwrap();
    (resp.json().await.unwrap(), i)
}

async fn statuses(url: &str) -> Vec<(String, String)> {
    let (entries, _) = health(url, None).await;
    entries
        .into_iter()
        .map(|e| (e.service.id, e.checks.iter().find(|c| !c.service_id.is_empty()).unwrap().status.clone()))
        .collect()
}

/// Waits (blocking queries, no sleeps) until `pred` holds for the health view.
async fn until(url: &str, what: &str, limit: Duration, pred: impl Fn(&[ServiceEntry]) -> bool) {
    let start = Instant::now();
    let mut index = None;
    loop {
        let (entries, i) = health(url, index).await;
        if pred(&entries) {
            return;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        index = Some(i);
    }
}

async fn passing(c: &Consul) -> Vec<ServiceNode> {
    c.health_service("svc", true, None, Duration::from_secs(1)).await.unwrap().0
}

#[tokio::test]
async fn ttl_check_passes_then_expires_to_critical() {
    let (c, url) = registry().await;
    let check = CheckDefinition { ttl: Some("300ms".into()), status: Some("passing".into()), ..Default::default() };
    c.register(&service("a", check)).await.unwrap();
    assert_eq!(statuses(&url).await, [("a".to_string(), "passing".to_string())]);
    assert_eq!(passing(&c).await.len(), 1);
    until(&url, "TTL expiry", Duration::from_secs(5), |e| {
        e[0].checks.iter().find(|c| !c.service_id.is_empty()).unwrap().status == "critical"
    })
    .await;
    assert!(passing(&c).await.is_empty(), "a critical instance is not passing");
    c.update_check("pass", "service:a").await.unwrap();
    assert_eq!(statuses(&url).await[0].1, "passing");
    c.update_check("warn", "service:a").await.unwrap();
    assert_eq!(statuses(&url).await[0].1, "warning");
    assert!(c.update_check("pass", "service:nope").await.is_err());
    c.deregister("a").await.unwrap();
    assert!(statuses(&url).await.is_empty());
}

#[tokio::test]
async fn tcp_and_http_checks_follow_the_service() {
    let (c, url) = registry().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let tcp = CheckDefinition {
        tcp: Some(addr.to_string()),
        interval: Some("100ms".into()),
        timeout: Some("1s".into()),
        ..Default::default()
    };
    c.register(&service("tcp", tcp)).await.unwrap();
    until(&url, "TCP check passing", Duration::from_secs(5), |e| {
        e[0].checks.iter().find(|c| !c.service_id.is_empty()).unwrap().status == "passing"
    })
    .await;
    drop(listener);
    until(&url, "TCP check critical", Duration::from_secs(5), |e| {
        e[0].checks.iter().find(|c| !c.service_id.is_empty()).unwrap().status == "critical"
    })
    .await;

    // An HTTP check against the registry's own status endpoint passes, and
    // against a missing path is critical.
    let http = |path: &str| CheckDefinition {
        http: Some(format!("{url}{path}")),
        interval: Some("100ms".into()),
        ..Default::default()
    };
    c.deregister("tcp").await.unwrap();
    c.register(&service("ok", http("/v1/status/leader"))).await.unwrap();
    c.register(&service("bad", http("/no/such/path"))).await.unwrap();
    until(&url, "HTTP checks settle", Duration::from_secs(5), |e| {
        let s = |id: &str| {
            e.iter()
                .find(|x| x.service.id == id)
                .map(|x| x.checks.iter().find(|c| !c.service_id.is_empty()).unwrap().status.clone())
        };
        s("ok").as_deref() == Some("passing") && s("bad").as_deref() == Some("critical")
    })
    .await;
    let ids: Vec<String> = passing(&c).await.into_iter().map(|n| n.service.id).collect();
    assert_eq!(ids, ["ok"]);
}

#[tokio::test]
async fn critical_services_are_deregistered_after_the_timeout() {
    let (c, url) = registry().await;
    let check = CheckDefinition {
        ttl: Some("100ms".into()),
        deregister_critical_service_after: Some("300ms".into()),
        status: Some("passing".into()),
        ..Default::default()
    };
    c.register(&service("doomed", check)).await.unwrap();
    until(&url, "auto-deregistration", Duration::from_secs(5), |e| e.is_empty()).await;
}

#[tokio::test]
async fn blocking_query_returns_on_change_and_times_out_at_wait() {
    let (c, _) = registry().await;
    let (_, index) = c.health_service("svc", false, None, Duration::from_secs(1)).await.unwrap();
    // No change: the query waits for `wait` and returns the same index.
    let start = Instant::now();
    let (_, same) = c.health_service("svc", false, Some(index), Duration::from_secs(1)).await.unwrap();
    assert_eq!(same, index);
    assert!(start.elapsed() >= Duration::from_secs(1));
    // A change wakes it early with a higher index.
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move { c.health_service("svc", false, Some(index), Duration::from_secs(20)).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let check = CheckDefinition { ttl: Some("30s".into()), ..Default::default() };
    c.register(&service("new", check)).await.unwrap();
    let (entries, after) = tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
    assert!(after > index);
    assert_eq!(entries[0].service.id, "new");
    // Consul's default initial status is critical: not in the passing list.
    assert!(passing(&c).await.is_empty());
}

#[tokio::test]
async fn kv_put_get_cas_delete() {
    let (c, url) = registry().await;
    assert_eq!(c.kv_get("cluster_size").await.unwrap(), None);
    assert!(c.kv_put("cluster_size", b"3", None).await.unwrap());
    assert_eq!(c.kv_get("cluster_size").await.unwrap().as_deref(), Some("3"));
    let pairs: Vec<KvPair> = reqwest::get(format!("{url}/v1/kv/cluster_size")).await.unwrap().json().await.unwrap();
    let modify = pairs[0].modify_index;
    assert_eq!(pairs[0].value.as_deref(), Some("Mw=="));
    assert_eq!(c.kv_modify_index("cluster_size").await.unwrap(), Some(modify));
    assert!(!c.kv_put("cluster_size", b"4", Some(modify + 1)).await.unwrap(), "stale cas fails");
    assert_eq!(c.kv_get("cluster_size").await.unwrap().as_deref(), Some("3"));
    assert!(c.kv_put("cluster_size", b"4", Some(modify)).await.unwrap(), "current cas wins");
    assert!(!c.kv_put("cluster_size", b"5", Some(0)).await.unwrap(), "cas=0 only creates");
    assert!(c.kv_put("fresh", b"1", Some(0)).await.unwrap(), "cas=0 creates a new key");
    c.kv_put("app/a", b"1", None).await.unwrap();
    c.kv_put("app/b", b"2", None).await.unwrap();
    let tree: Vec<KvPair> = reqwest::get(format!("{url}/v1/kv/app/?recurse")).await.unwrap().json().await.unwrap();
    assert_eq!(tree.iter().map(|p| p.key.as_str()).collect::<Vec<_>>(), ["app/a", "app/b"]);
    c.kv_delete("cluster_size").await.unwrap();
    assert_eq!(c.kv_get("cluster_size").await.unwrap(), None);
}

#[tokio::test]
async fn bad_input_gets_a_4xx_and_changes_nothing() {
    let (c, url) = registry().await;
    let http = reqwest::Client::new();
    let (_, before) = health(&url, None).await;
    let put = |path: &str, body: Vec<u8>| http.put(format!("{url}{path}")).body(body).send();
    let malformed = put("/v1/agent/service/register", b"{\"Name\": ".to_vec()).await.unwrap();
    assert_eq!(malformed.status(), 400);
    assert!(malformed.text().await.unwrap().contains("Request decode failed"));
    let no_check_kind = br#"{"Name":"svc","Check":{"Interval":"1s"}}"#.to_vec();
    assert_eq!(put("/v1/agent/service/register", no_check_kind).await.unwrap().status(), 400);
    let bad_ttl = br#"{"Name":"svc","Check":{"TTL":"soon"}}"#.to_vec();
    assert_eq!(put("/v1/agent/service/register", bad_ttl).await.unwrap().status(), 400);
    // Its own client: the server closes a connection whose body it refused.
    let huge =
        reqwest::Client::new().put(format!("{url}/v1/kv/big")).body(vec![b'x'; 600 * 1024]).send().await.unwrap();
    assert_eq!(huge.status(), 413);
    let bad_index = http.get(format!("{url}/v1/health/service/svc?index=abc")).send().await.unwrap();
    assert_eq!(bad_index.status(), 400);
    let bad_wait = http.get(format!("{url}/v1/health/service/svc?index=1&wait=forever")).send().await.unwrap();
    assert_eq!(bad_wait.status(), 400);
    assert_eq!(http.get(format!("{url}/v1/acl/tokens")).send().await.unwrap().status(), 401);
    assert_eq!(http.get(format!("{url}/v1/query")).send().await.unwrap().status(), 404);
    assert_eq!(put("/v1/agent/service/deregister/ghost", vec![]).await.unwrap().status(), 404);
    // Nothing changed: same index, nothing registered, no key.
    let (entries, after) = health(&url, None).await;
    assert_eq!((entries.len(), after), (0, before));
    assert_eq!(c.kv_get("big").await.unwrap(), None);
}

#[test]
fn consul_documented_responses_decode() {
    // The client's decoding (rs-consul) and the registry's own types both read Consul's JSON.
    let fixture = include_str!("fixtures/health_service.json");
    let health: Vec<ServiceNode> = serde_json::from_str(fixture).unwrap();
    assert_eq!((health[0].service.id.as_str(), health[0].service.port), ("redis", 8000));
    assert_eq!(health[0].node.address, "10.1.10.12");
    let entries: Vec<ServiceEntry> = serde_json::from_str(fixture).unwrap();
    assert_eq!(entries[0].checks.len(), 2);
    assert!(entries[0].checks.iter().all(|c| c.status == "passing"));

    let catalog: Vec<CatalogService> = serde_json::from_str(include_str!("fixtures/catalog_service.json")).unwrap();
    assert_eq!(catalog[0].service_id, "32a2a47f7992:nodea:5000");
    assert_eq!((catalog[0].service_address.as_str(), catalog[0].service_port), ("172.17.0.3", 5000));

    let kv: Vec<KvPair> = serde_json::from_str(include_str!("fixtures/kv.json")).unwrap();
    assert_eq!((kv[0].key.as_str(), kv[0].value.as_deref(), kv[0].modify_index), ("zip", Some("dGVzdA=="), 200));
    let kv: Vec<ReadKeyResponse> = serde_json::from_str(include_str!("fixtures/kv.json")).unwrap();
    assert_eq!((kv[0].key.as_str(), kv[0].modify_index), ("zip", 200));
}

/// Starts `registry` on a fresh loopback port; its URL.
async fn serve(registry: Registry) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(registry.serve(listener, std::future::pending()));
    url
}

/// `PUT {url}{path}` with `body`, presenting `token` if given: status and text.
async fn put_as(url: &str, path: &str, token: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, String) {
    let mut req = reqwest::Client::new().put(format!("{url}{path}")).body(body);
    if let Some(token) = token {
        req = req.header("X-Consul-Token", token);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// A `shardscope-node` registration of `id` at 127.0.0.1:`port`, by instance `instance`.
fn node(id: &str, port: u16, instance: &str) -> Vec<u8> {
    let reg = ServiceRegistration {
        id: Some(id.into()),
        name: shardscope_consul::api::NODE_SERVICE.into(),
        address: "127.0.0.1".into(),
        port,
        meta: [(shardscope_consul::api::INSTANCE_META.to_string(), instance.to_string())].into(),
        check: Some(CheckDefinition { ttl: Some("30s".into()), status: Some("passing".into()), ..Default::default() }),
        ..Default::default()
    };
    serde_json::to_vec(&reg).unwrap()
}

/// Every registered service (any name but the server's own `consul`) by
/// id, with port and status, and the index.
async fn catalog(url: &str) -> (Vec<(String, u16, String)>, u64) {
    let mut all = Vec::new();
    let resp = reqwest::get(format!("{url}/v1/catalog/services")).await.unwrap();
    let index = resp.headers()["x-consul-index"].to_str().unwrap().parse().unwrap();
    let names: std::collections::BTreeMap<String, Vec<String>> = resp.json().await.unwrap();
    for name in names.keys().filter(|n| *n != "consul") {
        let entries: Vec<ServiceEntry> =
            reqwest::get(format!("{url}/v1/health/service/{name}")).await.unwrap().json().await.unwrap();
        all.extend(entries.into_iter().map(|e| {
            (e.service.id, e.service.port, e.checks.iter().find(|c| !c.service_id.is_empty()).unwrap().status.clone())
        }));
    }
    (all, index)
}

#[tokio::test]
async fn the_nodes_registrations_and_kv_need_the_node_token_and_the_rest_stays_open() {
    let token = shardscope_consul::token::Token::new("node-secret");
    let url = serve(Registry::new().with_node_token(token)).await;
    let t = Some("node-secret");

    let (status, text) = put_as(&url, "/v1/agent/service/register", None, node("impostor", 1, "x")).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("Permission denied") && text.contains("shardscope-node"), "{text}");
    assert_eq!(put_as(&url, "/v1/agent/service/register", Some("guess"), node("impostor", 1, "x")).await.0, 403);
    assert_eq!(put_as(&url, "/v1/agent/service/register", t, node("node-1", 1, "a")).await.0, 200);
    let (before, index) = catalog(&url).await;
    assert_eq!(put_as(&url, "/v1/kv/shardscope/cluster", t, "{}").await.0, 200);
    let (_, index_kv) = catalog(&url).await;

    // Without the token: no taking over node-1 under another name, no
    // deregistering it or failing its check, no touching shardscope/ KV.
    let web = serde_json::to_vec(&service("node-1", CheckDefinition { ttl: Some("1m".into()), ..Default::default() }));
    assert_eq!(put_as(&url, "/v1/agent/service/register", None, web.unwrap()).await.0, 403);
    assert_eq!(put_as(&url, "/v1/agent/service/deregister/node-1", None, "").await.0, 403);
    assert_eq!(put_as(&url, "/v1/agent/check/fail/service:node-1", None, "").await.0, 403);
    assert_eq!(put_as(&url, "/v1/kv/shardscope/cluster", None, "{}").await.0, 403);
    let wipe = reqwest::Client::new().delete(format!("{url}/v1/kv/shard?recurse")).send().await.unwrap();
    assert_eq!(wipe.status(), 403, "a recursive delete reaching shardscope/ needs the token");
    assert_eq!(catalog(&url).await, (before.clone(), index_kv), "nothing changed");
    assert!(index_kv > index);

    // Everything else stays open on loopback, for the seeds' clients.
    let c = Consul::new(&url);
    c.register(&service("web-1", CheckDefinition { ttl: Some("1m".into()), ..Default::default() })).await.unwrap();
    assert!(c.kv_put("cluster_size", b"3", None).await.unwrap());
    c.deregister("web-1").await.unwrap();
    assert_eq!(c.with_token("node-secret").kv_get("shardscope/cluster").await.unwrap().as_deref(), Some("{}"));
}

#[tokio::test]
async fn with_an_admin_token_too_the_node_token_registers_nodes_only() {
    let admin = shardscope_consul::token::Token::new("admin");
    let url =
        serve(Registry::new().with_token(Some(admin)).with_node_token(shardscope_consul::token::Token::new("nt")))
            .await;
    assert_eq!(put_as(&url, "/v1/agent/service/register", Some("nt"), node("node-1", 1, "a")).await.0, 200);
    assert_eq!(put_as(&url, "/v1/kv/cluster_size", Some("nt"), "3").await.0, 403, "other writes need the admin token");
    assert_eq!(put_as(&url, "/v1/kv/cluster_size", Some("admin"), "3").await.0, 200);
    assert_eq!(put_as(&url, "/v1/agent/service/register", Some("admin"), node("node-2", 2, "b")).await.0, 200);
    assert_eq!(put_as(&url, "/v1/agent/service/register", None, node("node-3", 3, "c")).await.0, 403);
}

#[tokio::test]
async fn a_node_id_held_by_another_live_instance_is_refused_and_the_same_instance_replaces_it() {
    let (c, url) = registry().await;
    let reg = "/v1/agent/service/register";
    assert_eq!(put_as(&url, reg, None, node("node-1", 5001, "instance-a")).await.0, 200);
    let (before, index) = catalog(&url).await;

    let (status, text) = put_as(&url, reg, None, node("node-1", 6001, "instance-b")).await;
    assert_eq!(status, 409, "{text}");
    assert!(text.contains("\"node-1\"") && text.contains("127.0.0.1:5001") && text.contains("instance-a"), "{text}");
    assert_eq!(catalog(&url).await, (before, index), "the first node keeps its registration");

    // The same instance back at another port (restarted on its data) replaces it at once.
    assert_eq!(put_as(&url, reg, None, node("node-1", 5002, "instance-a")).await.0, 200);
    assert_eq!(catalog(&url).await.0, [("node-1".to_string(), 5002, "passing".to_string())]);

    // Once the holder's check fails, another instance may take the id.
    c.update_check("fail", "service:node-1").await.unwrap();
    assert_eq!(put_as(&url, reg, None, node("node-1", 6001, "instance-b")).await.0, 200);
    assert_eq!(catalog(&url).await.0, [("node-1".to_string(), 6001, "passing".to_string())]);
}

#[tokio::test]
async fn checks_probe_only_their_own_service_and_not_too_often() {
    let (_, url) = registry().await;
    let (_, index) = catalog(&url).await;
    let register = |address: &str, check: CheckDefinition| {
        let reg = ServiceRegistration { address: address.into(), ..service("probe", check) };
        let url = url.clone();
        async move { put_as(&url, "/v1/agent/service/register", None, serde_json::to_vec(&reg).unwrap()).await }
    };
    let http = |target: &str, interval: &str| CheckDefinition {
        http: Some(target.into()),
        interval: Some(interval.into()),
        ..Default::default()
    };
    let tcp =
        |target: &str| CheckDefinition { tcp: Some(target.into()), interval: Some("1s".into()), ..Default::default() };
    for (address, check, says) in [
        ("127.0.0.1", http("http://10.1.2.3/admin", "1s"), "not the service's own address"),
        ("127.0.0.1", http("http://169.254.169.254/latest/meta-data", "1s"), "not the service's own address"),
        ("192.0.2.7", http("http://127.0.0.1:8500/v1/kv/x", "1s"), "not the service's own address"),
        ("127.0.0.1", tcp("192.0.2.1:22"), "not the service's own address"),
        ("", tcp("192.0.2.1:22"), "not the service's own address"),
        ("127.0.0.1", http("file:///etc/passwd", "1s"), "http or https"),
        ("127.0.0.1", tcp("127.0.0.1"), "host:port"),
        ("127.0.0.1", http("http://127.0.0.1:1/", "10ms"), "below the minimum of 100ms"),
        ("127.0.0.1", CheckDefinition { timeout: Some("1ms".into()), ..tcp("127.0.0.1:1") }, "Timeout 1ms"),
    ] {
        let (status, text) = register(address, check.clone()).await;
        assert_eq!(status, 400, "{address} {check:?}: {text}");
        assert!(text.contains(says), "{check:?}: {text}");
    }
    assert_eq!(catalog(&url).await, (vec![], index), "nothing registered");
    for (address, check) in [
        ("192.0.2.7", tcp("192.0.2.7:80")),
        ("", tcp("127.0.0.1:1")),
        ("localhost", http("http://127.0.0.2:1/health", "100ms")),
        ("::1", tcp("[::1]:1")),
    ] {
        assert_eq!(register(address, check.clone()).await.0, 200, "{address} {check:?}");
    }
}

#[tokio::test]
async fn writes_past_the_limits_are_refused_and_change_nothing() {
    use shardscope_consul::registry::Limits;
    let limits = Limits {
        services: 3,
        registration: 1024,
        kv_keys: 3,
        key: 16,
        value: 64,
        kv_bytes: 150,
        blocking_queries: 2,
        ..Limits::default()
    };
    let url = serve(Registry::with_limits(limits)).await;
    let c = Consul::new(&url);
    let ttl = || CheckDefinition { ttl: Some("1m".into()), ..Default::default() };
    for id in ["a", "b", "c"] {
        c.register(&service(id, ttl())).await.unwrap();
    }
    assert!(c.kv_put("k1", &[b'x'; 60], None).await.unwrap());
    assert!(c.kv_put("k2", &[b'x'; 60], None).await.unwrap());
    let (before, index) = catalog(&url).await;
    let kv_before: Vec<KvPair> = reqwest::get(format!("{url}/v1/kv/k?recurse")).await.unwrap().json().await.unwrap();

    let fourth = serde_json::to_vec(&service("d", ttl())).unwrap();
    let (status, text) = put_as(&url, "/v1/agent/service/register", None, fourth).await;
    assert_eq!((status, text.contains("Too many services")), (400, true), "{text}");
    let big = ServiceRegistration { tags: vec!["t".repeat(2000)], ..service("a", ttl()) };
    let (status, text) = put_as(&url, "/v1/agent/service/register", None, serde_json::to_vec(&big).unwrap()).await;
    assert_eq!((status, text.as_str()), (413, "Request body too large, max size: 1024 bytes\n"));
    let (status, text) = put_as(&url, &format!("/v1/kv/{}", "k".repeat(17)), None, "v").await;
    assert_eq!((status, text.contains("Key too long")), (400, true), "{text}");
    let (status, text) = put_as(&url, "/v1/kv/k3", None, vec![b'x'; 65]).await;
    assert_eq!((status, text.as_str()), (413, "Request body too large, max size: 64 bytes\n"));
    let (status, text) = put_as(&url, "/v1/kv/k3", None, vec![b'x'; 40]).await;
    assert_eq!((status, text.contains("KV store full")), (413, true), "{text}");
    assert_eq!(put_as(&url, "/v1/kv/k3", None, "x").await.0, 200);
    let (status, text) = put_as(&url, "/v1/kv/k4", None, "x").await;
    assert_eq!((status, text.contains("Too many KV keys")), (400, true), "{text}");

    // Re-registering a service and rewriting a key fit: they replace.
    c.register(&service("a", ttl())).await.unwrap();
    assert!(c.kv_put("k1", &[b'y'; 60], None).await.unwrap());
    c.kv_delete("k3").await.unwrap();
    let (after, _) = catalog(&url).await;
    assert_eq!(after, before, "the same services");
    let kv_after: Vec<KvPair> = reqwest::get(format!("{url}/v1/kv/k?recurse")).await.unwrap().json().await.unwrap();
    assert_eq!(
        kv_after.iter().map(|p| &p.key).collect::<Vec<_>>(),
        kv_before.iter().map(|p| &p.key).collect::<Vec<_>>()
    );
    assert!(index > 0);
}

#[tokio::test]
async fn blocking_queries_past_the_limit_are_answered_429_and_the_waiting_ones_still_wake() {
    use shardscope_consul::registry::Limits;
    let limits = Limits { blocking_queries: 2, services: 4, ..Limits::default() };
    let token = shardscope_consul::token::Token::new("node-secret");
    let url = serve(Registry::with_limits(limits).with_node_token(token)).await;
    let c = Consul::new(&url);
    let trusted = Consul::new(&url).with_token("node-secret");
    let (_, index) = c.health_service("svc", false, None, Duration::from_secs(1)).await.unwrap();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.health_service("svc", false, Some(index), Duration::from_secs(60)).await })
        })
        .collect();
    // Once both wait, a third is refused at once (a short wait: until then it may be let in).
    let blocking = format!("{url}/v1/health/service/svc?index={index}&wait=100ms");
    let mut refused = None;
    for _ in 0..200 {
        let resp = reqwest::get(&blocking).await.unwrap();
        if resp.status() == 429 {
            refused = Some(resp.text().await.unwrap());
            break;
        }
    }
    let refused = refused.expect("a third blocking query is refused while two wait");
    assert!(refused.contains("Too many blocking queries"), "{refused}");
    let plain = reqwest::get(format!("{url}/v1/health/service/svc")).await.unwrap();
    assert_eq!(plain.status(), 200, "queries that do not block are still answered");
    // The cluster's own watch (with a token) is not starved by them.
    let watch = {
        let trusted = trusted.clone();
        tokio::spawn(async move { trusted.health_service("svc", false, Some(index), Duration::from_secs(60)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!watch.is_finished(), "the watch waits (it was not refused)");

    c.register(&service("new", CheckDefinition { ttl: Some("1m".into()), ..Default::default() })).await.unwrap();
    for waiter in waiters {
        let (entries, after) = tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap().unwrap();
        assert!(after > index);
        assert!(entries.iter().any(|e| e.service.id == "new"), "{entries:?}");
    }
    let (entries, _) = tokio::time::timeout(Duration::from_secs(10), watch).await.unwrap().unwrap().unwrap();
    assert!(entries.iter().any(|e| e.service.id == "new"), "the watch woke too: {entries:?}");

    // Nor are the nodes' registrations, when anonymous ones filled the registry.
    let ttl = || CheckDefinition { ttl: Some("1m".into()), ..Default::default() };
    for i in 1..4 {
        c.register(&service(&format!("junk-{i}"), ttl())).await.unwrap();
    }
    let full = c.register(&service("junk-4", ttl())).await.unwrap_err();
    assert!(full.to_string().contains("Too many services"), "{full}");
    trusted.register(&service("with-token", ttl())).await.unwrap();
}

/// Every write saves the whole state: anonymous writes may not grow it past
/// `anonymous_state`, while token holders (the cluster's own nodes and
/// state) still can; a write that shrinks it is always taken.
#[tokio::test]
async fn anonymous_writes_may_not_grow_the_state_past_its_bound_and_the_cluster_still_writes() {
    use shardscope_consul::registry::Limits;
    let limits = Limits { anonymous_state: 16 * 1024, ..Limits::default() };
    let token = shardscope_consul::token::Token::new("node-secret");
    let url = serve(Registry::with_limits(limits).with_node_token(token)).await;
    let filler = |i: usize| {
        let ttl = CheckDefinition { ttl: Some("1m".into()), ..Default::default() };
        let reg = ServiceRegistration { tags: vec!["t".repeat(3000)], ..service(&format!("fill-{i}"), ttl) };
        serde_json::to_vec(&reg).unwrap()
    };
    let mut stored = 0;
    let refusal = loop {
        let (status, text) = put_as(&url, "/v1/agent/service/register", None, filler(stored)).await;
        if status != 200 {
            break (status, text);
        }
        stored += 1;
        assert!(stored < 100, "16 KiB of state held {stored} registrations of 3 KB");
    };
    assert_eq!(refusal.0, 413, "{}", refusal.1);
    assert!(refusal.1.contains("anonymous writes may fill"), "{}", refusal.1);
    let (before, _) = catalog(&url).await;
    assert!(!before.iter().any(|(id, _, _)| id == &format!("fill-{stored}")), "the refused write changed nothing");

    // The cluster's own writes, with the node token, still land.
    let t = Some("node-secret");
    assert_eq!(put_as(&url, "/v1/agent/service/register", t, node("node-1", 1, "a")).await.0, 200);
    assert_eq!(put_as(&url, "/v1/kv/shardscope/cluster", t, vec![b'x'; 8000]).await.0, 200);
    // A write that shrinks the state is taken, and then there is room again.
    assert_eq!(put_as(&url, "/v1/agent/service/deregister/fill-0", None, "").await.0, 200);
    let (status, text) = put_as(&url, "/v1/agent/service/register", None, filler(stored)).await;
    assert_eq!(status, 413, "still over the bound with the cluster's state: {text}");
    assert_eq!(put_as(&url, "/v1/kv/shardscope/cluster", t, "{}").await.0, 200);
    for i in 1..4 {
        assert_eq!(put_as(&url, &format!("/v1/agent/service/deregister/fill-{i}"), None, "").await.0, 200);
    }
    assert_eq!(put_as(&url, "/v1/agent/service/register", None, filler(stored)).await.0, 200);
}

/// A session that holds the storage nodes' keys may not be ended by an
/// anonymous write to what it depends on (its node, its checks), since its
/// keys go with it.
#[tokio::test]
async fn anonymous_writes_cannot_end_a_session_holding_the_nodes_keys() {
    let token = shardscope_consul::token::Token::new("node-secret");
    let url = serve(Registry::new().with_node_token(token)).await;
    let t = Some("node-secret");
    let ext = |status: &str| {
        serde_json::to_vec(&serde_json::json!({"Node": "ext1", "Address": "10.0.0.5",
            "Check": {"CheckID": "ext-ok", "Name": "ok", "Status": status}}))
        .unwrap()
    };
    assert_eq!(put_as(&url, "/v1/catalog/register", None, ext("passing")).await.0, 200);
    let body = serde_json::json!({"Node": "ext1", "Behavior": "delete", "NodeChecks": ["ext-ok"]});
    let (status, text) = put_as(&url, "/v1/session/create", t, serde_json::to_vec(&body).unwrap()).await;
    assert_eq!(status, 200, "{text}");
    let id = serde_json::from_str::<serde_json::Value>(&text).unwrap()["ID"].as_str().unwrap().to_string();
    assert_eq!(put_as(&url, &format!("/v1/kv/shardscope/leader?acquire={id}"), t, "me").await, (200, "true".into()));

    let (status, text) = put_as(&url, "/v1/catalog/register", None, ext("critical")).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("would end that session"), "{text}");
    let drop_node = serde_json::to_vec(&serde_json::json!({"Node": "ext1"})).unwrap();
    assert_eq!(put_as(&url, "/v1/catalog/deregister", None, drop_node.clone()).await.0, 403);
    let key = reqwest::get(format!("{url}/v1/kv/shardscope/leader?raw&token=node-secret")).await.unwrap();
    assert_eq!(key.text().await.unwrap(), "me", "the key and its lock are still there");
    // The token holder may end it so.
    assert_eq!(put_as(&url, "/v1/catalog/deregister", t, drop_node).await.0, 200);
    let gone = reqwest::get(format!("{url}/v1/kv/shardscope/leader?token=node-secret")).await.unwrap();
    assert_eq!(gone.status(), 404, "behavior delete took the key with the session");
}
