//! Every REST answer carries its own `X-Openstack-Request-Id: req-<uuid>`:
//! successes, errors, unknown paths and the home document alike; every
//! WebSocket reply has one of its own among its `headers`.

mod support;

use std::collections::HashSet;

use serde_json::json;
use support::ws::Ws;
use support::Harness;

/// Whether `id` is `req-` and a UUID.
fn is_request_id(id: &str) -> bool {
    id.strip_prefix("req-")
        .is_some_and(|uuid| uuid::Uuid::parse_str(uuid).is_ok())
}

#[tokio::test]
async fn every_answer_carries_its_own_request_id() {
    let harness = Harness::start().await;
    let mut seen = HashSet::new();
    for (method, path, body) in [
        ("GET", "/", None),
        ("GET", "/v2/ping", None),
        ("PUT", "/v2/queues/ids", Some("{}")),
        ("GET", "/v2/queues/ids/stats", None),
        ("POST", "/v2/queues/ids/messages", Some("not json")),
        ("GET", "/v2/no/such/path", None),
        ("DELETE", "/v2/queues/ids", None),
    ] {
        let answer = harness.call(method, path, body, &[]).await;
        let id = answer
            .header("x-openstack-request-id")
            .unwrap_or_else(|| panic!("{method} {path}: no request id"))
            .to_string();
        assert!(is_request_id(&id), "{id}");
        assert!(seen.insert(id), "{method} {path}: a request id seen before");
    }
}

#[tokio::test]
async fn every_websocket_reply_carries_its_own_request_id() {
    let harness = Harness::start().await;
    let mut ws = Ws::connect(&harness).await;
    let mut seen = HashSet::new();
    for frame in [
        json!({"action": "queue_list", "body": {}}),
        json!({"action": "queue_create", "body": {"queue_name": "ids"}}),
        json!({"action": "no_such_action", "body": {}}),
    ] {
        let reply = ws
            .raw(tokio_tungstenite::tungstenite::Message::text(
                frame.to_string(),
            ))
            .await;
        let id = reply["headers"]["X-Openstack-Request-Id"]
            .as_str()
            .unwrap_or_else(|| panic!("no request id in {reply}"))
            .to_string();
        assert!(is_request_id(&id), "{id}");
        assert!(seen.insert(id), "a request id seen before: {reply}");
    }
}
