//! The raft catalog node's Prometheus metrics, read from its status at each scrape:
//! `zaqar_raft_term`, `zaqar_raft_is_leader` (1 on the leader), `zaqar_raft_has_leader`
//! (1 while this node knows a leader), `zaqar_raft_last_log_index`,
//! `zaqar_raft_last_applied_index`, `zaqar_raft_snapshot_index` and `zaqar_raft_voters`.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

use super::RaftCatalog;

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
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}
