//! Tests of what only the SQLite store has: its file, reopening it, and clean-up.
//! The behaviour every backend shares is checked by `crate::conformance`.

use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::Row;
use zaqar_proto::pb::{Message, NewMessage, QueueRef};
use zaqar_proto::ErrorCode;

use super::database::sqlite_gaps;
use super::*;
use crate::conformance::ClaimTerms;
use crate::store::prelude::*;
use crate::store::{ListParams, Purge};

fn queue() -> QueueRef {
    QueueRef {
        project: "project-a".into(),
        queue: "orders".into(),
    }
}

/// A store in a file of a fresh temporary directory (kept while the directory lives).
async fn temp_store() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("z.db").to_str().unwrap())
        .await
        .unwrap();
    (store, dir)
}

fn message(ttl: u32) -> NewMessage {
    NewMessage {
        ttl,
        delay: 0,
        body_json: r#"{"n":1}"#.into(),
    }
}

#[tokio::test]
async fn everything_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dirs/zaqar.db");
    let path = path.to_str().unwrap();
    let q = queue();
    let (ids, claim_id, subscription_id) = {
        let store = open(path).await.unwrap();
        store
            .create_queue(&q, r#"{"_max_claim_count":5}"#)
            .await
            .unwrap();
        let ids = store
            .post_messages(&q, "client", &[message(300), message(300)])
            .await
            .unwrap();
        let claim = store.claim_for(&q, 300, 60, 1).await.unwrap().unwrap();
        let (subscription_id, _) = store
            .create_subscription(&q, "http://example.com/hook", 3600, "{}", true)
            .await
            .unwrap();
        (ids, claim.id, subscription_id)
    };
    let store = open(path).await.unwrap();
    assert_eq!(
        store.get_queue(&q).await.unwrap().as_deref(),
        Some(r#"{"_max_claim_count":5}"#)
    );
    let params = ListParams {
        limit: 10,
        echo: true,
        include_claimed: true,
        ..ListParams::default()
    };
    let (listed, _) = store.list_messages(&q, &params).await.unwrap();
    let listed_ids: Vec<_> = listed.iter().map(|m| m.id.clone()).collect();
    assert_eq!(listed_ids, ids);
    assert_eq!(listed[0].claim_id, claim_id);
    assert_eq!(listed[0].checksum, checksum(r#"{"n":1}"#));
    let claim = store.get_claim(&q, &claim_id).await.unwrap();
    assert_eq!(claim.messages.len(), 1);
    let subscription = store.get_subscription(&q, &subscription_id).await.unwrap();
    assert!(subscription.confirmed);
}

#[tokio::test]
async fn the_expiry_sweep_removes_and_counts_expired_messages_in_batches() {
    let (store, _dir) = temp_store().await;
    let q = queue();
    let short: Vec<_> = (0..1200).map(|_| message(1)).collect();
    store.post_messages(&q, "client", &short).await.unwrap();
    let kept = store
        .post_messages(&q, "client", &[message(300)])
        .await
        .unwrap();
    let before = crate::metrics::event_total("sqlite", "expired");
    assert_eq!(store.remove_expired_batch(now_ms()).await.unwrap(), 0);
    let later = now_ms() + 2000;
    assert_eq!(store.remove_expired_batch(later).await.unwrap(), 1000);
    assert_eq!(store.remove_expired_batch(later).await.unwrap(), 200);
    assert_eq!(store.remove_expired_batch(later).await.unwrap(), 0);
    assert!(crate::metrics::event_total("sqlite", "expired") >= before + 1200);
    let left: Vec<String> = sqlx::query_scalar("SELECT id FROM messages")
        .fetch_all(&store.reader)
        .await
        .unwrap();
    assert_eq!(left, kept);
}

#[tokio::test]
async fn remove_expired_deletes_expired_rows_only() {
    let (store, _dir) = temp_store().await;
    let q = queue();
    let ids = store
        .post_messages(&q, "client", &[message(1), message(300)])
        .await
        .unwrap();
    store.claim_for(&q, 1, 0, 1).await.unwrap().unwrap();
    store
        .create_subscription(&q, "http://example.com/hook", 1, "{}", true)
        .await
        .unwrap();
    assert_eq!(store.remove_expired(now_ms()).await.unwrap(), 0);
    // Two seconds from now: the message, the claim and the subscription are gone.
    assert_eq!(store.remove_expired(now_ms() + 2000).await.unwrap(), 3);
    let left: Vec<String> = sqlx::query("SELECT id FROM messages")
        .fetch_all(&store.reader)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get("id"))
        .collect();
    assert_eq!(left, vec![ids[1].clone()]);
}

#[tokio::test]
async fn a_file_that_cannot_be_created_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let path = file.join("zaqar.db");
    let err = open(path.to_str().unwrap()).await.err().unwrap();
    assert_eq!(err.code, ErrorCode::Unavailable);
}

#[test]
fn markers_are_decimal_sequence_numbers() {
    assert_eq!(parse_marker("").unwrap(), 0);
    assert_eq!(parse_marker("42").unwrap(), 42);
    assert_eq!(parse_marker("4x2").unwrap_err().code, ErrorCode::BadRequest);
}

#[test]
fn checksum_is_zaqars_md5() {
    // md5("{}") = 99914b932bd37a50b983c5e7c90ae93b
    assert_eq!(checksum("{}"), "MD5:99914b932bd37a50b983c5e7c90ae93b");
}

/// The detail lines of the plan SQLite makes for `sql` with these binds.
async fn plan(store: &SqliteStore, sql: &str, texts: &[&str], ints: &[i64]) -> Vec<String> {
    let explain = format!("EXPLAIN QUERY PLAN {sql}");
    let mut query = sqlx::query(&explain);
    for text in texts {
        query = query.bind(*text);
    }
    for int in ints {
        query = query.bind(*int);
    }
    query
        .fetch_all(&store.reader)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>("detail"))
        .collect()
}

