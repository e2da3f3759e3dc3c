//! A real Prometheus (Debian's) scrapes `zaqar standalone --metrics-listen`: after a
//! client posts, claims and deletes through the REST API, Prometheus's query API
//! shows exactly the messages posted, deleted and expired, the REST requests by route template,
//! the WebSocket connection and its actions, the placement lookups, the webhook
//! notifications delivered, the store's operations, the requests a project's rate
//! limit refused, a raft leader, and the process's memory.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use zaqar_tests::prometheus::{Prometheus, Target};
use zaqar_tests::webhook::{loopback_allowed_config, Webhook};
use zaqar_tests::{free_port, wait_for_port, Client, Standalone};

const POSTED: usize = 7;
const DELETED: usize = 3;
/// Messages posted with a ttl of one second, which the expiry sweep counts.
const EXPIRING: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_what_clients_did() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let metrics_port = free_port();
    let metrics_listen = format!("127.0.0.1:{metrics_port}");
    let config = loopback_allowed_config(dir.path())?;
    // One project limited to a request now and then: its refusals are counted.
    let mut limits = std::fs::read_to_string(&config)?;
    limits.push_str(
        "[api.project_limits.overrides.\"limited\"]\nrequests_per_second = 0.01\nburst = 1\n",
    );
    // Messages that expire within the test.
    limits.push_str("[api.limits]\nmin_message_ttl = 1\n");
    std::fs::write(&config, limits)?;
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
        .post(
            "/v2/queues/watched/subscriptions",
            json!({"subscriber": webhook.url, "ttl": 3600}),
        )
        .await?;
    ensure!(subscribed.status == 201, "{subscribed:?}");
    for n in 0..POSTED {
        let posted = client
            .post(
                "/v2/queues/watched/messages",
                json!({"messages": [{"ttl": 300, "body": {"n": n}}]}),
            )
            .await?;
        ensure!(posted.status == 201, "{posted:?}");
    }
    let claimed = client
        .post(
            &format!("/v2/queues/watched/claims?limit={DELETED}"),
            json!({"ttl": 60, "grace": 60}),
        )
        .await?;
    ensure!(claimed.status == 201, "{claimed:?}");
    for message in claimed.body["messages"].as_array().context("claimed")? {
        let href = message["href"].as_str().context("href")?;
        let deleted = client.delete(href).await?;
        ensure!(deleted.status == 204, "{deleted:?}");
    }

    for _ in 0..POSTED {
        webhook.next().await?;
    }
    let fleeting: Vec<_> = (0..EXPIRING)
        .map(|n| json!({"ttl": 1, "body": n}))
        .collect();
    client.post_messages("fleeting", fleeting).await?;

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

    let limited = Client::new(server.port, "limited");
    let mut refused = 0;
    for _ in 0..4 {
        if limited.get("/v2/queues").await?.status == 429 {
            refused += 1;
        }
    }
    ensure!(
        refused == 3,
        "{refused} of 4 requests refused, past a burst of 1"
    );

    let prometheus = Prometheus::start(
        dir.path(),
        &[Target {
            job: "zaqar".into(),
            port: metrics_port,
            labels: Vec::new(),
        }],
    )?;

    let posted = r#"sum(zaqar_messages_total{backend="sqlite",event="posted"})"#;
    prometheus
        .eventually_equals(posted, (POSTED + EXPIRING) as f64)
        .await?;
    let deleted = r#"sum(zaqar_messages_total{event="deleted"})"#;
    prometheus
        .eventually_equals(deleted, DELETED as f64)
        .await?;
    let expired = r#"sum(zaqar_messages_total{backend="sqlite",event="expired"})"#;
    prometheus
        .eventually_equals(expired, EXPIRING as f64)
        .await?;
    let claimed = r#"sum(zaqar_messages_total{event="claimed"})"#;
    prometheus
        .eventually_equals(claimed, DELETED as f64)
        .await?;
    let posts = r#"sum(zaqar_http_requests_total{route="/v2/queues/{queue}/messages",method="POST",status="201"})"#;
    prometheus
        .eventually_equals(posts, (POSTED + 1) as f64)
        .await?;
    let store_posts =
        r#"sum(zaqar_store_operation_duration_seconds_count{operation="post_messages"})"#;
    prometheus
        .eventually_equals(store_posts, (POSTED + 1) as f64)
        .await?;
    prometheus
        .eventually_equals("sum(zaqar_raft_is_leader)", 1.0)
        .await?;
    prometheus
        .eventually_equals("sum(zaqar_websocket_connections)", 1.0)
        .await?;
    let pings = r#"sum(zaqar_websocket_actions_total{action="ping_node"})"#;
    prometheus.eventually_equals(pings, 2.0).await?;
    let delivered = r#"sum(zaqar_notifier_deliveries_total{kind="webhook",result="delivered"})"#;
    prometheus
        .eventually_equals(delivered, POSTED as f64)
        .await?;
    let lagged = r#"sum(zaqar_notifier_delivery_lag_seconds_count{kind="webhook"})"#;
    prometheus.eventually_equals(lagged, POSTED as f64).await?;
    let pool_posts = r#"sum(zaqar_pool_calls_total{method="post_messages",code="ok"})"#;
    prometheus
        .eventually_equals(pool_posts, (POSTED + 1) as f64)
        .await?;
    let timed = r#"sum(zaqar_pool_call_duration_seconds_count{method="post_messages"})"#;
    prometheus
        .eventually_equals(timed, (POSTED + 1) as f64)
        .await?;
    let lookups = r#"sum(zaqar_placement_lookups_total{result=~"cached|catalog"}) > bool 0"#;
    prometheus.eventually_equals(lookups, 1.0).await?;
    prometheus
        .eventually_equals("sum(zaqar_rate_limited_total)", f64::from(refused))
        .await?;
    let memory = "zaqar_process_resident_memory_bytes > bool 1000000";
    prometheus.eventually_equals(memory, 1.0).await?;
    // Names and ids never become label values: only route templates.
    let by_queue = r#"count(zaqar_http_requests_total{route=~".*watched.*"})"#;
    let answer = prometheus.answer(by_queue).await?;
    ensure!(
        answer["data"]["result"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{answer}"
    );
    Ok(())
}
