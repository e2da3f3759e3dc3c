//! The configuration of one raft catalog node, checked once before the node starts.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use openraft::SnapshotPolicy;
use zaqar_proto::cluster_auth::ClusterToken;
use zaqar_proto::ZaqarError;

use crate::raft::types::NodeId;

/// How a raft catalog node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftConfig {
    /// This node's id, unique in the cluster and never reused.
    pub node_id: NodeId,
    /// Where the raft service listens for its peers.
    pub listen_addr: SocketAddr,
    /// `host:port` under which the peers reach this node; it is stored in the cluster
    /// membership.
    pub advertise_addr: String,
    /// The node's raft log and snapshot. One process per directory.
    pub data_dir: PathBuf,
    /// The local address this node's connections to its peers leave from (none: the
    /// one the system picks for each peer).
    pub source_ip: Option<IpAddr>,
    /// The voters of a new cluster, `(id, host:port)`. The member with the lowest id
    /// initializes the cluster when its log is empty; nodes with an empty list wait to
    /// be added by [`add_learner`](crate::raft::RaftCatalog::add_learner) and
    /// [`change_membership`](crate::raft::RaftCatalog::change_membership).
    pub initial_members: Vec<(NodeId, String)>,
    /// A snapshot is built every this many log entries, and as many are kept after it
    /// for peers that lag a little; older entries are purged.
    pub snapshot_logs: u64,
    /// How often the leader sends heartbeats.
    pub heartbeat: Duration,
    /// A follower that hears no heartbeat for a random time between this and twice
    /// this starts an election.
    pub election_timeout: Duration,
    /// How long a catalog call waits for a leader before it fails as `unavailable`.
    pub request_timeout: Duration,
    /// The token every raft call between the nodes carries and requires (none: unchecked).
    pub cluster_token: ClusterToken,
    /// Cut a log damaged before its end at the damage instead of refusing to start.
    pub repair_log: bool,
}

impl RaftConfig {
    /// A node with the default timings and compaction, advertising its listen address,
    /// waiting to be added to a cluster (see [`RaftConfig::initial_members`]).
    pub fn new(node_id: NodeId, listen_addr: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        RaftConfig {
            node_id,
            listen_addr,
            advertise_addr: listen_addr.to_string(),
            source_ip: None,
            data_dir: data_dir.into(),
            initial_members: Vec::new(),
            snapshot_logs: 1000,
            heartbeat: Duration::from_millis(150),
            election_timeout: Duration::from_millis(750),
            request_timeout: Duration::from_secs(10),
            cluster_token: ClusterToken::none(),
            repair_log: false,
        }
    }

    /// The same node as the only member of a new cluster (`zaqar standalone`).
    pub fn single_node(mut self) -> Self {
        self.initial_members = vec![(self.node_id, self.advertise_addr.clone())];
        self
    }

    /// Checks the configuration.
    pub fn validate(&self) -> Result<(), ZaqarError> {
        validate_addr(&self.advertise_addr)?;
        let mut ids = BTreeSet::new();
        for (id, addr) in &self.initial_members {
            validate_addr(addr)?;
            if !ids.insert(id) {
                return Err(ZaqarError::bad_request(format!(
                    "raft node {id} appears twice in the initial members"
                )));
            }
            if *id == self.node_id && *addr != self.advertise_addr {
                return Err(ZaqarError::bad_request(format!(
                    "the initial members give node {id} the address {addr:?}, but it advertises {:?}",
                    self.advertise_addr
                )));
            }
        }
        if self.snapshot_logs == 0 {
            return Err(ZaqarError::bad_request("snapshot_logs must be at least 1"));
        }
        if self.heartbeat.is_zero() || self.election_timeout <= self.heartbeat * 2 {
            return Err(ZaqarError::bad_request(format!(
                "the raft election timeout ({:?}) must exceed twice the heartbeat ({:?})",
                self.election_timeout, self.heartbeat
            )));
        }
        if self.request_timeout.is_zero() {
            return Err(ZaqarError::bad_request(
                "the raft request timeout must be above 0",
            ));
        }
        Ok(())
    }

    /// Whether this node forms a new cluster (when its log is empty).
    pub(crate) fn initializes(&self) -> bool {
        self.initial_members.iter().map(|(id, _)| *id).min() == Some(self.node_id)
    }

    pub(crate) fn openraft_config(&self) -> Result<openraft::Config, ZaqarError> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        openraft::Config {
            cluster_name: "zaqar-catalog".to_string(),
            heartbeat_interval: millis(self.heartbeat),
            election_timeout_min: millis(self.election_timeout),
            election_timeout_max: millis(self.election_timeout * 2),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs),
            max_in_snapshot_log_to_keep: self.snapshot_logs,
            snapshot_max_chunk_size: 4 << 20,
            ..Default::default()
        }
        .validate()
        .map_err(|err| ZaqarError::bad_request(format!("invalid raft configuration: {err}")))
    }
}

/// Checks a peer address: `host:port`, no scheme.
pub fn validate_addr(addr: &str) -> Result<(), ZaqarError> {
    let valid = addr.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains("://")
            && !host.contains(char::is_whitespace)
            && port.parse::<u16>().is_ok_and(|port| port > 0)
    });
    if valid {
        Ok(())
    } else {
        Err(ZaqarError::bad_request(format!(
            "invalid raft node address {addr:?}: expected host:port"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> RaftConfig {
        RaftConfig::new(1, "127.0.0.1:7100".parse().unwrap(), "/tmp/raft-1").single_node()
    }

    #[test]
    fn the_defaults_are_valid_and_a_single_node_initializes() {
        let config = config();
        config.validate().unwrap();
        config.openraft_config().unwrap();
        assert!(config.initializes());
        assert!(!RaftConfig {
            node_id: 2,
            ..config
        }
        .initializes());
    }

    #[test]
    fn bad_configurations_are_bad_requests() {
        let bad = [
            RaftConfig {
                advertise_addr: "http://host:1".into(),
                ..config()
            },
            RaftConfig {
                initial_members: vec![(1, "127.0.0.1:7100".into()), (1, "h:2".into())],
                ..config()
            },
            RaftConfig {
                initial_members: vec![(1, "127.0.0.1:9999".into())],
                ..config()
            },
            RaftConfig {
                initial_members: vec![(2, "no-port".into())],
                ..config()
            },
            RaftConfig {
                snapshot_logs: 0,
                ..config()
            },
            RaftConfig {
                election_timeout: Duration::from_millis(200),
                ..config()
            },
        ];
        for config in bad {
            let err = config.validate().unwrap_err();
            assert_eq!(err.code, zaqar_proto::ErrorCode::BadRequest, "{config:?}");
        }
    }
}
