//! The embedded registry as a Consul client meets it, over real HTTP on
//! loopback: each endpoint's JSON shape and status codes as Consul's
//! (bodies in py-consul's lowercase spelling, the agent's services and
//! checks, TTL updates, health, catalog with another node, status, KV's
//! answers, blocking KV queries, filters, the answers of what is out of
//! scope), and that the node token still guards what decides the storage
//! nodes' health.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shardscope_consul::registry::Registry;
use shardscope_consul::token::Token;

async fn start(registry: Registry) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(registry.serve(listener, std::future::pending()));
    url
}

/// `method path` with a raw `body`: the status, the answer's text, and the index.
async fn call(url: &str, method: &str, path: &str, body: &str) -> (u16, String, u64) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let resp = reqwest::Client::new().request(method, format!("{url}{path}")).body(body.to_string()).send().await;
    let resp = resp.unwrap();
    let index = resp.headers().get("x-consul-index").map_or(0, |v| v.to_str().unwrap().parse().unwrap());
    (resp.status().as_u16(), resp.text().await.unwrap(), index)
}

async fn put(url: &str, path: &str, body: Value) -> (u16, String) {
    let (s, t, _) = call(url, "PUT", path, &body.to_string()).await;
    (s, t)
}

async fn get(url: &str, path: &str) -> Value {
    let (status, text, _) = call(url, "GET", path, "").await;
    assert_eq!(status, 200, "GET {path}: {text}");
    serde_json::from_str(&text).unwrap()
}

fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

#[tokio::test]
async fn agent_services_and_ttl_checks_as_python_consul_registers_them() {
    let url = start(Registry::new()).await;
    // py-consul's body for register("svc", service_id="svc-1", ..., check=Check.ttl("5s")).
    let body = json!({"name": "svc", "id": "svc-1", "address": "127.0.0.1", "port": 4999, "tags": ["a"],
                      "checks": [{"ttl": "5s"}], "tagged_addresses": {"lan": {"address": "10.0.0.1", "port": 80}}});
    assert_eq!(put(&url, "/v1/agent/service/register", body).await, (200, String::new()));
    let services = get(&url, "/v1/agent/services").await;
    let svc = &services["svc-1"];
    assert_eq!(
        keys(svc),
        [
            "Address",
            "Datacenter",
            "EnableTagOverride",
            "ID",
            "Meta",
            "Port",
            "Service",
            "TaggedAddresses",
            "Tags",
            "Weights"
        ]
    );
    assert_eq!((svc["Service"].as_str(), svc["Port"].as_u64()), (Some("svc"), Some(4999)));
    assert_eq!(svc["TaggedAddresses"], json!({"lan": {"Address": "10.0.0.1", "Port": 80}}));
    assert_eq!(svc["Weights"], json!({"Passing": 1, "Warning": 1}));
    assert_eq!(get(&url, "/v1/agent/service/svc-1").await["ID"], "svc-1");
    assert_eq!(call(&url, "GET", "/v1/agent/service/nope", "").await.0, 404);

    let check = &get(&url, "/v1/agent/checks").await["service:svc-1"];
    assert_eq!(
        (check["Name"].as_str(), check["Status"].as_str(), check["Type"].as_str(), check["ServiceName"].as_str()),
        (Some("Service 'svc' check"), Some("critical"), Some("ttl"), Some("svc"))
    );
    assert_eq!(put(&url, "/v1/agent/check/pass/service:svc-1?note=fine", Value::Null).await.0, 200);
    let check = &get(&url, "/v1/agent/checks").await["service:svc-1"];
    assert_eq!((check["Status"].as_str(), check["Output"].as_str()), (Some("passing"), Some("fine")));
    let update = json!({"Status": "warning", "Output": "slow"});
    assert_eq!(put(&url, "/v1/agent/check/update/service:svc-1", update).await.0, 200);
    let check = &get(&url, "/v1/agent/checks").await["service:svc-1"];
    assert_eq!((check["Status"].as_str(), check["Output"].as_str()), (Some("warning"), Some("slow")));
    assert_eq!(put(&url, "/v1/agent/check/update/service:svc-1", json!({"Status": "fine"})).await.0, 400);
    assert_eq!(put(&url, "/v1/agent/check/pass/nope", Value::Null).await.0, 404);

    // A check of its own on the service, then maintenance mode.
    let own = json!({"name": "disk", "ttl": "30s", "service_id": "svc-1", "notes": "df", "status": "passing"});
    assert_eq!(put(&url, "/v1/agent/check/register", own).await.0, 200);
    assert_eq!(get(&url, "/v1/agent/checks").await["disk"]["Notes"], "df");
    let unknown = json!({"name": "x", "ttl": "30s", "service_id": "ghost"});
    assert_eq!(put(&url, "/v1/agent/check/register", unknown).await.0, 404);
    let script = json!({"name": "x", "args": ["/bin/true"], "interval": "10s"});
    assert_eq!(put(&url, "/v1/agent/check/register", script).await.0, 400, "no scripts");
    let m = "/v1/agent/service/maintenance/svc-1?enable=true&reason=upgrade";
    assert_eq!(put(&url, m, Value::Null).await.0, 200);
    assert_eq!(get(&url, "/v1/agent/checks").await["_service_maintenance:svc-1"]["Notes"], "upgrade");
    assert_eq!(put(&url, "/v1/agent/service/maintenance/svc-1?enable=false", Value::Null).await.0, 200);
    assert!(get(&url, "/v1/agent/checks").await.get("_service_maintenance:svc-1").is_none());

    assert_eq!(put(&url, "/v1/agent/service/deregister/svc-1", Value::Null).await.0, 200);
    assert_eq!(get(&url, "/v1/agent/services").await, json!({}));
    assert_eq!(get(&url, "/v1/agent/checks").await, json!({}), "its checks went with it");
}

