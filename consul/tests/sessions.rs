//! Sessions and KV locks on the embedded registry, over real HTTP on
//! loopback: TTL expiry (at twice the TTL, never sooner) and renewal,
//! `release` and `delete` behaviors, lock-delay after a holder's session
//! ends, acquire/release contention (one holder at a time, also when many
//! race), sessions ended by a critical check, sessions kept across a
//! restart, and bad input refused with nothing changed.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shardscope_consul::registry::{Limits, Registry};

/// A registry whose sessions may have TTLs from 500ms, on a fresh loopback port.
async fn start(limits: Limits) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(Registry::with_limits(limits).serve(listener, std::future::pending()));
    url
}

fn short_ttls() -> Limits {
    Limits { session_ttl_min: Duration::from_millis(500), ..Limits::default() }
}

/// `method path` with `body`: the status, the answer as JSON (Null when
/// it is not JSON) and the index.
async fn call(url: &str, method: &str, path: &str, body: Value) -> (u16, Value, u64) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = reqwest::Client::new().request(method, format!("{url}{path}"));
    if !body.is_null() {
        req = req.body(body.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let index = resp.headers().get("x-consul-index").map_or(0, |v| v.to_str().unwrap().parse().unwrap());
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), index)
}

async fn get(url: &str, path: &str) -> (u16, Value, u64) {
    call(url, "GET", path, Value::Null).await
}

async fn session(url: &str, body: Value) -> String {
    let (status, answer, _) = call(url, "PUT", "/v1/session/create", body).await;
    assert_eq!(status, 200, "{answer}");
    answer["ID"].as_str().unwrap().to_string()
}

/// `PUT /v1/kv/KEY?QUERY` with an empty value: Consul's `true` or `false`.
async fn kv_put(url: &str, key_query: &str) -> bool {
    let (status, answer, _) = call(url, "PUT", &format!("/v1/kv/{key_query}"), Value::Null).await;
    assert_eq!(status, 200, "{answer}");
    answer.as_bool().unwrap()
}

async fn kv(url: &str, key: &str) -> Option<Value> {
    let (status, answer, _) = get(url, &format!("/v1/kv/{key}")).await;
    (status == 200).then(|| answer[0].clone())
}

/// Waits with blocking queries on `path` (bounded by `limit`) until `done` holds.
async fn until(url: &str, path: &str, limit: Duration, done: impl Fn(&Value) -> bool) {
    let start = Instant::now();
    let mut index = 0;
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let (_, answer, i) = get(url, &format!("{path}{sep}index={index}&wait=1s")).await;
        if done(&answer) {
            return;
        }
        assert!(start.elapsed() < limit, "{path}: not within {limit:?}: {answer}");
        index = i;
    }
}

#[tokio::test]
async fn a_ttl_session_ends_at_twice_its_ttl_unless_renewed_and_its_locks_are_released() {
    let url = start(short_ttls()).await;
    let created = Instant::now();
    let id = session(&url, json!({"Name": "worker", "TTL": "1s", "LockDelay": "0s"})).await;
    assert!(kv_put(&url, &format!("job?acquire={id}")).await);
    let held = kv(&url, "job").await.unwrap();
    assert_eq!((held["Session"].as_str(), held["LockIndex"].as_u64()), (Some(id.as_str()), Some(1)));

    let (status, renewed, _) = call(&url, "PUT", &format!("/v1/session/renew/{id}"), Value::Null).await;
    assert_eq!(status, 200);
    assert_eq!((renewed[0]["TTL"].as_str(), renewed[0]["Behavior"].as_str()), (Some("1s"), Some("release")));
    let renewed_at = Instant::now();
    let missing = call(&url, "PUT", "/v1/session/renew/11111111-1111-1111-1111-111111111111", Value::Null).await;
    assert_eq!(missing.0, 404);

    until(&url, &format!("/v1/session/info/{id}"), Duration::from_secs(15), |a| a == &json!([])).await;
    assert!(renewed_at.elapsed() >= Duration::from_secs(2), "a session lives twice its TTL after its last renewal");
    assert!(created.elapsed() >= Duration::from_secs(2));
    let released = kv(&url, "job").await.expect("release keeps the key");
    assert!(released.get("Session").is_none(), "{released}");
    assert_eq!(released["LockIndex"], 1);
}

