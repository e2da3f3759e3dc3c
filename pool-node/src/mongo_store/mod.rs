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

mod claims;
mod counts;
mod durability;
mod fields;
mod messages;
mod queues;
mod relay;
mod scan;
mod schema;
mod subscriptions;
#[cfg(test)]
mod tests;
mod transaction;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, ClientOptions, ReturnDocument, WriteConcern};
use mongodb::{Client, ClientSession, Collection, Database};
use zaqar_proto::pb::{ClaimReply, Message, NewMessage, QueueRef, QueueStatsReply, Subscription};
use zaqar_proto::ZaqarError;

use crate::store::{
    CheckedPost, ClaimStore, DeliveryStore, ListParams, MessageLog, MessageStore, Once, Post,
    QueueStore, StoreResult, SubscriptionStore, SubscriptionUpdate,
};

/// The longest any one store call takes (transaction retries included).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the driver looks for a usable server (the primary) before a call
/// fails, unless the URI sets `serverSelectionTimeoutMS`.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(3);
/// One connection attempt, unless the URI sets `connectTimeoutMS`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The database when the URI names none.
const DEFAULT_DATABASE: &str = "zaqar";
/// The server error code of a duplicate key.
const DUPLICATE_KEY: i32 = 11000;

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

impl MongoStore {
    pub async fn connect(uri: &str) -> StoreResult<Self> {
        // The URI may hold a password: it is neither logged nor put in errors.
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|err| ZaqarError::bad_request(format!("invalid mongodb URI: {err}")))?;
        options
            .server_selection_timeout
            .get_or_insert(SERVER_SELECTION_TIMEOUT);
        options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
        // Majority and journaled unless the URI says otherwise.
        let concern = options
            .write_concern
            .get_or_insert_with(WriteConcern::default);
        concern.w.get_or_insert(Acknowledgment::Majority);
        concern.journal.get_or_insert(true);
        let write_concern = concern.clone();
        options
            .app_name
            .get_or_insert_with(|| "zaqar-pool-node".to_string());
        let database = options
            .default_database
            .clone()
            .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
        let hosts = options.hosts.len();
        let client = Client::with_options(options).map_err(store_error)?;
        let store = MongoStore::on(client, &database, write_concern);
        bounded(store.create_indexes()).await?;
        bounded(store.upgrade()).await?;
        tracing::info!(database, hosts, "mongodb message store opened");
        Ok(store)
    }

    fn on(client: Client, database: &str, write_concern: WriteConcern) -> Self {
        let db: Database = client.database(database);
        MongoStore {
            queues: db.collection("queues"),
            counters: db.collection("counters"),
            messages: db.collection("messages"),
            claims: db.collection("claims"),
            subscriptions: db.collection("subscriptions"),
            idempotency: db.collection("idempotency"),
            client,
            write_concern,
        }
    }
}

/// Every driver failure is the store failing: retrying later is safe.
fn store_error(err: MongoError) -> ZaqarError {
    ZaqarError::unavailable(format!("the mongodb message store failed: {err}"))
}

/// The server's error code, if the server answered with one.
fn error_code(err: &MongoError) -> Option<i32> {
    match err.kind.as_ref() {
        ErrorKind::Command(command) => Some(command.code),
        ErrorKind::Write(WriteFailure::WriteError(write)) => Some(write.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(concern)) => Some(concern.code),
        ErrorKind::InsertMany(insert) => insert
            .write_errors
            .as_ref()
            .and_then(|errors| errors.first())
            .map(|error| error.code),
        _ => None,
    }
}

fn is_duplicate_key(err: &MongoError) -> bool {
    error_code(err) == Some(DUPLICATE_KEY)
}

/// Runs a store call within [`CALL_TIMEOUT`].
async fn bounded<T>(call: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result,
        Err(_) => Err(ZaqarError::unavailable(format!(
            "the mongodb message store did not answer within {CALL_TIMEOUT:?}"
        ))),
    }
}

/// Wall-clock milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `ms` as the BSON date the expiry fields (and their TTL indexes) hold.
fn date(ms: i64) -> DateTime {
    DateTime::from_millis(ms)
}

/// `seconds` as milliseconds.
fn ms(seconds: u32) -> i64 {
    i64::from(seconds) * 1000
}

/// Whole seconds in a span of milliseconds (0 for a negative span).
fn whole_seconds(span_ms: i64) -> i64 {
    span_ms.max(0) / 1000
}

/// Parses a listing marker: empty is the start, otherwise a decimal sequence number.
fn parse_marker(marker: &str) -> StoreResult<i64> {
    if marker.is_empty() {
        return Ok(0);
    }
    marker
        .parse::<i64>()
        .ok()
        .filter(|seq| *seq >= 0)
        .ok_or_else(|| ZaqarError::bad_request(format!("invalid marker {marker:?}")))
}

