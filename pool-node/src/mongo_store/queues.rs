//! Queues of the MongoDB store: metadata, deletion, purge and stats.

use futures::FutureExt;
use mongodb::bson::{doc, Document};
use zaqar_proto::pb::{QueueRef, QueueStatsReply};
use zaqar_proto::ZaqarError;

use super::fields::{self, CLAIM_EXPIRES, EXPIRES, METADATA, SEQ, VISIBLE};
use super::{date, is_duplicate_key, now_ms, of_queue, store_error, MongoStore};
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

/// Deletes the queue document, its messages and claims in one transaction;
/// subscriptions stay, and so does the message counter.
pub(super) async fn delete(store: &MongoStore, queue: &QueueRef) -> StoreResult<()> {
    store
        .transaction(|session| {
            let (store, filter) = (store.clone(), of_queue(queue));
            async move {
                store
                    .queues
                    .delete_one(filter.clone())
                    .session(&mut *session)
                    .await?;
                store
                    .messages
                    .delete_many(filter.clone())
                    .session(&mut *session)
                    .await?;
                store
                    .claims
                    .delete_many(filter)
                    .session(&mut *session)
                    .await?;
                Ok(Ok(()))
            }
            .boxed()
        })
        .await
}

pub(super) async fn purge(
    store: &MongoStore,
    queue: &QueueRef,
    messages: bool,
    subscriptions: bool,
) -> StoreResult<()> {
    let mut collections = Vec::new();
    if messages {
        collections.extend([store.messages.clone(), store.claims.clone()]);
    }
    if subscriptions {
        collections.push(store.subscriptions.clone());
    }
    store
        .transaction(|session| {
            let (collections, filter) = (collections.clone(), of_queue(queue));
            async move {
                for collection in collections {
                    collection
                        .delete_many(filter.clone())
                        .session(&mut *session)
                        .await?;
                }
                Ok(Ok(()))
            }
            .boxed()
        })
        .await
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
    let claimed = count(doc! { CLAIM_EXPIRES: { "$gt": now } })
        .await
        .map_err(store_error)?;
    let delayed = count(doc! { CLAIM_EXPIRES: { "$lte": now }, VISIBLE: { "$gt": now } })
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
