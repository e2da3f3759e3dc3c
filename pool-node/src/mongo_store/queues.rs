//! Queues of the MongoDB store: metadata, deletion, purge and stats.

use async_trait::async_trait;
use futures::{FutureExt, TryStreamExt};
use mongodb::bson::{doc, Document};
use mongodb::error::Error as MongoError;
use mongodb::{ClientSession, Collection};
use zaqar_proto::pb::{QueueRef, QueueStatsReply};
use zaqar_proto::ZaqarError;

use super::counts::{self, state_of};
use super::fields::{
    self, CLAIMED, CLAIM_EXPIRES, DELAYED, EXPIRES, METADATA, SEQ, SIZE, STATE, VISIBLE,
};
use super::messages::{self, delete_found, states_of_found, ENDINGS};
use super::scan::{head_and_last, is_live, read_window, Windows, MAX_WINDOW};
use super::{
    bounded, counter_key, date, is_duplicate_key, now_ms, of_queue, store_error, MongoStore,
};
use crate::store::{Purge, QueueStore, StoreResult};

async fn create_queue(
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

async fn get_queue(store: &MongoStore, queue: &QueueRef) -> StoreResult<Option<String>> {
    let record = store
        .queues
        .find_one(of_queue(queue))
        .await
        .map_err(store_error)?;
    Ok(record.map(|record| fields::text(&record, METADATA)))
}

async fn set_queue_metadata(
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

/// Deletes the queue document, then its messages and claims (see [`purge_queue`]);
/// subscriptions stay, and so does the message counter.
async fn delete_queue(store: &MongoStore, queue: &QueueRef) -> StoreResult<()> {
    store
        .queues
        .delete_one(of_queue(queue))
        .await
        .map_err(store_error)?;
    purge_queue(store, queue, Purge::MESSAGES).await
}

/// Documents deleted per call by purges: a large queue is deleted in many short
/// calls, never in one transaction that grows with it.
const DELETE_BATCH: i64 = 1000;
/// The widest window of seqs a purge deletes in one call, after empty ones.
const PURGE_WINDOW: i64 = 64 * DELETE_BATCH;

/// Deletes a queue's messages and claims and/or its subscriptions, in batches.
/// Messages posted while a purge runs (numbered after its start) are kept.
async fn purge_queue(store: &MongoStore, queue: &QueueRef, purge: Purge) -> StoreResult<()> {
    if purge.messages {
        let last = store
            .counters
            .find_one(doc! { fields::ID: counter_key(queue) })
            .await
            .map_err(store_error)?
            .map_or(0, |counter| fields::int(&counter, fields::LAST));
        delete_messages_upto(store, queue, last).await?;
        delete_in_batches(&store.claims, of_queue(queue)).await?;
    }
    if purge.subscriptions {
        delete_in_batches(&store.subscriptions, of_queue(queue)).await?;
    }
    Ok(())
}

/// Deletes the queue's messages numbered up to `last`, at most [`DELETE_BATCH`]
/// per transaction (with their count), one window of seqs at a time
/// ([`DELETE_BATCH`] wide, twice as wide after an empty one): each transaction
/// reads its window of the unique index on project, queue and seq only.
async fn delete_messages_upto(store: &MongoStore, queue: &QueueRef, last: i64) -> StoreResult<()> {
    let (mut after, mut width) = (0, DELETE_BATCH);
    while after < last {
        let upto = after.saturating_add(width).min(last);
        let mut window = of_queue(queue);
        window.insert(SEQ, doc! { "$gt": after, "$lte": upto });
        let (deleted, last_deleted) = store
            .transaction(|session| {
                let (store, queue, window) = (store.clone(), queue.clone(), window.clone());
                async move {
                    let found = states_of_found(&store, window, DELETE_BATCH, session).await?;
                    let Some(last_deleted) = found.last().map(|d| fields::int(d, SEQ)) else {
                        return Ok(Ok((0, 0)));
                    };
                    let mut selected = of_queue(&queue);
                    selected.insert(SEQ, doc! { "$gt": after, "$lte": last_deleted });
                    delete_found(&store, &queue, selected, &found, session).await?;
                    Ok(Ok((found.len() as i64, last_deleted)))
                }
                .boxed()
            })
            .await?;
        (after, width) = match deleted {
            0 => (upto, (width * 2).min(PURGE_WINDOW)),
            DELETE_BATCH => (last_deleted, DELETE_BATCH),
            _ => (upto, DELETE_BATCH),
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

/// Counts of the live messages; free = total - claimed (delayed included).
///
/// In one transaction (one snapshot): the sum of the queue's count documents
/// (`counts.rs`), less the claimed messages whose claim has ended and the delayed
/// ones whose delay has passed (ranges of `claim_ends` and `delay_ends`) and the
/// expired ones not yet swept (a range of the expiry index, which the sweep keeps
/// short), with the bytes of their bodies. No count reads the queue's other messages.
async fn queue_stats(store: &MongoStore, queue: &QueueRef) -> StoreResult<QueueStatsReply> {
    let now = now_ms();
    let (total, claimed, delayed, bytes) = store
        .transaction(|session| {
            let (store, queue) = (store.clone(), queue.clone());
            async move {
                let written = counts::read(&store, &queue, session).await?;
                let mut ended = [0_i64; 2];
                for (count, (state, ends)) in ended.iter_mut().zip(ENDINGS) {
                    // A find, not a count: a server may count by reading the whole
                    // state range (SecantusDB), where a find reads the end-time range.
                    let found: Vec<Document> = store
                        .messages
                        .find(messages::ended(&queue, state, ends, now))
                        .projection(doc! { fields::ID: 1 })
                        .session(&mut *session)
                        .await?
                        .stream(&mut *session)
                        .try_collect()
                        .await?;
                    *count = found.len() as i64;
                }
                let expired = expired_of(&store, &queue, now, session).await?;
                let still = |state: i32, ends: &str| {
                    expired
                        .iter()
                        .filter(|d| state_of(d) == state && fields::int(d, ends) > now)
                        .count() as i64
                };
                let total = (written.total() - expired.len() as i64).max(0) as u64;
                let claimed =
                    (written.claimed - ended[0] - still(CLAIMED, CLAIM_EXPIRES)).max(0) as u64;
                let delayed = (written.delayed - ended[1] - still(DELAYED, VISIBLE)).max(0) as u64;
                let expired_bytes: i64 = expired.iter().map(|d| fields::int(d, SIZE)).sum();
                let bytes = (written.bytes - expired_bytes).max(0) as u64;
                Ok(Ok((total, claimed.min(total), delayed, bytes)))
            }
            .boxed()
        })
        .await?;
    let (oldest, newest) = ends(store, queue, now).await?;
    Ok(QueueStatsReply {
        claimed,
        free: total - claimed,
        delayed,
        total,
        oldest: oldest.map(|doc| fields::message(&doc, now)),
        newest: newest.map(|doc| fields::message(&doc, now)),
        bytes,
    })
}

/// The filter of the queue's messages expired at `now`: a range of the expiry
/// index (named first, for a server that routes a filter by its first indexed field;
/// no `hint`, which makes SecantusDB read the whole collection).
pub(super) fn expired_by(queue: &QueueRef, now: i64) -> Document {
    let mut filter = doc! { EXPIRES: { "$lte": date(now) } };
    filter.extend(of_queue(queue));
    filter
}

/// The queue's messages expired at `now` and not yet swept, with their state and ends.
async fn expired_of(
    store: &MongoStore,
    queue: &QueueRef,
    now: i64,
    session: &mut ClientSession,
) -> Result<Vec<Document>, MongoError> {
    store
        .messages
        .find(expired_by(queue, now))
        .projection(doc! { STATE: 1, CLAIM_EXPIRES: 1, VISIBLE: 1, SIZE: 1 })
        .session(&mut *session)
        .await?
        .stream(session)
        .try_collect()
        .await
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

#[async_trait]
impl QueueStore for MongoStore {
    async fn create_queue(&self, queue: &QueueRef, metadata_json: &str) -> StoreResult<bool> {
        bounded(create_queue(self, queue, metadata_json)).await
    }

    async fn get_queue(&self, queue: &QueueRef) -> StoreResult<Option<String>> {
        bounded(get_queue(self, queue)).await
    }

    async fn set_queue_metadata(&self, queue: &QueueRef, metadata_json: &str) -> StoreResult<()> {
        bounded(set_queue_metadata(self, queue, metadata_json)).await
    }

    async fn delete_queue(&self, queue: &QueueRef) -> StoreResult<()> {
        bounded(delete_queue(self, queue)).await
    }

    async fn queue_stats(&self, queue: &QueueRef) -> StoreResult<QueueStatsReply> {
        bounded(queue_stats(self, queue)).await
    }

    async fn purge_queue(&self, queue: &QueueRef, purge: Purge) -> StoreResult<()> {
        bounded(purge_queue(self, queue, purge)).await
    }
}
