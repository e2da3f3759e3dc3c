//! Conformance: claims, their expiry, and the dead-letter move.

use std::collections::HashSet;
use std::sync::Arc;

use zaqar_proto::pb::NewMessage;
use zaqar_proto::ErrorCode;

use super::{
    code, fresh_queue, ids_of, json, listed_ids, listing, post, post_n, random_id, sibling,
    ClaimTerms, PAST_ONE_SECOND,
};
use crate::store::{ListParams, MessageStore};

fn short_lived(ttl: u32) -> NewMessage {
    NewMessage {
        ttl,
        delay: 0,
        body_json: r#"{"short": true}"#.into(),
    }
}

pub(crate) async fn claim_takes_up_to_limit_in_fifo_order(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("claims");
    assert!(store.claim_for(&q, 60, 60, 10).await.unwrap().is_none());
    let ids = post_n(&store, &q, 5).await;

    let first = store.claim_for(&q, 60, 60, 3).await.unwrap().unwrap();
    let claim_id = uuid::Uuid::parse_str(&first.id).expect("claim ids are UUIDs");
    assert_eq!(claim_id.get_version_num(), 4);
    assert_eq!((first.ttl, first.age), (60, 0));
    assert_eq!(ids_of(&first.messages), ids[..3]);
    assert!(first.messages.iter().all(|m| m.claim_id == first.id));
    assert_eq!(json(&first.messages[0].body_json), json(r#"{"n": 0}"#));

    let second = store.claim_for(&q, 60, 60, 3).await.unwrap().unwrap();
    assert_eq!(
        ids_of(&second.messages),
        ids[3..],
        "claimed ones are skipped"
    );
    assert_ne!(second.id, first.id);
    assert!(store.claim_for(&q, 60, 60, 3).await.unwrap().is_none());
}

pub(crate) async fn concurrent_claims_never_share_a_message(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("race");
    let batch: Vec<_> = (0..30).map(super::message).collect();
    let ids = store
        .post_messages(&q, super::CLIENT, &batch)
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (store, q) = (Arc::clone(&store), q.clone());
        tasks.push(tokio::spawn(async move {
            store.claim_for(&q, 60, 60, 5).await.unwrap()
        }));
    }
    let mut claimed = Vec::new();
    for task in tasks {
        if let Some(claim) = task.await.unwrap() {
            claimed.extend(ids_of(&claim.messages));
        }
    }
    let distinct: HashSet<_> = claimed.iter().cloned().collect();
    assert_eq!(
        distinct.len(),
        claimed.len(),
        "a message went to two claims"
    );
    assert_eq!(distinct, ids.into_iter().collect::<HashSet<_>>());
}

pub(crate) async fn get_update_and_delete_a_claim(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("claim-crud");
    let ids = vec![
        post(&store, &q, short_lived(60)).await.remove(0),
        post(&store, &q, short_lived(60)).await.remove(0),
    ];
    let claim = store.claim_for(&q, 60, 30, 10).await.unwrap().unwrap();

    let got = store.get_claim(&q, &claim.id).await.unwrap();
    assert_eq!((got.id.as_str(), got.ttl), (claim.id.as_str(), 60));
    assert!(got.age <= 1);
    assert_eq!(ids_of(&got.messages), ids);
    assert!(got.messages.iter().all(|m| m.claim_id == claim.id));

    store.renew_for(&q, &claim.id, 300, 60).await.unwrap();
    let renewed = store.get_claim(&q, &claim.id).await.unwrap();
    assert_eq!(renewed.ttl, 300);
    assert!(renewed.messages.iter().all(|m| m.ttl >= 360));

    let other = sibling(&q, "other");
    assert_eq!(
        code(store.get_claim(&other, &claim.id).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(store.get_claim(&q, &random_id()).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(store.renew_for(&q, &random_id(), 60, 60).await),
        ErrorCode::NotFound
    );

    store.delete_claim(&q, &claim.id).await.unwrap();
    assert_eq!(
        code(store.get_claim(&q, &claim.id).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(store.renew_for(&q, &claim.id, 60, 60).await),
        ErrorCode::NotFound
    );
    let (free, _) = store.list_messages(&q, &listing(10)).await.unwrap();
    assert_eq!(ids_of(&free), ids, "released messages are free again");
    assert!(free.iter().all(|m| m.claim_id.is_empty()));
    store.delete_claim(&q, &claim.id).await.unwrap();
    store.delete_claim(&q, &random_id()).await.unwrap();
}

pub(crate) async fn claim_expiry_frees_the_messages(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("claim-expiry");
    let ids = post_n(&store, &q, 1).await;
    let claim = store.claim_for(&q, 1, 0, 10).await.unwrap().unwrap();
    assert!(store.claim_for(&q, 60, 60, 10).await.unwrap().is_none());

    tokio::time::sleep(PAST_ONE_SECOND).await;
    assert_eq!(
        code(store.get_claim(&q, &claim.id).await),
        ErrorCode::NotFound
    );
    let (free, _) = store.list_messages(&q, &listing(10)).await.unwrap();
    assert_eq!(ids_of(&free), ids);
    assert!(free[0].claim_id.is_empty());
    let stats = store.queue_stats(&q).await.unwrap();
    assert_eq!((stats.claimed, stats.free), (0, 1));
    let again = store.claim_for(&q, 60, 60, 10).await.unwrap().unwrap();
    assert_eq!(ids_of(&again.messages), ids);
    assert_eq!(again.messages[0].claim_count, 2);
}

pub(crate) async fn claim_extends_the_message_ttl(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("claim-ttl");
    let ids = post(&store, &q, short_lived(60)).await;
    let long = post_n(&store, &q, 1).await;
    let claim = store.claim_for(&q, 100, 50, 10).await.unwrap().unwrap();

    let extended = &claim.messages[0];
    assert!((150..=151).contains(&extended.ttl), "ttl {}", extended.ttl);
    assert_eq!(claim.messages[1].ttl, 300, "a longer ttl is kept");
    let got = store.get_messages(&q, &ids).await.unwrap();
    assert!((150..=151).contains(&got[0].ttl));
    assert_eq!(got[0].claim_id, claim.id);
    assert_eq!(store.get_messages(&q, &long).await.unwrap()[0].ttl, 300);
}

pub(crate) async fn claim_count_grows_with_each_claim(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("claim-count");
    let ids = post_n(&store, &q, 1).await;
    for expected in 1..=3 {
        let claim = store.claim_for(&q, 60, 60, 1).await.unwrap().unwrap();
        assert_eq!(claim.messages[0].claim_count, expected);
        let got = store.get_messages(&q, &ids).await.unwrap();
        assert_eq!(got[0].claim_count, expected);
        store.delete_claim(&q, &claim.id).await.unwrap();
    }
}

pub(crate) async fn exhausted_messages_move_to_the_dead_letter_queue(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("work");
    let dlq = sibling(&q, "work-dlq");
    let metadata = r#"{"_max_claim_count": 2, "_dead_letter_queue": "work-dlq",
                       "_dead_letter_queue_messages_ttl": 120}"#;
    store.create_queue(&q, metadata).await.unwrap();
    let tired = post_n(&store, &q, 1).await;
    for _ in 0..2 {
        let claim = store.claim_for(&q, 60, 60, 10).await.unwrap().unwrap();
        assert_eq!(ids_of(&claim.messages), tired);
        assert_eq!(claim.dead_letter_queue, "", "nothing moved yet");
        store.delete_claim(&q, &claim.id).await.unwrap();
    }
    let fresh = post_n(&store, &q, 1).await;

    let counted = crate::metrics::dead_lettered_total();
    let claim = store.claim_for(&q, 60, 60, 10).await.unwrap().unwrap();
    assert_eq!(
        ids_of(&claim.messages),
        fresh,
        "the exhausted one is not claimed"
    );
    assert_eq!(
        claim.dead_letter_queue, "work-dlq",
        "the claim names where it moved"
    );
    // Counted by the store (other suites running meanwhile may add theirs).
    assert!(crate::metrics::dead_lettered_total() > counted);
    let all = ListParams {
        include_claimed: true,
        ..listing(10)
    };
    assert_eq!(listed_ids(&store, &q, all).await, fresh);
    let (moved, _) = store.list_messages(&dlq, &listing(10)).await.unwrap();
    assert_eq!(ids_of(&moved), tired);
    assert_eq!(moved[0].ttl, 120);
    assert_eq!(json(&moved[0].body_json), json(r#"{"n": 0}"#));
    assert!(moved[0].claim_id.is_empty());
    assert_eq!(
        moved[0].dead_letter_source, q.queue,
        "it knows where it came from"
    );
    assert!(store.claim_for(&q, 60, 60, 10).await.unwrap().is_none());
    // A claim on the dead letter queue shows it too; posted messages have none.
    let from_dlq = store.claim_for(&dlq, 60, 60, 10).await.unwrap().unwrap();
    assert_eq!(from_dlq.messages[0].dead_letter_source, q.queue);
    store.delete_claim(&dlq, &from_dlq.id).await.unwrap();
    assert_eq!(claim.messages[0].dead_letter_source, "");

    // A claim that only moves messages claims nothing and names the dead letter queue.
    store.delete_claim(&q, &claim.id).await.unwrap();
    let again = store.claim_for(&q, 60, 60, 10).await.unwrap().unwrap();
    store.delete_claim(&q, &again.id).await.unwrap();
    let emptied = store.claim_for(&q, 60, 60, 10).await.unwrap().unwrap();
    assert!(
        emptied.id.is_empty() && emptied.messages.is_empty(),
        "{emptied:?}"
    );
    assert_eq!(emptied.dead_letter_queue, "work-dlq");
    let (moved, _) = store.list_messages(&dlq, &listing(10)).await.unwrap();
    assert_eq!(moved.len(), 2);
    assert!(store.claim_for(&q, 60, 60, 10).await.unwrap().is_none());
}
