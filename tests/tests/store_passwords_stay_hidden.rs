//! A pool whose store URI holds a password: `zaqar standalone` on a Redis that
//! requires one. The pool answers (REST and WebSocket, in admin mode) show the
//! URI with `***` for the password, and no line of the process's log holds it.

use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Result};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use zaqar_tests::{Client, Redis, Standalone};

const PASSWORD: &str = "s3cret-Pw-7f2c";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_password_appears_in_no_answer_and_no_log_line() -> Result<()> {
    let redis = Redis::start()?;
    let set = Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "config",
            "set",
            "requirepass",
            PASSWORD,
        ])
        .output()?;
    ensure!(set.status.success(), "redis-cli: {set:?}");
    let dir = tempfile::tempdir()?;
    let uri = format!("redis://:{PASSWORD}@127.0.0.1:{}/0", redis.port);
    let standalone = Standalone::start_with(dir.path(), &["--admin-mode", "--pool-uri", &uri])?;
    let mut admin = Client::new(standalone.port, "secrets");
    admin.roles = Some("admin".into());
    admin.wait_ready(Duration::from_secs(30)).await?;

    // The store works with its password...
    let posted = admin
        .post(
            "/v2/queues/q/messages",
            json!({"messages": [{"body": 1, "ttl": 300}]}),
        )
        .await?;
    ensure!(posted.status == 201, "{posted:?}");
    // ...and every answer that shows the pool hides it.
    let hidden = format!("redis://:***@127.0.0.1:{}/0", redis.port);
    let listed = admin.get("/v2/pools?detailed=true").await?;
    ensure!(listed.status == 200, "{listed:?}");
    let pool = &listed.body["pools"][0];
    ensure!(pool["uri"] == hidden.as_str(), "{pool}");
    let name = pool["name"].as_str().unwrap_or_default().to_string();
    let one = admin.get(&format!("/v2/pools/{name}")).await?;
    ensure!(one.body["uri"] == hidden.as_str(), "{:?}", one.body);

    let url = standalone.ws_url();
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    let headers = json!({"Client-ID": "3381af92-2b9e-11e3-b191-71861300734c",
                         "X-Project-ID": "secrets", "X-Roles": "admin"});
    let request = json!({"action": "pool_get", "headers": headers, "body": {"pool_name": name}});
    ws.send(Message::text(request.to_string())).await?;
    let reply = loop {
        if let Some(Message::Text(text)) = ws.next().await.transpose()? {
            break serde_json::from_str::<Value>(&text)?;
        }
    };
    ensure!(reply["body"]["uri"] == hidden.as_str(), "{reply}");

    let log = std::fs::read_to_string(dir.path().join("standalone.log"))?;
    ensure!(
        log.contains("***@127.0.0.1"),
        "the start-up line names the store"
    );
    ensure!(
        !log.contains(PASSWORD),
        "the password is in the log:\n{log}"
    );
    Ok(())
}