#[tokio::test]
async fn health_and_catalog_list_every_node_with_the_servers_own_service_and_check() {
    let url = start(Registry::new()).await;
    for (id, status) in [("web-1", "passing"), ("web-2", "critical")] {
        let body = json!({"Name": "web", "ID": id, "Tags": [id], "Check": {"TTL": "30s", "Status": status}});
        assert_eq!(put(&url, "/v1/agent/service/register", body).await.0, 200);
    }
    let entries = get(&url, "/v1/health/service/web").await;
    assert_eq!(entries.as_array().unwrap().len(), 2);
    assert_eq!(keys(&entries[0]), ["Checks", "Node", "Service"]);
    let ids: Vec<&str> =
        entries[0]["Checks"].as_array().unwrap().iter().map(|c| c["CheckID"].as_str().unwrap()).collect();
    assert_eq!(ids, ["serfHealth", "service:web-1"], "the node's check with the service's");
    assert_eq!(entries[0]["Node"]["Node"], "shardscope-embedded");
    let passing = get(&url, "/v1/health/service/web?passing").await;
    assert_eq!(passing.as_array().unwrap().len(), 1);
    assert_eq!(get(&url, "/v1/health/service/web?tag=web-2").await[0]["Service"]["ID"], "web-2");
    let filtered = get(&url, "/v1/health/service/web?filter=%22web-2%22%20in%20Service.Tags").await;
    assert_eq!(filtered.as_array().unwrap().len(), 1);
    assert_eq!(call(&url, "GET", "/v1/health/service/web?filter=not%20valid((", "").await.0, 400);
    assert_eq!(get(&url, "/v1/health/checks/web").await.as_array().unwrap().len(), 2);
    let critical = get(&url, "/v1/health/state/critical").await;
    assert_eq!(
        critical.as_array().unwrap().iter().map(|c| c["CheckID"].as_str().unwrap()).collect::<Vec<_>>(),
        ["service:web-2"]
    );
    assert_eq!(get(&url, "/v1/health/state/any").await.as_array().unwrap().len(), 3);
    assert_eq!(call(&url, "GET", "/v1/health/state/bogus", "").await.0, 400);
    assert_eq!(get(&url, "/v1/health/node/shardscope-embedded").await.as_array().unwrap().len(), 3);

    let services = get(&url, "/v1/catalog/services").await;
    assert_eq!(services, json!({"consul": [], "web": ["web-1", "web-2"]}));
    let instance = &get(&url, "/v1/catalog/service/web").await[0];
    for field in ["Node", "Address", "ServiceID", "ServiceName", "ServiceTags", "ServicePort", "ServiceMeta"] {
        assert!(instance.get(field).is_some(), "{field} in {instance}");
    }
    // Another node, through the catalog; its check holds the status it was given.
    let reg = json!({"node": "n1", "address": "10.1.10.11", "service": {"service": "db", "port": 5432},
                     "check": {"name": "db-up", "status": "passing", "service_id": "db"}});
    assert_eq!(put(&url, "/v1/catalog/register", reg).await, (200, "true".into()));
    let nodes = get(&url, "/v1/catalog/nodes").await;
    assert_eq!(
        nodes.as_array().unwrap().iter().map(|n| n["Node"].as_str().unwrap()).collect::<Vec<_>>(),
        ["n1", "shardscope-embedded"]
    );
    let n1 = get(&url, "/v1/catalog/node/n1").await;
    assert_eq!(
        (n1["Node"]["Address"].as_str(), n1["Services"]["db"]["Port"].as_u64()),
        (Some("10.1.10.11"), Some(5432))
    );
    assert_eq!(get(&url, "/v1/catalog/node/nope").await, Value::Null);
    assert_eq!(get(&url, "/v1/health/service/db?passing").await[0]["Node"]["Node"], "n1");
    let own = json!({"node": "shardscope-embedded", "address": "127.0.0.1"});
    assert_eq!(put(&url, "/v1/catalog/register", own).await.0, 400, "the agent's node is the agent's");
    assert_eq!(put(&url, "/v1/catalog/deregister", json!({"node": "n1", "service_id": "db"})).await.0, 200);
    assert_eq!(get(&url, "/v1/health/service/db").await, json!([]));
    assert_eq!(put(&url, "/v1/catalog/deregister", json!({"node": "n1"})).await.0, 200);
    assert_eq!(get(&url, "/v1/catalog/nodes").await.as_array().unwrap().len(), 1);
    assert_eq!(get(&url, "/v1/catalog/datacenters").await, json!(["dc1"]));
    assert_eq!(call(&url, "GET", "/v1/catalog/nodes?dc=dc2", "").await.0, 500);
}

