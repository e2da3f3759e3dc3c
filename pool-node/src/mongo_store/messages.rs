//! Messages of the MongoDB store: post, list, get, delete and pop.

use std::collections::{HashMap, HashSet};

use futures::{FutureExt, TryStreamExt};
use md5::{Digest, Md5};
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::Error as MongoError;
use mongodb::options::Hint;
use mongodb::ClientSession;
use uuid::Uuid;
use zaqar_proto::pb::{Message, NewMessage, QueueRef};
use zaqar_proto::{ErrorCode, ZaqarError};

use super::fields::{
    self, BODY, CHECKSUM, CLAIMED, CLAIM_COUNT, CLAIM_EXPIRES, CLAIM_ID, CLIENT, CREATED, DELAYED,
    EXPIRES, FREE, ID, SEQ, STATE, TTL, VISIBLE,
};
use super::{
    counter_key, date, ensure_queue, find, find_in, ms, next_seq, now_ms, of_queue, parse_marker,
    store_error, MongoStore, CLAIMS_ENDING, DELAYS_ENDING,
};
use crate::store::{ListParams, StoreResult};

/// Zaqar's checksum of a message body: `MD5:` and the hex digest of its JSON text.
fn checksum(body_json: &str) -> String {
    format!("MD5:{:x}", Md5::digest(body_json.as_bytes()))
}

/// Appends `messages` in one transaction: creates the queue if needed, takes
/// sequence numbers from its counter, inserts the messages.
pub(super) async fn post(
    store: &MongoStore,
    queue: &QueueRef,
    client_id: &str,
    messages: &[NewMessage],
) -> StoreResult<Vec<String>> {
    let now = now_ms();
    let ids: Vec<String> = messages
        .iter()
        .map(|_| Uuid::new_v4().to_string())
        .collect();
    let documents: Vec<Document> = messages
        .iter()
        .zip(&ids)
        .map(|(message, id)| {
            let mut document = of_queue(queue);
            document.extend(doc! {
                ID: id,
                CLIENT: client_id,
                BODY: &message.body_json,
                CHECKSUM: checksum(&message.body_json),
                TTL: i64::from(message.ttl),
                CREATED: now,
                VISIBLE: now + ms(message.delay),
                EXPIRES: date(now + ms(message.ttl)),
                CLAIM_ID: Bson::Null,
                CLAIM_EXPIRES: 0_i64,
                CLAIM_COUNT: 0_i64,
                STATE: if message.delay > 0 { DELAYED } else { FREE },
            });
            document
        })
        .collect();
    if documents.is_empty() {
        return Ok(ids);
    }
    store
        .transaction(|session| {
            let (store, queue, mut documents) = (store.clone(), queue.clone(), documents.clone());
            let ids = ids.clone();
            async move {
                ensure_queue(&store, &queue, session).await?;
                let last = next_seq(&store, counter_key(&queue), documents.len(), session).await?;
                let first = last - documents.len() as i64 + 1;
                for (seq, document) in (first..).zip(documents.iter_mut()) {
                    document.insert(SEQ, seq);
                }
                store
                    .messages
                    .insert_many(documents)
                    .session(&mut *session)
                    .await?;
                Ok(Ok(ids))
            }
            .boxed()
        })
        .await
}

/// The filter of the queue's free messages (live, not delayed, not claimed)
/// after `after`: a range of the index `BY_STATE`, sorted by seq.
pub(super) fn free_after(queue: &QueueRef, after: i64, now: i64) -> Document {
    let mut filter = of_queue(queue);
    filter.extend(doc! {
        STATE: FREE,
        SEQ: { "$gt": after },
        EXPIRES: { "$gt": date(now) },
        VISIBLE: { "$lte": now },
        CLAIM_EXPIRES: { "$lte": now },
    });
    filter
}

