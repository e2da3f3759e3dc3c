//! A bounded load run of the notifier (ignored by default; run it in release):
//! posting throughput with no subscriptions vs 100 slow webhook subscriptions, and
//! the delivery latency of 10,000 messages to 100 webhook subscriptions.
//!
//! ```sh
//! ZAQAR_TEST_REDIS_URL=redis://127.0.0.1:6379/0 \
//!   cargo test --release -p zaqar-pool-node --test notifier_load -- --ignored --nocapture
//! ```
//! Without `ZAQAR_TEST_REDIS_URL` it runs on SQLite. `NOTIFIER_LOAD_MESSAGES`
//! (default 10000) and `NOTIFIER_LOAD_SUBSCRIPTIONS` (default 100) set the size.
//! It prints its numbers and asserts only that every notification arrived.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tonic::Request;
use zaqar_pool_node::{MessageStore, Notifier, NotifierConfig, PoolServer};
use zaqar_proto::pb::pool_service_server::PoolService;
use zaqar_proto::pb::{
    CreateSubscriptionRequest, NewMessage, PostMessagesRequest, PurgeQueueRequest, QueueRef,
};
use zaqar_tests::webhook::RequestReader;

/// Concurrent posters, each posting one message per request.
const POSTERS: usize = 16;
/// How long the slow receiver takes to answer.
const SLOW_ANSWER: Duration = Duration::from_millis(100);
/// The bound of the whole delivery phase.
const DELIVERY_BOUND: Duration = Duration::from_secs(600);

fn size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Counts notifications and records their latency (receipt - `"t"` of the body).
#[derive(Default)]
struct Tally {
    received: AtomicU64,
    latencies_ms: Mutex<Vec<u64>>,
}

/// An HTTP/1.1 receiver on a free port answering 200 after `delay`.
async fn receiver(delay: Duration, tally: Arc<Tally>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, delay, tally.clone()));
        }
    });
    base
}

async fn serve(mut stream: TcpStream, delay: Duration, tally: Arc<Tally>) {
    let mut requests = RequestReader::default();
    while let Some((_, body)) = requests.next(&mut stream).await {
        let document: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if let Some(posted) = document["body"]["t"].as_u64() {
            let latency = now_ms().saturating_sub(posted);
            tally.latencies_ms.lock().unwrap().push(latency);
        }
        tally.received.fetch_add(1, Ordering::Relaxed);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        if stream.write_all(ok).await.is_err() {
            return;
        }
    }
}

struct Setup {
    server: PoolServer,
    _notifier: Notifier,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let uri = std::env::var("ZAQAR_TEST_REDIS_URL")
        .unwrap_or_else(|_| format!("sqlite://{}/load.db", dir.path().display()));
    let store: Arc<dyn MessageStore> = zaqar_pool_node::open_store(&uri).await.unwrap();
    let config = NotifierConfig {
        max_in_flight: 50,
        allowed_networks: vec!["127.0.0.0/8".to_string()],
        ..NotifierConfig::default()
    };
    let notifier = Notifier::spawn(store.clone(), &config, "load").unwrap();
    let server = PoolServer::new(store).with_notifier(notifier.clone());
    Setup {
        server,
        _notifier: notifier,
        _dir: dir,
    }
}

fn fresh_queue(name: &str) -> QueueRef {
    QueueRef {
        project: uuid::Uuid::new_v4().to_string(),
        queue: name.to_string(),
    }
}

async fn subscribe(server: &PoolServer, queue: &QueueRef, base: &str, count: usize) {
    for n in 0..count {
        let request = CreateSubscriptionRequest {
            queue: Some(queue.clone()),
            subscriber: format!("{base}/hook/{n}"),
            ttl: 3600,
            options_json: "{}".into(),
            confirmed: true,
        };
        server
            .create_subscription(Request::new(request))
            .await
            .unwrap();
    }
}

