//! The tables and indexes of the SQLite store, and the upgrade of files written by older builds.
//!
//! A message's `state` says which index range it is in: 0 free, 1 claimed, 2
//! delayed, as last written. `messages_by_state (project, queue, state, seq)`
//! makes a claim, a pop or a default listing a range scan over free rows only;
//! a claim that ends or a delay that passes is moved back to state 0 lazily
//! (`messages::free_ended`, through the two partial indexes on the times at
//! which claimed and delayed rows end). `PRAGMA user_version` is the schema
//! version: files of version 0 (before 2026-12-04) get the `state` column at start,
//! files of version 1 (before 2026-12-06) the `dead_letter_source` column (the queue a
//! dead-lettered message came from, `''` for the others), files of version 2 (before
//! 2026-12-07) the `message_counts` table, files of version 3 (before 2026-12-08) its
//! `bytes` column; either is filled once from their messages.
//! `message_counts` holds each queue's rows per state and the bytes of their bodies,
//! kept by triggers on every insert, delete and change of state, so that stats read
//! one row instead of counting the queue (`queues::queue_stats`); a queue's row goes
//! when its counts reach zero.
//! `idempotency` holds the ids each post's idempotency key brought, until the key's
//! window ends (`messages::post_once`).

use sqlx::{Row, SqlitePool};
use zaqar_proto::ZaqarError;

use super::{now_ms, store_error};
use crate::store::StoreResult;

/// The schema version this build writes.
const VERSION: i64 = 4;

const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS idempotency (
    project    TEXT NOT NULL,
    queue      TEXT NOT NULL,
    key        TEXT NOT NULL,
    ids        TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (project, queue, key)
);
CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency (expires_ms);

