//! Per-project limits through the front doors: a project over its request
//! rate gets 429 with `Retry-After` and Zaqar's error body (REST) or a 429
//! reply (WebSocket), while other projects keep being served; request-size
//! limits follow the project's overrides.

mod support;

use serde_json::json;
use support::ws::Ws;
use support::{Harness, CLIENT_ID};
use zaqar_api_node::rate_limit::ProjectOverride;

/// Default rate: 1 request/s with a burst of 3. `roomy` has 1000/s and
/// bodies up to 512 KiB (the default is 256 KiB).
async fn harness() -> Harness {
    Harness::start_with(|config| {
        config.project_limits.requests_per_second = 1.0;
        config.project_limits.burst = 3;
        config.project_limits.overrides.insert(
            "roomy".into(),
            ProjectOverride {
                requests_per_second: Some(1000.0),
                burst: Some(1000),
                max_messages_post_size: Some(512 * 1024),
                ..ProjectOverride::default()
            },
        );
    })
    .await
}

async fn list_queues(h: &Harness, project: &str) -> support::Answer {
    h.call("GET", "/v2/queues", None, &[("X-Project-ID", project)])
        .await
}

#[tokio::test]
async fn a_hammering_project_is_throttled_and_others_are_served() {
    let h = harness().await;
    let (mut throttled, mut served) = (0, 0);
    for _ in 0..20 {
        let hammer = list_queues(&h, "hammer").await;
        match hammer.status.as_u16() {
            200 => served += 1,
            429 => {
                throttled += 1;
                hammer.assert_error(429, "Too Many Requests");
                let retry: u64 = hammer.header("retry-after").unwrap().parse().unwrap();
                assert!((1..=2).contains(&retry), "Retry-After: {retry}");
            }
            other => panic!("unexpected {other}: {}", hammer.body),
        }
        // A project with its own, higher rate is never held up by the hammer.
        assert_eq!(list_queues(&h, "roomy").await.status, 200);
    }
    assert!(served >= 3, "the burst is admitted: {served}");
    assert!(throttled >= 10, "{throttled} of 20 throttled");
    // A project with the default rate is served too: its bucket is its own.
    assert_eq!(list_queues(&h, "bystander").await.status, 200);
}

#[tokio::test]
async fn the_websocket_api_shares_the_project_rate() {
    let h = harness().await;
    let mut ws = Ws::with_headers(
        &h,
        json!({"Client-ID": CLIENT_ID, "X-Project-ID": "hammer"}),
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let (status, body) = ws.call("queue_list", json!({})).await;
        if status == 429 {
            let exception = body["exception"].as_str().unwrap();
            assert!(exception.contains("Retry after"), "{body}");
        }
        statuses.push(status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    // REST requests of the same project draw on the same bucket.
    assert_eq!(list_queues(&h, "hammer").await.status, 429);
    let mut other =
        Ws::with_headers(&h, json!({"Client-ID": CLIENT_ID, "X-Project-ID": "roomy"})).await;
    for _ in 0..10 {
        assert_eq!(other.call("queue_list", json!({})).await.0, 200);
    }
}

#[tokio::test]
async fn request_sizes_follow_the_project_overrides() {
    let h = harness().await;
    let big = json!({"messages": [{"body": "x".repeat(300 * 1024), "ttl": 300}]}).to_string();
    let post = |project: &'static str| {
        let (h, big) = (&h, big.clone());
        async move {
            h.call(
                "POST",
                "/v2/queues/sized/messages",
                Some(&big),
                &[("X-Project-ID", project)],
            )
            .await
        }
    };
    post("small").await.assert_error(400, "Invalid API request");
    assert_eq!(post("roomy").await.status, 201);
}

#[tokio::test]
async fn messages_per_post_follow_the_limit_and_the_project_overrides() {
    let h = Harness::start_with(|config| {
        config.limits.max_messages_per_post = 3;
        config.project_limits.overrides.insert(
            "many".into(),
            ProjectOverride {
                max_messages_per_post: Some(0),
                ..ProjectOverride::default()
            },
        );
    })
    .await;
    let post = |project: &'static str, count: usize| {
        let h = &h;
        let messages: Vec<_> = (0..count).map(|n| json!({"body": n, "ttl": 300})).collect();
        let body = json!({ "messages": messages }).to_string();
        async move {
            h.call(
                "POST",
                "/v2/queues/counted/messages",
                Some(&body),
                &[("X-Project-ID", project)],
            )
            .await
        }
    };
    assert_eq!(post("few", 3).await.status, 201);
    let refused = post("few", 4).await;
    refused.assert_error(400, "Invalid API request");
    assert_eq!(
        refused.body["description"],
        "No more than 3 messages can be posted at once."
    );
    // 0: no limit but the size of the post, as Zaqar.
    assert_eq!(post("many", 50).await.status, 201);
}
