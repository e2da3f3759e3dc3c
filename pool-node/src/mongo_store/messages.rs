//! Messages of the MongoDB store: post, list, get, delete and pop.

use async_trait::async_trait;
use std::collections::{HashMap, HashSet};

use futures::{FutureExt, TryStreamExt};
use md5::{Digest, Md5};
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::Error as MongoError;
use mongodb::ClientSession;
use uuid::Uuid;
use zaqar_proto::pb::{Message, NewMessage, QueueRef};

use super::counts::{self, Counts};
use super::fields::{
    self, BODY, CHECKSUM, CLAIMED, CLAIM_COUNT, CLAIM_EXPIRES, CLAIM_ID, CLIENT, CREATED, DELAYED,
    EXPIRES, FREE, ID, PROJECT, QUEUE, SEQ, SIZE, STATE, TTL, VISIBLE,
};
use super::scan::{free_found, free_state, head_and_last, is_live, read_window, FreeScan, Windows};
use super::{
    bounded, counter_key, date, ensure_queue, find, ms, next_seq, now_ms, of_ids, of_queue,
    parse_marker, store_error, MongoStore,
};
use crate::store::{
    claim_not_holding, claimed_without_claim_id, CheckedPost, ListParams, MessageLog, Once, Post,
    StoreResult,
};

/// Zaqar's checksum of a message body: `MD5:` and the hex digest of its JSON text.
fn checksum(body_json: &str) -> String {
    format!("MD5:{:x}", Md5::digest(body_json.as_bytes()))
}

/// Appends `messages` in one transaction: creates the queue if needed, takes
/// sequence numbers from its counter, inserts the messages.
async fn post_messages(
    store: &MongoStore,
    queue: &QueueRef,
    client_id: &str,
    messages: &[NewMessage],
) -> StoreResult<Vec<String>> {
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    store
        .transaction(|session| {
            let (store, queue) = (store.clone(), queue.clone());
            let (client_id, messages) = (client_id.to_string(), messages.to_vec());
            async move {
                let ids = append(&store, &queue, &client_id, &messages, now_ms(), session).await?;
                Ok(Ok(ids))
            }
            .boxed()
        })
        .await
}

/// Inserts `messages` posted at `now` in the transaction of `session`, creating
/// the queue if needed; their ids.
async fn append(
    store: &MongoStore,
    queue: &QueueRef,
    client_id: &str,
    messages: &[NewMessage],
    now: i64,
    session: &mut ClientSession,
) -> Result<Vec<String>, MongoError> {
    let ids: Vec<String> = messages
        .iter()
        .map(|_| Uuid::new_v4().to_string())
        .collect();
    if messages.is_empty() {
        return Ok(ids);
    }
    let mut documents: Vec<Document> = messages
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
                SIZE: message.body_json.len() as i64,
            });
            document
        })
        .collect();
    let mut added = Counts::default();
    for message in messages {
        added.add(if message.delay > 0 { DELAYED } else { FREE }, 1);
        added.bytes += message.body_json.len() as i64;
    }
    ensure_queue(store, queue, session).await?;
    let last = next_seq(store, counter_key(queue), documents.len(), session).await?;
    let first = last - documents.len() as i64 + 1;
    for (seq, document) in (first..).zip(documents.iter_mut()) {
        document.insert(SEQ, seq);
    }
    store
        .messages
        .insert_many(documents)
        .session(&mut *session)
        .await?;
    counts::record(store, queue, added, session).await?;
    Ok(ids)
}

