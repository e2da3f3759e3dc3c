//! `zaqar standalone` on Redis calls its pool-node in-process (no gRPC hop), so
//! the api-node's `request_timeout_ms` must still bound every call: a frozen Redis
//! (SIGSTOP) gives a 503 within that timeout (shorter than the Redis client's own
//! 3 s), never a hang; a dead one a quick 503; and once Redis is back the message
//! acknowledged before is still there.

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use serde_json::json;
use zaqar_tests::{Client, Redis, Standalone};

/// The api-node's bound on one pool call in this test.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1_000);

async fn post(client: &Client, body: &str) -> Result<u16> {
    let reply = client
        .call(
            "POST",
            "/v2/queues/faults/messages",
            Some(json!({"messages": [{"ttl": 300, "body": body}]})),
        )
        .await?;
    Ok(reply.status)
}

async fn listed_bodies(client: &Client) -> Result<Vec<String>> {
    let reply = client
        .call("GET", "/v2/queues/faults/messages?echo=true&limit=10", None)
        .await?;
    ensure!(reply.status == 200, "list: {reply:?}");
    Ok(reply.body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["body"].as_str().map(String::from))
        .collect())
}

#[tokio::test]
async fn a_frozen_or_dead_redis_gives_503_in_time_and_loses_nothing() -> Result<()> {
    let mut redis = Redis::start()?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("zaqar.toml");
    std::fs::write(
        &config,
        format!(
            "pool_uri = \"{}\"\n[api]\nrequest_timeout_ms = {}\n",
            redis.uri(0),
            REQUEST_TIMEOUT.as_millis()
        ),
    )?;
    let config = config.to_string_lossy();
    let standalone = Standalone::start_with(dir.path(), &["--config", &config])?;
    let port = standalone.port;
    let client = Client::new(port, "faults-project");
    client.wait_ready(Duration::from_secs(30)).await?;

    ensure!(post(&client, "before").await? == 201);

    redis.pause()?;
    let started = Instant::now();
    let frozen = post(&client, "while frozen").await;
    let waited = started.elapsed();
    redis.resume()?;
    ensure!(frozen? == 503, "a post to a frozen Redis must answer 503");
    ensure!(
        waited < REQUEST_TIMEOUT * 2,
        "the 503 came after {waited:?}, not bounded by the request timeout"
    );

    let bodies = listed_bodies(&client).await?;
    ensure!(
        bodies.first().map(String::as_str) == Some("before"),
        "{bodies:?}"
    );
    ensure!(post(&client, "after resume").await? == 201);

    redis.kill();
    let started = Instant::now();
    let dead = post(&client, "while dead").await?;
    ensure!(dead == 503, "a post to a dead Redis answered {dead}");
    ensure!(started.elapsed() < REQUEST_TIMEOUT * 4);

    redis.restart()?;
    let deadline = Instant::now() + Duration::from_secs(15);
    while post(&client, "after restart").await? != 201 {
        ensure!(
            Instant::now() < deadline,
            "no successful post after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
