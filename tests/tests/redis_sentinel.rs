//! `zaqar standalone` on a Sentinel pool, given in Zaqar's own URI form: a client
//! posts one message per request while the Redis master is killed (kill -9). Every
//! request in between answers 503 with Zaqar's error body (none hangs), posts are
//! served again once the sentinels promote a replica, and with `min_replicas_ack=1`
//! every message acknowledged with a 201 is still there.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use zaqar_tests::sentinel::SentinelGroup;
use zaqar_tests::{Client, Standalone};

/// Posts one message; its id when the answer is 201, else the status and body.
async fn post_one(client: &Client, n: usize) -> Result<String, (u16, Value)> {
    let reply = client
        .post(
            "/v2/queues/orders/messages",
            json!({"messages": [{"ttl": 3600, "body": {"n": n}}]}),
        )
        .await
        .map_err(|err| (0, json!(err.to_string())))?;
    if reply.status != 201 {
        return Err((reply.status, reply.body));
    }
    let href = reply.body["resources"][0].as_str().unwrap_or_default();
    Ok(href.rsplit('/').next().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_posts_survive_a_killed_master_on_a_sentinel_pool() {
    let mut group = SentinelGroup::start().expect("the Sentinel group");
    let dir = tempfile::tempdir().unwrap();
    let uri = group.uri(1, "&min_replicas_ack=1");
    let server = Standalone::start_with(dir.path(), &["--pool-uri", &uri]).expect("standalone");
    let client = Client::new(server.port, "sentinel-project");
    client.wait_ready(Duration::from_secs(20)).await.unwrap();
    let created = client.call("PUT", "/v2/queues/orders", None).await.unwrap();
    assert_eq!(created.status, 201, "{created:?}");

    let mut acked = Vec::new();
    for n in 0..30 {
        acked.push(post_one(&client, n).await.expect("a post before the fault"));
    }
    let killed = group.kill_master().expect("a master to kill");
    let started = Instant::now();
    let mut refused = 0;
    let mut n = 30;
    loop {
        let call = Instant::now();
        match post_one(&client, n).await {
            Ok(id) => {
                acked.push(id);
                break;
            }
            Err((status, body)) => {
                assert_eq!(status, 503, "{body}");
                assert_eq!(body["title"], "Service temporarily unavailable", "{body}");
                assert!(
                    call.elapsed() < Duration::from_secs(5),
                    "a refusal took {:?}",
                    call.elapsed()
                );
                refused += 1;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the pool did not serve again in 30 s"
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "served again {:?} after the kill, {refused} posts refused",
        started.elapsed()
    );
    assert_ne!(group.master_port(), Some(killed));
    for n in n + 1..n + 11 {
        acked.push(
            post_one(&client, n)
                .await
                .expect("a post after the failover"),
        );
    }

    let mut kept = 0;
    for ids in acked.chunks(20) {
        let path = format!("/v2/queues/orders/messages?ids={}", ids.join(","));
        let reply = client.get(&path).await.unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
        kept += reply.body["messages"].as_array().map_or(0, Vec::len);
    }
    assert_eq!(kept, acked.len(), "acknowledged posts were lost");
}