#[tokio::test]
async fn destroying_a_session_releases_or_deletes_its_keys_by_behavior() {
    let url = start(Limits::default()).await;
    let keep = session(&url, json!({"LockDelay": 0})).await;
    let drop = session(&url, json!({"Behavior": "delete", "LockDelay": 0})).await;
    assert!(kv_put(&url, &format!("kept?acquire={keep}")).await);
    assert!(kv_put(&url, &format!("dropped?acquire={drop}")).await);
    let (_, listed, _) = get(&url, "/v1/session/list").await;
    let behaviors: Vec<&str> = listed.as_array().unwrap().iter().map(|s| s["Behavior"].as_str().unwrap()).collect();
    assert_eq!(behaviors, ["release", "delete"]);

    for id in [&keep, &drop] {
        assert_eq!(call(&url, "PUT", &format!("/v1/session/destroy/{id}"), Value::Null).await.1, json!(true));
    }
    let kept = kv(&url, "kept").await.expect("release keeps the key");
    assert!(kept.get("Session").is_none());
    assert_eq!(kv(&url, "dropped").await, None, "delete deletes it");
    assert_eq!(get(&url, "/v1/session/list").await.1, json!([]));
}

#[tokio::test]
async fn after_a_holders_session_ends_its_keys_wait_out_the_lock_delay() {
    let url = start(Limits::default()).await;
    let first = session(&url, json!({"LockDelay": "1s"})).await;
    let second = session(&url, json!({})).await;
    assert!(kv_put(&url, &format!("leader?acquire={first}")).await);
    call(&url, "PUT", &format!("/v1/session/destroy/{first}"), Value::Null).await;
    let ended = Instant::now();
    assert!(!kv_put(&url, &format!("leader?acquire={second}")).await, "held back for the lock-delay");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !kv_put(&url, &format!("leader?acquire={second}")).await {
        assert!(Instant::now() < deadline, "the lock-delay never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ended.elapsed() >= Duration::from_secs(1), "acquired before its lock-delay ended");
    assert_eq!(kv(&url, "leader").await.unwrap()["LockIndex"], 2);

    // A release is not an end: no lock-delay.
    assert!(kv_put(&url, &format!("leader?release={second}")).await);
    let third = session(&url, json!({})).await;
    assert!(kv_put(&url, &format!("leader?acquire={third}")).await);
}

#[tokio::test]
async fn one_holder_at_a_time_also_when_many_race() {
    let url = start(Limits::default()).await;
    let (a, b) = (session(&url, json!({})).await, session(&url, json!({})).await);
    assert!(kv_put(&url, &format!("lock?acquire={a}")).await);
    assert!(!kv_put(&url, &format!("lock?acquire={b}")).await, "held by another");
    assert!(!kv_put(&url, &format!("lock?release={b}")).await, "only the holder releases");
    assert!(kv_put(&url, &format!("lock?acquire={a}")).await, "the holder may acquire again");
    assert_eq!(kv(&url, "lock").await.unwrap()["LockIndex"], 1, "re-acquiring is not a new acquisition");
    assert!(kv_put(&url, "lock?flags=5").await, "a plain write keeps the lock");
    assert_eq!(kv(&url, "lock").await.unwrap()["Session"].as_str(), Some(a.as_str()));
    assert!(kv_put(&url, &format!("lock?release={a}")).await);
    assert!(kv_put(&url, &format!("lock?acquire={b}")).await);
    assert_eq!(kv(&url, "lock").await.unwrap()["LockIndex"], 2);

    let mut racers = Vec::new();
    for _ in 0..8 {
        let id = session(&url, json!({})).await;
        let url = url.clone();
        racers.push(tokio::spawn(async move { kv_put(&url, &format!("race?acquire={id}")).await }));
    }
    let mut won = 0;
    for r in racers {
        won += usize::from(r.await.unwrap());
    }
    assert_eq!(won, 1, "exactly one racer holds the lock");
}

#[tokio::test]
async fn a_session_ends_when_a_check_it_names_turns_critical() {
    let url = start(Limits::default()).await;
    let check = json!({"Name": "alive", "TTL": "30s", "Status": "passing"});
    assert_eq!(call(&url, "PUT", "/v1/agent/check/register", check).await.0, 200);
    let critical = json!({"Name": "down", "TTL": "30s"});
    assert_eq!(call(&url, "PUT", "/v1/agent/check/register", critical).await.0, 200);
    let (status, text, _) = call(&url, "PUT", "/v1/session/create", json!({"NodeChecks": ["down"]})).await;
    assert_eq!(status, 400, "a session may not start on a critical check: {text}");

    let id = session(&url, json!({"NodeChecks": ["serfHealth", "alive"], "LockDelay": 0})).await;
    let (_, info, _) = get(&url, &format!("/v1/session/info/{id}")).await;
    assert_eq!(info[0]["NodeChecks"], json!(["serfHealth", "alive"]));
    assert!(kv_put(&url, &format!("held?acquire={id}")).await);
    assert_eq!(call(&url, "PUT", "/v1/agent/check/warn/alive", Value::Null).await.0, 200);
    assert_eq!(
        get(&url, &format!("/v1/session/info/{id}")).await.1.as_array().unwrap().len(),
        1,
        "warning is not critical"
    );
    assert_eq!(call(&url, "PUT", "/v1/agent/check/fail/alive", Value::Null).await.0, 200);
    assert_eq!(get(&url, &format!("/v1/session/info/{id}")).await.1, json!([]));
    assert!(kv(&url, "held").await.unwrap().get("Session").is_none());

    // Deregistering a check a session names ends it too.
    assert_eq!(call(&url, "PUT", "/v1/agent/check/pass/alive", Value::Null).await.0, 200);
    let again = session(&url, json!({"NodeChecks": ["alive"]})).await;
    assert_eq!(call(&url, "PUT", "/v1/agent/check/deregister/alive", Value::Null).await.0, 200);
    assert_eq!(get(&url, &format!("/v1/session/info/{again}")).await.1, json!([]));
}

#[tokio::test]
async fn sessions_and_their_locks_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |dir: std::path::PathBuf| async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(Registry::with_data_dir(&dir).unwrap().serve(listener, async {
            let _ = stopped.await;
        }));
        (url, stop, task)
    };
    let (url, stop, task) = serve(dir.path().to_path_buf()).await;
    let id = session(&url, json!({"Name": "keeper", "TTL": "60s", "Behavior": "delete"})).await;
    assert!(kv_put(&url, &format!("owned?acquire={id}")).await);
    let (_, before, index) = get(&url, &format!("/v1/session/info/{id}")).await;
    let key_before = kv(&url, "owned").await.unwrap();
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();

    let (url, _stop, _task) = serve(dir.path().to_path_buf()).await;
    let (_, after, index_after) = get(&url, &format!("/v1/session/info/{id}")).await;
    assert_eq!((after, index_after), (before, index), "the same session at the same index");
    assert_eq!(kv(&url, "owned").await.unwrap(), key_before, "still locked by it");
    call(&url, "PUT", &format!("/v1/session/destroy/{id}"), Value::Null).await;
    assert_eq!(kv(&url, "owned").await, None, "its behavior still applies");
}

