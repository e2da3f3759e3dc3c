//! A pool on a Sentinel group (a master, two replicas, three sentinels, all real
//! processes): the store follows the master through a kill -9 of the master and
//! through a forced failover, answers 503 (never hangs) while there is none, and
//! with `min_replicas_ack=1` keeps every post it acknowledged through the kill.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zaqar_proto::ErrorCode;

use super::{free_port, message, queue, TestRedis};
use crate::redis_store::link::SENTINEL_POLL;
use crate::redis_store::{RedisStore, CALL_TIMEOUT};
use crate::store::prelude::*;

const MASTER_NAME: &str = "zaqar-pool";

/// A `redis-server --sentinel` child process watching [`MASTER_NAME`], killed when dropped.
struct TestSentinel {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TestSentinel {
    /// A sentinel of the group whose master is on `master_port`. A failover whose
    /// promoted replica does not report itself master within `failover-timeout` is
    /// cancelled; with 2 s, a forced failover on a loaded 2-core CI machine was once
    /// cancelled half-way, and the sentinels named a replica for over 15 s.
    fn start(master_port: u16) -> TestSentinel {
        let dir = tempfile::tempdir().expect("a directory for the sentinel");
        let port = free_port();
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 3000\n\
                 sentinel failover-timeout {MASTER_NAME} 6000\n",
                dir.path().display()
            ),
        )
        .expect("the sentinel's configuration");
        let child = Command::new("redis-server")
            .arg(&config)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel");
        TestSentinel {
            child,
            port,
            _dir: dir,
        }
    }

    async fn ask<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port))?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("SENTINEL")
            .arg(args)
            .query_async(&mut conn)
            .await
    }

    /// The port of the master this sentinel names now.
    async fn master_port(&self) -> Option<u16> {
        let addr: Option<(String, u16)> = self
            .ask(&["get-master-addr-by-name", MASTER_NAME])
            .await
            .ok()?;
        addr.map(|(_, port)| port)
    }

    /// Whether it knows the master's `replicas` and the two other sentinels.
    async fn knows_the_group(&self, replicas: u32) -> bool {
        let Ok(fields) = self.ask::<Vec<String>>(&["master", MASTER_NAME]).await else {
            return false;
        };
        let field = |name: &str| {
            fields
                .iter()
                .position(|f| f == name)
                .and_then(|i| fields.get(i + 1))
                .and_then(|v| v.parse::<u32>().ok())
        };
        field("num-slaves") == Some(replicas) && field("num-other-sentinels") == Some(2)
    }
}

impl Drop for TestSentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `replica` has finished its sync with its master.
async fn replica_in_sync(replica: &TestRedis) -> bool {
    let info: redis::RedisResult<String> = async {
        let mut conn = redis::Client::open(replica.url())?
            .get_multiplexed_async_connection()
            .await?;
        redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut conn)
            .await
    }
    .await;
    info.is_ok_and(|info| info.contains("master_link_status:up"))
}