/// Every access to `messages` in `lines` is a search of `index` with `range`.
fn searches_only(lines: &[String], index_and_range: &[&str]) {
    let accesses: Vec<_> = lines
        .iter()
        .filter(|line| line.contains(" messages"))
        .collect();
    assert!(!accesses.is_empty(), "{lines:?}");
    for line in accesses {
        assert!(
            index_and_range
                .iter()
                .any(|expected| line.ends_with(expected)),
            "{line} in {lines:?}"
        );
    }
}

#[tokio::test]
async fn claims_pops_and_listings_read_only_the_rows_they_return() {
    let (store, _dir) = temp_store().await;
    let free_range = "INDEX messages_by_state (project=? AND queue=? AND state=? AND seq>?)";
    let free = plan(&store, &messages::free_sql(), &["p", "q"], &[0, 0, 10]).await;
    searches_only(&free, &[free_range]);
    for states in [
        vec![FREE],
        vec![FREE, CLAIMED],
        vec![FREE, CLAIMED, DELAYED],
    ] {
        let sql = messages::listing_sql(&states);
        let lines = plan(&store, &sql, &["p", "q"], &[0, 0, 1]).await;
        searches_only(&lines, &[free_range]);
    }
    let ended = plan(&store, &messages::free_ended_sql(), &["p", "q"], &[0, 10]).await;
    searches_only(
        &ended,
        &[
            "INDEX messages_claims_ending (project=? AND queue=? AND claim_expires_ms<?)",
            "INDEX messages_delays_ending (project=? AND queue=? AND visible_ms<?)",
            "USING INTEGER PRIMARY KEY (rowid=?)",
        ],
    );
}

#[tokio::test]
async fn stats_read_the_counts_row_and_ranges_of_ended_rows_only() {
    let (store, _dir) = temp_store().await;
    let counts = plan(&store, &queues::counts_sql(), &["p", "q"], &[0]).await;
    searches_only(
        &counts,
        &[
            "INDEX messages_claims_ending (project=? AND queue=? AND claim_expires_ms<?)",
            "INDEX messages_delays_ending (project=? AND queue=? AND visible_ms<?)",
        ],
    );
    let expired = plan(&store, &queues::expired_sql(), &["p", "q"], &[0]).await;
    searches_only(&expired, &["INDEX messages_by_expiry (expires_ms<?)"]);
    for order in ["ASC", "DESC"] {
        let ends = plan(&store, &queues::ends_sql(order), &["p", "q"], &[0]).await;
        searches_only(
            &ends,
            &["INDEX messages_by_state (project=? AND queue=? AND state=?)"],
        );
    }
}

