//! Subscriptions of the SQLite store, listed in creation order (`seq` is the marker).
//!
//! `(project, queue, subscriber)` is unique in the table; an expired row with
//! the same subscriber is deleted before a new one takes its place.

use async_trait::async_trait;
use std::time::Duration;

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};
use uuid::Uuid;
use zaqar_proto::pb::{QueueRef, Subscription};
use zaqar_proto::{ErrorCode, ZaqarError};

use super::{ms, now_ms, parse_marker, store_error, whole_seconds, SqliteStore};
use crate::store::{DeliveryStore, StoreResult, SubscriptionStore, SubscriptionUpdate};

const COLUMNS: &str = "seq, id, queue, subscriber, ttl, options, confirmed, created_ms";

fn subscription_from_row(row: &SqliteRow, now: i64) -> Subscription {
    Subscription {
        id: row.get("id"),
        source: row.get("queue"),
        subscriber: row.get("subscriber"),
        ttl: row.get::<i64, _>("ttl") as u32,
        age: whole_seconds(now - row.get::<i64, _>("created_ms")) as u64,
        options_json: row.get("options"),
        confirmed: row.get("confirmed"),
    }
}

fn no_such_subscription(id: &str) -> ZaqarError {
    ZaqarError::not_found(format!("Subscription {id} does not exist"))
}

/// Deletes an expired subscription of `subscriber`, then returns the id of a
/// live one (other than `except`), if any.
async fn live_with_subscriber(
    conn: &mut SqliteConnection,
    queue: &QueueRef,
    subscriber: &str,
    except: &str,
    now: i64,
) -> StoreResult<Option<String>> {
    sqlx::query(
        "DELETE FROM subscriptions \
         WHERE project = ? AND queue = ? AND subscriber = ? AND expires_ms <= ?",
    )
    .bind(&queue.project)
    .bind(&queue.queue)
    .bind(subscriber)
    .bind(now)
    .execute(&mut *conn)
    .await
    .map_err(store_error)?;
    let row = sqlx::query(
        "SELECT id FROM subscriptions \
         WHERE project = ? AND queue = ? AND subscriber = ? AND id <> ?",
    )
    .bind(&queue.project)
    .bind(&queue.queue)
    .bind(subscriber)
    .bind(except)
    .fetch_optional(&mut *conn)
    .await
    .map_err(store_error)?;
    Ok(row.map(|row| row.get("id")))
}

async fn create_subscription(
    store: &SqliteStore,
    queue: &QueueRef,
    subscriber: &str,
    ttl: u32,
    options_json: &str,
    confirmed: bool,
) -> StoreResult<(String, bool)> {
    let now = now_ms();
    let mut tx = store.begin().await?;
    if let Some(existing) = live_with_subscriber(&mut tx, queue, subscriber, "", now).await? {
        tx.commit().await.map_err(store_error)?;
        return Ok((existing, false));
    }
    let id = Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO subscriptions (id, project, queue, subscriber, ttl, options, confirmed, \
                                    created_ms, expires_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&id)
    .bind(&queue.project)
    .bind(&queue.queue)
    .bind(subscriber)
    .bind(i64::from(ttl))
    .bind(options_json)
    .bind(confirmed)
    .bind(now)
    .bind(now + ms(ttl))
    .execute(&mut *tx)
    .await
    .map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    Ok((id, true))
}

async fn list_subscriptions(
    store: &SqliteStore,
    queue: &QueueRef,
    marker: &str,
    limit: u32,
) -> StoreResult<(Vec<Subscription>, String)> {
    let after = parse_marker(marker)?;
    let now = now_ms();
    let sql = format!(
        "SELECT {COLUMNS} FROM subscriptions \
         WHERE project = ? AND queue = ? AND seq > ? AND expires_ms > ? ORDER BY seq LIMIT ?"
    );
    let rows = sqlx::query(&sql)
        .bind(&queue.project)
        .bind(&queue.queue)
        .bind(after)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&store.reader)
        .await
        .map_err(store_error)?;
    let next_marker = match rows.last() {
        Some(row) => row.get::<i64, _>("seq").to_string(),
        None => marker.to_string(),
    };
    let subscriptions = rows
        .iter()
        .map(|row| subscription_from_row(row, now))
        .collect();
    Ok((subscriptions, next_marker))
}

