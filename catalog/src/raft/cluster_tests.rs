//! Behaviour of raft catalog clusters in one process: elections, forwarding, loss of
//! the leader, restarts, compaction and nodes added later.

use std::future::Future;
use std::time::{Duration, Instant};

use zaqar_proto::ErrorCode;

use crate::raft::testing::TestCluster;
use crate::{CatalogBackend, Placement, PoolSpec};

/// Every test finishes in this time or fails.
const TEST_TIMEOUT: Duration = Duration::from_secs(90);

async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .expect("the test finishes in time");
}

fn pool(name: &str) -> PoolSpec {
    crate::conformance::pool(name, 1, "")
}

/// Places `q{from}..q{to}` of project `p` through `catalog`.
async fn place(catalog: &dyn CatalogBackend, range: std::ops::Range<u32>) -> Vec<Placement> {
    let mut placed = Vec::new();
    for i in range {
        placed.push(
            catalog
                .place_queue("p", &format!("q{i}"), "")
                .await
                .unwrap(),
        );
    }
    placed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_three_node_cluster_survives_losing_its_leader() {
    bounded(async {
        let mut cluster = TestCluster::start(3).await;
        let follower = cluster.node(cluster.follower().await);
        follower.add_pool(pool("a")).await.unwrap();
        follower.add_pool(pool("b")).await.unwrap();
        let mut acknowledged = place(&*follower, 0..20).await;

        // Replicated to every node's state machine.
        cluster.wait_caught_up().await;
        for id in cluster.running() {
            let state = cluster.node(id).local_state();
            for placement in &acknowledged {
                assert_eq!(
                    state.lookup("p", &placement.queue).as_ref(),
                    Some(placement)
                );
            }
        }

        let old_leader = cluster.leader().await;
        cluster.stop(old_leader).await;
        let stopped_at = Instant::now();
        let new_leader = cluster.leader().await;
        assert_ne!(new_leader, old_leader);
        let survivor = cluster.node(cluster.running()[0]);
        // The survivor counts the change once it knows the new leader.
        let deadline = Instant::now() + Duration::from_secs(5);
        while survivor.watched.leader_changes() == 0 {
            assert!(
                Instant::now() < deadline,
                "the leader change was not counted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        acknowledged.extend(place(&*survivor, 20..30).await);
        let resumed_in = stopped_at.elapsed();
        assert!(
            resumed_in < Duration::from_secs(5),
            "writes resumed after {resumed_in:?}"
        );

        for id in cluster.running() {
            let node = cluster.node(id);
            for placement in &acknowledged {
                let found = node.lookup("p", &placement.queue).await.unwrap();
                assert_eq!(found.as_ref(), Some(placement), "on node {id}");
            }
        }

        // The old leader comes back from its data directory and catches up.
        cluster.restart(old_leader).await;
        cluster.wait_caught_up().await;
        let state = cluster.node(old_leader).local_state();
        assert_eq!(state.queue_count(), acknowledged.len());
        for placement in &acknowledged {
            assert_eq!(
                state.lookup("p", &placement.queue).as_ref(),
                Some(placement)
            );
        }
        let restarted = cluster.node(old_leader);
        restarted
            .place_queue("p", "after-restart", "")
            .await
            .unwrap();
        assert!(restarted
            .lookup("p", "after-restart")
            .await
            .unwrap()
            .is_some());
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_restart_keeps_pools_and_placements() {
    bounded(async {
        let mut cluster = TestCluster::start(3).await;
        let node = cluster.node(cluster.follower().await);
        node.add_pool(pool("a")).await.unwrap();
        let acknowledged = place(&*node, 0..10).await;
        for id in cluster.running() {
            cluster.stop(id).await;
        }
        for id in 1..=3 {
            cluster.restart(id).await;
        }
        let node = cluster.node(cluster.follower().await);
        assert_eq!(node.list_pools().await.unwrap(), [pool("a")]);
        for placement in &acknowledged {
            let found = node.lookup("p", &placement.queue).await.unwrap();
            assert_eq!(found.as_ref(), Some(placement));
        }
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_node_recovers_from_its_snapshot_and_compacted_log() {
    bounded(async {
        let mut cluster = TestCluster::start_with(1, 10).await;
        let node = cluster.node(1);
        node.add_pool(pool("a")).await.unwrap();
        let acknowledged = place(&*node, 0..45).await;
        node.remove_queue("p", "q0").await.unwrap();
        let status = node.status();
        assert!(status.snapshot_index.is_some(), "{status:?}");
        assert!(
            status.purged_index.is_some(),
            "the log was compacted: {status:?}"
        );
        let age = node.watched.snapshot_age_seconds();
        assert!(age.is_some_and(|age| age < 30.0), "{age:?}");
        cluster.stop(1).await;

        cluster.restart(1).await;
        let node = cluster.node(1);
        assert_eq!(node.lookup("p", "q0").await.unwrap(), None);
        for placement in &acknowledged[1..] {
            let found = node.lookup("p", &placement.queue).await.unwrap();
            assert_eq!(found.as_ref(), Some(placement));
        }
        let all = crate::ListQueues {
            limit: 100,
            with_count: true,
            ..Default::default()
        };
        assert_eq!(node.list_queues("p", &all).await.unwrap().count, 44);
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_added_later_catches_up_from_a_snapshot() {
    bounded(async {
        let mut cluster = TestCluster::start_with(1, 10).await;
        let first = cluster.node(1);
        first.add_pool(pool("a")).await.unwrap();
        place(&*first, 0..40).await;
        assert!(first.status().snapshot_index.is_some());

        let joining = cluster.start_joining().await;
        let err = cluster
            .node(joining)
            .add_voter(joining, &cluster.addr(joining))
            .await
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
        first
            .add_voter(joining, &cluster.addr(joining))
            .await
            .unwrap();
        let voters: Vec<u64> = first.status().voters.iter().map(|(id, _)| *id).collect();
        assert_eq!(voters, [1, joining]);

        cluster.wait_caught_up().await;
        let added = cluster.node(joining);
        assert!(
            added.status().snapshot_index.is_some(),
            "{:?}",
            added.status()
        );
        assert_eq!(added.local_state(), first.local_state());
        // The new voter serves reads and forwards writes.
        added.place_queue("p", "via-new-node", "").await.unwrap();
        assert!(first.lookup("p", "via-new-node").await.unwrap().is_some());
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_quorum_calls_fail_as_unavailable_and_change_nothing() {
    bounded(async {
        let mut cluster = TestCluster::start(3).await;
        let leader = cluster.leader().await;
        cluster.node(leader).add_pool(pool("a")).await.unwrap();
        let survivor = cluster.follower().await;
        cluster.wait_caught_up().await;
        for id in cluster.running() {
            if id != survivor {
                cluster.stop(id).await;
            }
        }
        // Restarted alone, with a short request timeout, it cannot find a leader.
        cluster.stop(survivor).await;
        cluster.request_timeout = Duration::from_millis(1500);
        cluster.restart(survivor).await;
        let node = cluster.node(survivor);
        let started = Instant::now();
        let err = node.place_queue("p", "q", "").await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
        assert!(err.code.retryable());
        let err = node.add_pool(pool("b")).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // It re-applied what it knew to be committed, and nothing else.
        assert_eq!(node.local_state().pools(), [pool("a")]);
        cluster.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_feeds_its_watchers_the_writes_made_through_any_node() {
    bounded(async {
        let cluster = TestCluster::start(3).await;
        let mut watches: Vec<_> = cluster
            .running()
            .into_iter()
            .map(|id| cluster.node(id).watch().unwrap())
            .collect();
        let follower = cluster.node(cluster.follower().await);
        follower.add_pool(pool("a")).await.unwrap();
        let leader = cluster.node(cluster.leader().await);
        leader.place_on("p", "q", "a").await.unwrap();
        for watch in &mut watches {
            let seen = crate::conformance::next_changes(watch, 2).await;
            assert_eq!(
                seen,
                [
                    crate::CatalogEvent::PoolChanged(pool("a")),
                    crate::CatalogEvent::Placed {
                        project: "p".into(),
                        queue: "q".into(),
                        pool: "a".into()
                    }
                ]
            );
        }
        cluster.shutdown().await;
    })
    .await;
}
