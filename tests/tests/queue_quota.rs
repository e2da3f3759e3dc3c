//! The queue quota of `[project_limits]` (`max_queues`, and a project's own), as tenants
//! meet it on `zaqar standalone`: a project at its quota cannot create another queue by
//! `PUT`, by a first post, by a first subscription or over WebSocket (403 with Zaqar's
//! error body), its queues keep working, `with_count` shows its use, deleting a queue
//! makes room; a project whose override lifts the quota is not held.

use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::json;
use zaqar_tests::ws::WsClient;
use zaqar_tests::{Client, Standalone};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_at_its_queue_quota_cannot_create_another() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("zaqar.toml");
    std::fs::write(
        &config,
        "[api.project_limits]\nmax_queues = 2\n\n\
         [api.project_limits.overrides.\"big\"]\nmax_queues = 0\n",
    )?;
    let config = config.to_string_lossy().to_string();
    let server = Standalone::start_with(dir.path(), &["--config", &config])?;
    let small = Client::new(server.port, "small");
    small.wait_ready(Duration::from_secs(20)).await?;

    for queue in ["q1", "q2"] {
        let created = small
            .call("PUT", &format!("/v2/queues/{queue}"), None)
            .await?;
        ensure!(created.status == 201, "{queue}: {created:?}");
    }
    let refused = |reply: &zaqar_tests::Reply| {
        reply.status == 403
            && reply.body["title"] == "Queue quota exceeded"
            && reply.body["description"] == "Project small may have at most 2 queues."
    };
    let third = small.call("PUT", "/v2/queues/q3", None).await?;
    ensure!(refused(&third), "{third:?}");
    let post = json!({"messages": [{"ttl": 300, "body": "x"}]});
    let posted = small.post("/v2/queues/q4/messages", post.clone()).await?;
    ensure!(refused(&posted), "a first post: {posted:?}");
    let subscribed = small
        .post(
            "/v2/queues/q5/subscriptions",
            json!({"subscriber": "mailto:ops@example.com", "ttl": 3600}),
        )
        .await?;
    ensure!(refused(&subscribed), "a first subscription: {subscribed:?}");

    // Its queues work as before, and the listing shows its use.
    let posted = small.post("/v2/queues/q1/messages", post.clone()).await?;
    ensure!(posted.status == 201, "{posted:?}");
    let listed = small.get("/v2/queues?with_count=true").await?;
    ensure!(listed.body["count"] == 2, "{listed:?}");

    // Over WebSocket the same.
    let mut ws = WsClient::connect(server.ws_port, "small", &small.client_id).await?;
    let reply = ws
        .call("queue_create", json!({"queue_name": "ws-q"}))
        .await?;
    ensure!(reply["headers"]["status"] == 403, "{reply}");

    // Deleting a queue makes room.
    ensure!(small.delete("/v2/queues/q2").await?.status == 204);
    let created = small.call("PUT", "/v2/queues/q3", None).await?;
    ensure!(created.status == 201, "{created:?}");

    // A project whose override lifts the quota is not held.
    let big = Client::new(server.port, "big");
    for queue in ["a", "b", "c"] {
        let created = big
            .call("PUT", &format!("/v2/queues/{queue}"), None)
            .await?;
        ensure!(created.status == 201, "big {queue}: {created:?}");
    }
    Ok(())
}
