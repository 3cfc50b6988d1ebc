//! The page in a real browser: headless Debian Chromium driven through
//! chromedriver (WebDriver) against a real `shardscope serve`.
//!
//! Needs the built page (`scripts/build-page.sh`) and chromium +
//! chromium-driver (`scripts/setup.sh` installs them for the test command).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{terminate, workspace_root, Stack};
use fantoccini::{Client, ClientBuilder, Locator};

/// A chromedriver process on a fresh loopback port, stopped on drop.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Driver {
    fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (scripts/setup.sh installs chromium-driver)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, port, _profile: tempfile::tempdir().unwrap() }
    }

    async fn browser(&self) -> Client {
        let profile = self._profile.path().display().to_string();
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1280,800", format!("--user-data-dir={profile}"),
                ]
            }
        });
        let serde_json::Value::Object(caps) = caps else { unreachable!() };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a headless Chromium session starts")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Polls `probe` until it returns `Some`, for at most 20 s.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text_of(client: &Client, css: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

pub fn screenshot_dir() -> PathBuf {
    let dir = workspace_root().join("target").join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn page_puts_a_key_and_shows_the_owner_the_backend_uses() {
    let dist = workspace_root().join("dist");
    assert!(dist.join("index.html").exists(), "build the page first: scripts/build-page.sh");
    let stack = Stack::start(3, &["--static-dir", dist.to_str().unwrap()]);
    let driver = Driver::start();
    let client = driver.browser().await;
    client.goto(&stack.url).await.unwrap();

    // The page lists the three nodes it got over the WebSocket.
    eventually("three nodes listed", || async {
        let items = client.find_all(Locator::Css("[data-testid=node-list] li")).await.ok()?;
        (items.len() == 3).then_some(())
    })
    .await;
    let ticks = client.find_all(Locator::Css("svg.ring line.vnode")).await.unwrap();
    assert_eq!(ticks.len(), 3 * 160, "one tick per virtual node");

    // PUT through the page's form.
    let (key, value) = ("browser-key", "hello from wasm");
    client.find(Locator::Css("[data-testid=kv-key]")).await.unwrap().send_keys(key).await.unwrap();
    client.find(Locator::Css("[data-testid=kv-value]")).await.unwrap().send_keys(value).await.unwrap();
    client.find(Locator::Css("[data-testid=kv-put]")).await.unwrap().click().await.unwrap();
    let outcome = eventually("PUT acknowledged", || async {
        text_of(&client, "[data-testid=kv-outcome]").await.filter(|t| t.contains("stored on"))
    })
    .await;

    // Read it back through REST; the backend names the owner.
    let resp = reqwest::get(format!("{}/kv/{key}", stack.url)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let backend_owner = resp.headers()["x-shardscope-node"].to_str().unwrap().to_string();
    assert_eq!(resp.text().await.unwrap(), value);
    assert!(outcome.ends_with(&backend_owner), "page said {outcome:?}, backend owner {backend_owner}");

    // The owner computed in the browser (shared/ in wasm) matches.
    client.find(Locator::Css("[data-testid=lookup-input]")).await.unwrap().send_keys(key).await.unwrap();
    let page_owner = eventually("lookup owner", || async {
        text_of(&client, "[data-testid=lookup-owner]").await.filter(|t| t.starts_with("node-"))
    })
    .await;
    assert_eq!(page_owner, backend_owner);
    let hash = text_of(&client, "[data-testid=lookup-hash]").await.unwrap();
    assert_eq!(hash, format!("{:016x}", shardscope_shared::hash::key_hash(key.as_bytes())));
    let dot = client.find(Locator::Css("svg.ring circle.key[data-key='browser-key']")).await.unwrap();
    assert_eq!(dot.attr("data-owner").await.unwrap().as_deref(), Some(backend_owner.as_str()));

    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join("skeleton.png"), png).unwrap();
    client.close().await.unwrap();
}
