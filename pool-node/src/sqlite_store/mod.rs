//! The embedded backend of `MessageStore`: one SQLite file through sqlx, in WAL mode.
//!
//! Layout (`schema.rs`): `queues` (metadata JSON text), `messages` (one row per
//! message, its `seq` INTEGER PRIMARY KEY is the FIFO order and the listing
//! marker; the live claim of a message is denormalised on its row as `claim_id` +
//! `claim_expires_ms`, and its `state` (free, claimed, delayed) keeps free rows
//! in an index range of their own, so a claim reads only the rows it takes),
//! `claims`, `subscriptions`, `delivery_cursors` (the notifier's position per
//! subscription) and `delivery_leases` (which notifier delivers it), both deleted
//! with the subscription by a trigger). Times are wall-clock
//! milliseconds; every query compares them with "now", so expired rows are
//! invisible at once, and a background task deletes them from time to time.
//!
//! Writes go through a pool of one connection and `BEGIN IMMEDIATE`
//! transactions, so a claim is atomic even against another process on the file.

mod calls;
mod claims;
mod messages;
mod queues;
mod schema;
mod subscriptions;

use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use zaqar_proto::pb::Message;
use zaqar_proto::ZaqarError;

use crate::store::{MessageStore, StoreResult};

/// How long a call waits for a connection or a lock before answering `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often expired messages, claims and subscriptions are deleted.
const CLEANUP_INTERVAL: Duration = Duration::from_secs(60);
/// Rows deleted per transaction by clean-ups and purges (a few milliseconds each).
const DELETE_BATCH: i64 = 1000;
/// Connections for reads; WAL lets them run beside the one writer.
const READERS: u32 = 4;

/// The `state` of a message row: free, claimed or delayed, as last written (a
/// claim that ended or a delay that passed is moved back to free lazily).
const FREE: i64 = 0;
const CLAIMED: i64 = 1;
const DELAYED: i64 = 2;

/// The columns `message_from_row` reads, for `SELECT {MESSAGE_COLUMNS} FROM messages`.
const MESSAGE_COLUMNS: &str = "seq, id, client_id, body, checksum, ttl, created_ms, expires_ms, \
                               claim_id, claim_expires_ms, claim_count, dead_letter_source";

/// The SQLite message store (cheap to clone: its pools are shared).
#[derive(Clone)]
pub struct SqliteStore {
    /// One connection: every write is serialised here, in `BEGIN IMMEDIATE`.
    writer: SqlitePool,
    /// Read-only connections for listings and lookups.
    reader: SqlitePool,
}

/// Opens (creating if needed) the SQLite file at `path`, with its parent
/// directories and schema, and starts the periodic clean-up of expired rows.
pub async fn open(path: &str) -> Result<Arc<dyn MessageStore>, ZaqarError> {
    let store = Arc::new(SqliteStore::open(path).await?);
    let weak = Arc::downgrade(&store);
    tokio::spawn(clean_up_periodically(weak));
    Ok(store)
}

async fn clean_up_periodically(store: Weak<SqliteStore>) {
    let mut ticks = tokio::time::interval(CLEANUP_INTERVAL);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(store) = store.upgrade() else { return };
        if let Err(err) = store.remove_expired(now_ms()).await {
            tracing::warn!(error = %err, "sqlite clean-up of expired rows failed");
        }
    }
}

