//! Tests of what only the redis store has: a dead or restarted Redis, lazy
//! index clean-up, a queue that is its own dead letter queue. Each test runs
//! its own `redis-server` on a free port (skipped when it is not installed,
//! unless `CI` is set); the delivery semantics are in the conformance suite.
//! `depth.rs` checks that an operation's work does not grow with the queue,
//! `migration.rs` the move of a layout 1 store, `sentinel.rs` a pool that follows
//! its master through Sentinel failovers, `relay.rs` the activity relay between the
//! pool-nodes of one store.

mod cluster;
mod depth;
mod group_commit;
mod migration;
mod relay;
mod sentinel;
mod tls;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use zaqar_proto::pb::{NewMessage, QueueRef};
use zaqar_proto::ErrorCode;

use super::keys::{QueueKeys, Slots};
use super::{RedisStore, CALL_TIMEOUT};
use crate::conformance::ClaimTerms;
use crate::store::prelude::*;
use crate::store::{ListParams, Purge};

/// Sentinel failover tests run one at a time: two groups electing at once on two
/// cores, beside the other tests, can take longer than the tests' bounds.
static FAILOVERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A redis-server child process, killed when dropped, with its files (if a
/// test turns persistence on) in a directory of its own.
struct TestRedis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TestRedis {
    /// Starts redis-server on a free port; `None` when it is not installed.
    fn start() -> Option<TestRedis> {
        Self::start_on(free_port())
    }

    /// [`Self::start`], and a store connected to it.
    async fn with_store() -> Option<(TestRedis, RedisStore)> {
        let redis = Self::start()?;
        let store = RedisStore::connect(&redis.url()).await.unwrap();
        Some((redis, store))
    }

    fn start_on(port: u16) -> Option<TestRedis> {
        Self::start_with(port, &[])
    }

    /// Starts redis-server on `port` with `extra` arguments after the usual ones.
    fn start_with(port: u16, extra: &[&str]) -> Option<TestRedis> {
        let dir = tempfile::tempdir().expect("a directory for redis");
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.path())
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(_) if std::env::var_os("CI").is_none() => {
                eprintln!("skipped: redis-server is not installed");
                return None;
            }
            Err(err) => panic!("redis-server must run when CI is set: {err}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(TestRedis {
            child,
            port,
            _dir: dir,
        })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Stops the server (its data is gone: it saves nothing).
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address").port()
}

fn queue(name: &str) -> QueueRef {
    QueueRef {
        project: format!("project {{with}} odd: chars {}", uuid::Uuid::new_v4()),
        queue: name.to_string(),
    }
}

fn message(ttl: u32) -> NewMessage {
    NewMessage {
        ttl,
        delay: 0,
        body_json: "{}".into(),
    }
}

fn everything() -> ListParams {
    ListParams {
        limit: 20,
        echo: true,
        include_claimed: true,
        include_delayed: true,
        ..ListParams::default()
    }
}

/// The bound within which a call on a dead Redis must fail.
fn bound() -> Duration {
    CALL_TIMEOUT + Duration::from_secs(1)
}

