//! catalog, two pool-nodes (each on its own real Redis) and an api-node as
//! separate processes: queues spread over both pools, messages and claims work
//! through REST, and a dead Redis gives 503 until it returns.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;
use zaqar_tests::pools_on_redis::PoolsOnRedis;
use zaqar_tests::{placements, Client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_spread_over_two_redis_pools_and_survive_a_redis_restart() -> Result<()> {
    let mut cluster = PoolsOnRedis::start(2, &[])?;
    cluster.wait_for_pools(2).await?;
    let client = Client::new(cluster.api_port, "cluster-project");
    client.wait_ready(Duration::from_secs(30)).await?;

    let queues: Vec<String> = (0..24).map(|i| format!("queue-{i:02}")).collect();
    for queue in &queues {
        let created = client
            .put(&format!("/v2/queues/{queue}"), json!({"n": 1}))
            .await?;
        assert_eq!(created.status, 201, "{queue}: {:?}", created.body);
        let posted = client
            .post(&format!("/v2/queues/{queue}/messages"), json!({"messages": [{"body": {"n": 1}, "ttl": 300}, {"body": {"n": 2}, "ttl": 300}]}))
            .await?;
        assert_eq!(posted.status, 201, "{queue}: {:?}", posted.body);
        assert_eq!(posted.body["resources"].as_array().map(Vec::len), Some(2));
    }

    // The catalog placed queues on both pools, and both Redis servers hold data.
    let placed = placements(&cluster.catalog, "cluster-project").await?;
    assert_eq!(placed.len(), queues.len());
    let on_first = placed.iter().filter(|p| p.pool == "pool-0").count();
    assert!(
        on_first > 0 && on_first < queues.len(),
        "all queues on one pool: {on_first}"
    );
    assert!(cluster.redis[0].queue_key_count(0)? > 0);
    assert!(cluster.redis[1].queue_key_count(0)? > 0);

    // Messages and claims work on every queue, wherever it lives.
    for queue in &queues {
        let listed = client
            .get(&format!("/v2/queues/{queue}/messages?echo=true"))
            .await?;
        assert_eq!(listed.status, 200);
        assert_eq!(listed.body["messages"].as_array().map(Vec::len), Some(2));
        let claimed = client
            .post(
                &format!("/v2/queues/{queue}/claims?limit=1"),
                json!({"ttl": 60, "grace": 60}),
            )
            .await?;
        assert_eq!(claimed.status, 201, "{:?}", claimed.body);
        let message = &claimed.body["messages"][0];
        assert_eq!(message["body"], json!({"n": 1}), "FIFO on {queue}");
        let href = message["href"].as_str().expect("href");
        let unclaimed_delete = client.delete(href.split('?').next().unwrap()).await?;
        assert_eq!(
            unclaimed_delete.status, 403,
            "deleting a claimed message needs its claim id"
        );
        assert_eq!(client.delete(href).await?.status, 204);
    }

    // A dead Redis: queues on that pool answer 503 quickly, the others still work.
    let on_dead_pool = placed
        .iter()
        .find(|p| p.pool == "pool-0")
        .unwrap()
        .queue
        .clone()
        .unwrap()
        .queue;
    let on_live_pool = placed
        .iter()
        .find(|p| p.pool == "pool-1")
        .unwrap()
        .queue
        .clone()
        .unwrap()
        .queue;
    cluster.redis[0].kill();
    let down = client
        .get(&format!("/v2/queues/{on_dead_pool}/stats"))
        .await?;
    assert_eq!(down.status, 503, "{:?}", down.body);
    assert!(down.body["title"].is_string() && down.body["description"].is_string());
    let up = client
        .get(&format!("/v2/queues/{on_live_pool}/stats"))
        .await?;
    assert_eq!(up.status, 200);

    // It recovers when Redis returns (from its append-only file).
    cluster.redis[0].restart()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = client
            .get(&format!("/v2/queues/{on_dead_pool}/stats"))
            .await?;
        if stats.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pool did not recover: {:?}",
            stats.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
