//! Queues of the SQLite store: metadata, deletion, purge and stats.

use async_trait::async_trait;
use sqlx::Row;
use zaqar_proto::pb::{QueueRef, QueueStatsReply};
use zaqar_proto::ZaqarError;

use super::{
    message_from_row, now_ms, store_error, Bind, SqliteStore, CLAIMED, DELAYED, FREE,
    MESSAGE_COLUMNS,
};
use crate::store::{Purge, QueueStore, StoreResult};

async fn create_queue(
    store: &SqliteStore,
    queue: &QueueRef,
    metadata_json: &str,
) -> StoreResult<bool> {
    let done =
        sqlx::query("INSERT OR IGNORE INTO queues (project, name, metadata) VALUES (?, ?, ?)")
            .bind(&queue.project)
            .bind(&queue.queue)
            .bind(metadata_json)
            .execute(&store.writer)
            .await
            .map_err(store_error)?;
    Ok(done.rows_affected() == 1)
}

async fn get_queue(store: &SqliteStore, queue: &QueueRef) -> StoreResult<Option<String>> {
    metadata(&store.reader, queue).await
}

/// The stored metadata of `queue`, read through `executor` (a pool, or a
/// transaction that must see it with its own writes).
pub(super) async fn metadata<'e>(
    executor: impl sqlx::SqliteExecutor<'e>,
    queue: &QueueRef,
) -> StoreResult<Option<String>> {
    let row = sqlx::query("SELECT metadata FROM queues WHERE project = ? AND name = ?")
        .bind(&queue.project)
        .bind(&queue.queue)
        .fetch_optional(executor)
        .await
        .map_err(store_error)?;
    Ok(row.map(|row| row.get("metadata")))
}

async fn set_queue_metadata(
    store: &SqliteStore,
    queue: &QueueRef,
    metadata_json: &str,
) -> StoreResult<()> {
    let done = sqlx::query("UPDATE queues SET metadata = ? WHERE project = ? AND name = ?")
        .bind(metadata_json)
        .bind(&queue.project)
        .bind(&queue.queue)
        .execute(&store.writer)
        .await
        .map_err(store_error)?;
    if done.rows_affected() == 0 {
        return Err(ZaqarError::not_found(format!(
            "Queue {} does not exist",
            queue.queue
        )));
    }
    Ok(())
}

/// Deletes the queue row, its messages and claims; subscriptions stay.
async fn delete_queue(store: &SqliteStore, queue: &QueueRef) -> StoreResult<()> {
    sqlx::query("DELETE FROM queues WHERE project = ? AND name = ?")
        .bind(&queue.project)
        .bind(&queue.queue)
        .execute(&store.writer)
        .await
        .map_err(store_error)?;
    purge_queue(store, queue, Purge::MESSAGES).await
}

/// Deletes a queue's messages and claims and/or its subscriptions, in batches
/// (see `delete_in_batches`): a large queue does not hold the write lock for
/// long. Messages posted while a purge runs are kept.
async fn purge_queue(store: &SqliteStore, queue: &QueueRef, purge: Purge) -> StoreResult<()> {
    let mut tables = Vec::new();
    if purge.messages {
        tables.extend([("messages", "seq"), ("claims", "id")]);
    }
    if purge.subscriptions {
        tables.push(("subscriptions", "seq"));
    }
    let last: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) FROM messages")
        .fetch_one(&store.writer)
        .await
        .map_err(store_error)?
        .get(0);
    for (table, key) in tables {
        let filter = if table == "messages" {
            "project = ?1 AND queue = ?2 AND seq <= ?3"
        } else {
            "project = ?1 AND queue = ?2"
        };
        let binds = [
            Bind::Text(&queue.project),
            Bind::Text(&queue.queue),
            Bind::Int(last),
        ];
        let binds = if table == "messages" {
            &binds[..]
        } else {
            &binds[..2]
        };
        store.delete_in_batches(table, key, filter, binds).await?;
    }
    Ok(())
}

/// Counts of the live messages and their bytes; free = total - claimed (delayed included).
///
/// The queue's row of `message_counts` gives its rows per state as written; from
/// it go the rows whose state has ended but is not yet rewritten (claims ended,
/// delays passed: ranges of the two partial indexes) and the expired rows not yet
/// swept (a range of the expiry index over the whole store, which the sweep keeps
/// short). No count reads the queue's other rows.
async fn queue_stats(store: &SqliteStore, queue: &QueueRef) -> StoreResult<QueueStatsReply> {
    let now = now_ms();
    let mut tx = store.reader.begin().await.map_err(store_error)?;
    let mut counts = Vec::new();
    for sql in [counts_sql(), expired_sql()] {
        let row = sqlx::query(&sql)
            .bind(&queue.project)
            .bind(&queue.queue)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(store_error)?;
        counts.push(row);
    }
    let (counts, expired) = (&counts[0], &counts[1]);
    let count = |row: &sqlx::sqlite::SqliteRow, column: &str| row.get::<i64, _>(column).max(0);
    // Claimed rows are those whose claim has not ended, less the expired ones
    // among them; delayed rows likewise; every count is of disjoint sets of rows.
    let total = (count(counts, "written") - count(expired, "total")).max(0) as u64;
    let claimed =
        (count(counts, "claimed") - count(counts, "claims_ended") - count(expired, "claimed"))
            .max(0) as u64;
    let delayed =
        (count(counts, "delayed") - count(counts, "delays_ended") - count(expired, "delayed"))
            .max(0) as u64;
    let bytes = (count(counts, "bytes") - count(expired, "bytes")).max(0) as u64;
    let mut ends = Vec::new();
    for order in ["ASC", "DESC"] {
        let row = sqlx::query(&ends_sql(order))
            .bind(&queue.project)
            .bind(&queue.queue)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(store_error)?;
        ends.push(row.map(|row| message_from_row(&row, now)));
    }
    tx.commit().await.map_err(store_error)?;
    let newest = ends.pop().flatten();
    let oldest = ends.pop().flatten();
    Ok(QueueStatsReply {
        claimed,
        free: total.saturating_sub(claimed),
        delayed,
        total,
        oldest,
        newest,
        bytes,
    })
}

