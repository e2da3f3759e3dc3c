//! Test clusters of raft catalog nodes in one process, on free loopback ports, with
//! their data in a temporary directory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::raft::{NodeId, RaftCatalog, RaftConfig};

/// How long a test waits for a leader or for a node to catch up.
pub const WAIT: Duration = Duration::from_secs(20);

/// Nodes `1..=n` of one cluster; stopped nodes keep their address and data.
pub struct TestCluster {
    dir: tempfile::TempDir,
    addrs: BTreeMap<NodeId, SocketAddr>,
    running: BTreeMap<NodeId, Arc<RaftCatalog>>,
    snapshot_logs: u64,
    /// The request timeout of nodes started from now on.
    pub request_timeout: Duration,
}

impl TestCluster {
    /// Starts nodes `1..=size`, all of them initial members.
    pub async fn start(size: u64) -> TestCluster {
        TestCluster::start_with(size, 1000).await
    }

    /// Like [`start`](Self::start), with a snapshot every `snapshot_logs` entries.
    pub async fn start_with(size: u64, snapshot_logs: u64) -> TestCluster {
        let mut cluster = TestCluster {
            dir: tempfile::tempdir().unwrap(),
            addrs: BTreeMap::new(),
            running: BTreeMap::new(),
            snapshot_logs,
            request_timeout: Duration::from_secs(10),
        };
        let mut listeners = Vec::new();
        for id in 1..=size {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            cluster.addrs.insert(id, listener.local_addr().unwrap());
            listeners.push((id, listener));
        }
        let members: Vec<(NodeId, String)> = cluster
            .addrs
            .iter()
            .map(|(id, addr)| (*id, addr.to_string()))
            .collect();
        for (id, listener) in listeners {
            let config = RaftConfig {
                initial_members: members.clone(),
                ..cluster.config(id)
            };
            let node = RaftCatalog::start_on(config, listener).await.unwrap();
            cluster.running.insert(id, Arc::new(node));
        }
        cluster
    }

    /// The configuration of node `id`, with fast test timings and no initial members.
    pub fn config(&self, id: NodeId) -> RaftConfig {
        RaftConfig {
            snapshot_logs: self.snapshot_logs,
            heartbeat: Duration::from_millis(50),
            election_timeout: Duration::from_millis(300),
            request_timeout: self.request_timeout,
            ..RaftConfig::new(
                id,
                self.addrs[&id],
                self.dir.path().join(format!("node-{id}")),
            )
        }
    }

    /// Starts a node that is not a member yet (to be added by the leader); its id is
    /// the next free one.
    pub async fn start_joining(&mut self) -> NodeId {
        let id = self.addrs.keys().next_back().map_or(1, |id| id + 1);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.addrs.insert(id, listener.local_addr().unwrap());
        let node = RaftCatalog::start_on(self.config(id), listener)
            .await
            .unwrap();
        self.running.insert(id, Arc::new(node));
        id
    }

    pub fn addr(&self, id: NodeId) -> String {
        self.addrs[&id].to_string()
    }

    /// The running node `id`.
    pub fn node(&self, id: NodeId) -> Arc<RaftCatalog> {
        self.running[&id].clone()
    }

    pub fn running(&self) -> Vec<NodeId> {
        self.running.keys().copied().collect()
    }

    /// Stops node `id`, keeping its data.
    pub async fn stop(&mut self, id: NodeId) {
        let node = self.running.remove(&id).expect("the node runs");
        node.shutdown().await;
    }

    /// Starts node `id` again from its data directory, on its old address.
    pub async fn restart(&mut self, id: NodeId) {
        assert!(!self.running.contains_key(&id), "node {id} is running");
        let node = RaftCatalog::start(self.config(id)).await.unwrap();
        self.running.insert(id, Arc::new(node));
    }

    /// Waits until a running node is the leader with a quorum behind it, and returns its
    /// id. (A restarted leader believes it leads until it hears of a newer term.)
    pub async fn leader(&self) -> NodeId {
        let wait = async {
            loop {
                let mut claims: Vec<(u64, NodeId)> = self
                    .running
                    .iter()
                    .filter(|(_, node)| node.is_leader())
                    .map(|(id, node)| (node.status().term, *id))
                    .collect();
                claims.sort_unstable_by(|a, b| b.cmp(a));
                for (_, id) in claims {
                    let confirmed = self.running[&id].raft.ensure_linearizable();
                    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(1), confirmed).await
                    {
                        return id;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .expect("a leader is elected")
    }

    /// A running node that is not the leader.
    pub async fn follower(&self) -> NodeId {
        let leader = self.leader().await;
        *self
            .running
            .keys()
            .find(|id| **id != leader)
            .expect("a follower runs")
    }

    /// Waits until every running node has applied all that the leader has applied.
    pub async fn wait_caught_up(&self) {
        let leader = self.node(self.leader().await);
        let applied = leader.status().last_applied_index;
        for node in self.running.values() {
            node.raft
                .wait(Some(WAIT))
                .applied_index_at_least(applied, "catch up with the leader")
                .await
                .unwrap();
        }
    }

    /// Stops every running node.
    pub async fn shutdown(mut self) {
        for id in self.running() {
            self.stop(id).await;
        }
    }
}
