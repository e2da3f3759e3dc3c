//! An api-node given several catalog endpoints (comma-separated `catalog_endpoint`)
//! keeps working while one of them is down, and fails fast when all are.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{dead_endpoint, Harness};

/// A loopback port nothing listens on.
#[tokio::test]
async fn a_dead_first_catalog_endpoint_is_skipped() {
    let dead = dead_endpoint();
    let h = Harness::start_with(|config| {
        config.catalog_endpoint = format!("{dead}, {}", config.catalog_endpoint);
        config.connect_timeout_ms = 500;
    })
    .await;
    let started = Instant::now();
    assert_eq!(h.send("PUT", "/v2/queues/first", "{}").await.status, 201);
    assert_eq!(h.send("PUT", "/v2/queues/second", "{}").await.status, 201);
    h.post_messages("second", json!([{"body": 1}])).await;
    let listed = h.get("/v2/queues").await;
    assert_eq!(listed.status, 200);
    let names: Vec<&str> = listed.body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert_eq!(names, ["first", "second"]);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn all_catalog_endpoints_down_answers_503_quickly() {
    let h = Harness::with_catalog_at(format!("{},{}", dead_endpoint(), dead_endpoint())).await;
    let started = Instant::now();
    let answer = h.send("PUT", "/v2/queues/q", "{}").await;
    answer.assert_error(503, "Service temporarily unavailable");
    assert!(started.elapsed() < Duration::from_secs(3));
}