CREATE TABLE IF NOT EXISTS queues (
    project  TEXT NOT NULL,
    name     TEXT NOT NULL,
    metadata TEXT NOT NULL,
    PRIMARY KEY (project, name)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS messages (
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
    claim_count      INTEGER NOT NULL DEFAULT 0,
    state            INTEGER NOT NULL DEFAULT 0,
    dead_letter_source TEXT NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS claims (
    id         TEXT PRIMARY KEY,
    project    TEXT NOT NULL,
    queue      TEXT NOT NULL,
    ttl        INTEGER NOT NULL,
    renewed_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS claims_by_expiry ON claims (expires_ms);

CREATE TABLE IF NOT EXISTS subscriptions (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    project    TEXT NOT NULL,
    queue      TEXT NOT NULL,
    subscriber TEXT NOT NULL,
    ttl        INTEGER NOT NULL,
    options    TEXT NOT NULL,
    confirmed  INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS subscriptions_by_subscriber
    ON subscriptions (project, queue, subscriber);
CREATE INDEX IF NOT EXISTS subscriptions_by_expiry ON subscriptions (expires_ms);

CREATE TABLE IF NOT EXISTS delivery_cursors (
    subscription TEXT PRIMARY KEY,
    marker       TEXT NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS delivery_cursors_go_with_subscriptions
    AFTER DELETE ON subscriptions
    BEGIN DELETE FROM delivery_cursors WHERE subscription = old.id; END;

CREATE TABLE IF NOT EXISTS delivery_leases (
    subscription TEXT PRIMARY KEY,
    holder       TEXT NOT NULL,
    expires_ms   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS delivery_leases_go_with_subscriptions
    AFTER DELETE ON subscriptions
    BEGIN DELETE FROM delivery_leases WHERE subscription = old.id; END;
"#;

const MESSAGE_INDEXES: &str = r#"
CREATE INDEX IF NOT EXISTS messages_by_state ON messages (project, queue, state, seq);
CREATE INDEX IF NOT EXISTS messages_claims_ending
    ON messages (project, queue, claim_expires_ms) WHERE state = 1;
CREATE INDEX IF NOT EXISTS messages_delays_ending
    ON messages (project, queue, visible_ms) WHERE state = 2;
CREATE INDEX IF NOT EXISTS messages_by_expiry ON messages (expires_ms);
CREATE INDEX IF NOT EXISTS messages_by_claim ON messages (claim_id) WHERE claim_id IS NOT NULL;
DROP INDEX IF EXISTS messages_by_queue;
"#;

/// The rows of each queue per state, and the triggers that keep them. Made after the
/// `state` column exists, since the triggers read it.
fn message_counts_sql() -> String {
    // A row counted in (`new`) or out of (`old`) its queue's counts.
    const COUNT_NEW: &str = "INSERT INTO message_counts
            (project, queue, free, claimed, delayed, bytes)
        VALUES (new.project, new.queue, new.state = 0, new.state = 1, new.state = 2,
            length(CAST(new.body AS BLOB)))
        ON CONFLICT (project, queue) DO UPDATE SET free = free + excluded.free,
            claimed = claimed + excluded.claimed, delayed = delayed + excluded.delayed,
            bytes = bytes + excluded.bytes;";
    const UNCOUNT_OLD: &str = "UPDATE message_counts SET free = free - (old.state = 0),
            claimed = claimed - (old.state = 1), delayed = delayed - (old.state = 2),
            bytes = bytes - length(CAST(old.body AS BLOB))
        WHERE project = old.project AND queue = old.queue;
        DELETE FROM message_counts WHERE project = old.project AND queue = old.queue
            AND free = 0 AND claimed = 0 AND delayed = 0;";
    format!(
        "CREATE TABLE IF NOT EXISTS message_counts (
            project TEXT NOT NULL,
            queue   TEXT NOT NULL,
            free    INTEGER NOT NULL,
            claimed INTEGER NOT NULL,
            delayed INTEGER NOT NULL,
            bytes   INTEGER NOT NULL,
            PRIMARY KEY (project, queue)
        ) WITHOUT ROWID;
        CREATE TRIGGER IF NOT EXISTS message_counts_on_insert AFTER INSERT ON messages
        BEGIN {COUNT_NEW} END;
        CREATE TRIGGER IF NOT EXISTS message_counts_on_delete AFTER DELETE ON messages
        BEGIN {UNCOUNT_OLD} END;
        CREATE TRIGGER IF NOT EXISTS message_counts_on_move
            AFTER UPDATE OF state, project, queue ON messages
            WHEN old.state IS NOT new.state OR old.project IS NOT new.project
                OR old.queue IS NOT new.queue
        BEGIN {COUNT_NEW} {UNCOUNT_OLD} END;"
    )
}

/// What a file of version 3 had of `message_counts`: a table without bytes, and
/// triggers that keep none; made anew by [`message_counts_sql`].
const DROP_MESSAGE_COUNTS: &str = r#"
DROP TRIGGER IF EXISTS message_counts_on_insert;
DROP TRIGGER IF EXISTS message_counts_on_delete;
DROP TRIGGER IF EXISTS message_counts_on_move;
DROP TABLE IF EXISTS message_counts;
"#;

/// Counts the messages of a file of a version before 4, whose writes kept no counts
/// (or no bytes).
const FILL_MESSAGE_COUNTS: &str = r#"
DELETE FROM message_counts;
INSERT INTO message_counts (project, queue, free, claimed, delayed, bytes)
    SELECT project, queue, SUM(state = 0), SUM(state = 1), SUM(state = 2),
        SUM(length(CAST(body AS BLOB)))
    FROM messages GROUP BY project, queue;
"#;

/// Creates what is missing and upgrades a file of an older version, in one transaction.
pub(super) async fn create_or_upgrade(writer: &SqlitePool) -> StoreResult<()> {
    let mut tx = writer
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(store_error)?;
    let version: i64 = sqlx::query("PRAGMA user_version")
        .fetch_one(&mut *tx)
        .await
        .map_err(store_error)?
        .get(0);
    if version > VERSION {
        return Err(ZaqarError::unavailable(format!(
            "the sqlite message store has schema version {version}, this build knows {VERSION}"
        )));
    }
    sqlx::raw_sql(TABLES)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    if !has_column(&mut tx, "state").await? {
        tracing::warn!("upgrading the sqlite message store: indexing free messages apart");
        let now = now_ms();
        sqlx::raw_sql("ALTER TABLE messages ADD COLUMN state INTEGER NOT NULL DEFAULT 0")
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        sqlx::query(
            "UPDATE messages SET state = CASE \
               WHEN claim_id IS NOT NULL AND claim_expires_ms > ?1 THEN 1 \
               WHEN visible_ms > ?1 THEN 2 ELSE 0 END",
        )
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    }
    if !has_column(&mut tx, "dead_letter_source").await? {
        // Adding a column with a constant default rewrites nothing.
        sqlx::raw_sql(
            "ALTER TABLE messages ADD COLUMN dead_letter_source TEXT NOT NULL DEFAULT ''",
        )
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    }
    sqlx::raw_sql(MESSAGE_INDEXES)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    if version < 4 {
        sqlx::raw_sql(DROP_MESSAGE_COUNTS)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
    }
    sqlx::raw_sql(&message_counts_sql())
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    if version < 4 {
        tracing::info!("counting the messages of each queue of the sqlite message store");
        sqlx::raw_sql(FILL_MESSAGE_COUNTS)
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
    }
    sqlx::raw_sql(&format!("PRAGMA user_version = {VERSION}"))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    tx.commit().await.map_err(store_error)
}

/// Whether the `messages` table has the column `name`.
async fn has_column(conn: &mut sqlx::SqliteConnection, name: &str) -> StoreResult<bool> {
    let found =
        sqlx::query("SELECT COUNT(*) AS n FROM pragma_table_info('messages') WHERE name = ?")
            .bind(name)
            .fetch_one(conn)
            .await
            .map_err(store_error)?
            .get::<i64, _>("n");
    Ok(found == 1)
}
