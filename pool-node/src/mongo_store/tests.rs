//! Tests of what only the MongoDB store has: a server that dies and comes back,
//! a closed port, a malformed URI. The restart test runs its own SecantusDB
//! (`ZAQAR_TEST_SECANTUSD`, exported by scripts/test-servers.sh; skipped when
//! unset, unless `CI` is set); the delivery semantics are in the conformance suite.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zaqar_proto::pb::{NewMessage, QueueRef};
use zaqar_proto::ErrorCode;

use crate::conformance::ClaimTerms;
use crate::store::prelude::*;
use crate::store::{ListParams, Purge};

/// A secantusd-rs child process on a fixed port and data directory, killed when dropped.
struct TestSecantus {
    binary: PathBuf,
    data: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl TestSecantus {
    /// Starts the server at `ZAQAR_TEST_SECANTUSD`; `None` when that is unset.
    fn start(data: &Path) -> Option<TestSecantus> {
        let Some(binary) = std::env::var_os("ZAQAR_TEST_SECANTUSD") else {
            if std::env::var_os("CI").is_some() {
                panic!("ZAQAR_TEST_SECANTUSD must be set when CI is set");
            }
            eprintln!("skipped: ZAQAR_TEST_SECANTUSD not set");
            return None;
        };
        let mut server = TestSecantus {
            binary: binary.into(),
            data: data.to_path_buf(),
            port: free_port(),
            child: None,
        };
        server.run();
        Some(server)
    }

    /// Starts the process and waits until it accepts connections.
    fn run(&mut self) {
        let child = Command::new(&self.binary)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(&self.data)
            .args([
                "--cache-size",
                "64M",
                "--log-file-max",
                "16MB",
                "--sync-on-commit",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("secantusd-rs starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "secantusd-rs did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!(
            "mongodb://127.0.0.1:{}/zaqar?replicaSet=secantus",
            self.port
        )
    }

    /// Kills the process at once (SIGKILL: no clean shutdown) and waits for it.
    fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestSecantus {
    fn drop(&mut self) {
        self.crash();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("an address").port()
}

fn queue(name: &str) -> QueueRef {
    QueueRef {
        project: uuid::Uuid::new_v4().to_string(),
        queue: name.to_string(),
    }
}

fn message(n: usize) -> NewMessage {
    NewMessage {
        ttl: 3600,
        delay: 0,
        body_json: format!(r#"{{"n":{n}}}"#),
    }
}

fn everything() -> ListParams {
    ListParams {
        limit: 1000,
        echo: true,
        include_claimed: true,
        include_delayed: true,
        ..ListParams::default()
    }
}

/// Every message of the queue, listed page by page in FIFO order.
async fn all_ids(store: &Arc<dyn MessageStore>, queue: &QueueRef) -> Vec<String> {
    let mut params = everything();
    let mut ids = Vec::new();
    loop {
        let (page, marker) = store.list_messages(queue, &params).await.expect("list");
        if page.is_empty() {
            return ids;
        }
        ids.extend(page.into_iter().map(|m| m.id));
        params.marker = marker;
    }
}

/// A writer posts one message at a time while the server is killed and started
/// again on the same data: every post that was acknowledged is still there, in
/// order, and so are a claim and a subscription made before the crash. Calls
/// while the server is down fail as `Unavailable`, and the same store object
/// works again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_crash_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let Some(mut server) = TestSecantus::start(&dir.path().join("data")) else {
        return;
    };
    let store = super::open(&server.url()).await.expect("the store opens");
    let q = queue("restart");
    let before: Vec<NewMessage> = (0..10).map(message).collect();
    let mut acknowledged = store
        .post_messages(&q, "client", &before)
        .await
        .expect("post");
    let claim = store
        .claim_for(&q, 600, 600, 3)
        .await
        .expect("claim")
        .expect("messages to claim");
    let (subscription, _) = store
        .create_subscription(&q, "http://example.com/hook", 3600, "{}", true)
        .await
        .expect("subscribe");

    let writes = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (store, q, writes) = (Arc::clone(&store), q.clone(), Arc::clone(&writes));
        tokio::spawn(async move {
            let mut failures = 0_u32;
            for n in 10..70 {
                match store.post_messages(&q, "client", &[message(n)]).await {
                    Ok(ids) => writes.lock().unwrap().extend(ids),
                    Err(err) => {
                        assert_eq!(err.code, ErrorCode::Unavailable, "{err:?}");
                        failures += 1;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            failures
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.crash();
    let down = store.queue_stats(&q).await;
    assert_eq!(
        down.expect_err("the server is down").code,
        ErrorCode::Unavailable
    );
    server.run();
    let failures = writer.await.expect("the writer finishes");
    acknowledged.extend(writes.lock().unwrap().drain(..));
    eprintln!("{failures} posts failed while the server was down");

    // A post whose answer was lost with the server may have been stored too.
    let listed = all_ids(&store, &q).await;
    let in_order: Vec<&String> = listed
        .iter()
        .filter(|id| acknowledged.contains(id))
        .collect();
    assert_eq!(
        in_order,
        acknowledged.iter().collect::<Vec<_>>(),
        "nothing acknowledged is lost"
    );
    eprintln!("{} stored without an answer", listed.len() - in_order.len());
    let held = store.get_claim(&q, &claim.id).await.expect("the claim");
    assert_eq!(held.messages.len(), 3);
    store
        .get_subscription(&q, &subscription)
        .await
        .expect("the subscription");
    let after = store
        .post_messages(&q, "client", &[message(99)])
        .await
        .expect("a post after the restart");
    assert_eq!(
        all_ids(&store, &q).await.last(),
        after.last(),
        "FIFO goes on"
    );
    crate::conformance::claim_takes_up_to_limit_in_fifo_order(store).await;
}

#[tokio::test]
async fn a_closed_port_is_unavailable() {
    let url = format!("mongodb://127.0.0.1:{}/?replicaSet=secantus", free_port());
    let err = super::open(&url)
        .await
        .err()
        .expect("nothing listens there");
    assert_eq!(err.code, ErrorCode::Unavailable);
}

#[tokio::test]
async fn a_malformed_uri_is_bad_request() {
    let err = super::open("mongodb://host:notaport/").await.err().unwrap();
    assert_eq!(err.code, ErrorCode::BadRequest);
}

/// The execution statistics of a `find` of messages, as the server explains it.
async fn explained(
    store: &super::MongoStore,
    filter: mongodb::bson::Document,
    limit: i64,
) -> (i64, i64, i64) {
    use mongodb::bson::doc;
    let find = doc! { "find": "messages", "filter": filter, "sort": { "k": 1 }, "limit": limit };
    let explain = doc! { "explain": find, "verbosity": "executionStats" };
    let reply = store.messages.namespace().db;
    let reply = store
        .client
        .database(&reply)
        .run_command(explain)
        .await
        .unwrap();
    let stats = reply.get_document("executionStats").unwrap();
    let number = |field: &str| super::fields::int(stats, field);
    (
        number("nReturned"),
        number("totalKeysExamined"),
        number("totalDocsExamined"),
    )
}

#[tokio::test]
async fn claims_and_listings_examine_only_what_they_return() {
    let Some(url) = crate::conformance::test_mongo_url() else {
        return;
    };
    let store = super::MongoStore::connect(&url).await.unwrap();
    let q = queue("deep");
    let batch: Vec<_> = (0..500).map(message).collect();
    for _ in 0..6 {
        store.post_messages(&q, "producer", &batch).await.unwrap();
    }
    // 2,000 in flight ahead of the first free message.
    for _ in 0..4 {
        let claim = store.claim_for(&q, 600, 60, 500).await.unwrap().unwrap();
        assert_eq!(claim.messages.len(), 500);
    }
    let now = super::now_ms();
    let (head, last) = super::scan::head_and_last(&store, &q, None).await.unwrap();
    assert_eq!(
        (head, last),
        (2000, 3000),
        "the free head is past the claimed"
    );

    let window = |base: mongodb::bson::Document, wanted| {
        super::scan::Windows::new(head, last, wanted)
            .next(&base)
            .unwrap()
            .0
    };
    let free = window(super::scan::free_state(&q), 1);
    assert_eq!(explained(&store, free, 1).await, (1, 1, 1));
    let default = window(super::scan::free_state(&q), 10);
    assert_eq!(explained(&store, default, 10).await, (10, 10, 10));
    let all = window(super::of_queue(&q), 10);
    let (returned, keys, docs) = explained(&store, all, 10).await;
    assert_eq!(returned, 10);
    assert!(
        keys <= 11 && docs <= 10,
        "examined {keys} keys, {docs} documents"
    );
    for (state, end) in [
        (super::fields::CLAIMED, super::fields::CLAIM_EXPIRES),
        (super::fields::DELAYED, super::fields::VISIBLE),
    ] {
        let mut ended = super::of_queue(&q);
        ended.extend(mongodb::bson::doc! { super::fields::STATE: state, end: { "$lte": now } });
        let (returned, keys, _) = explained(&store, ended, 500).await;
        assert_eq!((returned, keys), (0, 0), "{end}");
    }
    store.purge_queue(&q, Purge::MESSAGES).await.unwrap();
}

#[tokio::test]
async fn stats_read_counts_and_the_expired_range_only() {
    use mongodb::bson::doc;
    let Some(url) = crate::conformance::test_mongo_url() else {
        return;
    };
    // A database of its own: the expired range spans every queue of one.
    let database = format!("stats_{}", uuid::Uuid::new_v4().simple());
    let url = url.replacen("/?", &format!("/{database}?"), 1);
    let store = super::MongoStore::connect(&url).await.unwrap();
    let q = queue("deep");
    let batch: Vec<_> = (0..500).map(message).collect();
    for _ in 0..4 {
        store.post_messages(&q, "producer", &batch).await.unwrap();
    }
    let short = NewMessage {
        ttl: 1,
        ..message(0)
    };
    store
        .post_messages(&q, "producer", &[short.clone(), short])
        .await
        .unwrap();
    store.claim_for(&q, 600, 60, 500).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let expired = super::queues::expired_by(&q, super::now_ms());
    let find = doc! { "find": "messages", "filter": expired };
    let explain = doc! { "explain": find, "verbosity": "executionStats" };
    let reply = store
        .client
        .database(&database)
        .run_command(explain)
        .await
        .unwrap();
    let executed = reply.get_document("executionStats").unwrap();
    let number = |field: &str| super::fields::int(executed, field);
    assert_eq!(number("nReturned"), 2);
    assert!(
        number("totalKeysExamined") <= 3 && number("totalDocsExamined") == 2,
        "{executed}"
    );
    let stats = store.queue_stats(&q).await.unwrap();
    assert_eq!((stats.total, stats.claimed, stats.free), (2000, 500, 1500));
    store.client.database(&database).drop().await.unwrap();
}

#[tokio::test]
async fn messages_of_an_older_build_get_their_state_and_size_when_opened() {
    use mongodb::bson::doc;
    let Some(url) = crate::conformance::test_mongo_url() else {
        return;
    };
    // A database of its own: the upgrade runs over every message of one.
    let database = format!("upgrade_{}", uuid::Uuid::new_v4().simple());
    let url = url.replacen("/?", &format!("/{database}?"), 1);
    let store = super::MongoStore::connect(&url).await.unwrap();
    let q = queue("old");
    let ids = store
        .post_messages(&q, "producer", &[message(0), message(1), message(2)])
        .await
        .unwrap();
    let claim = store.claim_for(&q, 600, 60, 1).await.unwrap().unwrap();
    // As an older build left them: no state, no schema version, no free head, no
    // counts (the message counter was there).
    store
        .messages
        .update_many(
            doc! {},
            doc! { "$unset": { super::fields::STATE: "", super::fields::SIZE: "" } },
        )
        .await
        .unwrap();
    store
        .messages
        .update_one(
            doc! { super::fields::ID: &ids[2] },
            doc! { "$set": { super::fields::VISIBLE: super::now_ms() + 600_000 } },
        )
        .await
        .unwrap();
    let unknown = vec![super::scan::head_key(&q), "schema".to_string()];
    store
        .counters
        .delete_many(doc! { super::fields::ID: { "$in": unknown } })
        .await
        .unwrap();
    store
        .counters
        .delete_many(doc! { super::fields::ID: { "$regex": "^n" } })
        .await
        .unwrap();

    let store = super::MongoStore::connect(&url).await.unwrap();
    let stats = store.queue_stats(&q).await.unwrap();
    assert_eq!((stats.total, stats.claimed, stats.delayed), (3, 1, 1));
    let bytes: usize = (0..3).map(|n| message(n).body_json.len()).sum();
    assert_eq!(
        stats.bytes, bytes as u64,
        "the sizes given, the bytes counted"
    );
    let (listed, _) = store.list_messages(&q, &everything()).await.unwrap();
    assert_eq!(listed.len(), 3);
    let free = ListParams {
        include_claimed: false,
        include_delayed: false,
        ..everything()
    };
    let (listed, _) = store.list_messages(&q, &free).await.unwrap();
    assert_eq!(listed.iter().map(|m| &m.id).collect::<Vec<_>>(), [&ids[1]]);
    let again = store.claim_for(&q, 600, 60, 10).await.unwrap().unwrap();
    assert_eq!(again.messages.len(), 1);
    assert_eq!(again.messages[0].id, ids[1]);
    store.delete_claim(&q, &claim.id).await.unwrap();
    let released = store.claim_for(&q, 600, 60, 10).await.unwrap().unwrap();
    assert_eq!(released.messages[0].id, ids[0]);
    let stats = store.queue_stats(&q).await.unwrap();
    assert_eq!((stats.total, stats.claimed, stats.delayed), (3, 2, 1));
    store.client.database(&database).drop().await.unwrap();
}

/// Checks that no message in the free state is at or before the queue's free head.
async fn assert_head_below_free(store: &super::MongoStore, q: &QueueRef) -> i64 {
    use futures::TryStreamExt;
    let (head, _) = super::scan::head_and_last(store, q, None).await.unwrap();
    let free: Vec<mongodb::bson::Document> = store
        .messages
        .find(super::scan::free_state(q))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let first = free
        .iter()
        .map(|d| super::fields::int(d, super::fields::SEQ));
    assert!(first.min().is_none_or(|seq| seq > head), "head {head}");
    head
}

/// The ids of `messages`.
fn ids(messages: &[zaqar_proto::pb::Message]) -> Vec<String> {
    messages.iter().map(|m| m.id.clone()).collect()
}

#[tokio::test]
async fn the_free_head_follows_claims_pops_releases_and_ends() {
    let Some(url) = crate::conformance::test_mongo_url() else {
        return;
    };
    let store = super::MongoStore::connect(&url).await.unwrap();
    let q = queue("head");
    let batch: Vec<_> = (0..20).map(message).collect();
    let mut posted = store.post_messages(&q, "producer", &batch).await.unwrap();
    let delayed = NewMessage {
        delay: 1,
        ..message(20)
    };
    posted.extend(
        store
            .post_messages(&q, "producer", &[delayed])
            .await
            .unwrap(),
    );
    let claim = |ttl, limit| store.claim_for(&q, ttl, 0, limit);

    let long = claim(600, 6).await.unwrap().unwrap();
    assert_eq!(ids(&long.messages), posted[0..6]);
    let short = claim(1, 4).await.unwrap().unwrap();
    assert_eq!(ids(&short.messages), posted[6..10]);
    assert_eq!(assert_head_below_free(&store, &q).await, 10);
    let popped = store.pop_messages(&q, 2).await.unwrap();
    assert_eq!(ids(&popped), posted[10..12]);
    assert_eq!(assert_head_below_free(&store, &q).await, 12);

    // A released claim below the head: its messages come first again.
    store.delete_claim(&q, &long.id).await.unwrap();
    assert!(assert_head_below_free(&store, &q).await < 1);
    let again = claim(600, 3).await.unwrap().unwrap();
    assert_eq!(ids(&again.messages), posted[0..3]);
    let marker = ListParams {
        limit: 4,
        marker: "1".to_string(),
        echo: true,
        ..ListParams::default()
    };
    let (page, next) = store.list_messages(&q, &marker).await.unwrap();
    assert_eq!(
        ids(&page),
        posted[3..6]
            .iter()
            .chain(&posted[12..13])
            .cloned()
            .collect::<Vec<_>>()
    );
    assert_eq!(next, "13");

    // The short claim ends and the delay passes: both are free again, in order.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let listed = ListParams {
        limit: 20,
        echo: true,
        ..ListParams::default()
    };
    let (page, _) = store.list_messages(&q, &listed).await.unwrap();
    let free: Vec<String> = [&posted[3..10], &posted[12..21]].concat();
    assert_eq!(ids(&page), free);
    assert!(assert_head_below_free(&store, &q).await < 7);
    let popped = store.pop_messages(&q, 5).await.unwrap();
    assert_eq!(ids(&popped), free[0..5]);
    let rest = claim(600, 20).await.unwrap().unwrap();
    assert_eq!(ids(&rest.messages), free[5..]);
    assert_eq!(assert_head_below_free(&store, &q).await, 21);
    assert!(claim(600, 1).await.unwrap().is_none());
    assert!(store.pop_messages(&q, 1).await.unwrap().is_empty());
    store.purge_queue(&q, Purge::MESSAGES).await.unwrap();
    let (page, _) = store.list_messages(&q, &everything()).await.unwrap();
    assert!(page.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_and_releases_keep_the_free_head_below_every_free_message() {
    let Some(url) = crate::conformance::test_mongo_url() else {
        return;
    };
    let store = Arc::new(super::MongoStore::connect(&url).await.unwrap());
    let q = queue("racing");
    let batch: Vec<_> = (0..40).map(message).collect();
    store.post_messages(&q, "producer", &batch).await.unwrap();
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (store, q) = (Arc::clone(&store), q.clone());
        workers.push(tokio::spawn(async move {
            for round in 0..6 {
                let Some(claim) = store.claim_for(&q, 600, 0, 3).await.unwrap() else {
                    continue;
                };
                // Half the claims are released again, below the head others raise.
                if (worker + round) % 2 == 0 {
                    store.delete_claim(&q, &claim.id).await.unwrap();
                }
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
    assert_head_below_free(&store, &q).await;
    let (free, _) = store
        .list_messages(
            &q,
            &ListParams {
                limit: 100,
                echo: true,
                ..ListParams::default()
            },
        )
        .await
        .unwrap();
    let (all, _) = store.list_messages(&q, &everything()).await.unwrap();
    let unclaimed: Vec<String> = all
        .iter()
        .filter(|m| m.claim_id.is_empty())
        .map(|m| m.id.clone())
        .collect();
    assert_eq!(ids(&free), unclaimed);
    let rest = store.claim_for(&q, 600, 0, 100).await.unwrap();
    assert_eq!(
        rest.map(|c| ids(&c.messages)).unwrap_or_default(),
        unclaimed
    );
    store.purge_queue(&q, Purge::MESSAGES).await.unwrap();
}

#[tokio::test]
async fn a_write_concern_that_can_lose_writes_is_reported() {
    let Some(url) = crate::conformance::test_mongo_url() else {
        return;
    };
    let durable = super::MongoStore::connect(&url).await.unwrap();
    assert_eq!(durable.volatility().await.unwrap(), None);
    let separator = if url.contains('?') { '&' } else { '?' };
    let unjournaled = format!("{url}{separator}journal=false");
    let volatile = super::MongoStore::connect(&unjournaled).await.unwrap();
    let gaps = volatile.volatility().await.unwrap().unwrap();
    assert!(gaps.starts_with("journal=false"), "{gaps}");
}

#[tokio::test]
async fn the_expiry_sweep_removes_and_counts_expired_messages() {
    use futures::TryStreamExt;
    use mongodb::bson::doc;
    let Some(url) = crate::conformance::test_mongo_url() else {
        return;
    };
    // A database of its own, so that the sweep meets only this test's messages.
    let database = format!("expiry_{}", uuid::Uuid::new_v4().simple());
    let url = url.replacen("/?", &format!("/{database}?"), 1);
    let store = super::MongoStore::connect(&url).await.unwrap();
    // As a build before the sweep left it: the TTL monitor removed a message as
    // soon as it expired, uncounted. Opening the store again makes it a plain index.
    store.messages.drop_index("e_1").await.unwrap();
    let immediate = mongodb::IndexModel::builder()
        .keys(doc! { super::fields::EXPIRES: 1 })
        .options(
            mongodb::options::IndexOptions::builder()
                .expire_after(Duration::ZERO)
                .build(),
        )
        .build();
    store.messages.create_index(immediate).await.unwrap();
    let store = super::MongoStore::connect(&url).await.unwrap();
    let expiry_index = store
        .messages
        .list_indexes()
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .into_iter()
        .find(|index| index.keys == doc! { super::fields::EXPIRES: 1 })
        .expect("the expiry index");
    assert_eq!(expiry_index.options.and_then(|o| o.expire_after), None);

    let q = queue("expiring");
    let short = NewMessage {
        ttl: 1,
        ..message(0)
    };
    store
        .post_messages(&q, "producer", &[short.clone(), short.clone(), short])
        .await
        .unwrap();
    let kept = store
        .post_messages(&q, "producer", &[message(1)])
        .await
        .unwrap();
    assert_eq!(store.remove_expired_messages().await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let stats = store.queue_stats(&q).await.unwrap();
    assert_eq!((stats.total, stats.free), (1, 1), "expired, not yet swept");
    let before = crate::metrics::event_total("mongodb", "expired");
    assert_eq!(store.remove_expired_messages().await.unwrap(), 3);
    assert_eq!(store.remove_expired_messages().await.unwrap(), 0);
    assert!(crate::metrics::event_total("mongodb", "expired") >= before + 3);
    let (listed, _) = store.list_messages(&q, &everything()).await.unwrap();
    assert_eq!(ids(&listed), kept);
    assert_eq!(store.messages.count_documents(doc! {}).await.unwrap(), 1);
    assert_eq!(store.queue_stats(&q).await.unwrap().total, 1, "swept");
    let mut session = store.client.start_session().await.unwrap();
    let written = super::counts::read(&store, &q, &mut session).await.unwrap();
    assert_eq!(written.total(), 1, "the sweep counted what it removed");
    store.client.database(&database).drop().await.unwrap();
}

#[tokio::test]
async fn a_post_through_one_pool_node_wakes_the_streams_of_another() {
    let Some(url) = crate::conformance::test_mongo_url() else {
        return;
    };
    let open = || async {
        let store = super::MongoStore::connect(&url)
            .await
            .expect("the store opens");
        std::sync::Arc::new(store)
    };
    crate::activity::assert_relayed(open().await, open().await, queue("relayed")).await;
}
