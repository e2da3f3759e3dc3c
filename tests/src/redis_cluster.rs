//! A Redis Cluster of real processes on 127.0.0.1: three masters with an append-only
//! file (`appendfsync always`), each with one replica, and a node timeout of one
//! second, so that the cluster replaces a dead master within a few seconds.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::{free_port, redis_cli, Redis};

/// The cluster; every node stops when it is dropped.
pub struct RedisCluster {
    pub nodes: Vec<Redis>,
}

impl RedisCluster {
    /// Starts six nodes, makes them a cluster of three masters with a replica each,
    /// and waits until every node sees the cluster whole and every replica is in sync.
    pub fn start() -> Result<RedisCluster> {
        let mut nodes = Vec::new();
        for _ in 0..6 {
            let bus = free_port().to_string();
            nodes.push(Redis::start_with(&[
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus,
                "--cluster-node-timeout",
                "1000",
                "--appendfsync",
                "always",
                "--repl-diskless-sync-delay",
                "0",
            ])?);
        }
        let addresses: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .context("redis-cli --cluster create")?;
        ensure!(
            created.status.success(),
            "redis-cli --cluster create: {}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = RedisCluster { nodes };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster.is_formed() {
            ensure!(
                Instant::now() < deadline,
                "the Redis Cluster did not form in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(cluster)
    }

    /// The pool URI of the cluster (through its first three nodes), with `params`.
    pub fn uri(&self, params: &str) -> String {
        let hosts: Vec<String> = self.nodes[..3]
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        format!("redis+cluster://{}{params}", hosts.join(","))
    }

    /// The port of the master that serves `key` now.
    pub fn master_of(&self, key: &str) -> Result<u16> {
        for node in &self.nodes {
            if !node.is_running() {
                continue;
            }
            let slot = redis_cli(node.port, &["CLUSTER", "KEYSLOT", key]);
            let slot: u16 = slot.trim().parse().context("CLUSTER KEYSLOT")?;
            // Lines of `CLUSTER NODES`: id address flags master ping pong epoch state slots...
            for line in redis_cli(node.port, &["CLUSTER", "NODES"]).lines() {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                    continue;
                }
                let serves = fields[8..].iter().any(|range| {
                    let (low, high) = range.split_once('-').unwrap_or((range, range));
                    match (low.parse::<u16>(), high.parse::<u16>()) {
                        (Ok(low), Ok(high)) => (low..=high).contains(&slot),
                        _ => false,
                    }
                });
                if serves {
                    let address = fields[1].split('@').next().unwrap_or_default();
                    let port = address.rsplit(':').next().unwrap_or_default();
                    return port.parse().context("a master's port");
                }
            }
        }
        bail!("no node names the master of {key}")
    }

    /// Kills the master that serves `key` (SIGKILL) and returns its port.
    pub fn kill_master_of(&mut self, key: &str) -> Result<u16> {
        let port = self.master_of(key)?;
        let node = self
            .nodes
            .iter_mut()
            .find(|node| node.port == port)
            .context("the master is one of the nodes")?;
        node.kill();
        Ok(port)
    }

    /// Whether every running node sees the cluster whole, every master has its
    /// replica and every replica is in sync.
    pub fn is_formed(&self) -> bool {
        self.nodes
            .iter()
            .filter(|node| node.is_running())
            .all(|node| {
                let info = redis_cli(node.port, &["CLUSTER", "INFO"]);
                let replication = redis_cli(node.port, &["INFO", "replication"]);
                info.contains("cluster_state:ok")
                    && info.contains("cluster_known_nodes:6")
                    && ((replication.contains("role:master")
                        && replication.contains("connected_slaves:1"))
                        || replication.contains("master_link_status:up"))
            })
    }
}