#[tokio::test]
async fn a_closed_port_is_unavailable_quickly() {
    let started = Instant::now();
    let url = format!("redis://127.0.0.1:{}/0", free_port());
    let err = super::open(&url)
        .await
        .err()
        .expect("nothing listens there");
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(started.elapsed() < bound(), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_malformed_uri_is_bad_request() {
    let err = super::open("redis://host:notaport/0").await.err().unwrap();
    assert_eq!(err.code, ErrorCode::BadRequest);
}

#[tokio::test]
async fn calls_fail_fast_while_redis_is_down_and_recover_when_it_is_back() {
    let Some(mut redis) = TestRedis::start() else {
        return;
    };
    let store = super::open(&redis.url()).await.expect("opens");
    let q = queue("restart");
    store.post_messages(&q, "c", &[message(60)]).await.unwrap();

    redis.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let err = store.list_messages(&q, &everything()).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Unavailable);
        assert!(started.elapsed() < bound(), "took {:?}", started.elapsed());
    }

    let _redis = TestRedis::start_on(redis.port).expect("restarts");
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.health().await.is_err() {
        assert!(Instant::now() < deadline, "the store did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The scripts are loaded again by themselves (NOSCRIPT on a fresh server).
    let ids = store.post_messages(&q, "c", &[message(60)]).await.unwrap();
    let (listed, _) = store.list_messages(&q, &everything()).await.unwrap();
    assert_eq!(
        listed.iter().map(|m| &m.id).collect::<Vec<_>>(),
        vec![&ids[0]]
    );
}

#[tokio::test]
async fn a_hung_redis_times_out_and_is_used_again_when_it_answers() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let store = super::open(&redis.url()).await.expect("opens");
    let signal = |name: &str| {
        let pid = redis.child.id().to_string();
        let status = Command::new("kill").args([name, &pid]).status().unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    let started = Instant::now();
    let err = store.health().await.unwrap_err();
    signal("-CONT");
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(started.elapsed() < bound(), "took {:?}", started.elapsed());

    let deadline = Instant::now() + Duration::from_secs(10);
    while store.health().await.is_err() {
        assert!(Instant::now() < deadline, "the store did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn expired_messages_leave_the_indexes_lazily() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let store = Arc::new(RedisStore::connect(&redis.url()).await.unwrap());
    let q = queue("lazy");
    store
        .post_messages(&q, "c", &[message(1), message(1)])
        .await
        .unwrap();
    let kept = store.post_messages(&q, "c", &[message(60)]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;

    let free_key = QueueKeys::new(&q, Slots::Project).queue()[1].clone();
    let indexed = || async {
        let mut cmd = redis::cmd("ZCARD");
        cmd.arg(&free_key);
        store.query::<u64>(&cmd).await.unwrap()
    };
    assert_eq!(indexed().await, 3, "nothing has touched the queue yet");
    assert_eq!(
        store.queue_stats(&q).await.unwrap().total,
        1,
        "counted by expiry"
    );
    let (listed, _) = store.list_messages(&q, &everything()).await.unwrap();
    assert_eq!(
        listed.iter().map(|m| &m.id).collect::<Vec<_>>(),
        vec![&kept[0]]
    );
    assert_eq!(indexed().await, 1, "the stale entries are gone");
}

#[tokio::test]
async fn a_queue_can_be_its_own_dead_letter_queue() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let store = super::open(&redis.url()).await.unwrap();
    let q = queue("loop");
    let metadata = r#"{"_max_claim_count": 1, "_dead_letter_queue": "loop"}"#;
    store.create_queue(&q, metadata).await.unwrap();
    let first = store.post_messages(&q, "c", &[message(60)]).await.unwrap();
    let second = store.post_messages(&q, "c", &[message(60)]).await.unwrap();

    let claim = store.claim_for(&q, 60, 60, 1).await.unwrap().unwrap();
    store.delete_claim(&q, &claim.id).await.unwrap();
    // The first is exhausted: it moves behind the second, once, and is not claimed.
    let claim = store.claim_for(&q, 60, 60, 1).await.unwrap().unwrap();
    assert_eq!(claim.messages[0].id, second[0]);
    let (listed, _) = store.list_messages(&q, &everything()).await.unwrap();
    let order: Vec<_> = listed.iter().map(|m| m.id.clone()).collect();
    assert_eq!(order, vec![second[0].clone(), first[0].clone()]);
}

/// The number of entries of each message key of `q`: fre, hld, lat, exp, clm, dly, m.
async fn entries(store: &RedisStore, q: &QueueRef) -> Vec<u64> {
    let keys = QueueKeys::new(q, Slots::Project).queue();
    let mut counts = Vec::new();
    for (key, command) in keys[1..]
        .iter()
        .zip(["ZCARD"; 6].into_iter().chain(["HLEN"]))
    {
        let mut cmd = redis::cmd(command);
        cmd.arg(key);
        counts.push(store.query::<u64>(&cmd).await.unwrap());
    }
    counts
}

#[tokio::test]
async fn posting_sweeps_expired_messages() {
    let Some((_redis, store)) = TestRedis::with_store().await else {
        return;
    };
    let q = queue("sweep");
    let short = [message(1), message(1), message(1)];
    store.post_messages(&q, "c", &short).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;

    // Posts sweep when the sequence number passes a multiple of 16.
    let twelve: Vec<_> = (0..12).map(|_| message(60)).collect();
    store.post_messages(&q, "c", &twelve).await.unwrap();
    assert_eq!(entries(&store, &q).await, vec![15, 0, 0, 15, 0, 0, 15]);
    store.post_messages(&q, "c", &[message(60)]).await.unwrap();
    assert_eq!(entries(&store, &q).await, vec![13, 0, 0, 13, 0, 0, 13]);
}

#[tokio::test]
async fn the_expiry_sweep_counts_each_expired_message_once() {
    let Some((_redis, store)) = TestRedis::with_store().await else {
        return;
    };
    let (met, idle) = (queue("met"), queue("idle"));
    let short = [message(1), message(1), message(1)];
    store.post_messages(&met, "c", &short).await.unwrap();
    let kept = store
        .post_messages(&met, "c", &[message(60)])
        .await
        .unwrap();
    store.post_messages(&idle, "c", &short[..2]).await.unwrap();
    // More queues than one step visits, so that a round takes several steps.
    for n in 0..600 {
        let empty = queue(&format!("empty-{n}"));
        store.create_queue(&empty, "{}").await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;

    // A listing meets the expired messages of `met` and removes them; the sweep
    // counts them, and removes those of `idle`, which nothing touched.
    let (listed, _) = store.list_messages(&met, &everything()).await.unwrap();
    assert_eq!(listed.iter().map(|m| &m.id).collect::<Vec<_>>(), [&kept[0]]);
    assert_eq!(entries(&store, &met).await, vec![1, 0, 0, 1, 0, 0, 1]);
    assert_eq!(entries(&store, &idle).await, vec![2, 0, 0, 2, 0, 0, 2]);
    let before = crate::metrics::event_total("redis", "expired");
    let mut counted = 0;
    // Two rounds at least: the second finds nothing more to count.
    for _ in 0..6 {
        counted += store.remove_expired_messages().await.unwrap();
    }
    assert_eq!(counted, 5);
    assert_eq!(entries(&store, &idle).await, vec![0; 7]);
    assert!(crate::metrics::event_total("redis", "expired") >= before + 5);
}

#[tokio::test]
async fn message_keys_live_an_hour_past_the_last_message() {
    let Some((_redis, store)) = TestRedis::with_store().await else {
        return;
    };
    let q = queue("lifetime");
    let [_, fre, hld, lat, exp, clm, dly, msg] = QueueKeys::new(&q, Slots::Project).queue();
    let ttl_ms = |key: String| {
        let store = &store;
        async move {
            let mut cmd = redis::cmd("PTTL");
            cmd.arg(key);
            store.query::<i64>(&cmd).await.unwrap()
        }
    };
    // Whether `ms` is an hour past `seconds`, and at most an hour past the next second.
    let within =
        |ms: i64, seconds: i64| (seconds + 3600) * 1000 < ms && ms <= (seconds + 3601) * 1000;

    let posted = store.post_messages(&q, "c", &[message(100)]).await.unwrap();
    for key in [&fre, &exp, &msg] {
        assert!(within(ttl_ms(key.clone()).await, 99), "{key}");
    }
    // A later message and a claim extending another move the lifetime on.
    store
        .post_messages(&q, "c", &[message(4000)])
        .await
        .unwrap();
    assert!(within(ttl_ms(msg.clone()).await, 3999));
    store.claim_for(&q, 60, 8000, 1).await.unwrap().unwrap();
    for key in [&fre, &hld, &exp, &clm, &msg] {
        assert!(within(ttl_ms(key.clone()).await, 8059), "{key}");
    }

    // Keys emptied and written anew expire again.
    store.purge_queue(&q, Purge::MESSAGES).await.unwrap();
    assert_eq!(entries(&store, &q).await, vec![0; 7]);
    let delayed = NewMessage {
        delay: 30,
        ..message(100)
    };
    store.post_messages(&q, "c", &[delayed]).await.unwrap();
    for key in [&lat, &exp, &dly, &msg] {
        assert!(within(ttl_ms(key.clone()).await, 8059), "{key}");
    }
    assert!(store.get_messages(&q, &posted).await.unwrap().is_empty());
}

#[tokio::test]
async fn purging_drops_the_claims_on_its_messages() {
    let Some((_redis, store)) = TestRedis::with_store().await else {
        return;
    };
    let q = queue("purge");
    store
        .post_messages(&q, "c", &[message(60), message(60)])
        .await
        .unwrap();
    let claim = store.claim_for(&q, 60, 60, 2).await.unwrap().unwrap();
    store.purge_queue(&q, Purge::MESSAGES).await.unwrap();

    let err = store.get_claim(&q, &claim.id).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(entries(&store, &q).await, vec![0; 7]);
}

#[tokio::test]
async fn a_server_without_aof_or_with_an_evicting_limit_is_volatile() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let store = super::open(&redis.url()).await.unwrap();
    let gaps = store
        .volatility()
        .await
        .unwrap()
        .expect("no AOF is volatile");
    assert!(gaps.contains("appendonly"), "{gaps}");

    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let set = |name: &'static str, value: &'static str| {
        redis::cmd("CONFIG").arg("SET").arg(name).arg(value).clone()
    };
    let _: () = set("appendonly", "yes")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(store.volatility().await.unwrap(), None);
    let _: () = set("maxmemory", "100mb")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: () = set("maxmemory-policy", "allkeys-lru")
        .query_async(&mut conn)
        .await
        .unwrap();
    let gaps = store
        .volatility()
        .await
        .unwrap()
        .expect("evicting is volatile");
    assert!(gaps.contains("allkeys-lru"), "{gaps}");
}

#[tokio::test]
async fn zaqar_uri_forms_select_the_database_and_the_unix_socket() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    // Zaqar's `dbid` (the redis crate's `/db` path form is read too).
    let zaqar_form = format!("redis://127.0.0.1:{}?dbid=3&socket_timeout=2", redis.port);
    let store = super::open(&zaqar_form).await.unwrap();
    let q = queue("in-db-3");
    store.post_messages(&q, "c", &[message(60)]).await.unwrap();
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/3", redis.port)).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("zq:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.len() > 1, "db 3 holds {keys:?}");
    let path_form = format!("redis://127.0.0.1:{}/3", redis.port);
    let same = super::open(&path_form).await.unwrap();
    let (listed, _) = same.list_messages(&q, &everything()).await.unwrap();
    assert_eq!(listed.len(), 1);

    // A server on a Unix socket only, in Zaqar's `redis:/path` form.
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("redis.sock");
    let mut child = Command::new("redis-server")
        .args(["--port", "0", "--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .arg("--unixsocket")
        .arg(&socket)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let unix = super::open(&format!("redis:{}?dbid=1", socket.display()))
        .await
        .unwrap();
    let q = queue("over-a-socket");
    unix.post_messages(&q, "c", &[message(60)]).await.unwrap();
    let (listed, _) = unix.list_messages(&q, &everything()).await.unwrap();
    assert_eq!(listed.len(), 1);
    let _ = child.kill();
    let _ = child.wait();

    // Sentinels that do not answer: a clear 503 at once, not a hang.
    let nobody = free_port();
    let started = Instant::now();
    let sentinel = super::open(&format!("redis://127.0.0.1:{nobody}?master=mymaster"))
        .await
        .err()
        .expect("no sentinel answers");
    assert_eq!(sentinel.code, ErrorCode::Unavailable, "{sentinel:?}");
    assert!(
        sentinel
            .description
            .contains("no sentinel names a reachable master"),
        "{sentinel:?}"
    );
    assert!(started.elapsed() < CALL_TIMEOUT + Duration::from_secs(1));
}