/// Binds: project, queue, now. The queue's rows per state as written, and the
/// claimed and delayed rows whose claim or delay has ended.
pub(super) fn counts_sql() -> String {
    format!(
        "SELECT \
           COALESCE((SELECT free + claimed + delayed FROM message_counts \
                     WHERE project = ?1 AND queue = ?2), 0) AS written, \
           COALESCE((SELECT claimed FROM message_counts \
                     WHERE project = ?1 AND queue = ?2), 0) AS claimed, \
           COALESCE((SELECT delayed FROM message_counts \
                     WHERE project = ?1 AND queue = ?2), 0) AS delayed, \
           COALESCE((SELECT bytes FROM message_counts \
                     WHERE project = ?1 AND queue = ?2), 0) AS bytes, \
           (SELECT COUNT(*) FROM messages INDEXED BY messages_claims_ending \
            WHERE project = ?1 AND queue = ?2 AND state = {CLAIMED} \
              AND claim_expires_ms <= ?3) AS claims_ended, \
           (SELECT COUNT(*) FROM messages INDEXED BY messages_delays_ending \
            WHERE project = ?1 AND queue = ?2 AND state = {DELAYED} \
              AND visible_ms <= ?3) AS delays_ended"
    )
}

/// Binds: project, queue, now. The queue's expired rows not yet swept, and how
/// many of them are still claimed or delayed.
pub(super) fn expired_sql() -> String {
    format!(
        "SELECT COUNT(*) AS total, \
                COALESCE(SUM(state = {CLAIMED} AND claim_expires_ms > ?3), 0) AS claimed, \
                COALESCE(SUM(state = {DELAYED} AND visible_ms > ?3), 0) AS delayed, \
                COALESCE(SUM(length(CAST(body AS BLOB))), 0) AS bytes \
         FROM messages INDEXED BY messages_by_expiry \
         WHERE expires_ms <= ?3 AND project = ?1 AND queue = ?2"
    )
}

/// Binds: project, queue, now. The queue's first live row in `order` ("ASC" or
/// "DESC"): the first (or last) row of each state's range of `messages_by_state`.
pub(super) fn ends_sql(order: &str) -> String {
    let ranges: Vec<String> = [FREE, CLAIMED, DELAYED]
        .iter()
        .map(|state| {
            format!(
                "SELECT * FROM (SELECT {MESSAGE_COLUMNS} FROM messages \
                 WHERE project = ?1 AND queue = ?2 AND state = {state} AND expires_ms > ?3 \
                 ORDER BY seq {order} LIMIT 1)"
            )
        })
        .collect();
    format!(
        "{} ORDER BY seq {order} LIMIT 1",
        ranges.join(" UNION ALL ")
    )
}

#[async_trait]
impl QueueStore for SqliteStore {
    async fn create_queue(&self, queue: &QueueRef, metadata_json: &str) -> StoreResult<bool> {
        let (queue, metadata) = (queue.clone(), metadata_json.to_owned());
        self.detached(|s| async move { create_queue(&s, &queue, &metadata).await })
            .await
    }

    async fn get_queue(&self, queue: &QueueRef) -> StoreResult<Option<String>> {
        let queue = queue.clone();
        self.detached(|s| async move { get_queue(&s, &queue).await })
            .await
    }

    async fn set_queue_metadata(&self, queue: &QueueRef, metadata_json: &str) -> StoreResult<()> {
        let (queue, metadata) = (queue.clone(), metadata_json.to_owned());
        self.detached(|s| async move { set_queue_metadata(&s, &queue, &metadata).await })
            .await
    }

    async fn delete_queue(&self, queue: &QueueRef) -> StoreResult<()> {
        let queue = queue.clone();
        self.detached(|s| async move { delete_queue(&s, &queue).await })
            .await
    }

    async fn queue_stats(&self, queue: &QueueRef) -> StoreResult<QueueStatsReply> {
        let queue = queue.clone();
        self.detached(|s| async move { queue_stats(&s, &queue).await })
            .await
    }

    async fn purge_queue(&self, queue: &QueueRef, purge: Purge) -> StoreResult<()> {
        let queue = queue.clone();
        self.detached(move |s| async move { purge_queue(&s, &queue, purge).await })
            .await
    }
}
