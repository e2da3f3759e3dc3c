//! The work of a claim, a pop and a default listing does not grow with the
//! messages in flight: the same Redis commands run on a queue of 30 messages
//! with 10 claimed as on one of 100,000 with 50,000 claimed (counted with
//! `INFO commandstats`, commands run inside scripts included; no timing).

use std::collections::BTreeMap;

use zaqar_proto::pb::{NewMessage, QueueRef};

use super::{queue, TestRedis};
use crate::conformance::ClaimTerms;
use crate::redis_store::RedisStore;
use crate::store::prelude::*;
use crate::store::ListParams;

/// Posts `count` messages in requests of 1,000 and claims the first `claimed` of them.
async fn fill(store: &RedisStore, q: &QueueRef, count: usize, claimed: usize) {
    let batch: Vec<_> = (0..1000)
        .map(|n| NewMessage {
            ttl: 3600,
            delay: 0,
            body_json: format!(r#"{{"n":{n}}}"#),
        })
        .collect();
    for start in (0..count).step_by(1000) {
        let size = (count - start).min(1000);
        store
            .post_messages(q, "producer", &batch[..size])
            .await
            .unwrap();
    }
    for start in (0..claimed).step_by(1000) {
        let size = (claimed - start).min(1000) as u32;
        let claim = store.claim_for(q, 3600, 60, size).await.unwrap();
        assert_eq!(claim.unwrap().messages.len(), size as usize);
    }
}

/// The number of calls of each Redis command since the last reset, and a reset.
async fn commands_since_reset(store: &RedisStore) -> BTreeMap<String, u64> {
    let info: String = store
        .query(redis::cmd("INFO").arg("commandstats"))
        .await
        .unwrap();
    store
        .query::<()>(redis::cmd("CONFIG").arg("RESETSTAT"))
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            (!name.starts_with("info") && !name.starts_with("config"))
                .then(|| (name.to_string(), calls))
        })
        .collect()
}

/// The commands one claim (limit 1), pop (1) and default listing (10) each run on `q`.
async fn commands_per_operation(store: &RedisStore, q: &QueueRef) -> Vec<BTreeMap<String, u64>> {
    let listing = ListParams {
        client_id: "consumer".into(),
        limit: 10,
        ..ListParams::default()
    };
    commands_since_reset(store).await;
    let mut counts = Vec::new();
    assert!(store.claim_for(q, 60, 60, 1).await.unwrap().is_some());
    counts.push(commands_since_reset(store).await);
    assert_eq!(store.pop_messages(q, 1).await.unwrap().len(), 1);
    counts.push(commands_since_reset(store).await);
    assert_eq!(store.list_messages(q, &listing).await.unwrap().0.len(), 10);
    counts.push(commands_since_reset(store).await);
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_pops_and_listings_cost_the_same_at_any_depth() {
    let Some((_redis, store)) = TestRedis::with_store().await else {
        return;
    };
    let shallow = queue("shallow");
    let deep = queue("deep");
    fill(&store, &shallow, 30, 10).await;
    fill(&store, &deep, 100_000, 50_000).await;
    // Scripts are loaded by the first calls, which are not counted.
    commands_per_operation(&store, &shallow).await;

    let on_shallow = commands_per_operation(&store, &shallow).await;
    let on_deep = commands_per_operation(&store, &deep).await;
    assert_eq!(on_shallow, on_deep);
    assert!(on_deep
        .iter()
        .all(|counts| counts.get("evalsha") == Some(&1)));
}
