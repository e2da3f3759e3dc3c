//! The raft catalog node's Prometheus metrics, read from its status at each scrape:
//! `zaqar_raft_term`, `zaqar_raft_is_leader` (1 on the leader), `zaqar_raft_has_leader`
//! (1 while this node knows a leader), `zaqar_raft_last_log_index`,
//! `zaqar_raft_last_applied_index`, `zaqar_raft_snapshot_index`, `zaqar_raft_voters`,
//! `zaqar_raft_log_entries` (entries not yet purged into a snapshot) and
//! `zaqar_catalog_placements` (queues placed); and from what [`RaftWatched`] counted
//! as it happened: `zaqar_raft_leader_changes_total` and
//! `zaqar_raft_snapshot_age_seconds`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::types::Raft;
use super::RaftCatalog;

/// What a task following a node's raft metrics counts between scrapes: the times
/// the leader it knows changed to another one, and when its snapshot last changed
/// (built, or installed from the leader; first seen at start for the one it loaded).
#[derive(Debug, Default)]
pub struct RaftWatched {
    leader_changes: AtomicU64,
    snapshot: Mutex<Option<(u64, Instant)>>,
}

impl RaftWatched {
    /// Follows `raft`'s metrics until the node stops.
    pub fn follow(raft: &Raft) -> Arc<RaftWatched> {
        let watched = Arc::new(RaftWatched::default());
        let mut metrics = raft.metrics();
        let counting = watched.clone();
        tokio::spawn(async move {
            let mut leader = None;
            loop {
                {
                    let now = metrics.borrow_and_update();
                    if now.current_leader.is_some() && now.current_leader != leader {
                        if leader.is_some() {
                            counting.leader_changes.fetch_add(1, Ordering::Relaxed);
                        }
                        leader = now.current_leader;
                    }
                    let index = now.snapshot.map(|id| id.index);
                    let mut snapshot = counting.snapshot.lock().expect("never poisoned");
                    if index.is_some() && index != snapshot.map(|(index, _)| index) {
                        *snapshot = index.map(|index| (index, Instant::now()));
                    }
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        });
        watched
    }

    /// Times the known leader changed to another node since this one started.
    pub fn leader_changes(&self) -> u64 {
        self.leader_changes.load(Ordering::Relaxed)
    }

    /// Seconds since the snapshot changed, if there is one.
    pub fn snapshot_age_seconds(&self) -> Option<f64> {
        let snapshot = self.snapshot.lock().expect("never poisoned");
        snapshot.map(|(_, at)| at.elapsed().as_secs_f64())
    }
}

/// Register with `Registry::register_collector`.
pub struct RaftMetrics(pub Arc<RaftCatalog>);

impl std::fmt::Debug for RaftMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RaftMetrics(node {})", self.0.node_id())
    }
}

impl Collector for RaftMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let status = self.0.status();
        let index = |index: Option<u64>| index.map_or(0, |i| i as i64);
        let gauges = [
            (
                "zaqar_raft_term",
                "The raft term this node is in",
                status.term as i64,
            ),
            (
                "zaqar_raft_is_leader",
                "1 when this node is the raft leader",
                i64::from(status.leader == Some(status.node_id)),
            ),
            (
                "zaqar_raft_has_leader",
                "1 while this node knows a raft leader",
                i64::from(status.leader.is_some()),
            ),
            (
                "zaqar_raft_last_log_index",
                "Index of the last entry of this node's raft log",
                index(status.last_log_index),
            ),
            (
                "zaqar_raft_last_applied_index",
                "Index of the last raft entry this node applied to its catalog",
                index(status.last_applied_index),
            ),
            (
                "zaqar_raft_snapshot_index",
                "Index of the last raft entry in this node's snapshot",
                index(status.snapshot_index),
            ),
            (
                "zaqar_raft_voters",
                "Voting members of the raft group, as this node knows it",
                status.voters.len() as i64,
            ),
        ];
        let log_entries = index(status.last_log_index) - index(status.purged_index);
        let placements = self.0.read_state(|state| state.queue_count()) as i64;
        let more = [
            (
                "zaqar_raft_log_entries",
                "Entries of this node's raft log not yet purged into a snapshot",
                log_entries,
            ),
            (
                "zaqar_catalog_placements",
                "Queues placed, as this catalog node's state holds them",
                placements,
            ),
        ];
        for (name, help, value) in gauges.into_iter().chain(more) {
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        let watched = &self.0.watched;
        let changes = ConstCounter::new(watched.leader_changes());
        let metric = encoder.encode_descriptor(
            "zaqar_raft_leader_changes",
            "Times the leader this node knows changed to another node since it started",
            None,
            changes.metric_type(),
        )?;
        changes.encode(metric)?;
        if let Some(age) = watched.snapshot_age_seconds() {
            let age = ConstGauge::new(age);
            let metric = encoder.encode_descriptor(
                "zaqar_raft_snapshot_age_seconds",
                "Time since this node's snapshot last changed (built or installed; at start, the one it loaded)",
                None,
                age.metric_type(),
            )?;
            age.encode(metric)?;
        }
        Ok(())
    }
}
