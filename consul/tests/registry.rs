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
    entries.into_iter().map(|e| (e.service.id, e.checks[0].status.clone())).collect()
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
    until(&url, "TTL expiry", Duration::from_secs(5), |e| e[0].checks[0].status == "critical").await;
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
    until(&url, "TCP check passing", Duration::from_secs(5), |e| e[0].checks[0].status == "passing").await;
    drop(listener);
    until(&url, "TCP check critical", Duration::from_secs(5), |e| e[0].checks[0].status == "critical").await;

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
        let s = |id: &str| e.iter().find(|x| x.service.id == id).map(|x| x.checks[0].status.clone());
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
    assert_eq!(http.get(format!("{url}/v1/acl/tokens")).send().await.unwrap().status(), 404);
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