async fn fetch_live(
    conn: &mut SqliteConnection,
    queue: &QueueRef,
    id: &str,
    now: i64,
) -> StoreResult<Subscription> {
    let sql = format!(
        "SELECT {COLUMNS} FROM subscriptions \
         WHERE id = ? AND project = ? AND queue = ? AND expires_ms > ?"
    );
    let row = sqlx::query(&sql)
        .bind(id)
        .bind(&queue.project)
        .bind(&queue.queue)
        .bind(now)
        .fetch_optional(conn)
        .await
        .map_err(store_error)?
        .ok_or_else(|| no_such_subscription(id))?;
    Ok(subscription_from_row(&row, now))
}

async fn get_subscription(
    store: &SqliteStore,
    queue: &QueueRef,
    id: &str,
) -> StoreResult<Subscription> {
    let mut conn = store.reader.acquire().await.map_err(store_error)?;
    fetch_live(&mut conn, queue, id, now_ms()).await
}

async fn update_subscription(
    store: &SqliteStore,
    queue: &QueueRef,
    id: &str,
    update: &SubscriptionUpdate,
) -> StoreResult<()> {
    let now = now_ms();
    let mut tx = store.begin().await?;
    let current = fetch_live(&mut tx, queue, id, now).await?;
    let subscriber = update.subscriber.as_deref().unwrap_or(&current.subscriber);
    if subscriber != current.subscriber
        && live_with_subscriber(&mut tx, queue, subscriber, id, now)
            .await?
            .is_some()
    {
        return Err(ZaqarError::new(
            ErrorCode::Conflict,
            format!("A subscription of {subscriber} to this queue already exists"),
        ));
    }
    let ttl = update.ttl.unwrap_or(current.ttl);
    // A new ttl counts from now; without one the expiry stays.
    let expires_ms = update.ttl.map(|ttl| now + ms(ttl));
    sqlx::query(
        "UPDATE subscriptions SET subscriber = ?, ttl = ?, options = ?, \
             expires_ms = COALESCE(?, expires_ms) \
         WHERE id = ? AND project = ? AND queue = ?",
    )
    .bind(subscriber)
    .bind(i64::from(ttl))
    .bind(
        update
            .options_json
            .as_deref()
            .unwrap_or(&current.options_json),
    )
    .bind(expires_ms)
    .bind(id)
    .bind(&queue.project)
    .bind(&queue.queue)
    .execute(&mut *tx)
    .await
    .map_err(store_error)?;
    tx.commit().await.map_err(store_error)
}

async fn delete_subscription(store: &SqliteStore, queue: &QueueRef, id: &str) -> StoreResult<()> {
    sqlx::query("DELETE FROM subscriptions WHERE id = ? AND project = ? AND queue = ?")
        .bind(id)
        .bind(&queue.project)
        .bind(&queue.queue)
        .execute(&store.writer)
        .await
        .map_err(store_error)?;
    Ok(())
}

async fn confirm_subscription(
    store: &SqliteStore,
    queue: &QueueRef,
    id: &str,
    confirmed: bool,
) -> StoreResult<()> {
    let done = sqlx::query(
        "UPDATE subscriptions SET confirmed = ? \
         WHERE id = ? AND project = ? AND queue = ? AND expires_ms > ?",
    )
    .bind(confirmed)
    .bind(id)
    .bind(&queue.project)
    .bind(&queue.queue)
    .bind(now_ms())
    .execute(&store.writer)
    .await
    .map_err(store_error)?;
    if done.rows_affected() == 0 {
        return Err(no_such_subscription(id));
    }
    Ok(())
}

