//! The change-feed and pool-node registration cases of the catalog conformance suite
//! (run by `catalog_conformance!` in `conformance/mod.rs` against every backend).

use std::sync::Arc;
use std::time::Duration;

use super::pool;
use crate::watch::{CatalogEvent, Watch};
use crate::{CatalogBackend, PoolSpec};

/// How long a case waits for an event that should come.
const EVENT_WAIT: Duration = Duration::from_secs(10);

/// The next event other than `Reset` (a feed may reset when it starts).
async fn next_change(watch: &mut Watch) -> CatalogEvent {
    loop {
        let event = tokio::time::timeout(EVENT_WAIT, watch.next())
            .await
            .expect("an event within the wait")
            .expect("the feed is open");
        if event != CatalogEvent::Reset {
            return event;
        }
    }
}

/// The next `n` events other than `Reset`.
pub(crate) async fn next_changes(watch: &mut Watch, n: usize) -> Vec<CatalogEvent> {
    let mut seen = Vec::with_capacity(n);
    while seen.len() < n {
        seen.push(next_change(watch).await);
    }
    seen
}

pub async fn a_watcher_sees_placements_and_pool_changes(catalog: Arc<dyn CatalogBackend>) {
    let mut watch = catalog.watch().expect("every backend has a change feed");
    assert_eq!(watch.next().await, Some(CatalogEvent::Reset));

    catalog.add_pool(pool("a", 10, "")).await.unwrap();
    assert_eq!(
        next_change(&mut watch).await,
        CatalogEvent::PoolChanged(pool("a", 10, ""))
    );

    let placed = catalog.place_queue("p", "q", "").await.unwrap();
    assert_eq!(placed.pool, "a");
    let queue = |event| match event {
        CatalogEvent::Placed {
            project,
            queue,
            pool,
        } => ("placed", project, queue, pool),
        CatalogEvent::Unplaced { project, queue } => ("unplaced", project, queue, String::new()),
        other => panic!("not a placement event: {other:?}"),
    };
    assert_eq!(
        queue(next_change(&mut watch).await),
        ("placed", "p".into(), "q".into(), "a".into())
    );

    let moved = PoolSpec {
        endpoint: "http://a.example:7002".into(),
        ..pool("a", 10, "")
    };
    catalog.register_pool(moved.clone()).await.unwrap();
    assert_eq!(
        next_change(&mut watch).await,
        CatalogEvent::PoolChanged(moved)
    );

    catalog.remove_queue("p", "q").await.unwrap();
    assert_eq!(
        queue(next_change(&mut watch).await),
        ("unplaced", "p".into(), "q".into(), String::new())
    );

    catalog.remove_pool("a").await.unwrap();
    assert_eq!(
        next_change(&mut watch).await,
        CatalogEvent::PoolRemoved("a".into())
    );
}

pub async fn a_pool_node_registration_keeps_an_admins_changes(catalog: Arc<dyn CatalogBackend>) {
    // A new pool is stored whole.
    let stored = catalog.register_pool(pool("a", 10, "")).await.unwrap();
    assert_eq!(stored, pool("a", 10, ""));
    assert_eq!(catalog.get_pool("a").await.unwrap(), pool("a", 10, ""));

    // An admin changes weight, flavor and options.
    let admin = PoolSpec {
        options_json: r#"{"max_queues":5}"#.into(),
        ..pool("a", 0, "slow")
    };
    catalog.add_pool(admin.clone()).await.unwrap();

    // The pool-node restarts elsewhere with its configured weight and flavor.
    let restarted = PoolSpec {
        uri: "redis://a2.example:6379/0".into(),
        endpoint: "http://a2.example:7001".into(),
        ..pool("a", 10, "")
    };
    let expected = PoolSpec {
        uri: restarted.uri.clone(),
        endpoint: restarted.endpoint.clone(),
        ..admin.clone()
    };
    assert_eq!(catalog.register_pool(restarted).await.unwrap(), expected);
    assert_eq!(catalog.get_pool("a").await.unwrap(), expected);

    // An admin's write still replaces everything.
    catalog.add_pool(pool("a", 7, "")).await.unwrap();
    assert_eq!(catalog.get_pool("a").await.unwrap(), pool("a", 7, ""));

    // A registration is validated like any pool.
    let bad = PoolSpec {
        endpoint: "not-an-endpoint".into(),
        ..pool("a", 7, "")
    };
    assert_eq!(
        catalog.register_pool(bad).await.unwrap_err().code,
        zaqar_proto::ErrorCode::BadRequest
    );
    assert_eq!(catalog.get_pool("a").await.unwrap(), pool("a", 7, ""));
}
