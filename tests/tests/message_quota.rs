//! The message quota of `[project_limits]` (`max_messages_per_queue`, and a project's
//! own), as tenants meet it on `zaqar standalone` on every store: a post that would
//! take a queue past it is refused (403 with Zaqar's error body) and stores nothing,
//! over REST and WebSocket; consuming makes room; stats show the quota beside the
//! counts; a queue whose `_overflow` is `drop_oldest` drops its oldest free messages
//! for room instead (never a claimed one); a project whose override lifts the quota is
//! not held.

use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use zaqar_tests::messages::{bodies, posting};
use zaqar_tests::stores::standalone_on_each_store_configured;
use zaqar_tests::ws::WsClient;
use zaqar_tests::{Client, Reply, Standalone};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_posts_or_drops_its_oldest() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = "[api.project_limits]\nmax_messages_per_queue = 3\n\n\
         [api.project_limits.overrides.\"big\"]\nmax_messages_per_queue = 0\n";
    for on in standalone_on_each_store_configured(dir.path(), config)? {
        let store = on.store;
        let small = Client::new(on.server.port, "small");
        small.wait_ready(Duration::from_secs(20)).await?;
        let full = |reply: &Reply| {
            reply.status == 403
                && reply.body["title"] == "Queue is full"
                && reply.body["description"]
                    == "Queue jobs may hold at most 3 messages; it holds 2."
        };
        let posted = small
            .post("/v2/queues/jobs/messages", posting(&["a", "b"]))
            .await?;
        ensure!(posted.status == 201, "{store}: {posted:?}");
        let refused = small
            .post("/v2/queues/jobs/messages", posting(&["c", "d"]))
            .await?;
        ensure!(full(&refused), "{store}: {refused:?}");
        ensure!(
            bodies(&small, "jobs").await? == [json!("a"), json!("b")],
            "{store}: stored nothing"
        );
        let stats = small.get("/v2/queues/jobs/stats").await?;
        ensure!(
            stats.body["messages"]["total"] == 2 && stats.body["messages"]["max"] == 3,
            "{store}: {stats:?}"
        );

        // Over WebSocket the same.
        let mut ws = WsClient::connect(on.server.ws_port, "small", &small.client_id).await?;
        let body = json!({"queue_name": "jobs", "messages": [{"ttl": 300, "body": "w1"}, {"ttl": 300, "body": "w2"}]});
        let reply = ws.call("message_post", body).await?;
        ensure!(
            reply["headers"]["status"] == 403
                && reply["body"]["exception"]
                    == "Queue jobs may hold at most 3 messages; it holds 2.",
            "{store}: {reply}"
        );

        // Consuming makes room.
        let popped = small.delete("/v2/queues/jobs/messages?pop=1").await?;
        ensure!(popped.status == 200, "{store}: {popped:?}");
        let posted = small
            .post("/v2/queues/jobs/messages", posting(&["c", "d"]))
            .await?;
        ensure!(posted.status == 201, "{store}: {posted:?}");

        // A queue that drops its oldest: a claimed message is never dropped.
        let created = small
            .put("/v2/queues/recent", json!({"_overflow": "drop_oldest"}))
            .await?;
        ensure!(created.status == 201, "{store}: {created:?}");
        let posted = small
            .post("/v2/queues/recent/messages", posting(&["1", "2", "3"]))
            .await?;
        ensure!(posted.status == 201, "{store}: {posted:?}");
        let claimed = small
            .post("/v2/queues/recent/claims?limit=1", json!({"ttl": 60}))
            .await?;
        ensure!(
            claimed.body["messages"][0]["body"] == "1",
            "{store}: {claimed:?}"
        );
        let posted = small
            .post("/v2/queues/recent/messages", posting(&["4", "5"]))
            .await?;
        ensure!(posted.status == 201, "{store}: {posted:?}");
        let kept = bodies(&small, "recent").await?;
        ensure!(
            kept == [json!("1"), json!("4"), json!("5")],
            "{store}: {kept:?}"
        );
        // More room than its free messages give: refused, nothing dropped.
        let refused = small
            .post("/v2/queues/recent/messages", posting(&["6", "7", "8"]))
            .await?;
        ensure!(refused.status == 403, "{store}: {refused:?}");
        ensure!(
            bodies(&small, "recent").await? == kept,
            "{store}: dropped for a refused post"
        );
        let bad = small
            .put("/v2/queues/odd", json!({"_overflow": "drop_newest"}))
            .await?;
        ensure!(bad.status == 400, "{store}: {bad:?}");

        // A project whose override lifts the quota is not held.
        let big = Client::new(on.server.port, "big");
        let posted = big
            .post("/v2/queues/jobs/messages", posting(&["1", "2", "3", "4"]))
            .await?;
        ensure!(posted.status == 201, "{store}: {posted:?}");
        let stats = big.get("/v2/queues/jobs/stats").await?;
        ensure!(
            stats.body["messages"].get("max").is_none(),
            "{store}: {stats:?}"
        );
        eprintln!("{store}: the message quota holds");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_example_runs_as_written() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("zaqar.toml");
    std::fs::write(
        &config,
        "[api.project_limits]\nmax_messages_per_queue = 3\n",
    )?;
    let config = config.to_string_lossy().to_string();
    let server = Standalone::start_with(dir.path(), &["--config", &config])?;
    Client::new(server.port, "demo")
        .wait_ready(Duration::from_secs(20))
        .await?;
    let stdout = zaqar_tests::docs::run_sh_block("quotas.md", server.port)?;
    let answers: Vec<Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()?;
    ensure!(answers.len() == 6, "{stdout}");
    ensure!(answers[1]["title"] == "Queue is full", "{stdout}");
    ensure!(
        answers[2]["messages"]["total"] == 3 && answers[2]["messages"]["max"] == 3,
        "{stdout}"
    );
    let kept: Vec<&Value> = answers[5]["messages"]
        .as_array()
        .map(|messages| messages.iter().map(|m| &m["body"]).collect())
        .unwrap_or_default();
    ensure!(kept == [&json!(2), &json!(3), &json!(4)], "{stdout}");
    Ok(())
}