/// The key of a queue's message counter: length-prefixed, so no two
/// (project, queue) pairs share one.
fn counter_key(queue: &QueueRef) -> String {
    format!("{}:{}:{}", queue.project.len(), queue.project, queue.queue)
}

/// The documents of `collection` that `filter` selects, sorted, at most `limit`
/// (`limit` 0: none).
async fn find(
    collection: &Collection<Document>,
    filter: Document,
    sort: Document,
    limit: u32,
) -> Result<Vec<Document>, MongoError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let cursor = collection
        .find(filter)
        .sort(sort)
        .limit(i64::from(limit))
        .await?;
    cursor.try_collect().await
}

/// [`find`] inside the transaction of `session`.
async fn find_in(
    session: &mut ClientSession,
    collection: &Collection<Document>,
    filter: Document,
    sort: Document,
    limit: u32,
) -> Result<Vec<Document>, MongoError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut cursor = collection
        .find(filter)
        .sort(sort)
        .limit(i64::from(limit))
        .session(&mut *session)
        .await?;
    cursor.stream(session).try_collect().await
}

/// Creates the queue document (empty metadata) if it is missing, in a transaction.
async fn ensure_queue(
    store: &MongoStore,
    queue: &QueueRef,
    session: &mut ClientSession,
) -> Result<(), MongoError> {
    store
        .queues
        .update_one(
            of_queue(queue),
            doc! { "$setOnInsert": { fields::METADATA: "{}" } },
        )
        .upsert(true)
        .session(session)
        .await
        .map(drop)
}

/// Hands out `count` sequence numbers of the counter `key` in a transaction, and
/// returns the last. Every caller writes the counter document, so concurrent
/// transactions conflict here and commit one after the other.
async fn next_seq(
    store: &MongoStore,
    key: String,
    count: usize,
    session: &mut ClientSession,
) -> Result<i64, MongoError> {
    let counter = store
        .counters
        .find_one_and_update(
            doc! { fields::ID: key },
            doc! { "$inc": { fields::LAST: count as i64 } },
        )
        .upsert(true)
        .return_document(ReturnDocument::After)
        .session(session)
        .await?;
    Ok(counter.map_or(count as i64, |doc| fields::int(&doc, fields::LAST)))
}

/// The filter of one queue's documents.
fn of_queue(queue: &QueueRef) -> Document {
    doc! { fields::PROJECT: &queue.project, fields::QUEUE: &queue.queue }
}

/// The filter of one queue's documents whose `_id` is `id` (a value or an
/// operator such as `$in`). `_id` comes first: a server that routes a filter
/// by its first indexed field (SecantusDB) then looks the ids up.
fn of_ids(queue: &QueueRef, id: impl Into<mongodb::bson::Bson>) -> Document {
    let mut filter = doc! { fields::ID: id.into() };
    filter.extend(of_queue(queue));
    filter
}

#[async_trait]
impl QueueStore for MongoStore {
    async fn create_queue(&self, queue: &QueueRef, metadata_json: &str) -> StoreResult<bool> {
        bounded(queues::create(self, queue, metadata_json)).await
    }

    async fn get_queue(&self, queue: &QueueRef) -> StoreResult<Option<String>> {
        bounded(queues::get(self, queue)).await
    }

    async fn set_queue_metadata(&self, queue: &QueueRef, metadata_json: &str) -> StoreResult<()> {
        bounded(queues::set_metadata(self, queue, metadata_json)).await
    }

    async fn delete_queue(&self, queue: &QueueRef) -> StoreResult<()> {
        bounded(queues::delete(self, queue)).await
    }

    async fn queue_stats(&self, queue: &QueueRef) -> StoreResult<QueueStatsReply> {
        bounded(queues::stats(self, queue)).await
    }

    async fn purge_queue(
        &self,
        queue: &QueueRef,
        messages: bool,
        subscriptions: bool,
    ) -> StoreResult<()> {
        bounded(queues::purge(self, queue, messages, subscriptions)).await
    }
}

#[async_trait]
impl MessageLog for MongoStore {
    async fn post_messages(
        &self,
        queue: &QueueRef,
        client_id: &str,
        messages: &[NewMessage],
    ) -> StoreResult<Vec<String>> {
        bounded(messages::post(self, queue, client_id, messages)).await
    }

    async fn post_once(
        &self,
        queue: &QueueRef,
        post: Post<'_>,
        once: &Once,
    ) -> StoreResult<CheckedPost> {
        bounded(messages::post_once(self, queue, post, once)).await
    }

    async fn list_messages(
        &self,
        queue: &QueueRef,
        params: &ListParams,
    ) -> StoreResult<(Vec<Message>, String)> {
        bounded(messages::list(self, queue, params)).await
    }

