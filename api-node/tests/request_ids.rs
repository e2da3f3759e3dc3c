//! Every REST answer carries its own `X-Openstack-Request-Id: req-<uuid>`:
//! successes, errors, unknown paths and the home document alike.

mod support;

use std::collections::HashSet;

use support::Harness;

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
        let uuid = id.strip_prefix("req-").expect("req- and a uuid");
        assert!(uuid::Uuid::parse_str(uuid).is_ok(), "{id}");
        assert!(seen.insert(id), "{method} {path}: a request id seen before");
    }
}
