//! Messages of the SQLite store: post, list, get, delete and pop.

use std::collections::HashSet;

use sqlx::Row;
use uuid::Uuid;
use zaqar_proto::pb::{Message, NewMessage, QueueRef};
use zaqar_proto::{ErrorCode, ZaqarError};

use super::{
    checksum, message_from_row, ms, now_ms, parse_marker, store_error, SqliteStore, MESSAGE_COLUMNS,
};
use crate::store::{ListParams, StoreResult};

/// Appends `messages` in one transaction, creating the queue if needed.
pub(super) async fn post(
    store: &SqliteStore,
    queue: &QueueRef,
    client_id: &str,
    messages: &[NewMessage],
) -> StoreResult<Vec<String>> {
    let now = now_ms();
    let mut tx = store.begin().await?;
    sqlx::query("INSERT OR IGNORE INTO queues (project, name, metadata) VALUES (?, ?, '{}')")
        .bind(&queue.project)
        .bind(&queue.queue)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    let mut ids = Vec::with_capacity(messages.len());
    for message in messages {
        let id = Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO messages (id, project, queue, client_id, body, checksum, ttl, \
                                   created_ms, visible_ms, expires_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&id)
        .bind(&queue.project)
        .bind(&queue.queue)
        .bind(client_id)
        .bind(&message.body_json)
        .bind(checksum(&message.body_json))
        .bind(i64::from(message.ttl))
        .bind(now)
        .bind(now + ms(message.delay))
        .bind(now + ms(message.ttl))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
        ids.push(id);
    }
    tx.commit().await.map_err(store_error)?;
    Ok(ids)
}

pub(super) async fn list(
    store: &SqliteStore,
    queue: &QueueRef,
    params: &ListParams,
) -> StoreResult<(Vec<Message>, String)> {
    let after = parse_marker(&params.marker)?;
    let now = now_ms();
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages \
         WHERE project = ?1 AND queue = ?2 AND seq > ?3 AND expires_ms > ?4 \
           AND (?5 OR client_id <> ?6) \
           AND (?7 OR claim_expires_ms <= ?4) \
           AND (?8 OR visible_ms <= ?4) \
         ORDER BY seq LIMIT ?9"
    );
    let rows = sqlx::query(&sql)
        .bind(&queue.project)
        .bind(&queue.queue)
        .bind(after)
        .bind(now)
        .bind(params.echo)
        .bind(&params.client_id)
        .bind(params.include_claimed)
        .bind(params.include_delayed)
        .bind(i64::from(params.limit))
        .fetch_all(&store.reader)
        .await
        .map_err(store_error)?;
    let next_marker = match rows.last() {
        Some(row) => row.get::<i64, _>("seq").to_string(),
        None => params.marker.clone(),
    };
    let messages = rows.iter().map(|row| message_from_row(row, now)).collect();
    Ok((messages, next_marker))
}

pub(super) async fn get_many(
    store: &SqliteStore,
    queue: &QueueRef,
    ids: &[String],
) -> StoreResult<Vec<Message>> {
    let now = now_ms();
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages \
         WHERE id = ? AND project = ? AND queue = ? AND expires_ms > ?"
    );
    let mut seen = HashSet::new();
    let mut messages = Vec::new();
    let mut conn = store.reader.acquire().await.map_err(store_error)?;
    for id in ids.iter().filter(|id| seen.insert(id.as_str())) {
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(&queue.project)
            .bind(&queue.queue)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await
            .map_err(store_error)?;
        messages.extend(row.map(|row| message_from_row(&row, now)));
    }
    Ok(messages)
}

/// The live claim holding a live message, at `now`: `None` when the message is
/// missing, `Some(None)` when it is free.
async fn claim_of(
    conn: &mut sqlx::SqliteConnection,
    queue: &QueueRef,
    id: &str,
    now: i64,
) -> StoreResult<Option<Option<String>>> {
    let row = sqlx::query(
        "SELECT claim_id, claim_expires_ms FROM messages \
         WHERE id = ? AND project = ? AND queue = ? AND expires_ms > ?",
    )
    .bind(id)
    .bind(&queue.project)
    .bind(&queue.queue)
    .bind(now)
    .fetch_optional(conn)
    .await
    .map_err(store_error)?;
    Ok(row.map(|row| {
        let claim_id: Option<String> = row.get("claim_id");
        claim_id.filter(|_| row.get::<i64, _>("claim_expires_ms") > now)
    }))
}

