//! Claims of the SQLite store, with the dead-letter move.
//!
//! A claim is a `claims` row plus `claim_id` / `claim_expires_ms` on each
//! message it holds; a message is held while its `claim_expires_ms` is ahead of now.

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;
use zaqar_proto::pb::{ClaimReply, QueueRef};
use zaqar_proto::ZaqarError;

use super::messages::{free_ended, free_messages};
use super::{message_from_row, ms, now_ms, store_error, whole_seconds, SqliteStore};
use super::{CLAIMED, FREE, MESSAGE_COLUMNS};
use crate::dead_letter::DeadLetterPolicy;
use crate::store::{nothing_claimed, ClaimStore, Lease, NewClaim, StoreResult};

/// Claims up to `limit` free messages in one `BEGIN IMMEDIATE` transaction.
/// Messages the queue's dead-letter policy calls exhausted move to the dead
/// letter queue instead, and do not count towards `limit`.
async fn create_claim(
    store: &SqliteStore,
    queue: &QueueRef,
    ttl: u32,
    grace: u32,
    limit: u32,
) -> StoreResult<Option<ClaimReply>> {
    let now = now_ms();
    let claim_id = Uuid::new_v4().to_string();
    let claim_expires = now + ms(ttl);
    let message_expires = now + ms(ttl) + ms(grace);
    let mut tx = store.begin().await?;
    let policy = dead_letter_policy(&mut tx, queue).await?;
    free_ended(&mut tx, queue, now).await?;
    let mut claimed = Vec::new();
    let mut moved = 0;
    let mut after = 0;
    while (claimed.len() as u32) < limit {
        let rows = free_messages(&mut tx, queue, after, limit - claimed.len() as u32, now).await?;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            after = row.get("seq");
            let claim_count = row.get::<i64, _>("claim_count") as u32;
            if let Some(policy) = policy.as_ref().filter(|p| p.is_exhausted(claim_count)) {
                move_to_dead_letter(&mut tx, queue, &row, policy, now).await?;
                moved += 1;
                continue;
            }
            sqlx::query(&format!(
                "UPDATE messages SET claim_id = ?, claim_expires_ms = ?, state = {CLAIMED}, \
                    claim_count = claim_count + 1, expires_ms = MAX(expires_ms, ?) \
                 WHERE seq = ?"
            ))
            .bind(&claim_id)
            .bind(claim_expires)
            .bind(message_expires)
            .bind(after)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
            let mut message = message_from_row(&row, now);
            message.claim_id.clone_from(&claim_id);
            message.claim_count += 1;
            let expires = message_expires.max(row.get("expires_ms"));
            message.ttl = whole_seconds(expires - message.created_ms) as u32;
            claimed.push(message);
        }
    }
    let dead_letter_queue = match &policy {
        Some(policy) if moved > 0 => policy.queue.clone(),
        _ => String::new(),
    };
    if claimed.is_empty() {
        // Dead-letter moves, if any, still happened.
        tx.commit().await.map_err(store_error)?;
        crate::metrics::count_dead_lettered("sqlite", moved);
        return Ok(nothing_claimed(dead_letter_queue));
    }
    sqlx::query(
        "INSERT INTO claims (id, project, queue, ttl, renewed_ms, expires_ms) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&claim_id)
    .bind(&queue.project)
    .bind(&queue.queue)
    .bind(i64::from(ttl))
    .bind(now)
    .bind(claim_expires)
    .execute(&mut *tx)
    .await
    .map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    crate::metrics::count_dead_lettered("sqlite", moved);
    Ok(Some(ClaimReply {
        id: claim_id,
        ttl,
        age: 0,
        messages: claimed,
        dead_letter_queue,
    }))
}

/// The dead-letter policy of the queue, unless it would send messages to itself.
async fn dead_letter_policy(
    conn: &mut SqliteConnection,
    queue: &QueueRef,
) -> StoreResult<Option<DeadLetterPolicy>> {
    let metadata: Option<String> =
        sqlx::query("SELECT metadata FROM queues WHERE project = ? AND name = ?")
            .bind(&queue.project)
            .bind(&queue.queue)
            .fetch_optional(conn)
            .await
            .map_err(store_error)?
            .map(|row| row.get("metadata"));
    Ok(metadata
        .as_deref()
        .and_then(DeadLetterPolicy::from_metadata)
        .filter(|policy| policy.queue != queue.queue))
}