/// A post of message `n` (its body says `n` and when it was posted).
fn numbered(queue: &QueueRef, n: usize) -> Request<PostMessagesRequest> {
    Request::new(PostMessagesRequest {
        queue: Some(queue.clone()),
        client_id: "load".into(),
        messages: vec![NewMessage {
            ttl: 3600,
            delay: 0,
            body_json: format!(r#"{{"n":{n},"t":{}}}"#, now_ms()),
        }],
        ..Default::default()
    })
}

/// Posts `messages` single-message requests from [`POSTERS`] tasks; returns msg/s.
async fn post_all(server: &PoolServer, queue: &QueueRef, messages: usize) -> f64 {
    let started = Instant::now();
    let mut posters = Vec::new();
    for poster in 0..POSTERS {
        let (server, queue) = (server.clone(), queue.clone());
        posters.push(tokio::spawn(async move {
            for n in (poster..messages).step_by(POSTERS) {
                server.post_messages(numbered(&queue, n)).await.unwrap();
            }
        }));
    }
    for poster in posters {
        poster.await.unwrap();
    }
    messages as f64 / started.elapsed().as_secs_f64()
}

/// Posts `messages` one at a time at `rate` per second.
async fn post_paced(server: &PoolServer, queue: &QueueRef, messages: usize, rate: u64) {
    let mut ticks = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
    for n in 0..messages {
        ticks.tick().await;
        server.post_messages(numbered(queue, n)).await.unwrap();
    }
}

/// Waits until `tally` has `expected` notifications (or [`DELIVERY_BOUND`]), and
/// returns the sorted latencies.
async fn delivered(tally: &Tally, expected: u64, started: Instant) -> Vec<u64> {
    while tally.received.load(Ordering::Relaxed) < expected && started.elapsed() < DELIVERY_BOUND {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut latencies = tally.latencies_ms.lock().unwrap().clone();
    latencies.sort_unstable();
    latencies
}

/// Deletes the messages and subscriptions of `queue`.
async fn purge(server: &PoolServer, queue: &QueueRef) {
    let request = PurgeQueueRequest {
        queue: Some(queue.clone()),
        messages: true,
        subscriptions: true,
    };
    server.purge_queue(Request::new(request)).await.unwrap();
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank]
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a load run of tens of seconds: run it in release with --ignored"]
async fn notifier_load() {
    let messages = size("NOTIFIER_LOAD_MESSAGES", 10_000);
    let subscriptions = size("NOTIFIER_LOAD_SUBSCRIPTIONS", 100);
    let setup = setup().await;
    let server = &setup.server;

    // Warm-up, then posting without subscriptions.
    let (warm_up, plain, plain_again) = (
        fresh_queue("warm-up"),
        fresh_queue("plain"),
        fresh_queue("plain-again"),
    );
    post_all(server, &warm_up, messages / 10).await;
    let baseline = post_all(server, &plain, messages).await;

    // Posting while every message goes to slow subscribers.
    let slow_tally = Arc::new(Tally::default());
    let slow_base = receiver(SLOW_ANSWER, slow_tally.clone()).await;
    let slow_queue = fresh_queue("slow");
    subscribe(server, &slow_queue, &slow_base, subscriptions).await;
    // Steady state: every subscription's lane is open and caught up.
    post_all(server, &slow_queue, 1).await;
    while slow_tally.received.load(Ordering::Relaxed) < subscriptions as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let with_slow = post_all(server, &slow_queue, messages).await;
    let slow_delivered = slow_tally.received.load(Ordering::Relaxed) - subscriptions as u64;
    // The slow subscriptions go, so that they do not hold the delivery slots.
    purge(server, &slow_queue).await;
    // Posting without subscriptions again: the spread of the two is the noise.
    let baseline_again = post_all(server, &plain_again, messages).await;
    let baseline = (baseline + baseline_again) / 2.0;

    // Delivery latency with answering subscribers, posting at a pace they keep up with.
    let paced_messages = size("NOTIFIER_LOAD_PACED_MESSAGES", 1_000);
    let paced_rate = size("NOTIFIER_LOAD_PACED_RATE", 100) as u64;
    let paced_tally = Arc::new(Tally::default());
    let paced_base = receiver(Duration::ZERO, paced_tally.clone()).await;
    let paced_queue = fresh_queue("paced");
    subscribe(server, &paced_queue, &paced_base, subscriptions).await;
    let started = Instant::now();
    post_paced(server, &paced_queue, paced_messages, paced_rate).await;
    let paced_expected = (paced_messages * subscriptions) as u64;
    let paced = delivered(&paced_tally, paced_expected, started).await;
    purge(server, &paced_queue).await;

    // Every message posted as fast as possible: latency is mostly the backlog.
    let tally = Arc::new(Tally::default());
    let base = receiver(Duration::ZERO, tally.clone()).await;
    let queue = fresh_queue("fast");
    subscribe(server, &queue, &base, subscriptions).await;
    let started = Instant::now();
    let with_fast = post_all(server, &queue, messages).await;
    let expected = (messages * subscriptions) as u64;
    let latencies = delivered(&tally, expected, started).await;
    let delivery = started.elapsed();
    // What it stored goes (the test Redis is shared with other tests).
    for queue in [&warm_up, &plain, &plain_again, &queue] {
        purge(server, queue).await;
    }

    println!("notifier load: {messages} messages, {subscriptions} webhook subscriptions, {POSTERS} posters");
    println!(
        "  posting, no subscriptions:          {baseline:>8.0} msg/s (runs before and after: {:.0}, {baseline_again:.0})",
        2.0 * baseline - baseline_again
    );
    println!(
        "  posting, {subscriptions} slow subscriptions:     {with_slow:>8.0} msg/s ({:+.1}%; {slow_delivered} delivered meanwhile)",
        (with_slow / baseline - 1.0) * 100.0
    );
    println!(
        "  posting, {subscriptions} answering subscriptions: {with_fast:>8.0} msg/s ({:+.1}%)",
        (with_fast / baseline - 1.0) * 100.0
    );
    println!(
        "  flat out: {} notifications in {:.1} s ({:.0}/s); latency p50 {} ms, p99 {} ms, max {} ms",
        latencies.len(),
        delivery.as_secs_f64(),
        latencies.len() as f64 / delivery.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0),
    );
    println!(
        "  paced: {paced_messages} messages at {paced_rate}/s, {} notifications; latency p50 {} ms, p99 {} ms, max {} ms",
        paced.len(),
        percentile(&paced, 0.50),
        percentile(&paced, 0.99),
        paced.last().copied().unwrap_or(0),
    );
    assert_eq!(paced_tally.received.load(Ordering::Relaxed), paced_expected);
    assert_eq!(tally.received.load(Ordering::Relaxed), expected);
}