async fn delete_row(
    conn: &mut sqlx::SqliteConnection,
    queue: &QueueRef,
    id: &str,
) -> StoreResult<()> {
    sqlx::query("DELETE FROM messages WHERE id = ? AND project = ? AND queue = ?")
        .bind(id)
        .bind(&queue.project)
        .bind(&queue.queue)
        .execute(conn)
        .await
        .map_err(store_error)?;
    Ok(())
}

fn claimed_without_claim_id() -> ZaqarError {
    ZaqarError::titled(
        ErrorCode::Forbidden,
        "Unable to delete",
        "This message is claimed; it cannot be deleted without a valid claim ID.",
    )
}

pub(super) async fn delete_one(
    store: &SqliteStore,
    queue: &QueueRef,
    id: &str,
    claim_id: Option<&str>,
) -> StoreResult<()> {
    let now = now_ms();
    let mut tx = store.begin().await?;
    let Some(holder) = claim_of(&mut tx, queue, id, now).await? else {
        return Ok(());
    };
    match (holder.as_deref(), claim_id) {
        (Some(_), None) => return Err(claimed_without_claim_id()),
        (holder, Some(given)) if holder != Some(given) => {
            return Err(ZaqarError::titled(
                ErrorCode::BadRequest,
                "Unable to delete",
                "The specified claim does not exist or has expired.",
            ))
        }
        _ => {}
    }
    delete_row(&mut tx, queue, id).await?;
    tx.commit().await.map_err(store_error)
}

/// Deletes `ids`; with `claim_ids`, checks every claimed one first (all or nothing).
pub(super) async fn delete_many(
    store: &SqliteStore,
    queue: &QueueRef,
    ids: &[String],
    claim_ids: &[String],
) -> StoreResult<()> {
    let now = now_ms();
    let mut tx = store.begin().await?;
    if !claim_ids.is_empty() {
        for id in ids {
            if let Some(Some(holder)) = claim_of(&mut tx, queue, id, now).await? {
                if !claim_ids.contains(&holder) {
                    return Err(claimed_without_claim_id());
                }
            }
        }
    }
    for id in ids {
        delete_row(&mut tx, queue, id).await?;
    }
    tx.commit().await.map_err(store_error)
}

/// Removes and returns up to `limit` free messages, oldest first.
pub(super) async fn pop(
    store: &SqliteStore,
    queue: &QueueRef,
    limit: u32,
) -> StoreResult<Vec<Message>> {
    let now = now_ms();
    let mut tx = store.begin().await?;
    let rows = free_messages(&mut tx, queue, 0, limit, now).await?;
    for row in &rows {
        sqlx::query("DELETE FROM messages WHERE seq = ?")
            .bind(row.get::<i64, _>("seq"))
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
    }
    tx.commit().await.map_err(store_error)?;
    Ok(rows.iter().map(|row| message_from_row(row, now)).collect())
}

/// Up to `limit` free messages (live, not delayed, not claimed) after `after`, oldest first.
pub(super) async fn free_messages(
    conn: &mut sqlx::SqliteConnection,
    queue: &QueueRef,
    after: i64,
    limit: u32,
    now: i64,
) -> StoreResult<Vec<sqlx::sqlite::SqliteRow>> {
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages \
         WHERE project = ?1 AND queue = ?2 AND seq > ?3 AND expires_ms > ?4 \
           AND visible_ms <= ?4 AND claim_expires_ms <= ?4 \
         ORDER BY seq LIMIT ?5"
    );
    sqlx::query(&sql)
        .bind(&queue.project)
        .bind(&queue.queue)
        .bind(after)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await
        .map_err(store_error)
}
