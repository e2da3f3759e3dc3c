//! Topics (Zaqar v2.1) on `zaqar standalone`, on the embedded store and on a
//! private Redis: a message posted to a topic is delivered to every webhook
//! subscribed to the topic, and to nothing subscribed to the queue of the same name.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use zaqar_tests::webhook::{loopback_allowed_config, Webhook};
use zaqar_tests::{Client, Redis, Standalone};

async fn subscribe(client: &Client, path: &str, hook: &Webhook) -> Result<()> {
    let body = json!({"subscriber": hook.url, "ttl": 3600});
    let reply = client.post(path, body).await?;
    anyhow::ensure!(reply.status == 201, "subscribe {path}: {reply:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_posted_to_a_topic_reach_its_webhooks_only() -> Result<()> {
    fan_out(&[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_fan_out_on_a_redis_pool() -> Result<()> {
    let redis = Redis::start()?;
    fan_out(&["--pool-uri", &redis.uri(0)]).await
}

/// The scenario on `zaqar standalone` started with `pool_args`.
async fn fan_out(pool_args: &[&str]) -> Result<()> {
    let dir = tempfile::tempdir()?;
    // The webhooks listen on loopback, an internal address refused by default.
    let config = loopback_allowed_config(dir.path())?;
    let args = [&["--config", config.as_str()][..], pool_args].concat();
    let standalone = Standalone::start_with(dir.path(), &args)?;
    let port = standalone.port;
    let client = Client::new(port, "topic-project");
    client.wait_ready(Duration::from_secs(30)).await?;

    let created = client.call("PUT", "/v2/topics/orders", None).await?;
    anyhow::ensure!(created.status == 201, "create topic: {created:?}");
    let (mut first, mut second, mut queue_hook) = (
        Webhook::start().await?,
        Webhook::start().await?,
        Webhook::start().await?,
    );
    subscribe(&client, "/v2/topics/orders/subscriptions", &first).await?;
    subscribe(&client, "/v2/topics/orders/subscriptions", &second).await?;
    subscribe(&client, "/v2/queues/orders/subscriptions", &queue_hook).await?;

    let posted = client
        .post(
            "/v2/topics/orders/messages",
            json!({"messages": [{"body": {"order": 1}, "ttl": 300}, {"body": {"order": 2}}]}),
        )
        .await?;
    anyhow::ensure!(posted.status == 201, "post to topic: {posted:?}");
    for hook in [&mut first, &mut second] {
        let mut orders = Vec::new();
        for _ in 0..2 {
            let notification = hook.next().await?;
            assert_eq!(notification["queue_name"], "orders", "{notification}");
            assert_eq!(notification["Message_Type"], "Notification");
            orders.push(notification["body"]["order"].clone());
        }
        orders.sort_by_key(|order| order.as_i64());
        assert_eq!(orders, vec![json!(1), json!(2)]);
    }

    // The queue's subscriber hears of the queue's message first: nothing of
    // the topic's reached it.
    let posted = client
        .post(
            "/v2/queues/orders/messages",
            json!({"messages": [{"body": "queue message"}]}),
        )
        .await?;
    anyhow::ensure!(posted.status == 201, "post to queue: {posted:?}");
    assert_eq!(queue_hook.next().await?["body"], "queue message");

    let stats = client.get("/v2/topics/orders/stats").await?;
    assert_eq!(stats.body["messages"]["total"], 2, "{stats:?}");
    Ok(())
}