#[tokio::test]
async fn agent_self_members_status_and_what_is_out_of_scope() {
    let url = start(Registry::new()).await;
    let me = get(&url, "/v1/agent/self").await;
    assert_eq!(keys(&me), ["Config", "Coord", "DebugConfig", "Member", "Meta", "Stats", "xDS"]);
    assert_eq!(me["Config"]["NodeName"], "shardscope-embedded");
    let leader = get(&url, "/v1/status/leader").await;
    assert_eq!(me["Stats"]["consul"]["leader_addr"], leader);
    assert_eq!(get(&url, "/v1/status/peers").await, json!([leader]));
    assert_eq!(get(&url, "/v1/agent/members").await, json!([me["Member"]]));
    assert_eq!(call(&url, "GET", "/v1/acl/tokens", "").await.0, 401, "ACL support disabled");
    assert_eq!(call(&url, "PUT", "/v1/agent/token/default", "{}").await.0, 401);
    assert_eq!(call(&url, "GET", "/v1/query", "").await.0, 404);
    assert_eq!(call(&url, "PUT", "/v1/txn", "[]").await.0, 404);
}

#[tokio::test]
async fn kv_answers_as_consul_does() {
    let url = start(Registry::new()).await;
    let (status, _, index) = call(&url, "GET", "/v1/kv/missing", "").await;
    assert_eq!(status, 404);
    assert!(index > 0, "a 404 carries the index too");
    assert_eq!(call(&url, "PUT", "/v1/kv/a/b?flags=42", "v").await.1, "true");
    assert_eq!(call(&url, "PUT", "/v1/kv/a/empty", "").await.1, "true");
    assert_eq!(call(&url, "PUT", "/v1/kv/a/c/d", "x").await.1, "true");
    let pair = &get(&url, "/v1/kv/a/b").await[0];
    assert_eq!(keys(pair), ["CreateIndex", "Flags", "Key", "LockIndex", "ModifyIndex", "Value"]);
    assert_eq!((pair["Value"].as_str(), pair["Flags"].as_u64()), (Some("dg=="), Some(42)));
    assert_eq!(get(&url, "/v1/kv/a/empty").await[0]["Value"], Value::Null);
    assert_eq!(call(&url, "GET", "/v1/kv/a/b?raw", "").await.1, "v");
    assert_eq!(get(&url, "/v1/kv/a/?keys&separator=/").await, json!(["a/b", "a/c/", "a/empty"]));
    assert_eq!(get(&url, "/v1/kv/?keys").await, json!(["a/b", "a/c/d", "a/empty"]));
    assert_eq!(get(&url, "/v1/kv/a?recurse").await.as_array().unwrap().len(), 3);
    assert_eq!(call(&url, "PUT", "/v1/kv/a/b?cas=0", "w").await.1, "false", "cas=0 only creates");
    assert_eq!(call(&url, "PUT", "/v1/kv/a/new?cas=0", "w").await.1, "true");
    assert_eq!(call(&url, "PUT", "/v1/kv/?x", "w").await.0, 400, "no key");

    // A blocking query on a key returns when it changes, not before.
    let (_, _, index) = call(&url, "GET", "/v1/kv/a/b", "").await;
    let waiter = {
        let url = url.clone();
        tokio::spawn(async move {
            let asked = Instant::now();
            let (_, text, i) = call(&url, "GET", &format!("/v1/kv/a/b?index={index}&wait=10s"), "").await;
            (asked.elapsed(), text, i)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(call(&url, "PUT", "/v1/kv/a/b", "changed").await.1, "true");
    let (_, text, after) = waiter.await.unwrap();
    assert!(after > index && text.contains("Y2hhbmdlZA=="), "{text}");
    let (_, _, same) = call(&url, "GET", &format!("/v1/kv/a/b?index={after}&wait=100ms"), "").await;
    assert_eq!(same, after, "a wait that times out returns the same index");
}

#[tokio::test]
async fn the_node_token_guards_what_decides_the_storage_nodes_health() {
    let url = start(Registry::new().with_node_token(Token::new("node-secret"))).await;
    let refused = [
        ("/v1/agent/check/register", json!({"Name": "node-wide", "TTL": "30s"})),
        ("/v1/agent/maintenance?enable=true", Value::Null),
        (
            "/v1/catalog/register",
            json!({"Node": "n9", "Address": "10.0.0.9", "Service": {"Service": "shardscope-node"}}),
        ),
    ];
    for (path, body) in refused {
        let (status, text) = put(&url, path, body).await;
        assert_eq!(status, 403, "{path}: {text}");
    }
    assert_eq!(get(&url, "/v1/agent/checks").await, json!({}));
    assert_eq!(get(&url, "/v1/catalog/nodes").await.as_array().unwrap().len(), 1);
    // With the token, a storage node elsewhere; then no anonymous change to that node.
    let node = json!({"Node": "n9", "Address": "10.0.0.9", "Service": {"Service": "shardscope-node", "Port": 5001}});
    let with_token =
        reqwest::Client::new().put(format!("{url}/v1/catalog/register")).header("X-Consul-Token", "node-secret");
    assert_eq!(with_token.body(node.to_string()).send().await.unwrap().status(), 200);
    let sick = json!({"Node": "n9", "Address": "10.0.0.9", "Check": {"Name": "sick", "Status": "critical"}});
    assert_eq!(put(&url, "/v1/catalog/register", sick).await.0, 403, "a node check decides its health too");
    assert_eq!(put(&url, "/v1/catalog/deregister", json!({"Node": "n9"})).await.0, 403);
    assert_eq!(get(&url, "/v1/health/service/shardscope-node?passing").await.as_array().unwrap().len(), 1);
    // Others' services and their own checks stay open.
    assert_eq!(put(&url, "/v1/agent/service/register", json!({"Name": "app"})).await.0, 200);
    let own = json!({"Name": "app-up", "TTL": "30s", "ServiceID": "app"});
    assert_eq!(put(&url, "/v1/agent/check/register", own).await.0, 200);
    // A session may lock shardscope/ keys only with the token, and then only the token ends it.
    let (_, created) = put(&url, "/v1/session/create", json!({})).await;
    let id = serde_json::from_str::<Value>(&created).unwrap()["ID"].as_str().unwrap().to_string();
    assert_eq!(call(&url, "PUT", &format!("/v1/kv/shardscope/lock?acquire={id}"), "").await.0, 403);
}