/// The delivery cursor of a live subscription.
async fn delivery_cursor(
    store: &SqliteStore,
    queue: &QueueRef,
    id: &str,
) -> StoreResult<Option<String>> {
    sqlx::query_scalar(
        "SELECT c.marker FROM delivery_cursors c JOIN subscriptions s ON s.id = c.subscription \
         WHERE s.id = ? AND s.project = ? AND s.queue = ? AND s.expires_ms > ?",
    )
    .bind(id)
    .bind(&queue.project)
    .bind(&queue.queue)
    .bind(now_ms())
    .fetch_optional(&store.reader)
    .await
    .map_err(store_error)
}

/// Stores `marker` as the delivery cursor of a live subscription, or with `None`
/// the end of the message sequence (shared by every queue, so it is past every
/// message of this one); returns the marker.
async fn set_cursor(
    store: &SqliteStore,
    queue: &QueueRef,
    id: &str,
    marker: Option<&str>,
) -> StoreResult<String> {
    let mut tx = store.begin().await?;
    let marker = match marker {
        Some(marker) => marker.to_string(),
        None => {
            let last: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'messages'")
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(store_error)?;
            last.unwrap_or(0).to_string()
        }
    };
    sqlx::query(
        "INSERT INTO delivery_cursors (subscription, marker) \
         SELECT id, ? FROM subscriptions \
         WHERE id = ? AND project = ? AND queue = ? AND expires_ms > ? \
         ON CONFLICT (subscription) DO UPDATE SET marker = excluded.marker",
    )
    .bind(&marker)
    .bind(id)
    .bind(&queue.project)
    .bind(&queue.queue)
    .bind(now_ms())
    .execute(&mut *tx)
    .await
    .map_err(store_error)?;
    tx.commit().await.map_err(store_error)?;
    Ok(marker)
}

/// Takes or renews the delivery lease of a live subscription for `holder`;
/// whether `holder` holds it now.
async fn take_delivery_lease(
    store: &SqliteStore,
    queue: &QueueRef,
    id: &str,
    holder: &str,
    ttl: Duration,
) -> StoreResult<bool> {
    let now = now_ms();
    let done = sqlx::query(
        "INSERT INTO delivery_leases (subscription, holder, expires_ms) \
         SELECT id, ?, ? FROM subscriptions \
         WHERE id = ? AND project = ? AND queue = ? AND expires_ms > ? \
         ON CONFLICT (subscription) DO UPDATE \
         SET holder = excluded.holder, expires_ms = excluded.expires_ms \
         WHERE delivery_leases.holder = excluded.holder OR delivery_leases.expires_ms <= ?",
    )
    .bind(holder)
    .bind(now.saturating_add(ttl.as_millis() as i64))
    .bind(id)
    .bind(&queue.project)
    .bind(&queue.queue)
    .bind(now)
    .bind(now)
    .execute(&store.writer)
    .await
    .map_err(store_error)?;
    Ok(done.rows_affected() == 1)
}

/// Gives up the delivery lease of a subscription if `holder` holds it.
async fn release_delivery_lease(store: &SqliteStore, id: &str, holder: &str) -> StoreResult<()> {
    sqlx::query("DELETE FROM delivery_leases WHERE subscription = ? AND holder = ?")
        .bind(id)
        .bind(holder)
        .execute(&store.writer)
        .await
        .map_err(store_error)?;
    Ok(())
}

/// The queues with at least one live subscription.
async fn subscribed_queues(store: &SqliteStore) -> StoreResult<Vec<QueueRef>> {
    let rows = sqlx::query(
        "SELECT DISTINCT project, queue FROM subscriptions WHERE expires_ms > ? \
         ORDER BY project, queue",
    )
    .bind(now_ms())
    .fetch_all(&store.reader)
    .await
    .map_err(store_error)?;
    Ok(rows
        .iter()
        .map(|row| QueueRef {
            project: row.get("project"),
            queue: row.get("queue"),
        })
        .collect())
}

