//! Browser support for the page's tests: headless Debian Chromium driven
//! through chromedriver (WebDriver) against a real `shardscope serve`.
//!
//! Needs the built page (`scripts/build-page.sh`) and chromium +
//! chromium-driver (`scripts/setup.sh` installs them for the test command).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use super::{terminate, workspace_root, Stack};

/// A chromedriver process on a fresh loopback port, stopped on drop.
pub struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Driver {
    pub fn start() -> Driver {
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

    pub async fn browser(&self) -> Client {
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
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
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

pub async fn text_of(client: &Client, css: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

/// Saves what the browser shows as `target/screenshots/NAME`.
pub async fn save_screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    std::fs::write(screenshot_dir().join(name), png).unwrap();
}

/// Waits until the page lists `n` nodes.
pub async fn nodes_listed(client: &Client, n: usize, what: &str) {
    eventually(what, || async {
        let items = client.find_all(Locator::Css("[data-testid=node-list] li")).await.ok()?;
        (items.len() == n).then_some(())
    })
    .await;
}

pub fn screenshot_dir() -> PathBuf {
    let dir = workspace_root().join("target").join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn cluster_nodes(stack: &Stack) -> Vec<shardscope_shared::protocol::NodeInfo> {
    reqwest::get(format!("{}/nodes", stack.url)).await.unwrap().json().await.unwrap()
}

/// Placement members for `nodes`.
pub fn members_of(nodes: &[shardscope_shared::protocol::NodeInfo]) -> Vec<shardscope_shared::placement::Member> {
    nodes.iter().map(|n| shardscope_shared::placement::Member::new(&n.id)).collect()
}

/// Starts a stack with the built page and opens it in headless Chromium.
pub async fn open_page(nodes: usize) -> (Stack, Driver, Client) {
    open_page_with(nodes, &[], "/").await
}

/// Like [`open_page`], with extra `serve` arguments, opening `path`.
pub async fn open_page_with(nodes: usize, serve_args: &[&str], path: &str) -> (Stack, Driver, Client) {
    let dist = workspace_root().join("dist");
    assert!(dist.join("index.html").exists(), "build the page first: scripts/build-page.sh");
    let mut args = vec!["--static-dir", dist.to_str().unwrap()];
    args.extend_from_slice(serve_args);
    let stack = Stack::start(nodes, &args);
    let driver = Driver::start();
    let client = driver.browser().await;
    client.goto(&format!("{}{path}", stack.url)).await.unwrap();
    nodes_listed(&client, nodes, "nodes listed").await;
    (stack, driver, client)
}