/// Moves a message to the end of the dead letter queue (created if needed),
/// keeping its id, body and claim count, noting the queue it came from; it lives
/// there `messages_ttl` (or its own ttl) from now.
async fn move_to_dead_letter(
    conn: &mut SqliteConnection,
    queue: &QueueRef,
    row: &SqliteRow,
    policy: &DeadLetterPolicy,
    now: i64,
) -> StoreResult<()> {
    let seq: i64 = row.get("seq");
    let own_ttl = row.get::<i64, _>("ttl") as u32;
    let ttl = policy.messages_ttl.unwrap_or(own_ttl);
    tracing::info!(
        project = %queue.project,
        queue = %queue.queue,
        dead_letter_queue = %policy.queue,
        "message moved to its dead letter queue"
    );
    sqlx::query("INSERT OR IGNORE INTO queues (project, name, metadata) VALUES (?, ?, '{}')")
        .bind(&queue.project)
        .bind(&policy.queue)
        .execute(&mut *conn)
        .await
        .map_err(store_error)?;
    sqlx::query("DELETE FROM messages WHERE seq = ?")
        .bind(seq)
        .execute(&mut *conn)
        .await
        .map_err(store_error)?;
    sqlx::query(
        "INSERT INTO messages (id, project, queue, client_id, body, checksum, ttl, \
                               created_ms, visible_ms, expires_ms, claim_count, dead_letter_source) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(row.get::<String, _>("id"))
    .bind(&queue.project)
    .bind(&policy.queue)
    .bind(row.get::<String, _>("client_id"))
    .bind(row.get::<String, _>("body"))
    .bind(row.get::<String, _>("checksum"))
    .bind(i64::from(ttl))
    .bind(now)
    .bind(now)
    .bind(now + ms(ttl))
    .bind(row.get::<i64, _>("claim_count"))
    .bind(&queue.queue)
    .execute(&mut *conn)
    .await
    .map_err(store_error)?;
    Ok(())
}

fn no_such_claim(claim_id: &str) -> ZaqarError {
    ZaqarError::not_found(format!("Claim {claim_id} does not exist"))
}

async fn get_claim(
    store: &SqliteStore,
    queue: &QueueRef,
    claim_id: &str,
) -> StoreResult<ClaimReply> {
    let now = now_ms();
    let mut tx = store.reader.begin().await.map_err(store_error)?;
    let claim = sqlx::query(
        "SELECT ttl, renewed_ms FROM claims \
         WHERE id = ? AND project = ? AND queue = ? AND expires_ms > ?",
    )
    .bind(claim_id)
    .bind(&queue.project)
    .bind(&queue.queue)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await
    .map_err(store_error)?
    .ok_or_else(|| no_such_claim(claim_id))?;
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages \
         WHERE claim_id = ?1 AND project = ?2 AND queue = ?3 \
           AND claim_expires_ms > ?4 AND expires_ms > ?4 ORDER BY seq"
    );
    let rows = sqlx::query(&sql)
        .bind(claim_id)
        .bind(&queue.project)
        .bind(&queue.queue)
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    Ok(ClaimReply {
        id: claim_id.to_string(),
        ttl: claim.get::<i64, _>("ttl") as u32,
        age: whole_seconds(now - claim.get::<i64, _>("renewed_ms")) as u64,
        messages: rows.iter().map(|row| message_from_row(row, now)).collect(),
        dead_letter_queue: String::new(),
    })
}

/// Renews a live claim from now; its messages live at least `ttl + grace` more.
async fn update_claim(
    store: &SqliteStore,
    queue: &QueueRef,
    claim_id: &str,
    ttl: u32,
    grace: u32,
) -> StoreResult<()> {
    let now = now_ms();
    let claim_expires = now + ms(ttl);
    let mut tx = store.begin().await?;
    let renewed = sqlx::query(
        "UPDATE claims SET ttl = ?, renewed_ms = ?, expires_ms = ? \
         WHERE id = ? AND project = ? AND queue = ? AND expires_ms > ?",
    )
    .bind(i64::from(ttl))
    .bind(now)
    .bind(claim_expires)
    .bind(claim_id)
    .bind(&queue.project)
    .bind(&queue.queue)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(store_error)?;
    if renewed.rows_affected() == 0 {
        return Err(no_such_claim(claim_id));
    }
    sqlx::query(
        "UPDATE messages SET claim_expires_ms = ?1, expires_ms = MAX(expires_ms, ?2) \
         WHERE claim_id = ?3 AND project = ?4 AND queue = ?5 \
           AND claim_expires_ms > ?6 AND expires_ms > ?6",
    )
    .bind(claim_expires)
    .bind(claim_expires + ms(grace))
    .bind(claim_id)
    .bind(&queue.project)
    .bind(&queue.queue)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(store_error)?;
    tx.commit().await.map_err(store_error)
}

/// Releases a claim: its messages are free again at once.
async fn delete_claim(store: &SqliteStore, queue: &QueueRef, claim_id: &str) -> StoreResult<()> {
    let mut tx = store.begin().await?;
    sqlx::query(&format!(
        "UPDATE messages SET claim_id = NULL, claim_expires_ms = 0, state = {FREE} \
         WHERE claim_id = ? AND project = ? AND queue = ?"
    ))
    .bind(claim_id)
    .bind(&queue.project)
    .bind(&queue.queue)
    .execute(&mut *tx)
    .await
    .map_err(store_error)?;
    sqlx::query("DELETE FROM claims WHERE id = ? AND project = ? AND queue = ?")
        .bind(claim_id)
        .bind(&queue.project)
        .bind(&queue.queue)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    tx.commit().await.map_err(store_error)
}

#[async_trait]
impl ClaimStore for SqliteStore {
    async fn create_claim(
        &self,
        queue: &QueueRef,
        claim: NewClaim,
    ) -> StoreResult<Option<ClaimReply>> {
        let queue = queue.clone();
        let (Lease { ttl, grace }, limit) = (claim.lease, claim.limit);
        self.detached(move |s| async move { create_claim(&s, &queue, ttl, grace, limit).await })
            .await
    }

    async fn get_claim(&self, queue: &QueueRef, claim_id: &str) -> StoreResult<ClaimReply> {
        let (queue, claim_id) = (queue.clone(), claim_id.to_owned());
        self.detached(|s| async move { get_claim(&s, &queue, &claim_id).await })
            .await
    }

    async fn update_claim(&self, queue: &QueueRef, id: &str, lease: Lease) -> StoreResult<()> {
        let (queue, id) = (queue.clone(), id.to_owned());
        let Lease { ttl, grace } = lease;
        self.detached(move |s| async move { update_claim(&s, &queue, &id, ttl, grace).await })
            .await
    }

    async fn delete_claim(&self, queue: &QueueRef, claim_id: &str) -> StoreResult<()> {
        let (queue, claim_id) = (queue.clone(), claim_id.to_owned());
        self.detached(|s| async move { delete_claim(&s, &queue, &claim_id).await })
            .await
    }
}
