//! A Redis Sentinel group of real processes on 127.0.0.1: a master with an
//! append-only file, two replicas and three sentinels watching it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};

use crate::{free_port, redis_cli, wait_for_port, Process, Redis};

/// The master's name in the sentinels' configuration.
pub const MASTER_NAME: &str = "zaqar-pool";

/// The group; every process stops when it is dropped.
pub struct SentinelGroup {
    /// The data nodes: the first one starts as the master.
    pub nodes: Vec<Redis>,
    sentinel_ports: Vec<u16>,
    _sentinels: Vec<Process>,
    _dir: tempfile::TempDir,
}

impl SentinelGroup {
    /// Starts the group and waits until every sentinel knows both replicas and the
    /// other sentinels, and both replicas are in sync.
    pub fn start() -> Result<SentinelGroup> {
        // No delay before a replica's first sync (5 s by default).
        let now = ["--repl-diskless-sync-delay", "0"];
        let master = Redis::start_with(&now)?;
        let master_port = master.port.to_string();
        let replica = ["--replicaof", "127.0.0.1", &master_port, now[0], now[1]];
        let mut nodes = vec![master];
        for _ in 0..2 {
            nodes.push(Redis::start_with(&replica)?);
        }
        let dir = tempfile::tempdir()?;
        let mut sentinels = Vec::new();
        let mut sentinel_ports = Vec::new();
        // A failover whose promoted replica does not report itself master within
        // `failover-timeout` is given up, and another sentinel starts one of its own
        // after twice that, promoting another replica: what the first one acknowledged
        // is then lost. With 2 s, a loaded 2-core CI machine once lost 335 posts
        // acknowledged 4 s after the kill that way. Likewise a master that does not
        // answer a sentinel within `down-after-milliseconds` is failed over: with 1 s,
        // a sentinel (on the same 2 cores as two fault tests and their load) called the
        // replica it had just promoted down a second later, and a second failover lost
        // what that one acknowledged in between (reproduced with two CPU hogs beside
        // the test: its sentinel logs show `+sdown master` of the new master 1.0 s after
        // `+switch-master`). 3 s keeps a starved master from being taken for dead.
        for i in 0..3 {
            let port = free_port();
            let config = dir.path().join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &config,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 3000\n\
                     sentinel failover-timeout {MASTER_NAME} 6000\n",
                    dir.path().display(),
                    nodes[0].port
                ),
            )?;
            let config = config.to_string_lossy().to_string();
            sentinels.push(Process::spawn(
                &format!("sentinel-{port}"),
                &PathBuf::from("redis-server"),
                &[&config, "--sentinel"],
                dir.path(),
            )?);
            wait_for_port(port, Duration::from_secs(10))?;
            sentinel_ports.push(port);
        }
        let group = SentinelGroup {
            nodes,
            sentinel_ports,
            _sentinels: sentinels,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !group.is_formed() {
            ensure!(
                Instant::now() < deadline,
                "the Sentinel group did not form in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(group)
    }

    /// The pool URI of database `db` of the group, in Zaqar's form, with `params`.
    pub fn uri(&self, db: u8, params: &str) -> String {
        let sentinels: Vec<String> = self
            .sentinel_ports
            .iter()
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        format!(
            "redis://{}?master={MASTER_NAME}&dbid={db}{params}",
            sentinels.join(",")
        )
    }

    /// The port of the master the first sentinel that answers names.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinel_ports.iter().find_map(|port| {
            let reply = redis_cli(*port, &["SENTINEL", "get-master-addr-by-name", MASTER_NAME]);
            reply.lines().nth(1)?.trim().parse().ok()
        })
    }

    /// Kills the master (SIGKILL) and returns its port.
    pub fn kill_master(&mut self) -> Option<u16> {
        let port = self.master_port()?;
        self.nodes.iter_mut().find(|node| node.port == port)?.kill();
        Some(port)
    }

    /// Has the first sentinel force a failover (`SENTINEL FAILOVER`, as an operator
    /// would); the sentinels promote a replica about a second later.
    pub fn force_failover(&mut self) -> Result<()> {
        let reply = redis_cli(
            self.sentinel_ports[0],
            &["SENTINEL", "FAILOVER", MASTER_NAME],
        );
        ensure!(reply.trim() == "OK", "SENTINEL FAILOVER: {reply}");
        Ok(())
    }

    fn is_formed(&self) -> bool {
        let knows_all = self.sentinel_ports.iter().all(|port| {
            let fields = redis_cli(*port, &["SENTINEL", "master", MASTER_NAME]);
            let fields: Vec<&str> = fields.lines().collect();
            let field = |name: &str| {
                let i = fields.iter().position(|f| *f == name)?;
                fields.get(i + 1).copied()
            };
            field("num-slaves") == Some("2") && field("num-other-sentinels") == Some("2")
        });
        let synced = self.nodes[1..].iter().all(|node| {
            redis_cli(node.port, &["INFO", "replication"]).contains("master_link_status:up")
        });
        knows_all && synced
    }
}
