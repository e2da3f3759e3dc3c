//! Webhook notifications against a real HTTP receiver: payload, headers, order,
//! retries, and isolation from dead endpoints.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{config, document, queue, BlackHole, Pool, Receiver};
use zaqar_pool_node::NotifierConfig;

const WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn webhooks_get_zaqars_payload_and_headers_in_posting_order() {
    let pool = Pool::start(config()).await;
    let orders = queue("orders");
    let mut plain = Receiver::start("/hook", &[]).await;
    let mut wrapped = Receiver::start("/wrapped", &[]).await;
    let mut unconfirmed = Receiver::start("/unconfirmed", &[]).await;
    pool.subscribe(
        &orders,
        &plain.url,
        json!({"post_headers": {"X-Token": "s3cret"}}),
    )
    .await;
    pool.subscribe(
        &orders,
        &wrapped.url,
        json!({"post_data": "{\"event\": \"$zaqar_message$\", \"v\": 1}"}),
    )
    .await;
    let (_, created) = pool
        .store
        .create_subscription(&orders, &unconfirmed.url, 3600, "{}", false)
        .await
        .unwrap();
    assert!(created);

    pool.post(
        &orders,
        &[json!({"n": 1}), json!({"n": 2}), json!({"n": 3})],
    )
    .await;
    pool.post(
        &orders,
        &[json!("four"), json!({"n": 5, "nested": {"z": [1, 2]}})],
    )
    .await;
    let bodies = [
        json!({"n": 1}),
        json!({"n": 2}),
        json!({"n": 3}),
        json!("four"),
        json!({"n": 5, "nested": {"z": [1, 2]}}),
    ];

    for body in &bodies {
        let request = plain.next(WITHIN).await;
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/hook")
        );
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("x-token"), Some("s3cret"));
        assert_eq!(request.json(), document("orders", body.clone()));
        // Keys in Zaqar's order, the body as posted.
        assert!(
            request.body.starts_with("{\"ttl\":300,\"body\":"),
            "{}",
            request.body
        );
        assert!(request
            .body
            .ends_with(",\"Message_Type\":\"Notification\",\"queue_name\":\"orders\"}"));

        let request = wrapped.next(WITHIN).await;
        assert_eq!(
            request.json(),
            json!({"event": document("orders", body.clone()), "v": 1})
        );
    }
    plain.nothing(Duration::from_millis(300)).await;
    unconfirmed.nothing(Duration::from_millis(100)).await;
    assert_eq!(pool.notifier.missed_wakes(), 0);
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_until_it_recovers_and_order_is_kept() {
    let pool = Pool::start(config()).await;
    let jobs = queue("jobs");
    let mut flaky = Receiver::start("/flaky", &[500, 503, 200, 400]).await;
    pool.subscribe(&jobs, &flaky.url, json!({})).await;

    pool.post(&jobs, &[json!({"n": 1}), json!({"n": 2}), json!({"n": 3})])
        .await;
    // Message 1: two failures, then the immediate retries of Zaqar's default policy deliver it.
    for status in [500, 503, 200] {
        let request = flaky.next(WITHIN).await;
        assert_eq!(
            (request.status, request.json()),
            (status, document("jobs", json!({"n": 1})))
        );
    }
    // Message 2 is refused with a 4xx: not retried. Message 3 follows.
    let request = flaky.next(WITHIN).await;
    assert_eq!(
        (request.status, request.json()),
        (400, document("jobs", json!({"n": 2})))
    );
    let request = flaky.next(WITHIN).await;
    assert_eq!(
        (request.status, request.json()),
        (200, document("jobs", json!({"n": 3})))
    );
    flaky.nothing(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn the_subscription_retry_policy_sets_the_backoff() {
    let pool = Pool::start(config()).await;
    let jobs = queue("slow-jobs");
    let mut flaky = Receiver::start("/flaky", &[500, 500]).await;
    let policy = json!({"_retry_policy": {"retries_with_no_delay": 0, "minimum_delay_retries": 2, "minimum_delay": 1,
                                         "maximum_delay": 1, "maximum_delay_retries": 0}});
    pool.subscribe(&jobs, &flaky.url, policy).await;

    pool.post(&jobs, &[json!({"n": 1})]).await;
    let first = flaky.next(WITHIN).await;
    let started = Instant::now();
    assert_eq!(first.status, 500);
    assert_eq!(flaky.next(WITHIN).await.status, 500);
    assert_eq!(flaky.next(WITHIN).await.status, 200);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1900),
        "two 1 s waits, got {waited:?}"
    );
}

#[tokio::test]
async fn the_queue_retry_policy_applies_when_the_subscription_has_none() {
    let pool = Pool::start(config()).await;
    let jobs = queue("policed");
    let metadata = json!({"_retry_policy": {"retries_with_no_delay": 0, "minimum_delay_retries": 1,
                                            "minimum_delay": 1, "maximum_delay": 1, "maximum_delay_retries": 0}});
    assert!(pool
        .store
        .create_queue(&jobs, &metadata.to_string())
        .await
        .unwrap());
    let mut failing = Receiver::start("/down", &[500; 20]).await;
    pool.subscribe(&jobs, &failing.url, json!({})).await;

    pool.post(&jobs, &[json!({"n": 1})]).await;
    let first = failing.next(WITHIN).await;
    let started = Instant::now();
    assert_eq!(first.status, 500);
    // One retry after 1 s, then the queue's policy gives up.
    assert_eq!(failing.next(WITHIN).await.json(), first.json());
    assert!(started.elapsed() >= Duration::from_millis(900));
    failing.nothing(Duration::from_millis(1_500)).await;
}

