//! Routes, HTTP-level answers, health and resilience of the api-node itself.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{dead_endpoint, Harness, TestCatalog, OMIT};
use zaqar_api_node::ApiConfig;

#[tokio::test]
async fn versions_home_and_ping() {
    let h = Harness::start().await;
    let versions = h
        .call(
            "GET",
            "/",
            None,
            &[("Client-ID", OMIT), ("X-Project-ID", OMIT)],
        )
        .await;
    assert_eq!(versions.status, 300);
    assert_eq!(versions.body["versions"][0]["links"][0]["href"], "/v2/");
    let home = h.get("/v2/").await;
    assert_eq!(home.status, 200);
    assert_eq!(home.header("content-type"), Some("application/json-home"));
    assert!(home.body["resources"]["rel/queues"].is_object());
    assert_eq!(h.get("/v2/ping").await.status, 204);
    assert_eq!(h.call("HEAD", "/v2/ping", None, &[]).await.status, 204);
    h.call("GET", "/v2/ping", None, &[("Client-ID", OMIT)])
        .await
        .assert_error(400, "Missing header value");
}

#[tokio::test]
async fn health_needs_the_admin_role() {
    let h = Harness::start().await;
    h.get("/v2/health")
        .await
        .assert_error(403, "Not authorized");
    let report = h
        .call("GET", "/v2/health", None, &[("X-Roles", "member,admin")])
        .await;
    assert_eq!(report.status, 200);
    assert_eq!(report.body["catalog_reachable"], true);
    assert_eq!(report.body["pool-1"]["storage_reachable"], true);
    assert!(report.body["pool-1"]["operation_status"]["health"]["seconds"].is_number());
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let h = Harness::start().await;
    let unknown = h.get("/v2/nothing-here").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body, json!({"title": "404 Not Found"}));
    assert_eq!(h.get("/v2/queues/q/messages/a/b").await.status, 404);
    let wrong = h.send("PUT", "/v2/queues/q/messages", "{}").await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.body, json!({"title": "405 Method Not Allowed"}));
    assert_eq!(wrong.header("allow"), Some("DELETE, GET, POST, OPTIONS"));
    assert_eq!(h.call("HEAD", "/v2/queues/q", None, &[]).await.status, 405);
    let options = h
        .call("OPTIONS", "/v2/queues", None, &[("Client-ID", OMIT)])
        .await;
    assert_eq!(options.status, 200);
    assert_eq!(options.header("allow"), Some("GET"));
}

#[tokio::test]
async fn media_types_are_checked() {
    let h = Harness::start().await;
    let html = h
        .call("GET", "/v2/queues", None, &[("Accept", "text/html")])
        .await;
    assert_eq!(html.status, 406);
    assert_eq!(html.header("content-type"), Some("application/json"));
    assert_eq!(
        h.call(
            "GET",
            "/v2/queues",
            None,
            &[("Accept", "text/html, application/json;q=0.9")]
        )
        .await
        .status,
        200
    );
    let form = h
        .call(
            "PUT",
            "/v2/queues/f",
            Some("a=1"),
            &[("Content-Type", "application/x-www-form-urlencoded")],
        )
        .await;
    form.assert_error(400, "Invalid Content-Type");
}

