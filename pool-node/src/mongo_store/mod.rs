//! The MongoDB backend of `MessageStore` (a replica set, through the official driver).
//!
//! Layout (collection: one document per ...; the field names are in `fields.rs`):
//! `queues` (a queue and its metadata JSON text), `counters` (the last message
//! sequence number of a queue, kept when the queue is deleted so delivery cursors
//! never see a number twice; the queue's counts), `messages` (a message; `k` is its
//! sequence number, the FIFO order and the listing marker; its live claim is on it as
//! claim id + claim expiry), `claims`, `subscriptions` (with the notifier's delivery
//! cursor) and `activity` (the pool-nodes' relay of changed queues, `relay.rs`).
//!
//! Every query compares expiries with the pool-node's wall clock, so expired
//! documents are invisible at once; TTL indexes on the expiry dates only clean up.
//! A change to more than one document (post, claim, release, pop, delete of a
//! queue) is one multi-document transaction, retried on write conflicts: posts
//! to a queue all increment its counter, so they commit in sequence order and a
//! listing never skips a message that commits later with a smaller number.
//!
//! Write concern is majority and journaled unless the URI says otherwise
//! (`w=`, `journal=`, `retryWrites=`, `readConcernLevel=` are read from it), and
//! every call is bounded by [`CALL_TIMEOUT`]: an unreachable replica set gives
//! `Unavailable`, and the driver finds the new primary after a failover.

mod calls;
mod claims;
mod counts;
mod documents;
mod durability;
mod fields;
mod messages;
mod open;
mod queues;
mod relay;
mod scan;
mod schema;
mod subscriptions;
#[cfg(test)]
mod tests;
mod transaction;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mongodb::bson::{doc, Document};
use mongodb::options::WriteConcern;
use mongodb::{Client, Collection};
use zaqar_proto::ZaqarError;

use crate::store::{MessageStore, StoreResult};
// What the files of the store share, reachable as `super::...` from each.
use calls::{bounded, error_code, is_duplicate_key, store_error};
use documents::{counter_key, date, ensure_queue, find, ms, next_seq, now_ms};
use documents::{of_ids, of_queue, parse_marker, whole_seconds};

/// The longest any one store call takes (transaction retries included).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A `MessageStore` on one MongoDB database; cheap to clone (the driver's handles
/// are shared), so transaction bodies own a copy.
#[derive(Clone)]
pub struct MongoStore {
    client: Client,
    queues: Collection<Document>,
    counters: Collection<Document>,
    messages: Collection<Document>,
    claims: Collection<Document>,
    subscriptions: Collection<Document>,
    /// The ids each post's idempotency key brought, until its window ends.
    idempotency: Collection<Document>,
    /// The write concern of every write (the URI's, else majority and journaled).
    write_concern: WriteConcern,
}

/// Opens the store at `uri` (`mongodb://host[:port][,host...]/[database][?options]`),
/// creating its indexes; `BadRequest` for a malformed URI, `Unavailable` when no
/// primary answers within the server selection timeout.
pub async fn open(uri: &str) -> Result<Arc<dyn MessageStore>, ZaqarError> {
    Ok(Arc::new(MongoStore::connect(uri).await?))
}

#[async_trait]
impl MessageStore for MongoStore {
    async fn health(&self) -> StoreResult<()> {
        bounded(async {
            self.client
                .database("admin")
                .run_command(doc! { "ping": 1 })
                .await
                .map(drop)
                .map_err(store_error)
        })
        .await
    }

    async fn volatility(&self) -> StoreResult<Option<String>> {
        bounded(durability::volatility(self)).await
    }

    async fn remove_expired_messages(&self) -> StoreResult<u64> {
        bounded(messages::remove_expired_messages(self)).await
    }

    fn relay_activity(&self, relay: crate::activity::Relay) {
        relay::spawn(self.clone(), relay);
    }
}