/// The queue's stats as a count of every row: what `message_counts` must agree with.
async fn counted_row_by_row(store: &SqliteStore, q: &QueueRef) -> (u64, u64, u64, u64) {
    let row = sqlx::query(
        "SELECT COUNT(*) AS total, \
                COALESCE(SUM(claim_expires_ms > ?1), 0) AS claimed, \
                COALESCE(SUM(claim_expires_ms <= ?1 AND visible_ms > ?1), 0) AS delayed, \
                COALESCE(SUM(length(CAST(body AS BLOB))), 0) AS bytes \
         FROM messages WHERE project = ?2 AND queue = ?3 AND expires_ms > ?1",
    )
    .bind(now_ms())
    .bind(&q.project)
    .bind(&q.queue)
    .fetch_one(&store.reader)
    .await
    .unwrap();
    let count = |column: &str| row.get::<i64, _>(column) as u64;
    (
        count("total"),
        count("claimed"),
        count("delayed"),
        count("bytes"),
    )
}

#[tokio::test]
async fn stats_from_the_counts_agree_with_counting_every_row() {
    let (store, _dir) = temp_store().await;
    let q = queue();
    let other = QueueRef {
        project: "project-b".into(),
        queue: "orders".into(),
    };
    let agree = |store: &SqliteStore, q: &QueueRef, step: &str| {
        let (store, q, step) = (store.clone(), q.clone(), step.to_string());
        async move {
            let stats = store.queue_stats(&q).await.unwrap();
            let counted = counted_row_by_row(&store, &q).await;
            assert_eq!(
                (stats.total, stats.claimed, stats.delayed, stats.bytes),
                counted,
                "{step}"
            );
            assert_eq!(stats.free, counted.0 - counted.1, "{step}");
        }
    };
    let delayed = NewMessage {
        delay: 60,
        ..message(300)
    };
    let batch: Vec<_> = (0..12).map(|_| message(300)).collect();
    let ids = store.post_messages(&q, "client", &batch).await.unwrap();
    store
        .post_messages(&q, "client", &[delayed.clone(), delayed])
        .await
        .unwrap();
    store.post_messages(&other, "client", &batch).await.unwrap();
    agree(&store, &q, "posted").await;
    let first = store.claim_for(&q, 60, 60, 4).await.unwrap().unwrap();
    let second = store.claim_for(&q, 60, 60, 3).await.unwrap().unwrap();
    store.claim_for(&other, 60, 60, 5).await.unwrap().unwrap();
    agree(&store, &q, "claimed").await;
    store
        .delete_message(&q, &first.messages[0].id, Some(&first.id))
        .await
        .unwrap();
    store.delete_claim(&q, &second.id).await.unwrap();
    store.pop_messages(&q, 2).await.unwrap();
    store.delete_message(&q, &ids[11], None).await.unwrap();
    agree(&store, &q, "deleted, released and popped").await;
    // Rows whose claim ended, whose delay passed and that expired, none of
    // them rewritten or swept yet.
    let now = now_ms();
    for sql in [
        "UPDATE messages SET claim_expires_ms = ?1 - 1 WHERE id = ?2",
        "UPDATE messages SET visible_ms = ?1 - 1 \
         WHERE seq = (SELECT MIN(seq) FROM messages WHERE state = 2 AND project = 'project-a')",
        "UPDATE messages SET expires_ms = ?1 - 1 WHERE id = ?3",
        "UPDATE messages SET expires_ms = ?1 - 1 \
         WHERE seq = (SELECT MAX(seq) FROM messages WHERE state = 2 AND project = 'project-a')",
        "UPDATE messages SET expires_ms = ?1 - 1 WHERE id = ?4",
    ] {
        sqlx::query(sql)
            .bind(now)
            .bind(&first.messages[1].id)
            .bind(&first.messages[2].id)
            .bind(&ids[10])
            .execute(&store.writer)
            .await
            .unwrap();
    }
    agree(&store, &q, "ended, passed and expired").await;
    store.claim_for(&q, 60, 60, 10).await.unwrap().unwrap();
    agree(&store, &q, "ended rows freed and claimed again").await;
    agree(&store, &other, "the other project's queue").await;
    store.purge_queue(&q, Purge::MESSAGES).await.unwrap();
    agree(&store, &q, "purged").await;
    let rows: i64 = sqlx::query("SELECT COUNT(*) FROM message_counts WHERE project = 'project-a'")
        .fetch_one(&store.reader)
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "an empty queue keeps no counts row");
}

