//! Messages of the SQLite store: post, list, get, delete and pop.

use async_trait::async_trait;
use std::collections::HashSet;

use sqlx::Row;
use uuid::Uuid;
use zaqar_proto::pb::{Message, NewMessage, QueueRef};

use super::{
    checksum, message_from_row, ms, now_ms, parse_marker, store_error, SqliteStore, CLAIMED,
    DELAYED, FREE, MESSAGE_COLUMNS,
};

/// The most rows one call moves from claimed or from delayed back to free; each
/// row moves once, the rest wait for the next call.
const FREED_PER_CALL: i64 = 500;
use crate::store::{
    claim_not_holding, claimed_without_claim_id, CheckedPost, ListParams, MessageLog, Once, Post,
    StoreResult,
};

/// Appends `messages` in one transaction, creating the queue if needed.
async fn post_messages(
    store: &SqliteStore,
    queue: &QueueRef,
    client_id: &str,
    messages: &[NewMessage],
) -> StoreResult<Vec<String>> {
    let mut tx = store.begin().await?;
    let ids = append(&mut tx, queue, client_id, messages, now_ms()).await?;
    tx.commit().await.map_err(store_error)?;
    Ok(ids)
}

/// `MessageLog::post_once`: the checks, the key's lookup, the post and the key's
/// record in one write transaction (which SQLite runs one at a time).
async fn post_once(
    store: &SqliteStore,
    queue: &QueueRef,
    post: Post<'_>,
    once: &Once,
) -> StoreResult<CheckedPost> {
    let Post {
        client_id,
        messages,
        plain,
        expected_metadata,
    } = post;
    let now = now_ms();
    let mut tx = store.begin().await?;
    let metadata = super::queues::metadata(&mut *tx, queue).await?;
    if expected_metadata.is_some_and(|expected| metadata.as_deref().unwrap_or("") != expected) {
        return Ok(CheckedPost::StaleMetadata);
    }
    if plain
        && metadata
            .as_deref()
            .is_some_and(crate::encryption::queue_encrypts)
    {
        return Ok(CheckedPost::Encrypts);
    }
    let seen: Option<String> = sqlx::query_scalar(
        "SELECT ids FROM idempotency WHERE project = ? AND queue = ? AND key = ? AND expires_ms > ?",
    )
    .bind(&queue.project)
    .bind(&queue.queue)
    .bind(&once.key)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await
    .map_err(store_error)?;
    if let Some(ids) = seen {
        return Ok(CheckedPost::Repeated(
            ids.split(',').map(str::to_string).collect(),
        ));
    }
    let ids = append(&mut tx, queue, client_id, messages, now).await?;
    sqlx::query(
        "INSERT OR REPLACE INTO idempotency (project, queue, key, ids, expires_ms) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&queue.project)
    .bind(&queue.queue)
    .bind(&once.key)
    .bind(ids.join(","))
    .bind(now + ms(once.window_s))
    .execute(&mut *tx)
    .await
    .map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    Ok(CheckedPost::Posted(ids))
}

/// Inserts `messages` posted at `now` in `tx`, creating the queue if needed.
async fn append(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    queue: &QueueRef,
    client_id: &str,
    messages: &[NewMessage],
    now: i64,
) -> StoreResult<Vec<String>> {
    sqlx::query("INSERT OR IGNORE INTO queues (project, name, metadata) VALUES (?, ?, '{}')")
        .bind(&queue.project)
        .bind(&queue.queue)
        .execute(&mut **tx)
        .await
        .map_err(store_error)?;
    let mut ids = Vec::with_capacity(messages.len());
    for message in messages {
        let id = Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO messages (id, project, queue, client_id, body, checksum, ttl, \
                                   created_ms, visible_ms, expires_ms, state) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .bind(if message.delay > 0 { DELAYED } else { FREE })
        .execute(&mut **tx)
        .await
        .map_err(store_error)?;
        ids.push(id);
    }
    Ok(ids)
}

async fn list_messages(
    store: &SqliteStore,
    queue: &QueueRef,
    params: &ListParams,
) -> StoreResult<(Vec<Message>, String)> {
    let after = parse_marker(&params.marker)?;
    let now = now_ms();
    // Ended claims and passed delays are not where a listing without them looks.
    if !(params.include_claimed && params.include_delayed) && has_ended(store, queue, now).await? {
        let mut tx = store.begin().await?;
        free_ended(&mut tx, queue, now).await?;
        tx.commit().await.map_err(store_error)?;
    }
    let mut states = vec![FREE];
    if params.include_claimed {
        states.push(CLAIMED);
    }
    if params.include_delayed {
        states.push(DELAYED);
    }
    let sql = listing_sql(&states);
    let rows = sqlx::query(&sql)
        .bind(&queue.project)
        .bind(&queue.queue)
        .bind(after)
        .bind(now)
        .bind(params.echo)
        .bind(&params.client_id)
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

/// A listing of the rows in `states`: one range scan of `messages_by_state` per
/// state, each stopping after ?7 rows, merged by seq. Binds: project, queue,
/// after seq, now, echo, client id, limit.
pub(super) fn listing_sql(states: &[i64]) -> String {
    let ranges: Vec<String> = states
        .iter()
        .map(|state| {
            format!(
                "SELECT * FROM (SELECT {MESSAGE_COLUMNS} FROM messages \
                 WHERE project = ?1 AND queue = ?2 AND state = {state} AND seq > ?3 \
                   AND expires_ms > ?4 AND (?5 OR client_id <> ?6) \
                 ORDER BY seq LIMIT ?7)"
            )
        })
        .collect();
    format!("{} ORDER BY seq LIMIT ?7", ranges.join(" UNION ALL "))
}

async fn get_messages(
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

async fn delete_message(
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
        (holder, Some(given)) if holder != Some(given) => return Err(claim_not_holding()),
        _ => {}
    }
    delete_row(&mut tx, queue, id).await?;
    tx.commit().await.map_err(store_error)
}

/// Deletes `ids`; with `claim_ids`, checks every claimed one first (all or nothing).
async fn delete_messages(
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
async fn pop_messages(
    store: &SqliteStore,
    queue: &QueueRef,
    limit: u32,
) -> StoreResult<Vec<Message>> {
    let now = now_ms();
    let mut tx = store.begin().await?;
    free_ended(&mut tx, queue, now).await?;
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

/// Up to `limit` free messages (live, not delayed, not claimed) after `after`,
/// oldest first: a range of `messages_by_state` (see `FREE_SQL`).
pub(super) async fn free_messages(
    conn: &mut sqlx::SqliteConnection,
    queue: &QueueRef,
    after: i64,
    limit: u32,
    now: i64,
) -> StoreResult<Vec<sqlx::sqlite::SqliteRow>> {
    sqlx::query(&free_sql())
        .bind(&queue.project)
        .bind(&queue.queue)
        .bind(after)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await
        .map_err(store_error)
}

/// Binds: project, queue, after seq, now, limit.
pub(super) fn free_sql() -> String {
    format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages \
         WHERE project = ?1 AND queue = ?2 AND state = {FREE} AND seq > ?3 AND expires_ms > ?4 \
         ORDER BY seq LIMIT ?5"
    )
}

/// Binds: project, queue, now, rows per state.
pub(super) fn free_ended_sql() -> String {
    format!(
        "UPDATE messages SET state = {FREE} WHERE seq IN ( \
           SELECT seq FROM (SELECT seq FROM messages WHERE project = ?1 AND queue = ?2 \
             AND state = {CLAIMED} AND claim_expires_ms <= ?3 ORDER BY claim_expires_ms LIMIT ?4) \
           UNION ALL \
           SELECT seq FROM (SELECT seq FROM messages WHERE project = ?1 AND queue = ?2 \
             AND state = {DELAYED} AND visible_ms <= ?3 ORDER BY visible_ms LIMIT ?4))"
    )
}

/// Whether a claimed row's claim has ended or a delayed row's delay has passed.
async fn has_ended(store: &SqliteStore, queue: &QueueRef, now: i64) -> StoreResult<bool> {
    let row = sqlx::query(&format!(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE project = ?1 AND queue = ?2 \
                          AND state = {CLAIMED} AND claim_expires_ms <= ?3) \
             OR EXISTS (SELECT 1 FROM messages WHERE project = ?1 AND queue = ?2 \
                          AND state = {DELAYED} AND visible_ms <= ?3)"
    ))
    .bind(&queue.project)
    .bind(&queue.queue)
    .bind(now)
    .fetch_one(&store.reader)
    .await
    .map_err(store_error)?;
    Ok(row.get::<bool, _>(0))
}

/// Moves up to [`FREED_PER_CALL`] rows whose claim has ended, and as many whose
/// delay has passed, back to the free state (the oldest ending first).
pub(super) async fn free_ended(
    conn: &mut sqlx::SqliteConnection,
    queue: &QueueRef,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(&free_ended_sql())
        .bind(&queue.project)
        .bind(&queue.queue)
        .bind(now)
        .bind(FREED_PER_CALL)
        .execute(conn)
        .await
        .map_err(store_error)?;
    Ok(())
}

#[async_trait]
impl MessageLog for SqliteStore {
    async fn post_messages(
        &self,
        queue: &QueueRef,
        client_id: &str,
        new: &[NewMessage],
    ) -> StoreResult<Vec<String>> {
        let (queue, client_id, new) = (queue.clone(), client_id.to_owned(), new.to_vec());
        self.detached(|s| async move { post_messages(&s, &queue, &client_id, &new).await })
            .await
    }

    async fn post_once(
        &self,
        queue: &QueueRef,
        post: Post<'_>,
        once: &Once,
    ) -> StoreResult<CheckedPost> {
        let (queue, client_id) = (queue.clone(), post.client_id.to_owned());
        let (new, plain) = (post.messages.to_vec(), post.plain);
        let (expected, once) = (post.expected_metadata.map(str::to_owned), once.clone());
        self.detached(|s| async move {
            let post = Post {
                client_id: &client_id,
                messages: &new,
                plain,
                expected_metadata: expected.as_deref(),
            };
            post_once(&s, &queue, post, &once).await
        })
        .await
    }

    async fn list_messages(
        &self,
        queue: &QueueRef,
        params: &ListParams,
    ) -> StoreResult<(Vec<Message>, String)> {
        let (queue, params) = (queue.clone(), params.clone());
        self.detached(|s| async move { list_messages(&s, &queue, &params).await })
            .await
    }

    async fn get_messages(&self, queue: &QueueRef, ids: &[String]) -> StoreResult<Vec<Message>> {
        let (queue, ids) = (queue.clone(), ids.to_vec());
        self.detached(|s| async move { get_messages(&s, &queue, &ids).await })
            .await
    }

    async fn delete_messages(
        &self,
        queue: &QueueRef,
        ids: &[String],
        claim_ids: &[String],
    ) -> StoreResult<()> {
        let (queue, ids, claim_ids) = (queue.clone(), ids.to_vec(), claim_ids.to_vec());
        self.detached(|s| async move { delete_messages(&s, &queue, &ids, &claim_ids).await })
            .await
    }

    async fn delete_message(
        &self,
        queue: &QueueRef,
        id: &str,
        claim_id: Option<&str>,
    ) -> StoreResult<()> {
        let (queue, id, claim_id) = (queue.clone(), id.to_owned(), claim_id.map(str::to_owned));
        self.detached(|s| async move { delete_message(&s, &queue, &id, claim_id.as_deref()).await })
            .await
    }

    async fn pop_messages(&self, queue: &QueueRef, limit: u32) -> StoreResult<Vec<Message>> {
        let queue = queue.clone();
        self.detached(move |s| async move { pop_messages(&s, &queue, limit).await })
            .await
    }
}