pub(super) async fn list(
    store: &MongoStore,
    queue: &QueueRef,
    params: &ListParams,
) -> StoreResult<(Vec<Message>, String)> {
    let after = parse_marker(&params.marker)?;
    let now = now_ms();
    // Ended claims and passed delays are not where a listing without them looks.
    if !(params.include_claimed && params.include_delayed) {
        free_ended(store, queue, now, None)
            .await
            .map_err(store_error)?;
    }
    let filter = listing(queue, after, now, params);
    let documents = find(&store.messages, filter, doc! { SEQ: 1 }, params.limit)
        .await
        .map_err(store_error)?;
    let next_marker = match documents.last() {
        Some(last) => fields::int(last, SEQ).to_string(),
        None => params.marker.clone(),
    };
    let messages = documents
        .iter()
        .map(|document| fields::message(document, now))
        .collect();
    Ok((messages, next_marker))
}

/// The filter of a listing: the states it includes, each a range of `BY_STATE`
/// that the server merges by seq (a `SORT_MERGE` plan).
pub(super) fn listing(queue: &QueueRef, after: i64, now: i64, params: &ListParams) -> Document {
    let mut states = vec![FREE];
    if params.include_claimed {
        states.push(CLAIMED);
    }
    if params.include_delayed {
        states.push(DELAYED);
    }
    let mut filter = of_queue(queue);
    filter.extend(doc! {
        STATE: { "$in": states },
        SEQ: { "$gt": after },
        EXPIRES: { "$gt": date(now) },
    });
    if !params.echo {
        filter.insert(CLIENT, doc! { "$ne": &params.client_id });
    }
    filter
}

/// The most messages one call moves from claimed or from delayed back to free;
/// each message moves once, the rest wait for the next call.
const FREED_PER_CALL: i64 = 500;

/// Moves up to [`FREED_PER_CALL`] messages whose claim has ended, and as many
/// whose delay has passed, back to [`FREE`] (inside `session`'s transaction when given).
pub(super) async fn free_ended(
    store: &MongoStore,
    queue: &QueueRef,
    now: i64,
    mut session: Option<&mut ClientSession>,
) -> Result<(), MongoError> {
    for (state, ends, index) in [
        (CLAIMED, CLAIM_EXPIRES, CLAIMS_ENDING),
        (DELAYED, VISIBLE, DELAYS_ENDING),
    ] {
        let mut ended = of_queue(queue);
        ended.extend(doc! { STATE: state, ends: { "$lte": now } });
        let find = store
            .messages
            .find(ended.clone())
            .hint(Hint::Name(index.to_string()))
            .limit(FREED_PER_CALL)
            .projection(doc! { ID: 1 });
        let documents: Vec<Document> = match session.as_deref_mut() {
            Some(session) => {
                find.session(&mut *session)
                    .await?
                    .stream(session)
                    .try_collect()
                    .await?
            }
            None => find.await?.try_collect().await?,
        };
        if documents.is_empty() {
            continue;
        }
        let ids: Vec<String> = documents.iter().map(|d| fields::text(d, ID)).collect();
        ended.insert(ID, doc! { "$in": ids });
        let update = store
            .messages
            .update_many(ended, doc! { "$set": { STATE: FREE } });
        match session.as_deref_mut() {
            Some(session) => update.session(session).await?,
            None => update.await?,
        };
    }
    Ok(())
}

pub(super) async fn get_many(
    store: &MongoStore,
    queue: &QueueRef,
    ids: &[String],
) -> StoreResult<Vec<Message>> {
    let now = now_ms();
    let mut seen = HashSet::new();
    let ids: Vec<&String> = ids.iter().filter(|id| seen.insert(id.as_str())).collect();
    let mut filter = of_queue(queue);
    filter.extend(doc! { ID: { "$in": &ids }, EXPIRES: { "$gt": date(now) } });
    let documents = find(&store.messages, filter, doc! { SEQ: 1 }, ids.len() as u32)
        .await
        .map_err(store_error)?;
    let mut by_id: HashMap<String, Message> = documents
        .iter()
        .map(|document| (fields::text(document, ID), fields::message(document, now)))
        .collect();
    Ok(ids.iter().filter_map(|id| by_id.remove(*id)).collect())
}

