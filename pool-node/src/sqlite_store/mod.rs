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
mod database;
mod messages;
mod queues;
mod rows;
mod schema;
mod subscriptions;

use std::sync::Arc;

use sqlx::SqlitePool;
use zaqar_proto::ZaqarError;

use crate::store::MessageStore;
use database::{clean_up_periodically, Bind};
// The conversions the files of the store share, reachable as `super::...` from each.
use rows::{checksum, message_from_row, ms, now_ms, parse_marker, store_error, whole_seconds};
use rows::{CLAIMED, DELAYED, FREE, MESSAGE_COLUMNS};

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

#[cfg(test)]
mod tests;