#[async_trait]
impl SubscriptionStore for SqliteStore {
    async fn create_subscription(
        &self,
        queue: &QueueRef,
        subscriber: &str,
        ttl: u32,
        options_json: &str,
        confirmed: bool,
    ) -> StoreResult<(String, bool)> {
        let (queue, subscriber, options) = (
            queue.clone(),
            subscriber.to_owned(),
            options_json.to_owned(),
        );
        self.detached(move |s| async move {
            create_subscription(&s, &queue, &subscriber, ttl, &options, confirmed).await
        })
        .await
    }

    async fn list_subscriptions(
        &self,
        queue: &QueueRef,
        marker: &str,
        limit: u32,
    ) -> StoreResult<(Vec<Subscription>, String)> {
        let (queue, marker) = (queue.clone(), marker.to_owned());
        self.detached(move |s| async move { list_subscriptions(&s, &queue, &marker, limit).await })
            .await
    }

    async fn get_subscription(&self, queue: &QueueRef, id: &str) -> StoreResult<Subscription> {
        let (queue, id) = (queue.clone(), id.to_owned());
        self.detached(|s| async move { get_subscription(&s, &queue, &id).await })
            .await
    }

    async fn update_subscription(
        &self,
        queue: &QueueRef,
        id: &str,
        update: &SubscriptionUpdate,
    ) -> StoreResult<()> {
        let (queue, id, update) = (queue.clone(), id.to_owned(), update.clone());
        self.detached(|s| async move { update_subscription(&s, &queue, &id, &update).await })
            .await
    }

    async fn delete_subscription(&self, queue: &QueueRef, id: &str) -> StoreResult<()> {
        let (queue, id) = (queue.clone(), id.to_owned());
        self.detached(|s| async move { delete_subscription(&s, &queue, &id).await })
            .await
    }

    async fn confirm_subscription(
        &self,
        queue: &QueueRef,
        id: &str,
        confirmed: bool,
    ) -> StoreResult<()> {
        let (queue, id) = (queue.clone(), id.to_owned());
        self.detached(
            move |s| async move { confirm_subscription(&s, &queue, &id, confirmed).await },
        )
        .await
    }
}

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn delivery_cursor(&self, queue: &QueueRef, id: &str) -> StoreResult<Option<String>> {
        let (queue, id) = (queue.clone(), id.to_owned());
        self.detached(|s| async move { delivery_cursor(&s, &queue, &id).await })
            .await
    }

    async fn set_delivery_cursor(
        &self,
        queue: &QueueRef,
        id: &str,
        marker: &str,
    ) -> StoreResult<()> {
        let (queue, id, marker) = (queue.clone(), id.to_owned(), marker.to_owned());
        self.detached(|s| async move { set_cursor(&s, &queue, &id, Some(&marker)).await.map(drop) })
            .await
    }

    async fn reset_delivery_cursor(&self, queue: &QueueRef, id: &str) -> StoreResult<String> {
        let (queue, id) = (queue.clone(), id.to_owned());
        self.detached(|s| async move { set_cursor(&s, &queue, &id, None).await })
            .await
    }

    async fn take_delivery_lease(
        &self,
        queue: &QueueRef,
        id: &str,
        holder: &str,
        ttl: Duration,
    ) -> StoreResult<bool> {
        let (queue, id, holder) = (queue.clone(), id.to_owned(), holder.to_owned());
        self.detached(
            move |s| async move { take_delivery_lease(&s, &queue, &id, &holder, ttl).await },
        )
        .await
    }

    async fn release_delivery_lease(
        &self,
        _queue: &QueueRef,
        id: &str,
        holder: &str,
    ) -> StoreResult<()> {
        let (id, holder) = (id.to_owned(), holder.to_owned());
        self.detached(|s| async move { release_delivery_lease(&s, &id, &holder).await })
            .await
    }

    async fn subscribed_queues(&self) -> StoreResult<Vec<QueueRef>> {
        self.detached(|s| async move { subscribed_queues(&s).await })
            .await
    }
}