fn claimed_without_claim_id() -> ZaqarError {
    ZaqarError::titled(
        ErrorCode::Forbidden,
        "Unable to delete",
        "This message is claimed; it cannot be deleted without a valid claim ID.",
    )
}

/// Deletes one message in one atomic delete whose filter states the claim rule;
/// when nothing was deleted, a read of the message tells why.
pub(super) async fn delete_one(
    store: &MongoStore,
    queue: &QueueRef,
    id: &str,
    claim_id: Option<&str>,
) -> StoreResult<()> {
    let now = now_ms();
    let mut filter = of_queue(queue);
    filter.insert(ID, id);
    let mut deletable = filter.clone();
    match claim_id {
        None => deletable.insert(CLAIM_EXPIRES, doc! { "$lte": now }),
        Some(claim_id) => {
            deletable.insert(CLAIM_EXPIRES, doc! { "$gt": now });
            deletable.insert(CLAIM_ID, claim_id)
        }
    };
    let done = store
        .messages
        .delete_one(deletable)
        .await
        .map_err(store_error)?;
    if done.deleted_count == 1 {
        return Ok(());
    }
    filter.insert(EXPIRES, doc! { "$gt": date(now) });
    let Some(message) = store.messages.find_one(filter).await.map_err(store_error)? else {
        return Ok(());
    };
    match claim_id {
        None if fields::int(&message, CLAIM_EXPIRES) > now => Err(claimed_without_claim_id()),
        // Released or expired between the two calls: it is free now.
        None => Box::pin(delete_one(store, queue, id, None)).await,
        Some(_) => Err(ZaqarError::titled(
            ErrorCode::BadRequest,
            "Unable to delete",
            "The specified claim does not exist or has expired.",
        )),
    }
}

/// Deletes `ids`; with `claim_ids`, checks every claimed one first (all or nothing,
/// in one transaction).
pub(super) async fn delete_many(
    store: &MongoStore,
    queue: &QueueRef,
    ids: &[String],
    claim_ids: &[String],
) -> StoreResult<()> {
    let mut selected = of_queue(queue);
    selected.insert(ID, doc! { "$in": ids });
    if claim_ids.is_empty() {
        store
            .messages
            .delete_many(selected)
            .await
            .map_err(store_error)?;
        return Ok(());
    }
    store
        .transaction(|session| {
            let (store, selected, claim_ids) =
                (store.clone(), selected.clone(), claim_ids.to_vec());
            async move {
                let now = now_ms();
                let mut held_by_others = selected.clone();
                held_by_others.extend(doc! {
                    EXPIRES: { "$gt": date(now) },
                    CLAIM_EXPIRES: { "$gt": now },
                    CLAIM_ID: { "$nin": &claim_ids },
                });
                let others = find_in(session, &store.messages, held_by_others, doc! {}, 1).await?;
                if !others.is_empty() {
                    return Ok(Err(claimed_without_claim_id()));
                }
                store
                    .messages
                    .delete_many(selected)
                    .session(&mut *session)
                    .await?;
                Ok(Ok(()))
            }
            .boxed()
        })
        .await
}

/// Removes and returns up to `limit` free messages, oldest first, in one transaction.
pub(super) async fn pop(
    store: &MongoStore,
    queue: &QueueRef,
    limit: u32,
) -> StoreResult<Vec<Message>> {
    store
        .transaction(|session| {
            let (store, queue) = (store.clone(), queue.clone());
            async move {
                let now = now_ms();
                free_ended(&store, &queue, now, Some(&mut *session)).await?;
                let free = free_after(&queue, 0, now);
                let documents =
                    find_in(session, &store.messages, free, doc! { SEQ: 1 }, limit).await?;
                let ids: Vec<String> = documents.iter().map(|d| fields::text(d, ID)).collect();
                store
                    .messages
                    .delete_many(doc! { ID: { "$in": ids } })
                    .session(&mut *session)
                    .await?;
                Ok(Ok(documents
                    .iter()
                    .map(|document| fields::message(document, now))
                    .collect()))
            }
            .boxed()
        })
        .await
}
