//! What only a Redis Cluster pool has: each queue in a slot of its own, so that one
//! project's queues spread over the masters, and dead lettering in two calls that
//! can be finished after an interruption without a duplicate. Runs on the cluster
//! at `ZAQAR_TEST_REDIS_CLUSTER_URL` (skipped when unset, unless `CI` is set); the
//! delivery semantics are in the conformance suite (`conformance::redis_cluster`).

use zaqar_proto::pb::QueueRef;

use super::{everything, message};
use crate::conformance::ClaimTerms;
use crate::redis_store::connection::Node;
use crate::redis_store::RedisStore;
use crate::store::prelude::*;

async fn cluster() -> Option<RedisStore> {
    let url = zaqar_tests::test_server_url("ZAQAR_TEST_REDIS_CLUSTER_URL")?;
    Some(
        RedisStore::connect(&url)
            .await
            .expect("the cluster store opens"),
    )
}

fn in_project(project: &str, queue: &str) -> QueueRef {
    QueueRef {
        project: project.to_string(),
        queue: queue.to_string(),
    }
}

#[tokio::test]
async fn one_projects_queues_spread_over_the_masters() {
    let Some(store) = cluster().await else {
        return;
    };
    let project = format!("spread-{}", uuid::Uuid::new_v4());
    for n in 0..24 {
        let q = in_project(&project, &format!("q{n}"));
        store.post_messages(&q, "c", &[message(300)]).await.unwrap();
    }
    let nodes = store.nodes().await.unwrap();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    let mut holding = 0;
    for node in &nodes {
        assert!(matches!(node, Node::Master { .. }));
        let mut scan = redis::cmd("SCAN");
        scan.arg(0)
            .arg("MATCH")
            .arg(format!("zq:{{{}:{project}:*", project.len()))
            .arg("COUNT")
            .arg(10_000);
        let (_, keys): (u64, Vec<String>) = store.query_on(node, &scan).await.unwrap();
        if !keys.is_empty() {
            holding += 1;
        }
    }
    // 24 queues all on one of 3 masters would be a chance of 1 in 3^23.
    assert!(holding > 1, "one project's queues all on one master");
}

#[tokio::test]
async fn an_interrupted_dead_letter_move_is_finished_without_a_duplicate() {
    let Some(store) = cluster().await else {
        return;
    };
    let project = format!("dlq-{}", uuid::Uuid::new_v4());
    let (q, dlq) = (
        in_project(&project, "work"),
        in_project(&project, "work-dlq"),
    );
    let metadata = r#"{"_max_claim_count": 1, "_dead_letter_queue": "work-dlq"}"#;
    store.create_queue(&q, metadata).await.unwrap();
    let ids = store
        .post_messages(&q, "c", &[message(300), message(300)])
        .await
        .unwrap();
    let first = store.claim_for(&q, 60, 60, 10).await.unwrap().unwrap();
    store.delete_claim(&q, &first.id).await.unwrap();
    // Claimed once already: the next claim moves both to the dead letter queue, and
    // claims nothing.
    let moving = store.claim_for(&q, 60, 60, 10).await.unwrap().unwrap();
    assert!(moving.id.is_empty() && moving.messages.is_empty());
    assert_eq!(moving.dead_letter_queue, "work-dlq");
    let (moved, _) = store.list_messages(&dlq, &everything()).await.unwrap();
    let moved: Vec<String> = moved.into_iter().map(|m| m.id).collect();
    assert_eq!(moved, ids);

    // A move cut short after the dead letter queue got the message, before it
    // left the parked set: the parked set still holds it.
    let (keys, dead) = (store.keys(&q), store.keys(&dlq));
    let packed: Vec<u8> = store
        .query(redis::cmd("HGET").arg(dead.queue()[7].clone()).arg(&ids[0]))
        .await
        .unwrap();
    let mut repark = redis::cmd("EVAL");
    repark
        .arg("return redis.call('ZADD', KEYS[1], 1, cmsgpack.pack(ARGV[1], ARGV[2]))")
        .arg(1)
        .arg(keys.parked())
        .arg(&ids[0])
        .arg(packed);
    let _: u64 = store.query(&repark).await.unwrap();
    store.move_parked(&keys, &dead).await.unwrap();

    let (after, _) = store.list_messages(&dlq, &everything()).await.unwrap();
    let after: Vec<String> = after.into_iter().map(|m| m.id).collect();
    assert_eq!(after, ids, "moved again");
    let parked: u64 = store
        .query(redis::cmd("ZCARD").arg(keys.parked()))
        .await
        .unwrap();
    assert_eq!(parked, 0);
}

#[tokio::test]
async fn the_expiry_sweep_visits_every_master() {
    let Some(store) = cluster().await else {
        return;
    };
    let project = format!("expiry-{}", uuid::Uuid::new_v4());
    let queues: Vec<_> = (0..6)
        .map(|n| in_project(&project, &format!("q{n}")))
        .collect();
    for q in &queues {
        store.post_messages(q, "c", &[message(1)]).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;

    let before = crate::metrics::event_total("redis", "expired");
    let expiring = |q: &QueueRef| {
        let key = store.keys(q).queue()[4].clone();
        let store = &store;
        async move {
            let n: u64 = store.query(redis::cmd("ZCARD").arg(key)).await.unwrap();
            n
        }
    };
    // The cluster is shared with other tests: sweep until these queues are clean
    // (each step visits at most a page of queues of one master).
    let mut left = queues.len() as u64;
    for _ in 0..200 {
        store.remove_expired_messages().await.unwrap();
        left = 0;
        for q in &queues {
            left += expiring(q).await;
        }
        if left == 0 {
            break;
        }
    }
    assert_eq!(left, 0, "the sweep did not reach every queue");
    assert!(crate::metrics::event_total("redis", "expired") >= before + queues.len() as u64);
}
