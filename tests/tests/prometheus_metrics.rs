//! A real Prometheus (Debian's) scrapes `zaqar standalone --metrics-listen`: after a
//! client posts, claims and deletes through the REST API, Prometheus's query API
//! shows exactly the messages posted and deleted, the REST requests by route template,
//! the WebSocket connection and its actions, the placement lookups, the webhook
//! notifications delivered, the store's
//! operations, a raft leader, and the process's memory.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use zaqar_tests::webhook::{loopback_allowed_config, Webhook};
use zaqar_tests::{free_port, wait_for_port, Client, Process, Standalone};

const POSTED: usize = 7;
const DELETED: usize = 3;

/// The value of PromQL `query` at `prometheus` (first series), once it is `want`
/// (within 60 s: a scrape every second, and Prometheus's own start).
async fn eventually_equals(prometheus: &str, query: &str, want: f64) -> Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        let answer = http
            .get(format!("{prometheus}/api/v1/query"))
            .query(&[("query", query)])
            .send()
            .await;
        if let Ok(answer) = answer {
            last = answer.json::<Value>().await.unwrap_or_default();
            let value = last["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok());
            if value == Some(want) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("{query} did not become {want}: {last}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_what_clients_did() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let metrics_port = free_port();
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let config = loopback_allowed_config(dir.path())?;
    let server = Standalone::start_with(
        dir.path(),
        &["--metrics-listen", &metrics_listen, "--config", &config],
    )?;
    wait_for_port(metrics_port, Duration::from_secs(10))?;

    let client = Client::new(server.port, "metrics-project");
    let created = client.call("PUT", "/v2/queues/watched", None).await?;
    ensure!(created.status == 201, "{created:?}");
    let mut webhook = Webhook::start().await?;
    let subscribed = client
        .call(
            "POST",
            "/v2/queues/watched/subscriptions",
            Some(json!({"subscriber": webhook.url, "ttl": 3600})),
        )
        .await?;
    ensure!(subscribed.status == 201, "{subscribed:?}");
    for n in 0..POSTED {
        let posted = client
            .call(
                "POST",
                "/v2/queues/watched/messages",
                Some(json!({"messages": [{"ttl": 300, "body": {"n": n}}]})),
            )
            .await?;
        ensure!(posted.status == 201, "{posted:?}");
    }
    let claimed = client
        .call(
            "POST",
            &format!("/v2/queues/watched/claims?limit={DELETED}"),
            Some(json!({"ttl": 60, "grace": 60})),
        )
        .await?;
    ensure!(claimed.status == 201, "{claimed:?}");
    for message in claimed.body["messages"].as_array().context("claimed")? {
        let href = message["href"].as_str().context("href")?;
        let deleted = client.call("DELETE", href, None).await?;
        ensure!(deleted.status == 204, "{deleted:?}");
    }

    for _ in 0..POSTED {
        webhook.next().await?;
    }

    // A WebSocket connection that stays open, with two pings.
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/", server.ws_port)).await?;
    for _ in 0..2 {
        let ping = json!({"action": "ping_node", "headers": {
            "Client-ID": uuid::Uuid::new_v4().to_string(), "X-Project-ID": "metrics-project"}});
        socket
            .send(tokio_tungstenite::tungstenite::Message::Text(
                ping.to_string().into(),
            ))
            .await?;
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
                .await?
                .context("the connection closed")??;
            if frame.is_text() {
                break;
            }
        }
    }

    let prometheus_port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: zaqar\n    static_configs:\n\
             \x20     - targets: ['127.0.0.1:{metrics_port}']\n"
        ),
    )?;
    let storage = dir.path().join("prometheus-data");
    let _prometheus = Process::spawn(
        "prometheus",
        &PathBuf::from("prometheus"),
        &[
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", storage.display()),
            &format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
        ],
        dir.path(),
    )?;
    wait_for_port(prometheus_port, Duration::from_secs(30))?;
    let prometheus = format!("http://127.0.0.1:{prometheus_port}");

    let posted = r#"sum(zaqar_messages_total{backend="sqlite",event="posted"})"#;
    eventually_equals(&prometheus, posted, POSTED as f64).await?;
    let deleted = r#"sum(zaqar_messages_total{event="deleted"})"#;
    eventually_equals(&prometheus, deleted, DELETED as f64).await?;
    let claimed = r#"sum(zaqar_messages_total{event="claimed"})"#;
    eventually_equals(&prometheus, claimed, DELETED as f64).await?;
    let posts = r#"sum(zaqar_http_requests_total{route="/v2/queues/{queue}/messages",method="POST",status="201"})"#;
    eventually_equals(&prometheus, posts, POSTED as f64).await?;
    let store_posts =
        r#"sum(zaqar_store_operation_duration_seconds_count{operation="post_messages"})"#;
    eventually_equals(&prometheus, store_posts, POSTED as f64).await?;
    eventually_equals(&prometheus, "sum(zaqar_raft_is_leader)", 1.0).await?;
    eventually_equals(&prometheus, "sum(zaqar_websocket_connections)", 1.0).await?;
    let pings = r#"sum(zaqar_websocket_actions_total{action="ping_node"})"#;
    eventually_equals(&prometheus, pings, 2.0).await?;
    let delivered = r#"sum(zaqar_notifier_deliveries_total{kind="webhook",result="delivered"})"#;
    eventually_equals(&prometheus, delivered, POSTED as f64).await?;
    let lookups = r#"sum(zaqar_placement_lookups_total{result=~"cached|catalog"}) > bool 0"#;
    eventually_equals(&prometheus, lookups, 1.0).await?;
    eventually_equals(
        &prometheus,
        "zaqar_process_resident_memory_bytes > bool 1000000",
        1.0,
    )
    .await?;
    // Names and ids never become label values: only route templates.
    let by_queue = r#"count(zaqar_http_requests_total{route=~".*watched.*"})"#;
    let http = reqwest::Client::new();
    let answer: Value = http
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", by_queue)])
        .send()
        .await?
        .json()
        .await?;
    ensure!(
        answer["data"]["result"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{answer}"
    );
    Ok(())
}
