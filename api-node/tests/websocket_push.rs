//! Websocket push subscriptions, api-node side: `subscription_create` without a
//! subscriber subscribes the connection's URL on the notification listener, and
//! what is POSTed there (as the pool-node's webhook notifier does) comes down
//! that connection, and only that one, until it closes. (The whole path with
//! the real notifier is `tests/tests/websocket_push.rs`.)

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::ws::Ws;
use support::Harness;
use tokio_tungstenite::tungstenite::Message;

/// Creates a push subscription on `queue` and returns its id and subscriber URL.
async fn subscribe(ws: &mut Ws, queue: &str) -> (String, String) {
    let created = ws
        .ok(
            "subscription_create",
            json!({"queue_name": queue, "ttl": 600}),
            201,
        )
        .await;
    assert_eq!(created["message"], format!("Subscription {queue} created."));
    let id = created["subscription_id"].as_str().unwrap().to_string();
    let got = ws
        .ok(
            "subscription_get",
            json!({"queue_name": queue, "subscription_id": id}),
            200,
        )
        .await;
    (id, got["subscriber"].as_str().unwrap().to_string())
}

/// POSTs a notification the way the webhook notifier does; returns the status.
async fn notify(url: &str, document: &str) -> u16 {
    reqwest::Client::new()
        .post(url)
        .header("Content-Type", "application/json")
        .body(document.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The next data frame on `ws`, within 10 s.
async fn next_frame(ws: &mut Ws) -> Message {
    let wait = async {
        loop {
            match ws.socket.next().await.unwrap().unwrap() {
                frame @ (Message::Text(_) | Message::Binary(_)) => return frame,
                _ => continue,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap()
}

fn document(n: u32) -> String {
    json!({"ttl": 300, "body": {"n": n}, "Message_Type": "Notification", "queue_name": "pq"})
        .to_string()
}

/// Polls the queue's subscriptions (REST) until `id` is gone.
async fn wait_deleted(h: &Harness, queue: &str, id: &str) {
    for _ in 0..100 {
        let listed = h
            .get(&format!("/v2/queues/{queue}/subscriptions"))
            .await
            .body;
        let ids: Vec<&str> = listed["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap())
            .collect();
        if !ids.contains(&id) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("subscription {id} still exists after its connection closed");
}

#[tokio::test]
async fn notifications_come_down_the_subscribing_connection_in_order() {
    let h = Harness::start().await;
    let mut ws = Ws::connect(&h).await;
    let (id, url) = subscribe(&mut ws, "pq").await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let rest = h.get(&format!("/v2/queues/pq/subscriptions/{id}")).await;
    assert_eq!(rest.body["subscriber"], url.as_str());
    assert_eq!(rest.body["ttl"], 600);

    for n in 0..5 {
        assert_eq!(notify(&url, &document(n)).await, 200);
    }
    for n in 0..5 {
        assert_eq!(next_frame(&mut ws).await, Message::text(document(n)));
    }
    // The same connection subscribing the same queue again: Zaqar's 409.
    let (status, body) = ws
        .call("subscription_create", json!({"queue_name": "pq"}))
        .await;
    assert_eq!((status, body), (409, json!("Subscription pq not created.")));
    // Requests still get their replies in between.
    ws.ok("queue_get", json!({"queue_name": "pq"}), 200).await;
}

#[tokio::test]
async fn each_connection_gets_only_its_own_notifications() {
    let h = Harness::start().await;
    let mut first = Ws::connect(&h).await;
    let mut second = Ws::connect(&h).await;
    let (_, first_url) = subscribe(&mut first, "pq").await;
    let (_, second_url) = subscribe(&mut second, "pq").await;
    assert_ne!(first_url, second_url);

    assert_eq!(notify(&first_url, &document(1)).await, 200);
    assert_eq!(next_frame(&mut first).await, Message::text(document(1)));
    // The second connection's next frame is the reply to its request, not a push.
    second
        .ok("queue_get", json!({"queue_name": "pq"}), 200)
        .await;
    assert_eq!(notify(&second_url, &document(2)).await, 200);
    assert_eq!(next_frame(&mut second).await, Message::text(document(2)));

    // Another project sees neither subscription, and subscribes its own URL.
    let mut other = Ws::with_headers(
        &h,
        json!({"Client-ID": support::CLIENT_ID, "X-Project-ID": "another-project"}),
    )
    .await;
    let listed = other
        .ok("subscription_list", json!({"queue_name": "pq"}), 200)
        .await;
    assert_eq!(listed["subscriptions"], json!([]));
    let (_, other_url) = subscribe(&mut other, "pq").await;
    assert!(other_url != first_url && other_url != second_url);
}

#[tokio::test]
async fn a_closed_connection_loses_its_subscriptions_and_its_url() {
    let h = Harness::start().await;
    let mut ws = Ws::connect(&h).await;
    let (id, url) = subscribe(&mut ws, "pq").await;
    let (other_id, _) = subscribe(&mut ws, "pq2").await;
    ws.socket.close(None).await.unwrap();
    drop(ws);
    wait_deleted(&h, "pq", &id).await;
    wait_deleted(&h, "pq2", &other_id).await;
    assert_eq!(notify(&url, &document(1)).await, 404);

    // Unknown connections, other methods and other paths are refused too.
    let base = url.rsplit_once('/').unwrap().0;
    let unknown = format!("{base}/{}", uuid::Uuid::new_v4());
    assert_eq!(notify(&unknown, &document(1)).await, 404);
    let get = reqwest::get(&url).await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    let body: Value = get.json().await.unwrap();
    assert!(body["title"].is_string() && body["description"].is_string());
}

#[tokio::test]
async fn a_subscription_made_in_a_binary_frame_gets_message_pack() {
    let h = Harness::start().await;
    let mut ws = Ws::connect(&h).await;
    let request = json!({
        "action": "subscription_create",
        "headers": ws.headers,
        "body": {"queue_name": "pq"},
    });
    let packed = rmp_serde::to_vec_named(&request).unwrap();
    let reply = ws.raw(Message::binary(packed)).await;
    assert_eq!(reply["headers"]["status"], 201, "{reply}");
    let id = reply["body"]["subscription_id"].as_str().unwrap();
    let sub = h.get(&format!("/v2/queues/pq/subscriptions/{id}")).await;
    let url = sub.body["subscriber"].as_str().unwrap();

    assert_eq!(notify(url, &document(7)).await, 200);
    let Message::Binary(bytes) = next_frame(&mut ws).await else {
        panic!("a binary frame expected");
    };
    let unpacked: Value = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(unpacked.to_string(), document(7));
    assert_eq!(notify(url, "not json").await, 400);
}

#[tokio::test]
async fn a_connection_that_does_not_read_its_notifications_is_dropped() {
    let h = Harness::start_with(|config| config.ws_send_queue = 2).await;
    let mut ws = Ws::connect(&h).await;
    let (id, url) = subscribe(&mut ws, "pq").await;
    // Nothing reads: the socket buffers and then the queue fill, the listener
    // says 410, the connection goes. (100 KB documents fill the buffers fast.)
    let big = json!({"body": "x".repeat(100_000), "queue_name": "pq"}).to_string();
    let mut statuses = Vec::new();
    for _ in 0..1_000 {
        let status = notify(&url, &big).await;
        statuses.push(status);
        if status != 200 {
            break;
        }
    }
    assert!(
        matches!(statuses.last(), Some(410 | 404)),
        "statuses: {statuses:?}"
    );
    wait_deleted(&h, "pq", &id).await;
    assert_eq!(notify(&url, &document(0)).await, 404);
}

#[tokio::test]
async fn with_required_confirmation_a_push_subscription_is_confirmed_at_once() {
    let h = Harness::start_with(|config| config.require_subscription_confirmation = true).await;
    let mut ws = Ws::connect(&h).await;
    let (id, _) = subscribe(&mut ws, "pq").await;
    let sub = h.get(&format!("/v2/queues/pq/subscriptions/{id}")).await;
    assert_eq!(sub.body["confirmed"], true);
}

#[tokio::test]
async fn push_subscriptions_can_be_turned_off_and_are_bounded() {
    let off = Harness::start_with(|config| config.ws_push_max_connections = 0).await;
    let mut ws = Ws::connect(&off).await;
    let (status, body) = ws
        .call("subscription_create", json!({"queue_name": "pq"}))
        .await;
    assert_eq!(status, 400, "{body}");

    let h = Harness::start_with(|config| {
        config.ws_push_max_connections = 1;
        config.ws_push_max_subscriptions = 2;
    })
    .await;
    let mut first = Ws::connect(&h).await;
    subscribe(&mut first, "q1").await;
    subscribe(&mut first, "q2").await;
    let (status, _) = first
        .call("subscription_create", json!({"queue_name": "q3"}))
        .await;
    assert_eq!(status, 400);
    let mut second = Ws::connect(&h).await;
    let (status, _) = second
        .call("subscription_create", json!({"queue_name": "q1"}))
        .await;
    assert_eq!(status, 503);
    // A push subscription deleted over the connection frees its place.
    let listed = first
        .ok("subscription_list", json!({"queue_name": "q2"}), 200)
        .await;
    let id = listed["subscriptions"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    first
        .ok(
            "subscription_delete",
            json!({"queue_name": "q2", "subscription_id": id}),
            204,
        )
        .await;
    subscribe(&mut first, "q3").await;
    first.socket.send(Message::Close(None)).await.unwrap();
}