#[tokio::test]
async fn retries_stop_when_the_subscription_is_deleted() {
    let pool = Pool::start(config()).await;
    let jobs = queue("gone");
    let mut failing = Receiver::start("/down", &[500; 20]).await;
    let policy = json!({"_retry_policy": {"retries_with_no_delay": 0, "minimum_delay": 1, "maximum_delay": 1}});
    let id = pool.subscribe(&jobs, &failing.url, policy).await;

    pool.post(&jobs, &[json!(1), json!(2)]).await;
    assert_eq!(failing.next(WITHIN).await.status, 500);
    pool.store.delete_subscription(&jobs, &id).await.unwrap();
    failing.nothing(Duration::from_millis(2_500)).await;
}

#[tokio::test]
async fn a_dead_endpoint_delays_neither_other_subscribers_nor_posting() {
    let config = NotifierConfig {
        delivery_timeout_ms: 30_000,
        max_in_flight: 4,
        allowed_networks: vec!["127.0.0.0/8".to_string()],
        ..NotifierConfig::default()
    };
    let pool = Pool::start(config).await;
    let events = queue("events");
    let dead = BlackHole::start().await;
    pool.subscribe(&events, &dead.url, json!({})).await;
    let mut live = Receiver::start("/live", &[]).await;
    pool.subscribe(&events, &live.url, json!({})).await;

    let started = Instant::now();
    for n in 0..5 {
        pool.post(&events, &[json!({"n": n})]).await;
    }
    let posting = started.elapsed();
    for n in 0..5 {
        assert_eq!(
            live.next(Duration::from_secs(3)).await.json(),
            document("events", json!({"n": n}))
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the live subscriber waited for the dead one"
    );
    assert!(
        posting < Duration::from_secs(1),
        "posting waited for delivery: {posting:?}"
    );
}

#[tokio::test]
async fn a_subscriber_far_behind_misses_nothing() {
    let config = NotifierConfig {
        // Wake-ups missed (the periodic resume covers them), and documents read
        // back from the store.
        queue_capacity: 1,
        document_cache_capacity: 0,
        resume_interval_ms: 200,
        ..config()
    };
    let pool = Pool::start(config).await;
    let events = queue("backlog");
    let mut slow = Receiver::start("/slow", &[]).await;
    pool.subscribe(&events, &slow.url, json!({})).await;

    for n in 0..150 {
        pool.post(&events, &[json!({"n": n})]).await;
    }
    for n in 0..150 {
        assert_eq!(
            slow.next(WITHIN).await.json(),
            document("backlog", json!({"n": n}))
        );
    }
    slow.nothing(Duration::from_millis(300)).await;
}

/// The pool's health answer says how far notifications run behind: the age of the
/// oldest message a subscription is still delivering (here, retrying once a second),
/// and nothing once every subscription is caught up.
#[tokio::test]
async fn the_health_answer_carries_the_notifier_lag() {
    use tonic::Request;
    use zaqar_proto::pb::pool_service_server::PoolService;
    use zaqar_proto::pb::Empty;

    let pool = Pool::start(config()).await;
    let jobs = queue("lagging");
    let mut slow = Receiver::start("/lagging", &[503, 503, 503]).await;
    let retry_each_second = json!({"_retry_policy": {"retries_with_no_delay": 0,
        "minimum_delay": 1, "maximum_delay": 1, "minimum_delay_retries": 20,
        "maximum_delay_retries": 0}});
    pool.subscribe(&jobs, &slow.url, retry_each_second).await;
    let lag = || async {
        let health = pool.server.health(Request::new(Empty {})).await.unwrap();
        health.into_inner().notifier_lag_seconds
    };
    assert_eq!(lag().await, 0.0, "nothing to deliver yet");

    pool.post(&jobs, &[json!({"n": 1})]).await;
    let deadline = Instant::now() + WITHIN;
    while lag().await < 1.5 {
        assert!(
            Instant::now() < deadline,
            "the lag did not grow while retrying"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The notifier's gauges say the same: it holds the subscription's lease, and
    // the subscription is among those furthest behind.
    let scraped = scrape(&pool);
    assert!(
        scraped.contains("zaqar_notifier_leases_held 1\n"),
        "{scraped}"
    );
    let series = scraped
        .lines()
        .find(|line| line.starts_with("zaqar_notifier_subscription_lag_seconds{"))
        .unwrap_or_else(|| panic!("no lag series in {scraped}"));
    assert!(series.contains("queue=\"lagging\""), "{series}");
    let seconds: f64 = series.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(seconds >= 1.5, "{series}");
    // The fourth attempt is delivered; the lane then finds itself caught up.
    for status in [503, 503, 503, 200] {
        assert_eq!(slow.next(WITHIN).await.status, status);
    }
    let deadline = Instant::now() + WITHIN;
    while lag().await > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the lag stayed after the delivery"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scraped = scrape(&pool);
    assert!(
        !scraped.contains("zaqar_notifier_subscription_lag_seconds{"),
        "a caught-up subscription has no lag series: {scraped}"
    );
    // The three attempts made again are counted (other tests here may add theirs).
    let mut registry = prometheus_client::registry::Registry::default();
    zaqar_pool_node::metrics::register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let retries: f64 = text
        .lines()
        .find_map(|line| {
            let value = line.strip_prefix("zaqar_notifier_retries_total{kind=\"webhook\"} ")?;
            value.parse().ok()
        })
        .unwrap_or(0.0);
    assert!(retries >= 3.0, "{text}");
}

/// The notifier's gauges, as a scrape would read them.
fn scrape(pool: &Pool) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    registry.register_collector(Box::new(pool.notifier.metrics()));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}
