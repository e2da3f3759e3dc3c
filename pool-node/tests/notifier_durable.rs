//! Durable delivery: a restarted pool-node resumes every subscription from its
//! stored cursor; subscriptions stop at their ttl; unconfirmed ones get nothing.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{config, document, free_port, queue, Pool, Receiver};
use tonic::Request;
use zaqar_pool_node::NotifierConfig;
use zaqar_proto::pb::pool_service_server::PoolService;
use zaqar_proto::pb::{ConfirmSubscriptionRequest, SubscriptionRef};

const WITHIN: Duration = Duration::from_secs(5);

/// Retries every second for 20 s: long enough to outlive a restart.
fn patient() -> serde_json::Value {
    json!({"_retry_policy": {"retries_with_no_delay": 0, "minimum_delay": 1, "maximum_delay": 1,
                             "minimum_delay_retries": 20, "maximum_delay_retries": 0}})
}

#[tokio::test]
async fn messages_posted_before_a_restart_are_delivered_after_it_in_order() {
    let pool = Pool::start(config()).await;
    let orders = queue("durable");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let mut other = Receiver::start("/other", &[]).await;
    pool.subscribe(&orders, &url, patient()).await;
    pool.subscribe(&orders, &other.url, json!({})).await;

    pool.post(&orders, &[json!({"n": 0}), json!({"n": 1})])
        .await;
    pool.post(&orders, &[json!({"n": 2})]).await;
    // The live subscriber is served while the other endpoint is down.
    for n in 0..3 {
        assert_eq!(
            other.next(WITHIN).await.json(),
            document("durable", json!({"n": n}))
        );
    }

    let pool = pool.restart().await;
    pool.post(&orders, &[json!({"n": 3})]).await;
    let mut receiver = Receiver::start_on(port, "/hook", &[]).await;
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let body = receiver.next(WITHIN).await.json();
        // At least once: a message may come twice, never out of order.
        if seen.last() != Some(&body) {
            seen.push(body);
        }
    }
    let expected: Vec<_> = (0..4)
        .map(|n| document("durable", json!({"n": n})))
        .collect();
    assert_eq!(seen[..], expected[..]);
    // The other subscriber had everything before the restart: only the new message.
    assert_eq!(
        other.next(WITHIN).await.json(),
        document("durable", json!({"n": 3}))
    );
    other.nothing(Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_restart_of_an_idle_pool_repeats_nothing() {
    let config = NotifierConfig {
        cursor_flush_ms: 0,
        ..config()
    };
    let pool = Pool::start(config).await;
    let jobs = queue("idle");
    let mut receiver = Receiver::start("/hook", &[]).await;
    pool.subscribe(&jobs, &receiver.url, json!({})).await;
    pool.post(&jobs, &[json!(1), json!(2)]).await;
    receiver.next(WITHIN).await;
    receiver.next(WITHIN).await;
    // Let the lane store its cursor on catching up.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let pool = pool.restart().await;
    receiver.nothing(Duration::from_millis(700)).await;
    pool.post(&jobs, &[json!(3)]).await;
    assert_eq!(
        receiver.next(WITHIN).await.json(),
        document("idle", json!(3))
    );
}

#[tokio::test]
async fn a_subscription_stops_receiving_when_its_ttl_ends() {
    let pool = Pool::start(config()).await;
    let events = queue("short-lived");
    let mut receiver = Receiver::start("/hook", &[]).await;
    pool.subscribe_for(&events, &receiver.url, json!({}), 1)
        .await;
    pool.post(&events, &[json!("early")]).await;
    assert_eq!(
        receiver.next(WITHIN).await.json(),
        document("short-lived", json!("early"))
    );
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    pool.post(&events, &[json!("late")]).await;
    receiver.nothing(Duration::from_millis(700)).await;
}

#[tokio::test]
async fn confirming_starts_delivery_and_unconfirming_stops_it() {
    let pool = Pool::start(config()).await;
    let events = queue("confirm");
    let mut receiver = Receiver::start("/hook", &[]).await;
    let (id, _) = pool
        .store
        .create_subscription(&events, &receiver.url, 3600, "{}", false)
        .await
        .unwrap();
    let confirm = |confirmed: bool, notice: &str| ConfirmSubscriptionRequest {
        subscription: Some(SubscriptionRef {
            queue: Some(events.clone()),
            id: id.clone(),
        }),
        confirmed,
        notice_json: notice.to_string(),
    };
    pool.post(&events, &[json!("before")]).await;
    receiver.nothing(Duration::from_millis(300)).await;

    // A notice is sent as given, even to an unconfirmed subscription.
    let notice = json!({"Message_Type": "SubscriptionConfirmation", "queue_name": "confirm"});
    pool.server
        .confirm_subscription(Request::new(confirm(false, &notice.to_string())))
        .await
        .unwrap();
    assert_eq!(receiver.next(WITHIN).await.json(), notice);

    pool.server
        .confirm_subscription(Request::new(confirm(true, "")))
        .await
        .unwrap();
    pool.post(&events, &[json!("after")]).await;
    // Only what was posted once confirmed.
    assert_eq!(
        receiver.next(WITHIN).await.json(),
        document("confirm", json!("after"))
    );

    pool.server
        .confirm_subscription(Request::new(confirm(false, "")))
        .await
        .unwrap();
    pool.post(&events, &[json!("unconfirmed")]).await;
    receiver.nothing(Duration::from_millis(500)).await;
}
