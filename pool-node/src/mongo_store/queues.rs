//! Queues of the MongoDB store: metadata, deletion, purge and stats.

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::Collection;
use zaqar_proto::pb::{QueueRef, QueueStatsReply};
use zaqar_proto::ZaqarError;

use super::fields::{
    self, CLAIMED, CLAIM_EXPIRES, DELAYED, EXPIRES, METADATA, SEQ, STATE, VISIBLE,
};
use super::scan::{head_and_last, is_live, read_window, Windows, MAX_WINDOW};
use super::{counter_key, date, is_duplicate_key, now_ms, of_queue, store_error, MongoStore};
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
/// The widest window of seqs a purge deletes in one call, after empty ones.
const PURGE_WINDOW: i64 = 64 * DELETE_BATCH;

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
        delete_messages_upto(store, queue, last).await?;
        delete_in_batches(&store.claims, of_queue(queue)).await?;
    }
    if subscriptions {
        delete_in_batches(&store.subscriptions, of_queue(queue)).await?;
    }
    Ok(())
}

/// Deletes the queue's messages numbered up to `last`, one window of seqs per
/// call ([`DELETE_BATCH`] wide, twice as wide after an empty one): each call
/// reads its window of the unique index on project, queue and seq only.
async fn delete_messages_upto(store: &MongoStore, queue: &QueueRef, last: i64) -> StoreResult<()> {
    let (mut after, mut width) = (0, DELETE_BATCH);
    while after < last {
        let upto = after.saturating_add(width).min(last);
        let mut window = of_queue(queue);
        window.insert(SEQ, doc! { "$gt": after, "$lte": upto });
        let done = store
            .messages
            .delete_many(window)
            .await
            .map_err(store_error)?;
        after = upto;
        width = if done.deleted_count == 0 {
            (width * 2).min(PURGE_WINDOW)
        } else {
            DELETE_BATCH
        };
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

/// `filter` and the condition that a message is live at `now`, as an `$expr`: a
/// server that routes by one range (SecantusDB) then reads the range `filter`
/// names (the expiry is always set, so `$expr`'s ordering of missing values does not matter).
fn live(mut filter: Document, now: i64) -> Document {
    filter.insert(
        "$and",
        vec![doc! { "$expr": { "$gt": [format!("${EXPIRES}"), date(now)] } }],
    );
    filter
}

/// The count of the queue's live messages in `state` whose end (`ends`) is after `now`:
/// one range of `claim_ends` or `delay_ends`.
async fn count_until(
    store: &MongoStore,
    queue: &QueueRef,
    state: i32,
    ends: &str,
    now: i64,
) -> StoreResult<u64> {
    let mut filter = of_queue(queue);
    filter.extend(doc! { STATE: state, ends: { "$gt": now } });
    store
        .messages
        .count_documents(live(filter, now))
        .await
        .map_err(store_error)
}

/// Counts of the live messages; free = total - claimed (delayed included). The
/// total reads every message of the queue; the claimed and delayed counts read
/// the claimed and the delayed ones.
pub(super) async fn stats(store: &MongoStore, queue: &QueueRef) -> StoreResult<QueueStatsReply> {
    let now = now_ms();
    let total = store
        .messages
        .count_documents(live(of_queue(queue), now))
        .await
        .map_err(store_error)?;
    let claimed = count_until(store, queue, CLAIMED, CLAIM_EXPIRES, now).await?;
    let delayed = count_until(store, queue, DELAYED, VISIBLE, now).await?;
    let (oldest, newest) = ends(store, queue, now).await?;
    // Counted one after the other: a claim in between must not make free negative.
    let claimed = claimed.min(total);
    Ok(QueueStatsReply {
        claimed,
        free: total - claimed,
        delayed,
        total,
        oldest: oldest.map(|doc| fields::message(&doc, now)),
        newest: newest.map(|doc| fields::message(&doc, now)),
    })
}

/// The oldest and the newest live message of the queue, each found by reading
/// windows of seqs from its end of the queue.
async fn ends(
    store: &MongoStore,
    queue: &QueueRef,
    now: i64,
) -> StoreResult<(Option<Document>, Option<Document>)> {
    let (_, last) = head_and_last(store, queue, None)
        .await
        .map_err(store_error)?;
    let base = of_queue(queue);
    let mut windows = Windows::new(0, last, 1);
    let mut oldest = None;
    while let Some((filter, _)) = windows.next(&base) {
        let window = read_window(store, filter, None)
            .await
            .map_err(store_error)?;
        oldest = window.into_iter().find(|d| is_live(d, now));
        if oldest.is_some() {
            break;
        }
    }
    let Some(first) = oldest.as_ref().map(|d| fields::int(d, SEQ)) else {
        return Ok((None, None));
    };
    let (mut upto, mut width) = (last, 1);
    while upto >= first {
        let after = upto.saturating_sub(width).max(first - 1);
        let mut filter = base.clone();
        filter.insert(SEQ, doc! { "$gt": after, "$lte": upto });
        let window = read_window(store, filter, None)
            .await
            .map_err(store_error)?;
        if let Some(newest) = window.into_iter().rev().find(|d| is_live(d, now)) {
            return Ok((oldest, Some(newest)));
        }
        upto = after;
        width = (width * 2).min(MAX_WINDOW);
    }
    Ok((oldest.clone(), oldest))
}
