//! Several pool-nodes on one store: each subscription is delivered by one of them
//! at a time (its delivery lease), whichever of them the posts went to, and the
//! subscriptions of a pool-node that died are taken over once its leases run out.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{config, document, queue, Pool, Receiver};
use zaqar_pool_node::NotifierConfig;

const WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn posts_spread_over_two_pool_nodes_are_delivered_once_in_order() {
    let first = Pool::start(config()).await;
    let second = first.beside().await;
    let orders = queue("shared");
    let mut receiver = Receiver::start("/hook", &[]).await;
    first.subscribe(&orders, &receiver.url, json!({})).await;

    for n in 0..20 {
        let pool = if n % 2 == 0 { &first } else { &second };
        pool.post(&orders, &[json!({"n": n})]).await;
        if n % 5 == 0 {
            // Let deliveries and hand-overs interleave with the posts.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for n in 0..20 {
        assert_eq!(
            receiver.next(WITHIN).await.json(),
            document("shared", json!({"n": n})),
            "message {n}"
        );
    }
    // Both pool-nodes read the queue: without the lease each would send everything.
    receiver.nothing(Duration::from_millis(1_000)).await;
}

#[tokio::test]
async fn the_subscriptions_of_a_dead_pool_node_are_taken_over_when_its_lease_runs_out() {
    let config = NotifierConfig {
        lease_ttl_ms: 500,
        ..config()
    };
    let survivor = Pool::start(config).await;
    let jobs = queue("takeover");
    let mut receiver = Receiver::start("/hook", &[]).await;
    let id = survivor.subscribe(&jobs, &receiver.url, json!({})).await;
    // A pool-node that took the lease for 1.5 s and died without giving it up. The
    // survivor's lane, opened by the new subscription, may hold it a moment first
    // (until it finds nothing to deliver).
    let deadline = Instant::now() + WITHIN;
    let taken = loop {
        let taken = Instant::now();
        if survivor
            .store
            .take_delivery_lease(&jobs, &id, "dead pool-node", Duration::from_millis(1_500))
            .await
            .unwrap()
        {
            break taken;
        }
        assert!(Instant::now() < deadline, "the lease never came free");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    survivor.post(&jobs, &[json!("waiting")]).await;
    assert_eq!(
        receiver.next(WITHIN).await.json(),
        document("takeover", json!("waiting"))
    );
    // Not before the dead holder's lease ran out, and without another post.
    assert!(taken.elapsed() >= Duration::from_millis(1_500));
}