/// Posts one message at a time until one is acknowledged (within `deadline`),
/// adding the ids of acknowledged posts to `acked`; returns the failed posts.
async fn post_until_served(
    store: &RedisStore,
    q: &zaqar_proto::pb::QueueRef,
    acked: &mut Vec<String>,
    deadline: Duration,
) -> u32 {
    let started = Instant::now();
    let mut failed = 0;
    loop {
        let call = Instant::now();
        match store.post_messages(q, "c", &[message(3600)]).await {
            Ok(ids) => {
                acked.extend(ids);
                return failed;
            }
            Err(err) => {
                assert_eq!(err.code, ErrorCode::Unavailable, "{err:?}");
                assert!(call.elapsed() < CALL_TIMEOUT + Duration::from_secs(1));
                failed += 1;
                assert!(
                    started.elapsed() < deadline,
                    "the pool did not serve again within {deadline:?} ({failed} posts \
                     refused, the last with {err:?})"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn assert_all_kept(store: &RedisStore, q: &zaqar_proto::pb::QueueRef, acked: &[String]) {
    let found = store.get_messages(q, acked).await.unwrap();
    assert_eq!(
        found.len(),
        acked.len(),
        "acknowledged posts were lost ({} of {})",
        acked.len() - found.len(),
        acked.len()
    );
}

#[tokio::test]
async fn the_store_follows_its_master_through_failovers_and_keeps_what_it_acknowledged() {
    let _one_at_a_time = super::FAILOVERS.lock().await;
    // No delay before a replica's first sync (5 s by default).
    let now = ["--repl-diskless-sync-delay", "0"];
    let Some(first) = TestRedis::start_with(free_port(), &now) else {
        return;
    };
    let first_port = first.port.to_string();
    let replica = ["--replicaof", "127.0.0.1", &first_port, now[0], now[1]];
    let mut nodes = vec![first];
    for _ in 0..2 {
        nodes.push(TestRedis::start_with(free_port(), &replica).expect("a replica"));
    }
    let sentinels: Vec<TestSentinel> = (0..3).map(|_| TestSentinel::start(nodes[0].port)).collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    for sentinel in &sentinels {
        while !sentinel.knows_the_group(2).await {
            assert!(
                Instant::now() < deadline,
                "the sentinels did not find each other"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for node in &nodes[1..] {
        while !replica_in_sync(node).await {
            assert!(Instant::now() < deadline, "a replica did not sync");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let addresses: Vec<String> = sentinels
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let uri = format!(
        "redis://{}?master={MASTER_NAME}&min_replicas_ack=1&dbid=2",
        addresses.join(",")
    );
    let store = RedisStore::connect(&uri)
        .await
        .expect("the store on Sentinel");
    let q = queue("through-failovers");
    let mut acked = Vec::new();
    for _ in 0..20 {
        acked.extend(
            store
                .post_messages(&q, "c", &[message(3600)])
                .await
                .unwrap(),
        );
    }

    // kill -9 of the master: calls fail with 503 until the sentinels promote a
    // replica, and every post acknowledged before is on it.
    let first_master = nodes[0].port;
    nodes[0].stop();
    let started = Instant::now();
    let failed = post_until_served(&store, &q, &mut acked, Duration::from_secs(30)).await;
    eprintln!(
        "kill -9 of the master: served again {:?} later, {failed} posts refused",
        started.elapsed()
    );
    let second_master = sentinels[1].master_port().await.expect("a master");
    assert_ne!(second_master, first_master);
    let fresh = RedisStore::connect(&uri).await.expect("a second store");
    assert_all_kept(&fresh, &q, &acked).await;

    // The killed node comes back as a replica of the new master.
    let following = second_master.to_string();
    let replica = ["--replicaof", "127.0.0.1", &following, now[0], now[1]];
    nodes[0] = TestRedis::start_with(first_master, &replica).expect("the node again");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !replica_in_sync(&nodes[0]).await {
        assert!(Instant::now() < deadline, "the node did not sync again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A forced failover (as an operator's SENTINEL FAILOVER): the old master keeps
    // accepting writes until the sentinels demote it, seconds later; the store
    // leaves it as soon as the sentinels name the new one.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sentinels[0]
        .ask::<String>(&["failover", MASTER_NAME])
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "no second failover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let third_master = loop {
        match sentinels[0].master_port().await {
            Some(port) if port != second_master => break port,
            _ => {}
        }
        assert!(Instant::now() < deadline, "the failover did not happen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(SENTINEL_POLL * 2).await;
    let mut after = Vec::new();
    post_until_served(&store, &q, &mut after, Duration::from_secs(30)).await;
    for _ in 0..10 {
        after.extend(
            store
                .post_messages(&q, "c", &[message(3600)])
                .await
                .unwrap(),
        );
    }
    let on_new_master = RedisStore::connect(&format!("redis://127.0.0.1:{third_master}/2"))
        .await
        .expect("the new master");
    assert_all_kept(&on_new_master, &q, &after).await;
    acked.extend(after);
    assert_all_kept(&RedisStore::connect(&uri).await.unwrap(), &q, &acked).await;
    // Pool-nodes on the master the sentinels name now relay their activity.
    super::relay::posts_through_one_reach_the_streams_of_the_other(&uri).await;
}
