//! Conformance: the notifier's delivery cursors and the list of subscribed queues.

use std::sync::Arc;
use std::time::Duration;

use super::{fresh_queue, listed_ids, listing, post_n, random_id, sibling, subscribe};
use crate::store::{ListParams, MessageStore, Purge};

const HOOK: &str = "http://example.com/hook";

/// A listing for the notifier: every live message after `marker`.
fn after(marker: &str) -> ListParams {
    ListParams {
        marker: marker.to_string(),
        include_claimed: true,
        include_delayed: true,
        ..listing(100)
    }
}

pub(crate) async fn delivery_cursors_resume_listings(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("cursors");
    let id = subscribe(&store, &q, HOOK).await;
    assert_eq!(store.delivery_cursor(&q, &id).await.unwrap(), None);

    post_n(&store, &q, 2).await;
    let end = store.reset_delivery_cursor(&q, &id).await.unwrap();
    assert_eq!(
        store.delivery_cursor(&q, &id).await.unwrap(),
        Some(end.clone())
    );
    assert!(listed_ids(&store, &q, after(&end)).await.is_empty());

    let posted = post_n(&store, &q, 3).await;
    assert_eq!(listed_ids(&store, &q, after(&end)).await, posted);
    let (first, marker) = store
        .list_messages(
            &q,
            &ListParams {
                limit: 1,
                ..after(&end)
            },
        )
        .await
        .unwrap();
    assert_eq!(first[0].id, posted[0]);
    store.set_delivery_cursor(&q, &id, &marker).await.unwrap();
    let stored = store.delivery_cursor(&q, &id).await.unwrap().unwrap();
    assert_eq!(listed_ids(&store, &q, after(&stored)).await, posted[1..]);

    // The end of a queue stays past messages deleted since.
    store.delete_messages(&q, &posted, &[]).await.unwrap();
    let end = store.reset_delivery_cursor(&q, &id).await.unwrap();
    let later = post_n(&store, &q, 1).await;
    assert_eq!(listed_ids(&store, &q, after(&end)).await, later);
}

pub(crate) async fn delivery_cursors_go_with_their_subscription(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("cursor-owner");
    let id = subscribe(&store, &q, HOOK).await;
    store.set_delivery_cursor(&q, &id, "7").await.unwrap();
    // The same id in another queue, or an unknown id, has no cursor and stores none.
    let elsewhere = sibling(&q, "elsewhere");
    assert_eq!(store.delivery_cursor(&elsewhere, &id).await.unwrap(), None);
    store
        .set_delivery_cursor(&elsewhere, &id, "9")
        .await
        .unwrap();
    assert_eq!(
        store.delivery_cursor(&q, &id).await.unwrap().as_deref(),
        Some("7")
    );
    let unknown = random_id();
    store.set_delivery_cursor(&q, &unknown, "1").await.unwrap();
    store.reset_delivery_cursor(&q, &unknown).await.unwrap();
    assert_eq!(store.delivery_cursor(&q, &unknown).await.unwrap(), None);

    store.delete_subscription(&q, &id).await.unwrap();
    assert_eq!(store.delivery_cursor(&q, &id).await.unwrap(), None);
    let (again, created) = store
        .create_subscription(&q, HOOK, 3600, "{}", true)
        .await
        .unwrap();
    assert!(created);
    assert_eq!(store.delivery_cursor(&q, &again).await.unwrap(), None);
    store.set_delivery_cursor(&q, &again, "3").await.unwrap();
    store.purge_queue(&q, Purge::SUBSCRIPTIONS).await.unwrap();
    assert_eq!(store.delivery_cursor(&q, &again).await.unwrap(), None);
}

pub(crate) async fn delivery_leases_have_one_holder_at_a_time(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("leases");
    let id = subscribe(&store, &q, HOOK).await;
    let long = Duration::from_secs(60);
    let take = |holder: &'static str, ttl: Duration| {
        let (store, q, id) = (store.clone(), q.clone(), id.clone());
        async move {
            store
                .take_delivery_lease(&q, &id, holder, ttl)
                .await
                .unwrap()
        }
    };
    assert!(take("a", long).await);
    assert!(!take("b", long).await, "a holds it");
    assert!(take("a", long).await, "a renews it");
    // Only the holder gives it up.
    store.release_delivery_lease(&q, &id, "b").await.unwrap();
    assert!(!take("b", long).await);
    store.release_delivery_lease(&q, &id, "a").await.unwrap();
    assert!(take("b", Duration::from_millis(300)).await);
    assert!(!take("a", long).await);
    // A lease that ran out is anyone's.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(take("a", long).await);

    // No lease on a subscription that is not there, and none left by a deleted one.
    assert!(!store
        .take_delivery_lease(&q, &random_id(), "a", long)
        .await
        .unwrap());
    let elsewhere = sibling(&q, "elsewhere");
    assert!(!store
        .take_delivery_lease(&elsewhere, &id, "a", long)
        .await
        .unwrap());
    store.delete_subscription(&q, &id).await.unwrap();
    assert!(!take("b", long).await);
}

pub(crate) async fn subscribed_queues_lists_every_project(store: Arc<dyn MessageStore>) {
    let a = fresh_queue("subscribed-a");
    let b = fresh_queue("subscribed-b");
    let quiet = sibling(&a, "quiet");
    store.create_queue(&quiet, "{}").await.unwrap();
    for q in [&a, &b] {
        store
            .create_subscription(q, HOOK, 3600, "{}", true)
            .await
            .unwrap();
    }
    let queues = store.subscribed_queues().await.unwrap();
    let has = |q: &zaqar_proto::pb::QueueRef| queues.iter().any(|found| found == q);
    assert!(has(&a) && has(&b), "{queues:?}");
    assert!(!has(&quiet));
}

/// A subscription outlives its queue; when the queue is deleted and re-created,
/// its cursor must not hide the new queue's messages (numbering goes on).
pub(crate) async fn a_recreated_queue_continues_after_old_cursors(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("recreated");
    let id = subscribe(&store, &q, HOOK).await;
    post_n(&store, &q, 3).await;
    let end = store.reset_delivery_cursor(&q, &id).await.unwrap();

    store.delete_queue(&q).await.unwrap();
    assert!(store.get_queue(&q).await.unwrap().is_none());
    store.create_queue(&q, "{}").await.unwrap();
    let fresh = post_n(&store, &q, 2).await;
    assert_eq!(listed_ids(&store, &q, after(&end)).await, fresh);
}