impl SqliteStore {
    /// Opens the file without starting the clean-up task.
    pub async fn open(path: &str) -> Result<SqliteStore, ZaqarError> {
        if let Some(parent) = Path::new(path).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    ZaqarError::unavailable(format!("cannot create the directory of {path}: {e}"))
                })?;
            }
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(store_error)?;
        schema::create_or_upgrade(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options.read_only(true))
            .await
            .map_err(store_error)?;
        tracing::info!(path, "sqlite message store opened");
        Ok(SqliteStore { writer, reader })
    }

    /// What in the database's journal and sync settings can lose a committed
    /// transaction when the process dies (`None`: nothing). The store sets WAL and
    /// `synchronous=NORMAL`, which lose nothing then; only a power loss may take the
    /// last transactions (docs/reliability.md).
    async fn volatility(&self) -> StoreResult<Option<String>> {
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&self.writer)
            .await
            .map_err(store_error)?;
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&self.writer)
            .await
            .map_err(store_error)?;
        Ok(sqlite_gaps(&journal, synchronous))
    }

    /// A write transaction that holds the database write lock from its start.
    async fn begin(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_error)
    }

    /// Deletes the messages, claims, subscriptions and idempotency keys that
    /// expired at `now`, in batches; returns how many rows went. The messages
    /// count as expired.
    pub async fn remove_expired(&self, now: i64) -> StoreResult<u64> {
        let mut removed = 0;
        for (table, key) in [
            ("messages", "seq"),
            ("claims", "id"),
            ("subscriptions", "seq"),
            ("idempotency", "rowid"),
        ] {
            let rows = self
                .delete_in_batches(table, key, "expires_ms <= ?1", &[Bind::Int(now)])
                .await?;
            if table == "messages" {
                crate::metrics::count_expired("sqlite", rows);
            }
            removed += rows;
        }
        Ok(removed)
    }

    /// Deletes at most [`DELETE_BATCH`] messages that expired at `now` (a range of
    /// the `messages_by_expiry` index), in one transaction; counts them as expired.
    pub async fn remove_expired_batch(&self, now: i64) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let done = sqlx::query(&format!(
            "DELETE FROM messages WHERE seq IN \
             (SELECT seq FROM messages WHERE expires_ms <= ?1 LIMIT {DELETE_BATCH})"
        ))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        tx.commit().await.map_err(store_error)?;
        crate::metrics::count_expired("sqlite", done.rows_affected());
        Ok(done.rows_affected())
    }

    /// Deletes the rows of `table` (primary key `key`) that match `filter`, in
    /// transactions of [`DELETE_BATCH`] rows each, so that the write lock is
    /// never held for long and other writes go on between batches. Returns how
    /// many rows went.
    async fn delete_in_batches(
        &self,
        table: &str,
        key: &str,
        filter: &str,
        binds: &[Bind<'_>],
    ) -> StoreResult<u64> {
        let sql = format!(
            "DELETE FROM {table} WHERE {key} IN \
             (SELECT {key} FROM {table} WHERE {filter} LIMIT {DELETE_BATCH})"
        );
        let mut removed = 0;
        loop {
            let mut query = sqlx::query(&sql);
            for bind in binds {
                query = match bind {
                    Bind::Int(n) => query.bind(*n),
                    Bind::Text(text) => query.bind(*text),
                };
            }
            let mut tx = self.begin().await?;
            let done = query.execute(&mut *tx).await.map_err(store_error)?;
            tx.commit().await.map_err(store_error)?;
            removed += done.rows_affected();
            if done.rows_affected() < DELETE_BATCH as u64 {
                return Ok(removed);
            }
        }
    }
}

/// A value bound to a query of [`SqliteStore::delete_in_batches`].
enum Bind<'a> {
    Int(i64),
    Text(&'a str),
}

/// Every sqlx failure is the store failing: retrying later is safe.
fn store_error(e: sqlx::Error) -> ZaqarError {
    ZaqarError::unavailable(format!("the sqlite message store failed: {e}"))
}

/// Wall-clock milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `seconds` as milliseconds.
fn ms(seconds: u32) -> i64 {
    i64::from(seconds) * 1000
}

/// Whole seconds in a span of milliseconds (0 for a negative span).
fn whole_seconds(span_ms: i64) -> i64 {
    span_ms.max(0) / 1000
}

/// Zaqar's checksum of a message body: `MD5:` and the hex digest of its JSON text.
fn checksum(body_json: &str) -> String {
    format!("MD5:{:x}", Md5::digest(body_json.as_bytes()))
}

/// Parses a listing marker: empty is the start, otherwise a decimal sequence number.
fn parse_marker(marker: &str) -> StoreResult<i64> {
    if marker.is_empty() {
        return Ok(0);
    }
    marker
        .parse()
        .map_err(|_| ZaqarError::bad_request(format!("invalid marker {marker:?}")))
}

/// A message row (selected with `MESSAGE_COLUMNS`) as the API shows it at `now`.
fn message_from_row(row: &SqliteRow, now: i64) -> Message {
    let created_ms: i64 = row.get("created_ms");
    let expires_ms: i64 = row.get("expires_ms");
    let claim_expires_ms: i64 = row.get("claim_expires_ms");
    let claim_id: Option<String> = row.get("claim_id");
    Message {
        id: row.get("id"),
        ttl: whole_seconds(expires_ms - created_ms) as u32,
        age: whole_seconds(now - created_ms) as u64,
        body_json: row.get("body"),
        claim_id: claim_id
            .filter(|_| claim_expires_ms > now)
            .unwrap_or_default(),
        claim_count: row.get::<i64, _>("claim_count") as u32,
        created_ms,
        checksum: row.get("checksum"),
        dead_letter_source: row.get("dead_letter_source"),
    }
}

/// What a SQLite `journal_mode` and `synchronous` level (0 OFF, 1 NORMAL, 2 FULL,
/// 3 EXTRA) can lose of committed transactions when the process dies.
fn sqlite_gaps(journal: &str, synchronous: i64) -> Option<String> {
    let mut gaps = Vec::new();
    if matches!(journal.to_ascii_lowercase().as_str(), "off" | "memory") {
        gaps.push(format!(
            "journal_mode is {journal}: a crash mid-write can corrupt the database"
        ));
    }
    if synchronous == 0 {
        gaps.push("synchronous is OFF: committed transactions may not be on disk".to_string());
    }
    (!gaps.is_empty()).then(|| gaps.join("; "))
}

#[cfg(test)]
mod tests;
