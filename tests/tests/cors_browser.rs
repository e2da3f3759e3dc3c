//! CORS in a real browser: headless Chromium (Debian's `chromium`, driven through
//! `chromedriver` over the W3C WebDriver protocol) loads a page served on another
//! origin (another port) whose script creates a queue, posts, claims and deletes
//! with `fetch`, and reads the exposed `X-OpenStack-Request-ID`. With `[api.cors]`
//! allowing the page's origin, the browser accepts every answer; without it, the
//! browser refuses the first one (the test checks both).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use zaqar_tests::{free_port, wait_for_port, Process, Standalone};

/// What the page runs against the API at `api` (the script's first argument), and
/// hands back (its last argument, WebDriver's callback): the statuses, or the error
/// the browser raised.
const SCRIPT: &str = r#"
const [api, done] = [arguments[0], arguments[arguments.length - 1]];
const headers = {"Client-ID": "3381af92-2b9e-11e3-b191-71861300734c",
                 "X-Project-ID": "browser-project", "Content-Type": "application/json"};
(async () => {
  const call = (method, path, body) => fetch(api + path,
      {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
  const created = await call("PUT", "/v2/queues/from-a-page", {});
  const posted = await call("POST", "/v2/queues/from-a-page/messages",
                            {messages: [{ttl: 300, body: {from: "a page"}}]});
  const claimed = await call("POST", "/v2/queues/from-a-page/claims?limit=1",
                             {ttl: 60, grace: 60});
  const claim = await claimed.json();
  const deleted = await call("DELETE", claim.messages[0].href);
  return {created: created.status, posted: posted.status, claimed: claimed.status,
          deleted: deleted.status, body: claim.messages[0].body,
          request_id: deleted.headers.get("X-OpenStack-Request-ID")};
})().then(done, (err) => done({error: String(err)}));
"#;

/// Serves one small HTML page on a free loopback port (its own origin); returns the port.
async fn serve_page() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let page = "<!doctype html><title>zaqar from a page</title><p>ready</p>";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    Ok(port)
}

/// A headless Chromium session through a chromedriver of its own.
struct Browser {
    base: String,
    http: reqwest::Client,
    _driver: Process,
}

impl Browser {
    async fn start(dir: &Path) -> Result<Browser> {
        let port = free_port();
        let driver = Process::spawn(
            "chromedriver",
            &PathBuf::from("chromedriver"),
            &[&format!("--port={port}")],
            dir,
        )?;
        wait_for_port(port, Duration::from_secs(30))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let profile = dir.join("chromium-profile");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": {"args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                format!("--user-data-dir={}", profile.display())]}}}});
        let session: Value = http
            .post(format!("http://127.0.0.1:{port}/session"))
            .json(&capabilities)
            .send()
            .await?
            .json()
            .await?;
        let id = session["value"]["sessionId"]
            .as_str()
            .with_context(|| format!("no WebDriver session: {session}"))?;
        Ok(Browser {
            base: format!("http://127.0.0.1:{port}/session/{id}"),
            http,
            _driver: driver,
        })
    }

    async fn command(&self, path: &str, body: Value) -> Result<Value> {
        let answer: Value = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        Ok(answer["value"].clone())
    }

    /// Opens `url`, then runs [`SCRIPT`] against the API at `api` in that page.
    async fn run_script_from(&self, url: &str, api: &str) -> Result<Value> {
        self.command("/url", json!({"url": url})).await?;
        self.command("/timeouts", json!({"script": 30_000})).await?;
        self.command("/execute/async", json!({"script": SCRIPT, "args": [api]}))
            .await
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session (and its Chromium) before the driver is killed.
        let _ = std::process::Command::new("curl")
            .args(["-s", "-X", "DELETE", &self.base])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_on_another_origin_uses_the_api_only_with_cors() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let page_port = serve_page().await?;
    let page = format!("http://127.0.0.1:{page_port}/");
    let browser = Browser::start(dir.path()).await?;

    // CORS on for the page's origin (X-Project-ID added to Zaqar's allowed headers:
    // this server runs without Keystone).
    let on_dir = dir.path().join("on");
    std::fs::create_dir_all(&on_dir)?;
    let config = on_dir.join("zaqar.toml");
    std::fs::write(
        &config,
        format!(
            "[api.cors]\nallowed_origin = [\"http://127.0.0.1:{page_port}\"]\n\
             allow_headers = [\"X-Auth-Token\", \"Client-ID\", \"X-Project-ID\"]\n"
        ),
    )?;
    let with_cors = Standalone::start_with(&on_dir, &["--config", &config.to_string_lossy()])?;
    let api = format!("http://127.0.0.1:{}", with_cors.port);
    let result = browser.run_script_from(&page, &api).await?;
    eprintln!("with CORS: {result}");
    ensure!(result["error"].is_null(), "the browser refused: {result}");
    ensure!(result["created"] == 201, "{result}");
    ensure!(result["posted"] == 201, "{result}");
    ensure!(result["claimed"] == 201, "{result}");
    ensure!(result["deleted"] == 204, "{result}");
    ensure!(result["body"] == json!({"from": "a page"}), "{result}");
    let request_id = result["request_id"].as_str().unwrap_or_default();
    ensure!(request_id.starts_with("req-"), "not exposed: {result}");

    // CORS off (the default): the browser refuses the first answer.
    let off_dir = dir.path().join("off");
    std::fs::create_dir_all(&off_dir)?;
    let without = Standalone::start(&off_dir)?;
    let api = format!("http://127.0.0.1:{}", without.port);
    let result = browser.run_script_from(&page, &api).await?;
    eprintln!("without CORS: {result}");
    let error = result["error"].as_str().unwrap_or_default();
    ensure!(
        error.contains("Failed to fetch"),
        "the browser accepted: {result}"
    );
    Ok(())
}