/// `MessageLog::post_once` in one transaction: the checks, the key's lookup in
/// `idempotency` (`_id`: project `p`, queue `q` and key `k`; `ids`; `e` the
/// window's end, its TTL index), the post and the key's record. Two posts with one key both take a sequence number
/// from the queue's counter, so their transactions conflict and the one retried
/// finds the other's key.
pub(super) async fn post_once(
    store: &MongoStore,
    queue: &QueueRef,
    post: Post<'_>,
    once: &Once,
) -> StoreResult<CheckedPost> {
    let expected = post.expected_metadata.map(str::to_string);
    let key_id = doc! { ID: { PROJECT: &queue.project, QUEUE: &queue.queue, "k": &once.key } };
    store
        .transaction(|session| {
            let (store, queue, key_id) = (store.clone(), queue.clone(), key_id.clone());
            let (expected, plain, window) = (expected.clone(), post.plain, ms(once.window_s));
            let (client_id, messages) = (post.client_id.to_string(), post.messages.to_vec());
            async move {
                let now = now_ms();
                let record = store
                    .queues
                    .find_one(of_queue(&queue))
                    .session(&mut *session)
                    .await?;
                let metadata = record
                    .as_ref()
                    .and_then(|record| record.get_str(fields::METADATA).ok());
                if expected
                    .as_deref()
                    .is_some_and(|expected| metadata.unwrap_or("") != expected)
                {
                    return Ok(Ok(CheckedPost::StaleMetadata));
                }
                if plain && metadata.is_some_and(crate::encryption::queue_encrypts) {
                    return Ok(Ok(CheckedPost::Encrypts));
                }
                let mut live = key_id.clone();
                live.insert(EXPIRES, doc! { "$gt": date(now) });
                let seen = store
                    .idempotency
                    .find_one(live)
                    .session(&mut *session)
                    .await?;
                if let Some(seen) = seen {
                    let ids = seen
                        .get_array("ids")
                        .map(|ids| {
                            ids.iter()
                                .filter_map(|id| id.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    return Ok(Ok(CheckedPost::Repeated(ids)));
                }
                let ids = append(&store, &queue, &client_id, &messages, now, session).await?;
                let mut record = key_id.clone();
                record.extend(doc! { "ids": &ids, EXPIRES: date(now + window) });
                store
                    .idempotency
                    .replace_one(key_id, record)
                    .upsert(true)
                    .session(&mut *session)
                    .await?;
                Ok(Ok(CheckedPost::Posted(ids)))
            }
            .boxed()
        })
        .await
}

async fn list_messages(
    store: &MongoStore,
    queue: &QueueRef,
    params: &ListParams,
) -> StoreResult<(Vec<Message>, String)> {
    let after = parse_marker(&params.marker)?;
    let now = now_ms();
    let only_free = !params.include_claimed && !params.include_delayed;
    // Ended claims and passed delays are not where a listing without them looks.
    if !(params.include_claimed && params.include_delayed) {
        free_ended_now(store, queue, now).await?;
    }
    let (head, last) = head_and_last(store, queue, None)
        .await
        .map_err(store_error)?;
    // No free message is at or before the free head.
    let (base, start) = if only_free {
        (free_state(queue), after.max(head))
    } else {
        (of_queue(queue), after)
    };
    let mut windows = Windows::new(start, last, params.limit);
    let mut documents = Vec::new();
    while (documents.len() as u32) < params.limit {
        let Some((filter, _)) = windows.next(&base) else {
            break;
        };
        let window = read_window(store, filter, None)
            .await
            .map_err(store_error)?;
        documents.extend(window.into_iter().filter(|d| listed(d, now, params)));
    }
    documents.truncate(params.limit as usize);
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

/// Whether a listing with `params` shows the message `document` at `now`.
pub(super) fn listed(document: &Document, now: i64, params: &ListParams) -> bool {
    let state = match document.get(STATE) {
        Some(Bson::Int32(state)) => *state,
        Some(Bson::Int64(state)) => *state as i32,
        _ => FREE,
    };
    let claimed = state == CLAIMED || fields::int(document, CLAIM_EXPIRES) > now;
    let delayed = state == DELAYED || fields::int(document, VISIBLE) > now;
    is_live(document, now)
        && (params.include_claimed || !claimed)
        && (params.include_delayed || !delayed)
        && (params.echo || fields::text(document, CLIENT) != params.client_id)
}

/// The most messages one call moves from claimed or from delayed back to free;
/// each message moves once, the rest wait for the next call.
const FREED_PER_CALL: i64 = 500;

/// The filter of the queue's messages in `state` whose claim or delay (`ends`)
/// has ended at `now`: a range of `claim_ends` or `delay_ends`.
pub(super) fn ended(queue: &QueueRef, state: i32, ends: &str, now: i64) -> Document {
    let mut filter = of_queue(queue);
    filter.extend(doc! { STATE: state, ends: { "$lte": now } });
    filter
}

/// The ends [`free_ended`] looks for: a state and the field holding its end.
pub(super) const ENDINGS: [(i32, &str); 2] = [(CLAIMED, CLAIM_EXPIRES), (DELAYED, VISIBLE)];

/// [`free_ended`] outside a transaction: one read when nothing ended, a
/// transaction when something did.
async fn free_ended_now(store: &MongoStore, queue: &QueueRef, now: i64) -> StoreResult<()> {
    for (state, ends) in ENDINGS {
        let any = store
            .messages
            .find_one(ended(queue, state, ends, now))
            .projection(doc! { ID: 1 })
            .await
            .map_err(store_error)?;
        if any.is_some() {
            return store
                .transaction(|session| {
                    let (store, queue) = (store.clone(), queue.clone());
                    async move {
                        free_ended(&store, &queue, now, session).await?;
                        Ok(Ok(()))
                    }
                    .boxed()
                })
                .await;
        }
    }
    Ok(())
}

/// Moves up to [`FREED_PER_CALL`] messages whose claim has ended, and as many
/// whose delay has passed, back to [`FREE`], and lowers the queue's free head
/// below them, in `session`'s transaction.
pub(super) async fn free_ended(
    store: &MongoStore,
    queue: &QueueRef,
    now: i64,
    session: &mut ClientSession,
) -> Result<(), MongoError> {
    for (state, ends) in ENDINGS {
        let found = ended(queue, state, ends, now);
        let change = doc! { "$set": { STATE: FREE } };
        free_found(
            store,
            queue,
            found,
            FREED_PER_CALL,
            doc! { STATE: state },
            change,
            session,
        )
        .await?;
    }
    Ok(())
}

async fn get_messages(
    store: &MongoStore,
    queue: &QueueRef,
    ids: &[String],
) -> StoreResult<Vec<Message>> {
    let now = now_ms();
    let mut seen = HashSet::new();
    let ids: Vec<&String> = ids.iter().filter(|id| seen.insert(id.as_str())).collect();
    let mut filter = of_ids(queue, doc! { "$in": &ids });
    filter.insert(EXPIRES, doc! { "$gt": date(now) });
    let documents = find(&store.messages, filter, doc! { SEQ: 1 }, ids.len() as u32)
        .await
        .map_err(store_error)?;
    let mut by_id: HashMap<String, Message> = documents
        .iter()
        .map(|document| (fields::text(document, ID), fields::message(document, now)))
        .collect();
    Ok(ids.iter().filter_map(|id| by_id.remove(*id)).collect())
}

/// Deletes one message in one atomic delete whose filter states the claim rule
/// (in a transaction with its count); when nothing was deleted, a read of the
/// message tells why.
async fn delete_message(
    store: &MongoStore,
    queue: &QueueRef,
    id: &str,
    claim_id: Option<&str>,
) -> StoreResult<()> {
    let now = now_ms();
    let mut filter = of_ids(queue, id);
    let mut deletable = filter.clone();
    match claim_id {
        None => deletable.insert(CLAIM_EXPIRES, doc! { "$lte": now }),
        Some(claim_id) => {
            deletable.insert(CLAIM_EXPIRES, doc! { "$gt": now });
            deletable.insert(CLAIM_ID, claim_id)
        }
    };
    let deleted = store
        .transaction(|session| {
            let (store, queue, deletable) = (store.clone(), queue.clone(), deletable.clone());
            async move {
                let deleted = store
                    .messages
                    .find_one_and_delete(deletable)
                    .projection(doc! { STATE: 1, SIZE: 1 })
                    .session(&mut *session)
                    .await?;
                if let Some(document) = &deleted {
                    let removed = Counts::removed(std::slice::from_ref(document));
                    counts::record(&store, &queue, removed, session).await?;
                }
                Ok(Ok(deleted.is_some()))
            }
            .boxed()
        })
        .await?;
    if deleted {
        return Ok(());
    }
    filter.insert(EXPIRES, doc! { "$gt": date(now) });
    let Some(message) = store.messages.find_one(filter).await.map_err(store_error)? else {
        return Ok(());
    };
    match claim_id {
        None if fields::int(&message, CLAIM_EXPIRES) > now => Err(claimed_without_claim_id()),
        // Released or expired between the two calls: it is free now.
        None => Box::pin(delete_message(store, queue, id, None)).await,
        Some(_) => Err(claim_not_holding()),
    }
}

/// Deletes `ids` in one transaction with their count; with `claim_ids`, checks
/// every claimed one first (all or nothing).
async fn delete_messages(
    store: &MongoStore,
    queue: &QueueRef,
    ids: &[String],
    claim_ids: &[String],
) -> StoreResult<()> {
    let selected = of_ids(queue, doc! { "$in": ids });
    store
        .transaction(|session| {
            let (store, queue, selected, claim_ids) = (
                store.clone(),
                queue.clone(),
                selected.clone(),
                claim_ids.to_vec(),
            );
            async move {
                let now = now_ms();
                if !claim_ids.is_empty() {
                    let mut held_by_others = selected.clone();
                    held_by_others.extend(doc! {
                        EXPIRES: { "$gt": date(now) },
                        CLAIM_EXPIRES: { "$gt": now },
                        CLAIM_ID: { "$nin": &claim_ids },
                    });
                    let other = store
                        .messages
                        .find_one(held_by_others)
                        .session(&mut *session)
                        .await?;
                    if other.is_some() {
                        return Ok(Err(claimed_without_claim_id()));
                    }
                }
                let found = states_of_found(&store, selected.clone(), 0, session).await?;
                delete_found(&store, &queue, selected, &found, session).await?;
                Ok(Ok(()))
            }
            .boxed()
        })
        .await
}

/// Removes and returns up to `limit` free messages, oldest first, in one transaction.
async fn pop_messages(
    store: &MongoStore,
    queue: &QueueRef,
    limit: u32,
) -> StoreResult<Vec<Message>> {
    store
        .transaction(|session| {
            let (store, queue) = (store.clone(), queue.clone());
            async move {
                let now = now_ms();
                free_ended(&store, &queue, now, &mut *session).await?;
                let mut scan = FreeScan::start(&store, &queue, now, limit, session).await?;
                let documents = scan.next(&store, limit, session).await?;
                if !documents.is_empty() {
                    let ids: Vec<String> = documents.iter().map(|d| fields::text(d, ID)).collect();
                    let deleted = store
                        .messages
                        .delete_many(doc! { ID: { "$in": &ids }, STATE: FREE })
                        .session(&mut *session)
                        .await?;
                    if deleted.deleted_count != ids.len() as u64 {
                        return Err(super::transaction::taken_meanwhile());
                    }
                    let removed = Counts::removed(&documents);
                    counts::record(&store, &queue, removed, &mut *session).await?;
                }
                scan.finish(&store, &queue, session).await?;
                Ok(Ok(documents
                    .iter()
                    .map(|document| fields::message(document, now))
                    .collect()))
            }
            .boxed()
        })
        .await
}

/// Messages one step of the expiry sweep deletes at most.
const EXPIRED_BATCH: u32 = 1000;

/// One step of the expiry sweep: deletes up to [`EXPIRED_BATCH`] messages whose
/// ttl ran out (a range of the expiry index, oldest first) in one transaction with
/// their queues' counts, and counts them as expired. Several pool-nodes may sweep
/// one database: their transactions conflict, and each message is counted by the
/// one whose transaction committed. A step with nothing expired is one read, no
/// transaction.
pub(super) async fn remove_expired_messages(store: &MongoStore) -> StoreResult<u64> {
    let any = store
        .messages
        .find_one(doc! { EXPIRES: { "$lte": date(now_ms()) } })
        .projection(doc! { ID: 1 })
        .await
        .map_err(store_error)?;
    if any.is_none() {
        return Ok(0);
    }
    let removed = store
        .transaction(|session| {
            let store = store.clone();
            async move {
                let expired = doc! { EXPIRES: { "$lte": date(now_ms()) } };
                let found: Vec<Document> = store
                    .messages
                    .find(expired.clone())
                    .sort(doc! { EXPIRES: 1 })
                    .limit(i64::from(EXPIRED_BATCH))
                    .projection(doc! { PROJECT: 1, QUEUE: 1, STATE: 1, SIZE: 1 })
                    .session(&mut *session)
                    .await?
                    .stream(&mut *session)
                    .try_collect()
                    .await?;
                let ids: Vec<Bson> = found.iter().filter_map(|d| d.get(ID).cloned()).collect();
                if ids.is_empty() {
                    return Ok(Ok(0));
                }
                let mut selected = doc! { ID: { "$in": ids } };
                selected.extend(expired);
                delete_all_found(&store, selected, &found, session).await?;
                counts::record_removed(&store, &found, session).await?;
                Ok(Ok(found.len() as u64))
            }
            .boxed()
        })
        .await?;
    crate::metrics::count_expired("mongodb", removed);
    Ok(removed)
}

/// Deletes what `selected` selects, read as `found` (with their states) earlier in
/// `session`'s transaction, and takes them from the queue's counts; a conflict when
/// another transaction deleted some of them meanwhile.
pub(super) async fn delete_found(
    store: &MongoStore,
    queue: &QueueRef,
    selected: Document,
    found: &[Document],
    session: &mut ClientSession,
) -> Result<(), MongoError> {
    delete_all_found(store, selected, found, session).await?;
    counts::record(store, queue, Counts::removed(found), session).await
}

/// Deletes what `selected` selects, which `session`'s transaction read as `found`; a
/// conflict when another transaction deleted some of them meanwhile.
async fn delete_all_found(
    store: &MongoStore,
    selected: Document,
    found: &[Document],
    session: &mut ClientSession,
) -> Result<(), MongoError> {
    let deleted = store
        .messages
        .delete_many(selected)
        .session(&mut *session)
        .await?;
    if deleted.deleted_count != found.len() as u64 {
        return Err(super::transaction::taken_meanwhile());
    }
    Ok(())
}

/// The documents `filter` selects (at most `limit`, 0: all) with their state and
/// size only, in `session`'s transaction.
pub(super) async fn states_of_found(
    store: &MongoStore,
    filter: Document,
    limit: i64,
    session: &mut ClientSession,
) -> Result<Vec<Document>, MongoError> {
    store
        .messages
        .find(filter)
        .sort(doc! { SEQ: 1 })
        .limit(limit)
        .projection(doc! { SEQ: 1, STATE: 1, SIZE: 1 })
        .session(&mut *session)
        .await?
        .stream(session)
        .try_collect()
        .await
}

#[async_trait]
impl MessageLog for MongoStore {
    async fn post_messages(
        &self,
        queue: &QueueRef,
        client_id: &str,
        messages: &[NewMessage],
    ) -> StoreResult<Vec<String>> {
        bounded(post_messages(self, queue, client_id, messages)).await
    }

    async fn post_once(
        &self,
        queue: &QueueRef,
        post: Post<'_>,
        once: &Once,
    ) -> StoreResult<CheckedPost> {
        bounded(post_once(self, queue, post, once)).await
    }

    async fn list_messages(
        &self,
        queue: &QueueRef,
        params: &ListParams,
    ) -> StoreResult<(Vec<Message>, String)> {
        bounded(list_messages(self, queue, params)).await
    }

    async fn get_messages(&self, queue: &QueueRef, ids: &[String]) -> StoreResult<Vec<Message>> {
        bounded(get_messages(self, queue, ids)).await
    }

    async fn delete_messages(
        &self,
        queue: &QueueRef,
        ids: &[String],
        claim_ids: &[String],
    ) -> StoreResult<()> {
        bounded(delete_messages(self, queue, ids, claim_ids)).await
    }

    async fn delete_message(
        &self,
        queue: &QueueRef,
        id: &str,
        claim_id: Option<&str>,
    ) -> StoreResult<()> {
        bounded(delete_message(self, queue, id, claim_id)).await
    }

    async fn pop_messages(&self, queue: &QueueRef, limit: u32) -> StoreResult<Vec<Message>> {
        bounded(pop_messages(self, queue, limit)).await
    }
}
