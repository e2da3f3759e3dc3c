//! Queues of the MongoDB store: metadata, deletion, purge and stats.

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::options::Hint;
use mongodb::Collection;
use zaqar_proto::pb::{QueueRef, QueueStatsReply};
use zaqar_proto::ZaqarError;

use super::fields::{
    self, CLAIMED, CLAIM_EXPIRES, DELAYED, EXPIRES, METADATA, SEQ, STATE, VISIBLE,
};
use super::{
    counter_key, date, is_duplicate_key, now_ms, of_queue, store_error, MongoStore, CLAIMS_ENDING,
    DELAYS_ENDING,
};
use crate::store::StoreResult;

pub(super) async fn create(
    store: &MongoStore,
    queue: &QueueRef,
    metadata_json: &str,
) -> StoreResult<bool> {
    let mut record = of_queue(queue);
    record.insert(METADATA, metadata_json);
    match store.queues.insert_one(record).await {
        Ok(_) => Ok(true),
        Err(err) if is_duplicate_key(&err) => Ok(false),
        Err(err) => Err(store_error(err)),
    }
}

pub(super) async fn get(store: &MongoStore, queue: &QueueRef) -> StoreResult<Option<String>> {
    let record = store
        .queues
        .find_one(of_queue(queue))
        .await
        .map_err(store_error)?;
    Ok(record.map(|record| fields::text(&record, METADATA)))
}

pub(super) async fn set_metadata(
    store: &MongoStore,
    queue: &QueueRef,
    metadata_json: &str,
) -> StoreResult<()> {
    let done = store
        .queues
        .update_one(
            of_queue(queue),
            doc! { "$set": { METADATA: metadata_json } },
        )
        .await
        .map_err(store_error)?;
    if done.matched_count == 0 {
        return Err(ZaqarError::not_found(format!(
            "Queue {} does not exist",
            queue.queue
        )));
    }
    Ok(())
}

/// Deletes the queue document, then its messages and claims (see [`purge`]);
/// subscriptions stay, and so does the message counter.
pub(super) async fn delete(store: &MongoStore, queue: &QueueRef) -> StoreResult<()> {
    store
        .queues
        .delete_one(of_queue(queue))
        .await
        .map_err(store_error)?;
    purge(store, queue, true, false).await
}

/// Documents deleted per call by purges: a large queue is deleted in many short
/// calls, never in one transaction that grows with it.
const DELETE_BATCH: i64 = 1000;

/// Deletes a queue's messages and claims and/or its subscriptions, in batches.
/// Messages posted while a purge runs (numbered after its start) are kept.
pub(super) async fn purge(
    store: &MongoStore,
    queue: &QueueRef,
    messages: bool,
    subscriptions: bool,
) -> StoreResult<()> {
    if messages {
        let last = store
            .counters
            .find_one(doc! { fields::ID: counter_key(queue) })
            .await
            .map_err(store_error)?
            .map_or(0, |counter| fields::int(&counter, fields::LAST));
        let mut posted_before = of_queue(queue);
        posted_before.insert(SEQ, doc! { "$lte": last });
        delete_in_batches(&store.messages, posted_before).await?;
        delete_in_batches(&store.claims, of_queue(queue)).await?;
    }
    if subscriptions {
        delete_in_batches(&store.subscriptions, of_queue(queue)).await?;
    }
    Ok(())
}

/// Deletes what `filter` selects, [`DELETE_BATCH`] documents per call.
async fn delete_in_batches(collection: &Collection<Document>, filter: Document) -> StoreResult<()> {
    loop {
        let batch: Vec<Document> = collection
            .find(filter.clone())
            .projection(doc! { fields::ID: 1 })
            .limit(DELETE_BATCH)
            .await
            .map_err(store_error)?
            .try_collect()
            .await
            .map_err(store_error)?;
        let ids: Vec<_> = batch
            .iter()
            .filter_map(|d| d.get(fields::ID).cloned())
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        collection
            .delete_many(doc! { fields::ID: { "$in": ids } })
            .await
            .map_err(store_error)?;
        if (batch.len() as i64) < DELETE_BATCH {
            return Ok(());
        }
    }
}

/// A filter of the queue's live messages at `now`, with `extra` conditions.
fn live(queue: &QueueRef, now: i64, extra: Document) -> Document {
    let mut filter = of_queue(queue);
    filter.insert(EXPIRES, doc! { "$gt": date(now) });
    filter.extend(extra);
    filter
}

/// Counts of the live messages; free = total - claimed (delayed included).
pub(super) async fn stats(store: &MongoStore, queue: &QueueRef) -> StoreResult<QueueStatsReply> {
    let now = now_ms();
    let count = |extra: Document| store.messages.count_documents(live(queue, now, extra));
    let total = count(doc! {}).await.map_err(store_error)?;
    // A claimed message is in the claimed state, a delayed one in the delayed
    // state: their partial indexes hold just them.
    let claimed = count(doc! { STATE: CLAIMED, CLAIM_EXPIRES: { "$gt": now } })
        .hint(Hint::Name(CLAIMS_ENDING.to_string()))
        .await
        .map_err(store_error)?;
    let delayed = count(doc! { STATE: DELAYED, VISIBLE: { "$gt": now } })
        .hint(Hint::Name(DELAYS_ENDING.to_string()))
        .await
        .map_err(store_error)?;
    let mut ends = Vec::new();
    for order in [1, -1] {
        let end = store
            .messages
            .find_one(live(queue, now, doc! {}))
            .sort(doc! { SEQ: order })
            .await
            .map_err(store_error)?;
        ends.push(end.map(|doc| fields::message(&doc, now)));
    }
    let newest = ends.pop().flatten();
    let oldest = ends.pop().flatten();
    // Counted one after the other: a claim in between must not make free negative.
    let claimed = claimed.min(total);
    Ok(QueueStatsReply {
        claimed,
        free: total - claimed,
        delayed,
        total,
        oldest,
        newest,
    })
}