/// The schema of the builds before 2026-12-04 (version 0), for the upgrade test.
const VERSION_0_MESSAGES: &str = r#"
CREATE TABLE messages (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    project          TEXT NOT NULL,
    queue            TEXT NOT NULL,
    client_id        TEXT NOT NULL,
    body             TEXT NOT NULL,
    checksum         TEXT NOT NULL,
    ttl              INTEGER NOT NULL,
    created_ms       INTEGER NOT NULL,
    visible_ms       INTEGER NOT NULL,
    expires_ms       INTEGER NOT NULL,
    claim_id         TEXT,
    claim_expires_ms INTEGER NOT NULL DEFAULT 0,
    claim_count      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_by_queue ON messages (project, queue, seq);
"#;

#[tokio::test]
async fn a_file_of_an_older_build_is_upgraded_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.db");
    let path = path.to_str().unwrap();
    let now = now_ms();
    {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new()
            .connect_with(options)
            .await
            .unwrap();
        sqlx::raw_sql(VERSION_0_MESSAGES)
            .execute(&pool)
            .await
            .unwrap();
        // m0 claimed by c1, m1 free, m2 whose claim ended, m3 delayed.
        for (id, visible, claim, claim_expires) in [
            ("m0", now, Some("c1"), now + 60_000),
            ("m1", now, None, 0),
            ("m2", now, Some("c0"), now - 1000),
            ("m3", now + 60_000, None, 0),
        ] {
            sqlx::query(
                "INSERT INTO messages (id, project, queue, client_id, body, checksum, ttl, \
                 created_ms, visible_ms, expires_ms, claim_id, claim_expires_ms) \
                 VALUES (?, 'project-a', 'orders', 'c', '{}', 'MD5:x', 300, ?, ?, ?, ?, ?)",
            )
            .bind(id)
            .bind(now)
            .bind(visible)
            .bind(now + 300_000)
            .bind(claim)
            .bind(claim_expires)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }
    let store = SqliteStore::open(path).await.unwrap();
    let version: i64 = sqlx::query("PRAGMA user_version")
        .fetch_one(&store.reader)
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 4);
    let q = queue();
    let params = ListParams {
        limit: 10,
        echo: true,
        ..ListParams::default()
    };
    let (listed, _) = store.list_messages(&q, &params).await.unwrap();
    assert_eq!(ids(&listed), ["m1", "m2"]);
    let claim = store.claim_for(&q, 60, 60, 10).await.unwrap().unwrap();
    assert_eq!(ids(&claim.messages), ["m1", "m2"]);
    let stats = store.queue_stats(&q).await.unwrap();
    assert_eq!(
        (stats.total, stats.claimed, stats.delayed, stats.bytes),
        (4, 3, 1, 8)
    );
    drop(store);

    // A file of version 3: counts without bytes, and triggers that keep none.
    rewrite(
        path,
        "DROP TRIGGER message_counts_on_insert; DROP TRIGGER message_counts_on_delete; \
         DROP TRIGGER message_counts_on_move; ALTER TABLE message_counts DROP COLUMN bytes; \
         PRAGMA user_version = 3",
    )
    .await;
    let store = SqliteStore::open(path).await.unwrap();
    let stats = store.queue_stats(&q).await.unwrap();
    assert_eq!((stats.total, stats.bytes), (4, 8));
    store.delete_message(&q, "m3", None).await.unwrap();
    assert_eq!(store.queue_stats(&q).await.unwrap().bytes, 6);
    drop(store);

    rewrite(path, "PRAGMA user_version = 5").await;
    let err = SqliteStore::open(path).await.err().unwrap();
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(
        err.description.contains("schema version 5"),
        "{}",
        err.description
    );
}

