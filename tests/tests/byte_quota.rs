//! The byte quota of `[project_limits]` (`max_bytes_per_queue`, and a project's own), as
//! tenants meet it on `zaqar standalone` on every store: a post that would take a
//! queue's message bodies past it is refused (403 with Zaqar's error body) and stores
//! nothing, over REST and WebSocket; consuming makes room; stats show the bytes and the
//! quota; a queue whose `_overflow` is `drop_oldest` drops its oldest free messages for
//! room instead (never a claimed one, nothing for a post that cannot fit); an
//! encrypting queue counts its sealed bodies; a project whose override lifts the quota
//! is not held.

use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::json;
use zaqar_tests::messages::{bodies, posting};
use zaqar_tests::stores::standalone_on_each_store_configured;
use zaqar_tests::ws::WsClient;
use zaqar_tests::Client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_at_its_byte_quota_refuses_posts_or_drops_its_oldest() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = "[api.project_limits]\nmax_bytes_per_queue = 20\n\n\
         [api.project_limits.overrides.\"big\"]\nmax_bytes_per_queue = 0\n";
    for on in standalone_on_each_store_configured(dir.path(), config)? {
        let store = on.store;
        let small = Client::new(on.server.port, "small");
        small.wait_ready(Duration::from_secs(20)).await?;
        let jobs = "/v2/queues/jobs/messages";
        let posted = small.post(jobs, posting(&["aaaa", "bbbb"])).await?;
        ensure!(posted.status == 201, "{store}: {posted:?}");
        let stats = small.get("/v2/queues/jobs/stats").await?;
        ensure!(
            stats.body["messages"]["bytes"] == 12 && stats.body["messages"]["max_bytes"] == 20,
            "{store}: {stats:?}"
        );
        let refused = small.post(jobs, posting(&["cccc", "dddd"])).await?;
        ensure!(
            refused.status == 403
                && refused.body["title"] == "Queue is full"
                && refused.body["description"]
                    == "Queue jobs may hold at most 20 bytes of messages; it holds 12.",
            "{store}: {refused:?}"
        );
        ensure!(
            bodies(&small, "jobs").await? == [json!("aaaa"), json!("bbbb")],
            "{store}: stored nothing"
        );

        // Over WebSocket the same.
        let mut ws = WsClient::connect(on.server.ws_port, "small", &small.client_id).await?;
        let body = json!({"queue_name": "jobs",
                          "messages": [{"ttl": 300, "body": "xxxxxxxxxx"}]});
        let reply = ws.call("message_post", body).await?;
        ensure!(
            reply["headers"]["status"] == 403
                && reply["body"]["exception"]
                    == "Queue jobs may hold at most 20 bytes of messages; it holds 12.",
            "{store}: {reply}"
        );
        let reply = ws
            .call("queue_get_stats", json!({"queue_name": "jobs"}))
            .await?;
        ensure!(reply["body"]["messages"]["bytes"] == 12, "{store}: {reply}");

        // Consuming makes room.
        let popped = small.delete("/v2/queues/jobs/messages?pop=1").await?;
        ensure!(popped.status == 200, "{store}: {popped:?}");
        let posted = small.post(jobs, posting(&["cccc", "d"])).await?;
        ensure!(posted.status == 201, "{store}: {posted:?}");

        // A queue that drops its oldest: a claimed message is never dropped.
        let created = small
            .put("/v2/queues/recent", json!({"_overflow": "drop_oldest"}))
            .await?;
        ensure!(created.status == 201, "{store}: {created:?}");
        let recent = "/v2/queues/recent/messages";
        let posted = small
            .post(recent, posting(&["1111", "2222", "3333"]))
            .await?;
        ensure!(posted.status == 201, "{store}: {posted:?}");
        let claimed = small
            .post("/v2/queues/recent/claims?limit=1", json!({"ttl": 60}))
            .await?;
        ensure!(
            claimed.body["messages"][0]["body"] == "1111",
            "{store}: {claimed:?}"
        );
        let posted = small.post(recent, posting(&["4444"])).await?;
        ensure!(posted.status == 201, "{store}: {posted:?}");
        let kept = bodies(&small, "recent").await?;
        ensure!(
            kept == [json!("1111"), json!("3333"), json!("4444")],
            "{store}: {kept:?}"
        );
        // A post larger than the quota cannot fit: refused, nothing dropped.
        let refused = small
            .post(recent, posting(&["y".repeat(30).as_str()]))
            .await?;
        ensure!(refused.status == 403, "{store}: {refused:?}");
        ensure!(
            bodies(&small, "recent").await? == kept,
            "{store}: dropped for a refused post"
        );

        // An encrypting queue stores, and counts, sealed bodies: a body of 3 bytes
        // becomes 59, past the quota.
        let created = small
            .put(
                "/v2/queues/secret",
                json!({"_enable_encrypt_messages": true}),
            )
            .await?;
        ensure!(created.status == 201, "{store}: {created:?}");
        let refused = small
            .post("/v2/queues/secret/messages", posting(&["a"]))
            .await?;
        ensure!(
            refused.status == 403
                && refused.body["description"]
                    == "Queue secret may hold at most 20 bytes of messages; it holds 0.",
            "{store}: {refused:?}"
        );

        // A project whose override lifts the quota is not held.
        let big = Client::new(on.server.port, "big");
        let posted = big.post(jobs, posting(&["y".repeat(30).as_str()])).await?;
        ensure!(posted.status == 201, "{store}: {posted:?}");
        let stats = big.get("/v2/queues/jobs/stats").await?;
        ensure!(
            stats.body["messages"].get("bytes").is_none(),
            "{store}: {stats:?}"
        );
        eprintln!("{store}: the byte quota holds");
    }
    Ok(())
}
