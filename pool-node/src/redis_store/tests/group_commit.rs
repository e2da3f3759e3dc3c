//! Group commit: concurrent posts and deletes on one queue go to Redis in few
//! script calls, and each caller still gets its own answer, as if alone.
//! The tests run on the current-thread runtime, so spawned calls start only
//! when the test awaits: the first becomes the call in flight and the others
//! wait for it, deterministically.

use std::collections::HashMap;

use tokio::task::JoinHandle;
use zaqar_proto::pb::NewMessage;
use zaqar_proto::{ErrorCode, ZaqarError};

use super::{everything, queue, TestRedis};
use crate::conformance::ClaimTerms;
use crate::store::prelude::*;

/// How many times Redis ran a script since the last reset (not counting the
/// first call of a script Redis did not have yet, refused with NOSCRIPT).
async fn script_calls(redis: &TestRedis) -> u64 {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    stats
        .lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:"))
        .map(|fields| {
            let field = |name: &str| -> u64 {
                fields
                    .split(',')
                    .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                    .unwrap()
                    .parse()
                    .unwrap()
            };
            field("calls") - field("failed_calls")
        })
        .unwrap_or(0)
}

async fn reset_stats(redis: &TestRedis) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
}

/// The answer of a spawned call; a call left waiting fails the test instead of hanging it.
async fn answered<T>(call: JoinHandle<T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(5), call)
        .await
        .expect("a call was left waiting")
        .expect("a call panicked")
}

fn body(n: usize, part: usize) -> NewMessage {
    NewMessage {
        ttl: 300,
        delay: 0,
        body_json: format!("{{\"post\":{n},\"part\":{part}}}"),
    }
}

#[tokio::test]
async fn concurrent_posts_share_script_calls_and_keep_their_own_ids() {
    let Some((redis, store)) = TestRedis::with_store().await else {
        return;
    };
    let q = queue("batched-posts");
    reset_stats(&redis).await;
    let posts: Vec<JoinHandle<_>> = (0..60)
        .map(|n| {
            let (store, q) = (store.clone(), q.clone());
            tokio::spawn(async move {
                let new: Vec<_> = (0..1 + n % 3).map(|part| body(n, part)).collect();
                let client = format!("client-{n}");
                (n, store.post_messages(&q, &client, &new).await)
            })
        })
        .collect();
    let mut posted = HashMap::new();
    for post in posts {
        let (n, ids) = answered(post).await;
        let ids = ids.unwrap();
        assert_eq!(ids.len(), 1 + n % 3);
        for (part, id) in ids.into_iter().enumerate() {
            posted.insert(id, (n, part));
        }
    }
    let calls = script_calls(&redis).await;
    // One alone, then batches of at most 32.
    assert_eq!(calls, 3, "60 concurrent posts took {calls} script calls");

    let ids: Vec<String> = posted.keys().cloned().collect();
    let stored = store.get_messages(&q, &ids).await.unwrap();
    assert_eq!(stored.len(), posted.len());
    for message in stored {
        let (n, part) = posted[&message.id];
        assert_eq!(message.body_json, body(n, part).body_json);
    }
    // FIFO holds within each post, and the posts' order is one of arrival.
    let (listed, _) = store
        .list_messages(
            &q,
            &crate::store::ListParams {
                limit: 200,
                ..everything()
            },
        )
        .await
        .unwrap();
    let order: Vec<(usize, usize)> = listed.iter().map(|m| posted[&m.id]).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "messages listed out of their posts' order");
}

#[tokio::test]
async fn a_refused_delete_in_a_batch_refuses_only_itself() {
    let Some((redis, store)) = TestRedis::with_store().await else {
        return;
    };
    let q = queue("batched-deletes");
    let new: Vec<_> = (0..12).map(|n| body(n, 0)).collect();
    let ids = store.post_messages(&q, "producer", &new).await.unwrap();
    let claim = store.claim_for(&q, 300, 60, 6).await.unwrap().unwrap();
    let claimed: Vec<String> = claim.messages.iter().map(|m| m.id.clone()).collect();
    let free: Vec<String> = ids
        .iter()
        .filter(|id| !claimed.contains(id))
        .cloned()
        .collect();
    assert_eq!((claimed.len(), free.len()), (6, 6));

    reset_stats(&redis).await;
    // The first delete runs alone; the others wait and go as one batch.
    let cases: Vec<(String, Option<String>, Option<ErrorCode>)> = vec![
        (free[0].clone(), None, None),
        (claimed[0].clone(), Some(claim.id.clone()), None),
        (claimed[1].clone(), None, Some(ErrorCode::Forbidden)),
        (
            claimed[2].clone(),
            Some("no-such-claim".into()),
            Some(ErrorCode::BadRequest),
        ),
        (
            free[1].clone(),
            Some(claim.id.clone()),
            Some(ErrorCode::BadRequest),
        ),
        (claimed[3].clone(), Some(claim.id.clone()), None),
        (free[2].clone(), None, None),
        (free[0].clone(), None, None),
    ];
    let deletes: Vec<JoinHandle<Result<(), ZaqarError>>> = cases
        .iter()
        .map(|(id, claim_id, _)| {
            let (store, q, id, claim_id) = (store.clone(), q.clone(), id.clone(), claim_id.clone());
            tokio::spawn(async move { store.delete_message(&q, &id, claim_id.as_deref()).await })
        })
        .collect();
    for ((id, _, expected), delete) in cases.iter().zip(deletes) {
        let answer = answered(delete).await;
        assert_eq!(answer.err().map(|e| e.code), *expected, "deleting {id}");
    }
    assert_eq!(script_calls(&redis).await, 2);

    let left = store.get_messages(&q, &ids).await.unwrap();
    let mut left: Vec<String> = left.into_iter().map(|m| m.id).collect();
    left.sort();
    let mut expected: Vec<String> = ids
        .iter()
        .filter(|id| ![&free[0], &free[2], &claimed[0], &claimed[3]].contains(id))
        .cloned()
        .collect();
    expected.sort();
    assert_eq!(left, expected);
}

#[tokio::test]
async fn a_caller_going_away_leaves_the_waiting_calls_answered() {
    let Some((_redis, store)) = TestRedis::with_store().await else {
        return;
    };
    let q = queue("abandoned");
    let first = {
        let (store, q) = (store.clone(), q.clone());
        tokio::spawn(async move { store.post_messages(&q, "gone", &[body(0, 0)]).await })
    };
    // Lets the first post start its script call, then queues more behind it.
    tokio::task::yield_now().await;
    let waiting: Vec<JoinHandle<_>> = (1..6)
        .map(|n| {
            let (store, q) = (store.clone(), q.clone());
            tokio::spawn(async move { store.post_messages(&q, "stays", &[body(n, 0)]).await })
        })
        .collect();
    tokio::task::yield_now().await;
    first.abort();
    let mut posted = Vec::new();
    for post in waiting {
        posted.extend(answered(post).await.unwrap());
    }
    let stored = store.get_messages(&q, &posted).await.unwrap();
    assert_eq!(stored.len(), 5);
}
