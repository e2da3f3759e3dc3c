//! Conformance: subscriptions.

use std::collections::HashSet;
use std::sync::Arc;

use zaqar_proto::ErrorCode;

use super::{code, fresh_queue, json, random_id, sibling, subscribe, PAST_ONE_SECOND};
use crate::store::{MessageStore, SubscriptionUpdate};

const HOOK: &str = "http://example.com/hook";

pub(crate) async fn duplicate_subscriber_returns_the_existing_subscription(
    store: Arc<dyn MessageStore>,
) {
    let q = fresh_queue("subs");
    let (id, created) = store
        .create_subscription(&q, HOOK, 3600, r#"{"x": 1}"#, false)
        .await
        .unwrap();
    assert!(created);
    let uuid = uuid::Uuid::parse_str(&id).expect("subscription ids are UUIDs");
    assert_eq!(uuid.get_version_num(), 4);

    let again = store
        .create_subscription(&q, HOOK, 60, "{}", true)
        .await
        .unwrap();
    assert_eq!(again, (id.clone(), false));
    let got = store.get_subscription(&q, &id).await.unwrap();
    assert_eq!(got.id, id);
    assert_eq!(got.source, "subs");
    assert_eq!(got.subscriber, HOOK);
    assert_eq!(got.ttl, 3600, "the duplicate changed nothing");
    assert!(got.age <= 1);
    assert_eq!(json(&got.options_json), json(r#"{"x": 1}"#));
    assert!(!got.confirmed);

    let (other, created) = store
        .create_subscription(&q, "mailto:ops@example.com", 3600, "{}", true)
        .await
        .unwrap();
    assert!(created && other != id);
    let (elsewhere, created) = store
        .create_subscription(&sibling(&q, "other"), HOOK, 3600, "{}", true)
        .await
        .unwrap();
    assert!(created && elsewhere != id);
    assert_eq!(
        code(store.get_subscription(&q, &random_id()).await),
        ErrorCode::NotFound
    );
}

pub(crate) async fn subscriptions_page_with_the_marker(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("subs-pages");
    let mut created = HashSet::new();
    for n in 0..5 {
        let subscriber = format!("http://example.com/hook/{n}");
        let id = subscribe(&store, &q, &subscriber).await;
        created.insert(id);
    }
    let mut marker = String::new();
    let mut pages = Vec::new();
    let mut seen = Vec::new();
    loop {
        let (page, next) = store.list_subscriptions(&q, &marker, 2).await.unwrap();
        if page.is_empty() {
            break;
        }
        pages.push(page.len());
        seen.extend(page.into_iter().map(|s| s.id));
        marker = next;
    }
    assert_eq!(pages, vec![2, 2, 1]);
    assert_eq!(seen.len(), 5, "no subscription listed twice");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), created);
}

pub(crate) async fn update_subscription_rejects_a_duplicate_subscriber(
    store: Arc<dyn MessageStore>,
) {
    let q = fresh_queue("subs-update");
    let a = subscribe(&store, &q, "http://a.example.com").await;
    store
        .create_subscription(&q, "http://b.example.com", 3600, "{}", true)
        .await
        .unwrap();

    let to_b = SubscriptionUpdate {
        subscriber: Some("http://b.example.com".into()),
        ..SubscriptionUpdate::default()
    };
    assert_eq!(
        code(store.update_subscription(&q, &a, &to_b).await),
        ErrorCode::Conflict
    );

    let change = SubscriptionUpdate {
        subscriber: Some("http://c.example.com".into()),
        ttl: Some(7200),
        options_json: Some(r#"{"y": 2}"#.into()),
    };
    store.update_subscription(&q, &a, &change).await.unwrap();
    let got = store.get_subscription(&q, &a).await.unwrap();
    assert_eq!(got.subscriber, "http://c.example.com");
    assert_eq!(got.ttl, 7200);
    assert_eq!(json(&got.options_json), json(r#"{"y": 2}"#));
    store
        .update_subscription(&q, &a, &SubscriptionUpdate::default())
        .await
        .unwrap();
    let unchanged = store.get_subscription(&q, &a).await.unwrap();
    assert_eq!(
        (unchanged.subscriber, unchanged.ttl, unchanged.options_json),
        (got.subscriber, got.ttl, got.options_json)
    );

    let (reused, created) = store
        .create_subscription(&q, "http://a.example.com", 3600, "{}", true)
        .await
        .unwrap();
    assert!(created && reused != a, "the old subscriber is free again");
    assert_eq!(
        code(store.update_subscription(&q, &random_id(), &change).await),
        ErrorCode::NotFound
    );

    store.delete_subscription(&q, &a).await.unwrap();
    assert_eq!(
        code(store.get_subscription(&q, &a).await),
        ErrorCode::NotFound
    );
    store.delete_subscription(&q, &a).await.unwrap();
}

pub(crate) async fn confirm_subscription(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("subs-confirm");
    let (id, _) = store
        .create_subscription(&q, HOOK, 3600, "{}", false)
        .await
        .unwrap();
    store.confirm_subscription(&q, &id, true).await.unwrap();
    assert!(store.get_subscription(&q, &id).await.unwrap().confirmed);
    store.confirm_subscription(&q, &id, false).await.unwrap();
    assert!(!store.get_subscription(&q, &id).await.unwrap().confirmed);
    assert_eq!(
        code(store.confirm_subscription(&q, &random_id(), true).await),
        ErrorCode::NotFound
    );
}

pub(crate) async fn subscriptions_expire(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("subs-expiry");
    let (id, _) = store
        .create_subscription(&q, HOOK, 1, "{}", true)
        .await
        .unwrap();
    tokio::time::sleep(PAST_ONE_SECOND).await;

    assert_eq!(
        code(store.get_subscription(&q, &id).await),
        ErrorCode::NotFound
    );
    let (listed, _) = store.list_subscriptions(&q, "", 10).await.unwrap();
    assert!(listed.is_empty());
    assert_eq!(
        code(store.confirm_subscription(&q, &id, true).await),
        ErrorCode::NotFound
    );
    let (new_id, created) = store
        .create_subscription(&q, HOOK, 3600, "{}", true)
        .await
        .unwrap();
    assert!(created && new_id != id);
}