    async fn get_messages(&self, queue: &QueueRef, ids: &[String]) -> StoreResult<Vec<Message>> {
        bounded(messages::get_many(self, queue, ids)).await
    }

    async fn delete_messages(
        &self,
        queue: &QueueRef,
        ids: &[String],
        claim_ids: &[String],
    ) -> StoreResult<()> {
        bounded(messages::delete_many(self, queue, ids, claim_ids)).await
    }

    async fn delete_message(
        &self,
        queue: &QueueRef,
        id: &str,
        claim_id: Option<&str>,
    ) -> StoreResult<()> {
        bounded(messages::delete_one(self, queue, id, claim_id)).await
    }

    async fn pop_messages(&self, queue: &QueueRef, limit: u32) -> StoreResult<Vec<Message>> {
        bounded(messages::pop(self, queue, limit)).await
    }
}

#[async_trait]
impl ClaimStore for MongoStore {
    async fn create_claim(
        &self,
        queue: &QueueRef,
        ttl: u32,
        grace: u32,
        limit: u32,
    ) -> StoreResult<Option<ClaimReply>> {
        bounded(claims::create(self, queue, ttl, grace, limit)).await
    }

    async fn get_claim(&self, queue: &QueueRef, claim_id: &str) -> StoreResult<ClaimReply> {
        bounded(claims::get(self, queue, claim_id)).await
    }

    async fn update_claim(
        &self,
        queue: &QueueRef,
        claim_id: &str,
        ttl: u32,
        grace: u32,
    ) -> StoreResult<()> {
        bounded(claims::update(self, queue, claim_id, ttl, grace)).await
    }

    async fn delete_claim(&self, queue: &QueueRef, claim_id: &str) -> StoreResult<()> {
        bounded(claims::delete(self, queue, claim_id)).await
    }
}

#[async_trait]
impl SubscriptionStore for MongoStore {
    async fn create_subscription(
        &self,
        queue: &QueueRef,
        subscriber: &str,
        ttl: u32,
        options_json: &str,
        confirmed: bool,
    ) -> StoreResult<(String, bool)> {
        bounded(subscriptions::create(
            self,
            queue,
            subscriber,
            ttl,
            options_json,
            confirmed,
        ))
        .await
    }

    async fn list_subscriptions(
        &self,
        queue: &QueueRef,
        marker: &str,
        limit: u32,
    ) -> StoreResult<(Vec<Subscription>, String)> {
        bounded(subscriptions::list(self, queue, marker, limit)).await
    }

    async fn get_subscription(&self, queue: &QueueRef, id: &str) -> StoreResult<Subscription> {
        bounded(subscriptions::get(self, queue, id)).await
    }

    async fn update_subscription(
        &self,
        queue: &QueueRef,
        id: &str,
        update: &SubscriptionUpdate,
    ) -> StoreResult<()> {
        bounded(subscriptions::update(self, queue, id, update)).await
    }

    async fn delete_subscription(&self, queue: &QueueRef, id: &str) -> StoreResult<()> {
        bounded(subscriptions::delete(self, queue, id)).await
    }

    async fn confirm_subscription(
        &self,
        queue: &QueueRef,
        id: &str,
        confirmed: bool,
    ) -> StoreResult<()> {
        bounded(subscriptions::confirm(self, queue, id, confirmed)).await
    }
}

#[async_trait]
impl DeliveryStore for MongoStore {
    async fn delivery_cursor(&self, queue: &QueueRef, id: &str) -> StoreResult<Option<String>> {
        bounded(subscriptions::cursor(self, queue, id)).await
    }

    async fn set_delivery_cursor(
        &self,
        queue: &QueueRef,
        id: &str,
        marker: &str,
    ) -> StoreResult<()> {
        bounded(subscriptions::set_cursor(self, queue, id, marker)).await
    }

    async fn reset_delivery_cursor(&self, queue: &QueueRef, id: &str) -> StoreResult<String> {
        bounded(subscriptions::reset_cursor(self, queue, id)).await
    }

    async fn take_delivery_lease(
        &self,
        queue: &QueueRef,
        id: &str,
        holder: &str,
        ttl: Duration,
    ) -> StoreResult<bool> {
        bounded(subscriptions::take_lease(self, queue, id, holder, ttl)).await
    }

    async fn release_delivery_lease(
        &self,
        queue: &QueueRef,
        id: &str,
        holder: &str,
    ) -> StoreResult<()> {
        bounded(subscriptions::release_lease(self, queue, id, holder)).await
    }

    async fn subscribed_queues(&self) -> StoreResult<Vec<QueueRef>> {
        bounded(subscriptions::subscribed_queues(self)).await
    }
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
        bounded(messages::remove_expired(self)).await
    }

    fn relay_activity(&self, relay: crate::activity::Relay) {
        relay::spawn(self.clone(), relay);
    }
}
