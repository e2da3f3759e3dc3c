//! Queues of the SQLite store: metadata, deletion, purge and stats.

use sqlx::Row;
use zaqar_proto::pb::{QueueRef, QueueStatsReply};
use zaqar_proto::ZaqarError;

use super::{
    message_from_row, now_ms, store_error, Bind, SqliteStore, CLAIMED, DELAYED, FREE,
    MESSAGE_COLUMNS,
};
use crate::store::StoreResult;

pub(super) async fn create(
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

pub(super) async fn get(store: &SqliteStore, queue: &QueueRef) -> StoreResult<Option<String>> {
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

pub(super) async fn set_metadata(
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
pub(super) async fn delete(store: &SqliteStore, queue: &QueueRef) -> StoreResult<()> {
    sqlx::query("DELETE FROM queues WHERE project = ? AND name = ?")
        .bind(&queue.project)
        .bind(&queue.queue)
        .execute(&store.writer)
        .await
        .map_err(store_error)?;
    purge(store, queue, true, false).await
}

/// Deletes a queue's messages and claims and/or its subscriptions, in batches
/// (see `delete_in_batches`): a large queue does not hold the write lock for
/// long. Messages posted while a purge runs are kept.
pub(super) async fn purge(
    store: &SqliteStore,
    queue: &QueueRef,
    messages: bool,
    subscriptions: bool,
) -> StoreResult<()> {
    let mut tables = Vec::new();
    if messages {
        tables.extend([("messages", "seq"), ("claims", "id")]);
    }
    if subscriptions {
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

/// Counts of the live messages; free = total - claimed (delayed included).
pub(super) async fn stats(store: &SqliteStore, queue: &QueueRef) -> StoreResult<QueueStatsReply> {
    let now = now_ms();
    let mut tx = store.reader.begin().await.map_err(store_error)?;
    let counts = sqlx::query(
        "SELECT COUNT(*) AS total, \
                COALESCE(SUM(claim_expires_ms > ?1), 0) AS claimed, \
                COALESCE(SUM(claim_expires_ms <= ?1 AND visible_ms > ?1), 0) AS delayed \
         FROM messages WHERE project = ?2 AND queue = ?3 AND expires_ms > ?1",
    )
    .bind(now)
    .bind(&queue.project)
    .bind(&queue.queue)
    .fetch_one(&mut *tx)
    .await
    .map_err(store_error)?;
    let total = counts.get::<i64, _>("total") as u64;
    let claimed = counts.get::<i64, _>("claimed") as u64;
    let mut ends = Vec::new();
    for order in ["ASC", "DESC"] {
        // The first (or last) row of each state's range of `messages_by_state`.
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
        let sql = format!(
            "{} ORDER BY seq {order} LIMIT 1",
            ranges.join(" UNION ALL ")
        );
        let row = sqlx::query(&sql)
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
        free: total - claimed,
        delayed: counts.get::<i64, _>("delayed") as u64,
        total,
        oldest,
        newest,
    })
}
