//! The embedded registry with a data dir, in process over real HTTP on
//! loopback: a write it cannot save is refused and changes nothing, and
//! after a restart its first answers come after the probes then due, so a
//! restored service whose endpoint went away is not reported passing.
//! (Restarts of the `shardscope registry` process: backend/tests/registry.rs.)

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use shardscope_consul::api::{CheckDefinition, ServiceEntry, ServiceRegistration};
use shardscope_consul::client::Consul;
use shardscope_consul::registry::Registry;

/// A registry on `dir` serving on a fresh loopback port, until `stop` is sent.
struct Running {
    consul: Consul,
    url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(dir: &Path) -> Running {
    let registry = Registry::with_data_dir(dir).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(registry.serve(listener, async {
        let _ = stopped.await;
    }));
    Running { consul: Consul::new(&url), url, stop, task }
}

impl Running {
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }

    async fn statuses(&self) -> Vec<String> {
        let resp = reqwest::get(format!("{}/v1/health/service/svc", self.url)).await.unwrap();
        let entries: Vec<ServiceEntry> = resp.json().await.unwrap();
        entries.iter().map(|e| e.checks.iter().find(|c| !c.service_id.is_empty()).unwrap().status.clone()).collect()
    }
}

#[tokio::test]
async fn a_write_that_cannot_be_saved_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("registry");
    let reg = start(&data).await;
    assert!(reg.consul.kv_put("k", b"1", None).await.unwrap());
    let (_, index) = reg.consul.health_service("svc", false, None, Duration::from_secs(1)).await.unwrap();

    std::fs::remove_dir_all(&data).unwrap(); // no dir: no save
    let http = reqwest::Client::new();
    let refused = http.put(format!("{}/v1/kv/k", reg.url)).body("2").send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(refused.text().await.unwrap().contains("saving the registry's state"));
    let reg_body = serde_json::to_vec(&ServiceRegistration { name: "svc".into(), ..Default::default() }).unwrap();
    let refused = http.put(format!("{}/v1/agent/service/register", reg.url)).body(reg_body).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::INTERNAL_SERVER_ERROR);

    assert_eq!(reg.consul.kv_get("k").await.unwrap().as_deref(), Some("1"));
    let (entries, after) = reg.consul.health_service("svc", false, None, Duration::from_secs(1)).await.unwrap();
    assert_eq!((entries.len(), after), (0, index), "nothing changed, not even the index");

    std::fs::create_dir_all(&data).unwrap();
    assert!(reg.consul.kv_put("k", b"3", None).await.unwrap(), "writes work again once they can be saved");
    reg.stop().await;
    assert_eq!(start(&data).await.consul.kv_get("k").await.unwrap().as_deref(), Some("3"));
}

/// An HTTP endpoint that answers 200 at once, or, once `failing` is set,
/// 500 after 300 ms.
async fn endpoint(failing: Arc<AtomicBool>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/health",
        axum::routing::get(move || async move {
            if failing.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(300)).await;
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn after_a_restart_the_first_answer_comes_after_the_checks_due() {
    let dir = tempfile::tempdir().unwrap();
    let failing = Arc::new(AtomicBool::new(false));
    let health = endpoint(failing.clone()).await;
    let reg = start(dir.path()).await;
    let check = CheckDefinition {
        http: Some(health),
        interval: Some("1h".into()),
        status: Some("critical".into()),
        ..Default::default()
    };
    let svc =
        ServiceRegistration { id: Some("a".into()), name: "svc".into(), check: Some(check), ..Default::default() };
    reg.consul.register(&svc).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while reg.statuses().await != ["passing"] {
        assert!(tokio::time::Instant::now() < deadline, "the check never passed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reg.stop().await;

    // Down while the registry is: its restored check says passing until a
    // probe says otherwise, and that probe answers first.
    failing.store(true, Ordering::SeqCst);
    let reg = start(dir.path()).await;
    assert_eq!(reg.statuses().await, ["critical"]);
}
