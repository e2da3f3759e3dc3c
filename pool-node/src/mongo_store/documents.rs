//! What every file of the store builds its queries from: times and markers,
//! the filters of a queue's documents, finds, the queue document and its
//! sequence numbers.

use std::time::{SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use mongodb::bson::{doc, DateTime, Document};
use mongodb::error::Error as MongoError;
use mongodb::options::ReturnDocument;
use mongodb::{ClientSession, Collection};
use zaqar_proto::pb::QueueRef;
use zaqar_proto::ZaqarError;

use super::{fields, MongoStore};
use crate::store::StoreResult;

/// Wall-clock milliseconds since the Unix epoch.
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `ms` as the BSON date the expiry fields (and their TTL indexes) hold.
pub(super) fn date(ms: i64) -> DateTime {
    DateTime::from_millis(ms)
}

/// `seconds` as milliseconds.
pub(super) fn ms(seconds: u32) -> i64 {
    i64::from(seconds) * 1000
}

/// Whole seconds in a span of milliseconds (0 for a negative span).
pub(super) fn whole_seconds(span_ms: i64) -> i64 {
    span_ms.max(0) / 1000
}

/// Parses a listing marker: empty is the start, otherwise a decimal sequence number.
pub(super) fn parse_marker(marker: &str) -> StoreResult<i64> {
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
pub(super) fn counter_key(queue: &QueueRef) -> String {
    format!("{}:{}:{}", queue.project.len(), queue.project, queue.queue)
}

/// The documents of `collection` that `filter` selects, sorted, at most `limit`
/// (`limit` 0: none).
pub(super) async fn find(
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

/// Creates the queue document (empty metadata) if it is missing, in a transaction.
pub(super) async fn ensure_queue(
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
pub(super) async fn next_seq(
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
pub(super) fn of_queue(queue: &QueueRef) -> Document {
    doc! { fields::PROJECT: &queue.project, fields::QUEUE: &queue.queue }
}

/// The filter of one queue's documents whose `_id` is `id` (a value or an
/// operator such as `$in`). `_id` comes first: a server that routes a filter
/// by its first indexed field (SecantusDB) then looks the ids up.
pub(super) fn of_ids(queue: &QueueRef, id: impl Into<mongodb::bson::Bson>) -> Document {
    let mut filter = doc! { fields::ID: id.into() };
    filter.extend(of_queue(queue));
    filter
}