#[tokio::test]
async fn bad_session_requests_are_refused_and_change_nothing() {
    let url = start(Limits { sessions: 2, ..Limits::default() }).await;
    let (_, _, before) = get(&url, "/v1/session/list").await;
    for (body, status) in [
        (json!({"Behavior": "explode"}), 400),
        (json!({"TTL": "1s"}), 400),
        (json!({"TTL": "48h"}), 400),
        (json!({"TTL": "soon"}), 400),
        (json!({"LockDelay": "2m"}), 400),
        (json!({"Node": "elsewhere"}), 400),
        (json!({"NodeChecks": ["nope"]}), 400),
        (json!({"Name": 7}), 400),
    ] {
        let (got, answer, _) = call(&url, "PUT", "/v1/session/create", body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
    }
    assert_eq!(call(&url, "PUT", "/v1/session/create?dc=dc2", json!({})).await.0, 500, "No path to datacenter");
    let (_, _, after) = get(&url, "/v1/session/list").await;
    assert_eq!(after, before, "nothing changed");

    session(&url, json!({})).await;
    session(&url, json!({})).await;
    let (status, _, _) = call(&url, "PUT", "/v1/session/create", json!({})).await;
    assert_eq!(status, 400, "past the sessions limit");
    let (status, _, _) = call(&url, "PUT", "/v1/kv/k?acquire=no-such-session", Value::Null).await;
    assert_eq!(status, 400, "acquire needs a session");
    assert_eq!(kv(&url, "k").await, None);
}