/// Runs `sql` on the file at `path` with a connection of its own, as an older build
/// (or a newer one) would have left the file.
async fn rewrite(path: &str, sql: &str) {
    let options = SqliteConnectOptions::new().filename(path);
    let pool = SqlitePoolOptions::new()
        .connect_with(options)
        .await
        .unwrap();
    sqlx::raw_sql(sql).execute(&pool).await.unwrap();
    pool.close().await;
}

fn ids(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.id.as_str()).collect()
}

#[tokio::test]
async fn purges_and_clean_ups_delete_in_batches_and_keep_later_posts() {
    let (store, _dir) = temp_store().await;
    let q = queue();
    let batch: Vec<_> = (0..500).map(|_| message(1)).collect();
    for _ in 0..5 {
        store.post_messages(&q, "client", &batch).await.unwrap();
    }
    assert_eq!(store.remove_expired(now_ms() + 2000).await.unwrap(), 2500);
    for _ in 0..5 {
        store.post_messages(&q, "client", &batch).await.unwrap();
    }
    store.purge_queue(&q, Purge::MESSAGES).await.unwrap();
    assert_eq!(store.queue_stats(&q).await.unwrap().total, 0);
    let kept = store
        .post_messages(&q, "client", &[message(300)])
        .await
        .unwrap();
    store.delete_queue(&q).await.unwrap();
    assert!(store.get_messages(&q, &kept).await.unwrap().is_empty());
    assert_eq!(store.get_queue(&q).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_given_up_half_way_leave_the_store_usable() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path().join("z.db").to_str().unwrap())
        .await
        .unwrap();
    let q = queue();
    store
        .post_messages(&q, "client", &[message(300)])
        .await
        .unwrap();
    // Callers that give up after a few microseconds, at every point of a
    // transaction, several at once.
    let mut callers = tokio::task::JoinSet::new();
    for caller in 0..8u64 {
        let (store, q) = (Arc::clone(&store), q.clone());
        callers.spawn(async move {
            let params = ListParams {
                limit: 5,
                ..ListParams::default()
            };
            let one = [message(300)];
            for round in 0..150u64 {
                let wait = Duration::from_micros((round * 37 + caller * 101) % 1500);
                let post = store.post_messages(&q, "client", &one);
                let _ = tokio::time::timeout(wait, post).await;
                let claim = store.claim_for(&q, 60, 60, 1);
                let _ = tokio::time::timeout(wait, claim).await;
                let listing = store.list_messages(&q, &params);
                let _ = tokio::time::timeout(wait, listing).await;
            }
        });
    }
    while callers.join_next().await.is_some() {}
    store
        .post_messages(&q, "client", &[message(300)])
        .await
        .unwrap();
    store.claim_for(&q, 60, 60, 1).await.unwrap();
    store.purge_queue(&q, Purge::MESSAGES).await.unwrap();
    assert_eq!(store.queue_stats(&q).await.unwrap().total, 0);
}

#[tokio::test]
async fn the_stores_own_settings_are_durable_and_a_changed_one_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zaqar.db");
    let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
    assert_eq!(store.volatility().await.unwrap(), None);
    // The writer is one connection: what is set on it stays set.
    sqlx::query("PRAGMA synchronous = OFF")
        .execute(&store.writer)
        .await
        .unwrap();
    let gaps = store.volatility().await.unwrap().unwrap();
    assert!(gaps.starts_with("synchronous is OFF"), "{gaps}");
    assert!(sqlite_gaps("memory", 2)
        .unwrap()
        .starts_with("journal_mode is memory"));
    assert_eq!(sqlite_gaps("wal", 1), None);
    assert_eq!(sqlite_gaps("delete", 2), None);
}