#[tokio::test]
async fn a_dead_catalog_answers_503_quickly() {
    let h = Harness::with_catalog_at(dead_endpoint()).await;
    let started = Instant::now();
    let answer = h.send("PUT", "/v2/queues/q", "{}").await;
    answer.assert_error(503, "Service temporarily unavailable");
    assert_eq!(
        answer.body["description"],
        "Queue could not be created. Please try again in a few seconds."
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    h.post_messages_fails().await;
    assert_eq!(h.get("/v2/ping").await.status, 503);
}

#[tokio::test]
async fn a_placement_moved_by_another_node_is_followed() {
    // A catalog without a change feed: the api-node keeps what it cached for a minute.
    let ttl = |config: &mut ApiConfig| config.placement_cache_ttl_ms = 60_000;
    let mut h = Harness::start_over(TestCatalog::unwatched().await, ttl).await;
    h.post_messages("moving", json!([{"body": "old"}])).await;
    // Another api-node deletes the queue and it is re-created on another pool.
    let mut other = h.extra_pool("pool-2").await;
    other.weight = 0;
    h.catalog.register(&other).await;
    h.catalog
        .place_elsewhere(&h.project, "moving", &other.name)
        .await;
    let answer = h.send("POST", "/v2/queues/moving/claims", "{}").await;
    // The cached placement still points at pool-1, which holds the old message.
    assert_eq!(answer.status, 201);
    let missing = h.get("/v2/queues/moving/claims/nope").await;
    missing.assert_error(404, "Not found");
    // The 404 made the api-node look the placement up again: now on pool-2.
    let listed = h.get("/v2/queues/moving/messages?echo=true").await;
    assert_eq!(listed.body["messages"], json!([]));
}

#[tokio::test]
async fn posts_follow_a_queue_deleted_through_another_node() {
    // A catalog without a change feed: the api-node keeps what it cached for a minute.
    let ttl = |config: &mut ApiConfig| config.placement_cache_ttl_ms = 60_000;
    let mut h = Harness::start_over(TestCatalog::unwatched().await, ttl).await;
    h.post_messages("reborn", json!([{"body": "old"}])).await;
    // Another api-node deletes the queue and it is placed again, on pool-2;
    // this api-node still has pool-1 in its cache.
    h.pool.forget_queue(&h.project, "reborn").await;
    let mut other = h.extra_pool("pool-2").await;
    other.weight = 0;
    h.catalog.register(&other).await;
    h.catalog
        .place_elsewhere(&h.project, "reborn", &other.name)
        .await;
    h.post_messages("reborn", json!([{"body": "new"}])).await;
    let listed = h.get("/v2/queues/reborn/messages?echo=true").await;
    assert_eq!(listed.body["messages"][0]["body"], "new");
    assert_eq!(listed.body["messages"].as_array().unwrap().len(), 1);
    assert!(!h.pool.has_queue(&h.project, "reborn").await);
}

trait Failing {
    async fn post_messages_fails(&self);
}

impl Failing for Harness {
    async fn post_messages_fails(&self) {
        let answer = self
            .send(
                "POST",
                "/v2/queues/q/messages",
                r#"{"messages": [{"body": 1}]}"#,
            )
            .await;
        answer.assert_error(503, "Service temporarily unavailable");
        assert_eq!(
            answer.body["description"],
            "Messages could not be enqueued. Please try again in a few seconds."
        );
    }
}

#[tokio::test]
async fn a_share_with_an_unreadable_expiry_is_a_bad_request() {
    let h =
        Harness::start_with(|config| config.signed_url_secret_key = Some("secret".into())).await;
    h.send("PUT", "/v2/queues/sq", "{}").await;
    let garbage = h
        .send("POST", "/v2/queues/sq/share", r#"{"expires": "garbage"}"#)
        .await;
    assert_eq!(garbage.status, 400, "{}", garbage.body);
    // A multi-byte character where the zone's digits are once panicked the worker.
    let multibyte = h
        .send(
            "POST",
            "/v2/queues/sq/share",
            r#"{"expires": "2030-01-01T00:00:00+1\u00e91"}"#,
        )
        .await;
    assert_eq!(multibyte.status, 400, "{}", multibyte.body);
    assert_eq!(multibyte.body["title"], garbage.body["title"]);
    assert_eq!(
        multibyte.body["description"],
        "Unable to parse date string '2030-01-01T00:00:00+1\u{e9}1'"
    );
}

#[tokio::test]
async fn shared_urls_grant_what_they_sign() {
    let h =
        Harness::start_with(|config| config.signed_url_secret_key = Some("secret".into())).await;
    h.post_messages("sq", json!([{"body": "shared"}])).await;
    let share = h.send("POST", "/v2/queues/sq/share", "{}").await;
    assert_eq!(share.status, 200, "{}", share.body);
    assert_eq!(share.body["paths"], json!(["/v2/queues/sq/messages"]));
    assert_eq!(share.body["methods"], json!(["GET"]));
    assert_eq!(share.body["project"], h.project.as_str());
    let signature = share.body["signature"].as_str().unwrap().to_string();
    let expires = share.body["expires"].as_str().unwrap().to_string();
    let signed = |path: &'static str, signature: String| {
        let (h, expires) = (&h, expires.clone());
        async move {
            let headers = [
                ("URL-Signature", signature.as_str()),
                ("URL-Expires", expires.as_str()),
                ("URL-Methods", "GET"),
                ("URL-Paths", "/v2/queues/sq/messages"),
                ("Client-ID", "6f3a4b2e-2b9e-11e3-b191-71861300734c"),
            ];
            h.call("GET", path, None, &headers).await
        }
    };
    let listed = signed("/v2/queues/sq/messages", signature.clone()).await;
    assert_eq!(listed.body["messages"][0]["body"], "shared");
    let forged = signed("/v2/queues/sq/messages", "00".repeat(32)).await;
    assert_eq!(forged.status, 404);
    assert_eq!(forged.body, json!({"title": "404 Not Found"}));
    assert_eq!(signed("/v2/queues/sq/stats", signature).await.status, 404);

    let bad = h
        .send("POST", "/v2/queues/sq/share", r#"{"paths": ["foo"]}"#)
        .await;
    bad.assert_error(400, "Invalid API request");
    assert_eq!(bad.body["description"], "Invalid paths: {'foo'}");
    let unknown = h.send("POST", "/v2/queues/sq/share", r#"{"x": 1}"#).await;
    assert_eq!(unknown.body["description"], "Unknown keys: {'x'}");
    let past = h
        .send(
            "POST",
            "/v2/queues/sq/share",
            r#"{"expires": "2001-01-01T00:00:00"}"#,
        )
        .await;
    assert_eq!(
        past.body["description"],
        "`expires` is lower than the current time"
    );

    let keyless = Harness::start().await;
    let refused = keyless.send("POST", "/v2/queues/sq/share", "{}").await;
    refused.assert_error(400, "Invalid API request");
}
