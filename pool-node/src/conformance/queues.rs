//! Conformance: queues, stats, purge, project isolation and health.

use std::sync::Arc;
use std::time::Duration;

use zaqar_proto::pb::{NewMessage, QueueRef};
use zaqar_proto::ErrorCode;

use super::{
    code, empty_message, fresh_queue, ids_of, json, listed_ids, listing, post, post_n, sibling,
    subscribe, ClaimTerms, CLIENT,
};
use crate::store::{MessageStore, Purge};

pub(crate) async fn queue_lifecycle(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("orders");
    assert_eq!(store.get_queue(&q).await.unwrap(), None);
    assert!(store.create_queue(&q, r#"{"a": 1}"#).await.unwrap());
    assert!(!store.create_queue(&q, r#"{"a": 2}"#).await.unwrap());
    let metadata = store
        .get_queue(&q)
        .await
        .unwrap()
        .expect("the queue exists");
    assert_eq!(
        json(&metadata),
        json(r#"{"a": 1}"#),
        "create keeps metadata"
    );

    store
        .set_queue_metadata(&q, r#"{"b": [1, 2], "_default_message_ttl": 60}"#)
        .await
        .unwrap();
    let metadata = store.get_queue(&q).await.unwrap().unwrap();
    assert_eq!(
        json(&metadata),
        json(r#"{"b": [1, 2], "_default_message_ttl": 60}"#)
    );

    let missing = sibling(&q, "missing");
    assert_eq!(
        code(store.set_queue_metadata(&missing, "{}").await),
        ErrorCode::NotFound
    );

    store.delete_queue(&q).await.unwrap();
    assert_eq!(store.get_queue(&q).await.unwrap(), None);
    store.delete_queue(&q).await.unwrap();
    store.delete_queue(&missing).await.unwrap();
}

pub(crate) async fn delete_queue_keeps_subscriptions(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("orders");
    store.create_queue(&q, "{}").await.unwrap();
    post_n(&store, &q, 2).await;
    let claim = store.claim_for(&q, 60, 60, 1).await.unwrap().unwrap();
    let sub = subscribe(&store, &q, "http://example.com/hook").await;

    store.delete_queue(&q).await.unwrap();
    assert!(listed_ids(&store, &q, listing(10)).await.is_empty());
    assert_eq!(store.queue_stats(&q).await.unwrap().total, 0);
    assert_eq!(
        code(store.get_claim(&q, &claim.id).await),
        ErrorCode::NotFound
    );
    let kept = store.get_subscription(&q, &sub).await.unwrap();
    assert_eq!(kept.subscriber, "http://example.com/hook");
}

pub(crate) async fn post_creates_the_queue(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("implicit");
    let ids = post_n(&store, &q, 1).await;
    assert_eq!(ids.len(), 1);
    let id = uuid::Uuid::parse_str(&ids[0]).expect("message ids are UUIDs");
    assert_eq!(id.get_version_num(), 4);
    let metadata = store.get_queue(&q).await.unwrap().expect("created by post");
    assert_eq!(json(&metadata), json("{}"));
}

pub(crate) async fn stats_count_claimed_free_and_delayed(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("stats");
    let empty = store.queue_stats(&q).await.unwrap();
    assert_eq!(
        (empty.claimed, empty.free, empty.delayed, empty.total),
        (0, 0, 0, 0)
    );
    assert!(empty.oldest.is_none() && empty.newest.is_none());

    let mut ids = post_n(&store, &q, 2).await;
    ids.extend(post(&store, &q, empty_message(300, 60)).await);
    store.claim_for(&q, 60, 60, 1).await.unwrap().unwrap();

    let stats = store.queue_stats(&q).await.unwrap();
    assert_eq!(stats.claimed, 1);
    assert_eq!(stats.free, 2, "free counts the delayed message");
    assert_eq!(stats.delayed, 1);
    assert_eq!(stats.total, 3);
    let oldest = stats.oldest.expect("an oldest message");
    let newest = stats.newest.expect("a newest message");
    assert_eq!(oldest.id, ids[0]);
    assert_eq!(newest.id, ids[2]);
    assert!(oldest.age <= 1 && oldest.created_ms <= newest.created_ms);
}

/// (total, claimed, delayed, free) of the queue's stats.
async fn counted(store: &Arc<dyn MessageStore>, q: &QueueRef) -> (u64, u64, u64, u64) {
    let stats = store.queue_stats(q).await.unwrap();
    (stats.total, stats.claimed, stats.delayed, stats.free)
}

pub(crate) async fn stats_follow_claims_and_delays_that_end_and_messages_that_expire(
    store: Arc<dyn MessageStore>,
) {
    let q = fresh_queue("stats-ends");
    let post_some = |messages: Vec<NewMessage>| {
        let (store, q) = (Arc::clone(&store), q.clone());
        async move { store.post_messages(&q, CLIENT, &messages).await.unwrap() }
    };
    let first = post_some(vec![empty_message(300, 0); 3]).await;
    post_some(vec![empty_message(300, 1); 2]).await; // delayed for a second
    post_some(vec![empty_message(1, 0); 2]).await; // expire in a second
    post_some(vec![empty_message(300, 60)]).await; // delayed for a minute
    post_some(vec![empty_message(300, 0); 2]).await;
    let ending = store.claim_for(&q, 1, 0, 2).await.unwrap().unwrap();
    let held = store.claim_for(&q, 60, 60, 1).await.unwrap().unwrap();
    assert_eq!(ids_of(&ending.messages), first[..2]);
    assert_eq!(counted(&store, &q).await, (10, 3, 3, 7));

    // Without any write: the short claim ends, the short delays pass, two expire.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(counted(&store, &q).await, (8, 1, 1, 7));
    let all = store.claim_for(&q, 60, 60, 10).await.unwrap().unwrap();
    assert_eq!(all.messages.len(), 6);
    assert_eq!(counted(&store, &q).await, (8, 7, 1, 1));

    store
        .delete_message(&q, &held.messages[0].id, Some(&held.id))
        .await
        .unwrap();
    store.delete_claim(&q, &all.id).await.unwrap();
    assert_eq!(counted(&store, &q).await, (7, 0, 1, 7));
    assert_eq!(store.pop_messages(&q, 2).await.unwrap().len(), 2);
    assert_eq!(counted(&store, &q).await, (5, 0, 1, 5));
    let claim = store.claim_for(&q, 60, 60, 1).await.unwrap().unwrap();
    let taken = ids_of(&claim.messages);
    store.delete_messages(&q, &taken, &[]).await.unwrap();
    assert_eq!(counted(&store, &q).await, (4, 0, 1, 4));
    store.purge_queue(&q, Purge::MESSAGES).await.unwrap();
    assert_eq!(counted(&store, &q).await, (0, 0, 0, 0));
}

/// Stats count the bytes of the bodies a queue holds, through every way messages come
/// and go: posts, deletes (with and without claims, a message named twice), pops,
/// claims, dead lettering, expiry and purges.
pub(crate) async fn stats_count_the_bytes_of_the_bodies(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("bytes");
    let dlq = sibling(&q, "bytes-dlq");
    let metadata = r#"{"_max_claim_count": 1, "_dead_letter_queue": "bytes-dlq"}"#;
    store.create_queue(&q, metadata).await.unwrap();
    let bytes = |q: &QueueRef| {
        let (store, q) = (Arc::clone(&store), q.clone());
        async move { store.queue_stats(&q).await.unwrap().bytes }
    };
    let text = |text: &str, ttl: u32| NewMessage {
        ttl,
        delay: 0,
        body_json: serde_json::to_string(text).unwrap(),
    };
    // As JSON: "héllo" is 8 bytes (é is 2), "0123456789" 12, "x" and "y" 3.
    let posted = [
        text("héllo", 300),
        text("0123456789", 300),
        text("x", 300),
        text("y", 300),
    ];
    let ids = store.post_messages(&q, CLIENT, &posted).await.unwrap();
    assert_eq!(bytes(&q).await, 26);
    // A message named twice, or deleted again, counts out once.
    let twice = [ids[1].clone(), ids[1].clone()];
    store.delete_messages(&q, &twice, &[]).await.unwrap();
    store.delete_message(&q, &ids[1], None).await.unwrap();
    assert_eq!(bytes(&q).await, 14);
    assert_eq!(store.pop_messages(&q, 1).await.unwrap().len(), 1);
    assert_eq!(bytes(&q).await, 6, "the oldest, héllo, popped");
    // Claims change nothing; a message claimed its most times moves away with its bytes.
    let claim = store.claim_for(&q, 60, 60, 1).await.unwrap().unwrap();
    assert_eq!(bytes(&q).await, 6);
    store.delete_claim(&q, &claim.id).await.unwrap();
    let next = store.claim_for(&q, 60, 60, 10).await.unwrap().unwrap();
    assert_eq!(ids_of(&next.messages), [ids[3].clone()]);
    assert_eq!((bytes(&q).await, bytes(&dlq).await), (3, 3));
    store
        .delete_message(&q, &ids[3], Some(&next.id))
        .await
        .unwrap();
    assert_eq!(bytes(&q).await, 0);
    // Expired messages count no more once their time has passed.
    store
        .post_messages(&q, CLIENT, &[text("soon", 1), text("later", 300)])
        .await
        .unwrap();
    assert_eq!(bytes(&q).await, 13);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(bytes(&q).await, 7);
    store.purge_queue(&q, Purge::MESSAGES).await.unwrap();
    assert_eq!((bytes(&q).await, bytes(&dlq).await), (0, 3));
    store
        .post_messages(&q, CLIENT, &[text("again", 300)])
        .await
        .unwrap();
    assert_eq!(bytes(&q).await, 7, "counted from nothing after a purge");
    // A claimed message named twice with its claim counts out once (another stays: a
    // queue left empty counts from nothing anyway).
    store
        .post_messages(&q, CLIENT, &[text("x", 300)])
        .await
        .unwrap();
    let claim = store.claim_for(&q, 60, 60, 1).await.unwrap().unwrap();
    let claimed = ids_of(&claim.messages);
    let twice = [claimed[0].clone(), claimed[0].clone()];
    store
        .delete_messages(&q, &twice, std::slice::from_ref(&claim.id))
        .await
        .unwrap();
    assert_eq!(bytes(&q).await, 3, "the claimed message named twice");
}

pub(crate) async fn purge_removes_messages_or_subscriptions(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("purge");
    post_n(&store, &q, 3).await;
    let sub = subscribe(&store, &q, "http://example.com/hook").await;

    store.purge_queue(&q, Purge::MESSAGES).await.unwrap();
    assert_eq!(store.queue_stats(&q).await.unwrap().total, 0);
    assert!(store.get_subscription(&q, &sub).await.is_ok());
    assert!(
        store.get_queue(&q).await.unwrap().is_some(),
        "the queue stays"
    );

    post_n(&store, &q, 2).await;
    store.purge_queue(&q, Purge::SUBSCRIPTIONS).await.unwrap();
    assert_eq!(store.queue_stats(&q).await.unwrap().total, 2);
    assert_eq!(
        code(store.get_subscription(&q, &sub).await),
        ErrorCode::NotFound
    );
    let (subs, _) = store.list_subscriptions(&q, "", 10).await.unwrap();
    assert!(subs.is_empty());
}

pub(crate) async fn projects_are_isolated(store: Arc<dyn MessageStore>) {
    let mine = fresh_queue("shared-name");
    let theirs = fresh_queue("shared-name");
    store
        .create_queue(&mine, r#"{"mine": true}"#)
        .await
        .unwrap();
    let ids = post_n(&store, &mine, 2).await;
    store
        .create_subscription(&mine, "http://example.com/hook", 3600, "{}", true)
        .await
        .unwrap();

    assert_eq!(store.get_queue(&theirs).await.unwrap(), None);
    assert!(listed_ids(&store, &theirs, listing(10)).await.is_empty());
    assert!(store.get_messages(&theirs, &ids).await.unwrap().is_empty());
    assert_eq!(store.queue_stats(&theirs).await.unwrap().total, 0);
    assert!(store
        .claim_for(&theirs, 60, 60, 10)
        .await
        .unwrap()
        .is_none());
    assert!(store.pop_messages(&theirs, 10).await.unwrap().is_empty());
    let (subs, _) = store.list_subscriptions(&theirs, "", 10).await.unwrap();
    assert!(subs.is_empty());
    store.delete_messages(&theirs, &ids, &[]).await.unwrap();
    store.delete_queue(&theirs).await.unwrap();

    assert_eq!(listed_ids(&store, &mine, listing(10)).await, ids);
}

pub(crate) async fn health_is_ok(store: Arc<dyn MessageStore>) {
    store.health().await.unwrap();
}
