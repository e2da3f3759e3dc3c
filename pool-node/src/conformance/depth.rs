//! Conformance: free, claimed and delayed messages interleaved, as in a deep
//! task queue. Stores index free messages apart from claimed and delayed ones
//! (so that a claim's cost does not grow with the messages in flight); these
//! cases check that messages move between those states in FIFO order.

use std::sync::Arc;

use zaqar_proto::pb::NewMessage;

use super::{
    fresh_queue, ids_of, listed_ids, listing, message, sibling, ClaimTerms, CLIENT, PAST_ONE_SECOND,
};
use crate::store::{ListParams, MessageStore};

/// Posts `count` messages `{"n": i}` in requests of up to 20, as [`CLIENT`].
async fn post_batches(
    store: &Arc<dyn MessageStore>,
    queue: &zaqar_proto::pb::QueueRef,
    count: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for start in (0..count).step_by(20) {
        let batch: Vec<_> = (start..count.min(start + 20)).map(message).collect();
        ids.extend(store.post_messages(queue, CLIENT, &batch).await.unwrap());
    }
    ids
}

/// Claims `limit` messages for `ttl` seconds and returns their ids.
async fn claim(
    store: &Arc<dyn MessageStore>,
    queue: &zaqar_proto::pb::QueueRef,
    ttl: u32,
    limit: u32,
) -> Vec<String> {
    match store.claim_for(queue, ttl, 0, limit).await.unwrap() {
        Some(claim) => ids_of(&claim.messages),
        None => Vec::new(),
    }
}

pub(crate) async fn claims_interleave_with_expiring_claims(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("interleaved");
    let ids = post_batches(&store, &q, 8).await;
    // Short claims on 0-1 and 4-5, a long one on 2-3; 6-7 stay free.
    assert_eq!(claim(&store, &q, 1, 2).await, ids[0..2]);
    let long = store.claim_for(&q, 60, 0, 2).await.unwrap().unwrap();
    assert_eq!(ids_of(&long.messages), ids[2..4]);
    assert_eq!(claim(&store, &q, 1, 2).await, ids[4..6]);
    assert_eq!(listed_ids(&store, &q, listing(10)).await, ids[6..8]);

    tokio::time::sleep(PAST_ONE_SECOND).await;
    let free = [&ids[0..2], &ids[4..8]].concat();
    assert_eq!(
        listed_ids(&store, &q, listing(10)).await,
        free,
        "ended claims free their messages in place"
    );
    let again = store.claim_for(&q, 60, 0, 3).await.unwrap().unwrap();
    assert_eq!(ids_of(&again.messages), [&ids[0..2], &ids[4..5]].concat());
    assert_eq!(
        again
            .messages
            .iter()
            .map(|m| m.claim_count)
            .collect::<Vec<_>>(),
        vec![2, 2, 2]
    );

    store.delete_claim(&q, &long.id).await.unwrap();
    assert_eq!(
        claim(&store, &q, 60, 10).await,
        [&ids[2..4], &ids[5..8]].concat(),
        "released messages come first again"
    );
    let with_claimed = ListParams {
        include_claimed: true,
        ..listing(5)
    };
    let (page, marker) = store.list_messages(&q, &with_claimed).await.unwrap();
    assert_eq!(ids_of(&page), ids[0..5]);
    let rest = ListParams {
        marker,
        ..with_claimed
    };
    assert_eq!(listed_ids(&store, &q, rest).await, ids[5..8]);
    assert!(store.pop_messages(&q, 10).await.unwrap().is_empty());
    let stats = store.queue_stats(&q).await.unwrap();
    assert_eq!((stats.total, stats.claimed, stats.free), (8, 8, 0));
}

pub(crate) async fn delayed_messages_become_free_in_order(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("delayed-order");
    let delayed = |n: usize| NewMessage {
        delay: 1,
        ..message(n)
    };
    let batch = [delayed(0), message(1), delayed(2), message(3), delayed(4)];
    let ids = store.post_messages(&q, CLIENT, &batch).await.unwrap();
    assert_eq!(claim(&store, &q, 60, 1).await, ids[1..2]);
    let with_delayed = ListParams {
        include_delayed: true,
        ..listing(10)
    };
    assert_eq!(
        listed_ids(&store, &q, with_delayed.clone()).await,
        [&ids[0..1], &ids[2..5]].concat()
    );
    assert_eq!(listed_ids(&store, &q, listing(10)).await, ids[3..4]);

    tokio::time::sleep(PAST_ONE_SECOND).await;
    assert_eq!(
        listed_ids(&store, &q, listing(10)).await,
        [&ids[0..1], &ids[2..5]].concat()
    );
    let popped = store.pop_messages(&q, 2).await.unwrap();
    assert_eq!(ids_of(&popped), [&ids[0..1], &ids[2..3]].concat());
    assert_eq!(claim(&store, &q, 60, 10).await, ids[3..5]);
    let stats = store.queue_stats(&q).await.unwrap();
    assert_eq!((stats.total, stats.claimed, stats.delayed), (3, 3, 0));
}

pub(crate) async fn dead_lettering_at_depth_keeps_fifo(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("deep-work");
    let dlq = sibling(&q, "deep-work-dlq");
    let metadata = r#"{"_max_claim_count": 1, "_dead_letter_queue": "deep-work-dlq"}"#;
    store.create_queue(&q, metadata).await.unwrap();
    let ids = post_batches(&store, &q, 100).await;
    // 80 messages claimed once, in claims that end; 20 never claimed.
    for chunk in ids[..80].chunks(20) {
        assert_eq!(claim(&store, &q, 1, 20).await, chunk);
    }
    tokio::time::sleep(PAST_ONE_SECOND).await;

    assert_eq!(
        claim(&store, &q, 60, 20).await,
        ids[80..100],
        "exhausted messages are moved, not claimed"
    );
    let mut moved = Vec::new();
    let mut params = listing(20);
    loop {
        let (page, next) = store.list_messages(&dlq, &params).await.unwrap();
        if page.is_empty() {
            break;
        }
        moved.extend(ids_of(&page));
        params.marker = next;
    }
    assert_eq!(moved, ids[..80], "in their order");
    assert!(claim(&store, &q, 60, 20).await.is_empty());
    let stats = store.queue_stats(&q).await.unwrap();
    assert_eq!((stats.total, stats.claimed), (20, 20));
}
