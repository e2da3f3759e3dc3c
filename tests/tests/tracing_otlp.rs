//! Traces across processes: a catalog, a pool-node and an api-node exporting spans
//! over OTLP to a receiver in the test. A post that comes with a W3C `traceparent`
//! gives spans in the api-node (the REST request), in the pool-node (the gRPC call,
//! the store operation) and of the webhook delivery, all in the client's trace, and
//! the webhook receiver gets a `traceparent` of that trace too. A post whose
//! `traceparent` says its trace is not sampled leaves no span in any process.
//! And on `zaqar standalone` keeping no trace of its own (`--trace-sample-ratio 0`),
//! a WebSocket request continues the trace its frame's headers name, while a REST
//! request that names none leaves no span.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use zaqar_tests::catalog_cluster::eventually;
use zaqar_tests::otlp::OtlpReceiver;
use zaqar_tests::webhook::{loopback_allowed_config, Webhook};
use zaqar_tests::{
    free_port, spawn_api_node, spawn_pool_node, wait_for_port, zaqar_bin, Client, Process,
    Standalone,
};

/// Posts `{"traced": sampled}` to the queue `traced` in a new trace, sampled or not,
/// and waits for the webhook's delivery of it: the trace id and the delivery's head.
async fn post_in_trace(
    client: &Client,
    webhook: &mut Webhook,
    sampled: bool,
) -> Result<(String, String)> {
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let flags = if sampled { "01" } else { "00" };
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-{flags}");
    let post = json!({"messages": [{"ttl": 300, "body": {"traced": sampled}}]});
    let headers = [("traceparent", traceparent.as_str())];
    let path = "/v2/queues/traced/messages";
    let posted = client
        .call_with_headers("POST", path, Some(post), &headers)
        .await?;
    ensure!(posted.status == 201, "{posted:?}");
    let (head, body) = webhook.next_request().await?;
    ensure!(body["body"]["traced"] == sampled, "{body}");
    Ok((trace_id, head))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_post_is_one_trace_from_the_client_to_the_webhook() -> Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let mut webhook = Webhook::start().await?;
    let dir = tempfile::tempdir()?;
    let catalog_port = free_port();
    let _catalog = Process::spawn(
        "catalog",
        &zaqar_bin(),
        &[
            "catalog",
            "--listen",
            &format!("127.0.0.1:{catalog_port}"),
            "--uri",
            &format!("sqlite://{}", dir.path().join("catalog.db").display()),
        ],
        dir.path(),
    )?;
    wait_for_port(catalog_port, Duration::from_secs(30))?;
    let catalog = format!("http://127.0.0.1:{catalog_port}");
    let store = format!("sqlite://{}", dir.path().join("pool.db").display());
    let config = loopback_allowed_config(dir.path())?;
    let traced = ["--otlp-endpoint", &receiver.endpoint];
    let pool_args = [traced[0], traced[1], "--config", &config];
    let _pool_node = spawn_pool_node(dir.path(), "pool-1", &store, &catalog, &pool_args)?;
    let (_api_node, port) = spawn_api_node(dir.path(), "api-node", &catalog, &traced).await?;

    let client = Client::new(port, "traced");
    eventually("the queue created", Duration::from_secs(30), || async {
        let created = client.call("PUT", "/v2/queues/traced", None).await?;
        ensure!(created.status == 201, "{created:?}");
        Ok(())
    })
    .await?;
    let subscribe = json!({"subscriber": webhook.url, "ttl": 3600, "options": {}});
    let subscribed = client
        .post("/v2/queues/traced/subscriptions", subscribe)
        .await?;
    ensure!(subscribed.status == 201, "{subscribed:?}");

    // First a post of a trace the client does not sample: none of its spans may
    // reach the receiver, from the api-node or from the processes after it.
    let (dropped_id, head) = post_in_trace(&client, &mut webhook, false).await?;
    ensure!(
        head.lines()
            .filter(|line| line.to_ascii_lowercase().starts_with("traceparent:"))
            .all(|line| line.trim_end().ends_with("-00")),
        "the delivery of a post not sampled says it is: {head}"
    );

    let (trace_id, head) = post_in_trace(&client, &mut webhook, true).await?;
    ensure!(
        head.contains(&format!("traceparent: 00-{trace_id}-")),
        "the webhook got no traceparent of the post's trace: {head}"
    );
    let expected = [
        ("zaqar-api-node", "request"),
        ("zaqar-pool-node", "grpc"),
        ("zaqar-pool-node", "store"),
        ("zaqar-pool-node", "notify"),
    ];
    eventually("the spans of the post", Duration::from_secs(30), || async {
        let spans = receiver.spans();
        let missing: Vec<_> = expected
            .iter()
            .filter(|(service, name)| {
                !spans
                    .iter()
                    .any(|s| s.trace_id == trace_id && s.service == *service && s.name == *name)
            })
            .collect();
        ensure!(missing.is_empty(), "missing {missing:?} among {spans:?}");
        Ok(())
    })
    .await?;
    // The spans of the post not sampled ended first: had they been exported, they
    // would be here by now (spans leave in the order they end).
    let spans = receiver.spans();
    let requests: Vec<_> = spans
        .iter()
        .filter(|s| s.service == "zaqar-api-node" && s.name == "request")
        .map(|s| s.trace_id.clone())
        .collect();
    let stray: Vec<_> = spans
        .iter()
        .filter(|s| {
            s.trace_id == dropped_id
                || (s.name == "notify" && s.trace_id != trace_id)
                || (s.name == "grpc" && !requests.contains(&s.trace_id))
        })
        .collect();
    ensure!(
        stray.is_empty(),
        "spans of the post not sampled: {stray:?} among {spans:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_request_continues_its_frames_trace() -> Result<()> {
    let receiver = OtlpReceiver::start().await?;
    let dir = tempfile::tempdir()?;
    let standalone = Standalone::start_with(
        dir.path(),
        &[
            "--otlp-endpoint",
            &receiver.endpoint,
            "--trace-sample-ratio",
            "0",
        ],
    )?;
    let client = Client::new(standalone.port, "traced");
    let created = client.call("PUT", "/v2/queues/traced", None).await?;
    ensure!(created.status == 201, "{created:?}");

    let url = format!("ws://127.0.0.1:{}/", standalone.ws_port);
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .context("websocket connect")?;
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let frame = json!({
        "action": "message_post",
        "headers": {
            "Client-ID": uuid::Uuid::new_v4().to_string(),
            "X-Project-ID": "traced",
            "traceparent": format!("00-{trace_id}-00f067aa0ba902b7-01"),
        },
        "body": {"queue_name": "traced", "messages": [{"ttl": 300, "body": 1}]},
    });
    socket.send(Message::text(frame.to_string())).await?;
    let reply = tokio::time::timeout(Duration::from_secs(20), socket.next())
        .await
        .context("no reply in time")?
        .context("connection closed")??;
    let reply: serde_json::Value = serde_json::from_str(reply.to_text()?)?;
    ensure!(reply["headers"]["status"] == 201, "{reply}");

    eventually("the spans of the post", Duration::from_secs(30), || async {
        let spans = receiver.spans();
        for name in ["request", "store"] {
            ensure!(
                spans
                    .iter()
                    .any(|s| s.trace_id == trace_id && s.name == name),
                "no {name} span of the frame's trace among {spans:?}"
            );
        }
        Ok(())
    })
    .await?;
    // The queue's creation named no trace and was not drawn (ratio 0): every span
    // the receiver has is of the frame's trace.
    let spans = receiver.spans();
    ensure!(
        spans.iter().all(|s| s.trace_id == trace_id),
        "spans of requests not sampled: {spans:?}"
    );
    Ok(())
}
