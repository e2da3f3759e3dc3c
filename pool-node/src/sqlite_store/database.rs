//! The SQLite file: opening it (WAL, one writer and a few readers), write
//! transactions, deletes in bounded batches, and the clean-up of expired rows.

use std::path::Path;
use std::sync::Weak;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};
use zaqar_proto::ZaqarError;

use super::rows::{now_ms, store_error};
use super::{schema, SqliteStore};
use crate::store::StoreResult;

/// How long a call waits for a connection or a lock before answering `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often expired messages, claims and subscriptions are deleted.
const CLEANUP_INTERVAL: Duration = Duration::from_secs(60);
/// Rows deleted per transaction by clean-ups and purges (a few milliseconds each).
pub(super) const DELETE_BATCH: i64 = 1000;
/// Connections for reads; WAL lets them run beside the one writer.
const READERS: u32 = 4;

/// Deletes expired rows every [`CLEANUP_INTERVAL`] while the store lives.
pub(super) async fn clean_up_periodically(store: Weak<SqliteStore>) {
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
    pub(super) async fn volatility(&self) -> StoreResult<Option<String>> {
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
    pub(super) async fn begin(&self) -> StoreResult<Transaction<'static, Sqlite>> {
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

    /// Deletes at most `DELETE_BATCH` messages that expired at `now` (a range of
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
    pub(super) async fn delete_in_batches(
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
pub(super) enum Bind<'a> {
    Int(i64),
    Text(&'a str),
}

/// What a SQLite `journal_mode` and `synchronous` level (0 OFF, 1 NORMAL, 2 FULL,
/// 3 EXTRA) can lose of committed transactions when the process dies.
pub(super) fn sqlite_gaps(journal: &str, synchronous: i64) -> Option<String> {
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
