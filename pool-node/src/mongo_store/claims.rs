//! Claims of the MongoDB store, with the dead-letter move.
//!
//! A claim is a `claims` document plus the claim id and claim expiry on each
//! message it holds; a message is held while its claim expiry is ahead of now.
//! Creating, renewing and releasing a claim are transactions, so two claims
//! never take the same message (the second one conflicts and starts again).

use async_trait::async_trait;
use futures::FutureExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::Error as MongoError;
use mongodb::ClientSession;
use uuid::Uuid;
use zaqar_proto::pb::{ClaimReply, QueueRef};
use zaqar_proto::ZaqarError;

use super::counts::{self, Counts};
use super::fields::{
    self, CLAIMED, CLAIM_COUNT, CLAIM_EXPIRES, CLAIM_ID, CREATED, DEAD_LETTER_SOURCE, EXPIRES,
    FREE, ID, METADATA, QUEUE, RENEWED, SEQ, STATE, TTL, VISIBLE,
};
use super::messages::free_ended;
use super::scan::{free_found, FreeScan};
use super::{
    bounded, counter_key, date, ensure_queue, find, ms, next_seq, now_ms, of_ids, of_queue,
    store_error, whole_seconds, MongoStore,
};
use crate::dead_letter::DeadLetterPolicy;
use crate::store::{nothing_claimed, ClaimStore, Lease, NewClaim, StoreResult};

/// Claims up to `limit` free messages in one transaction. Messages the queue's
/// dead-letter policy calls exhausted move to the dead letter queue instead,
/// and do not count towards `limit`.
async fn create_claim(
    store: &MongoStore,
    queue: &QueueRef,
    ttl: u32,
    grace: u32,
    limit: u32,
) -> StoreResult<Option<ClaimReply>> {
    let claim_id = Uuid::new_v4().to_string();
    let (claimed, moved) = store
        .transaction(|session| {
            let (store, queue, claim_id) = (store.clone(), queue.clone(), claim_id.clone());
            async move {
                let claimed =
                    claim_in(&store, &queue, &claim_id, ttl, grace, limit, session).await?;
                Ok(Ok(claimed))
            }
            .boxed()
        })
        .await?;
    // Counted once committed (a transaction that starts again moves them again).
    crate::metrics::count_dead_lettered("mongodb", moved);
    Ok(claimed)
}

async fn claim_in(
    store: &MongoStore,
    queue: &QueueRef,
    claim_id: &str,
    ttl: u32,
    grace: u32,
    limit: u32,
    session: &mut ClientSession,
) -> Result<(Option<ClaimReply>, u64), MongoError> {
    let now = now_ms();
    let claim_expires = now + ms(ttl);
    let message_expires = now + ms(ttl) + ms(grace);
    let policy = dead_letter_policy(store, queue, session).await?;
    free_ended(store, queue, now, session).await?;
    let mut scan = FreeScan::start(store, queue, now, limit, session).await?;
    let mut claimed = Vec::new();
    let mut moved = 0;
    while (claimed.len() as u32) < limit {
        let wanted = limit - claimed.len() as u32;
        let documents = scan.next(store, wanted, session).await?;
        if documents.is_empty() {
            break;
        }
        let mut taken = Vec::new();
        for document in documents {
            let claim_count = fields::int(&document, CLAIM_COUNT).max(0) as u32;
            if let Some(policy) = policy.as_ref().filter(|p| p.is_exhausted(claim_count)) {
                move_to_dead_letter(store, queue, &document, policy, now, session).await?;
                moved += 1;
                continue;
            }
            taken.push(document);
        }
        if taken.is_empty() {
            continue;
        }
        let ids: Vec<String> = taken.iter().map(|d| fields::text(d, ID)).collect();
        let updated = store
            .messages
            .update_many(
                doc! { ID: { "$in": &ids }, STATE: FREE },
                doc! {
                    "$set": { CLAIM_ID: claim_id, CLAIM_EXPIRES: claim_expires, STATE: CLAIMED },
                    "$inc": { CLAIM_COUNT: 1_i64 },
                    "$max": { EXPIRES: date(message_expires) },
                },
            )
            .session(&mut *session)
            .await?;
        if updated.matched_count != ids.len() as u64 {
            return Err(super::transaction::taken_meanwhile());
        }
        counts::record(store, queue, Counts::moved(&taken, CLAIMED), session).await?;
        for document in taken {
            let mut message = fields::message(&document, now);
            message.claim_id = claim_id.to_string();
            message.claim_count += 1;
            let expires = message_expires.max(fields::int(&document, EXPIRES));
            message.ttl = whole_seconds(expires - message.created_ms) as u32;
            claimed.push(message);
        }
    }
    scan.finish(store, queue, session).await?;
    let dead_letter_queue = match &policy {
        Some(policy) if moved > 0 => policy.queue.clone(),
        _ => String::new(),
    };
    if claimed.is_empty() {
        // Dead-letter moves, if any, still happen.
        return Ok((nothing_claimed(dead_letter_queue), moved));
    }
    let mut record = of_queue(queue);
    record.extend(doc! {
        ID: claim_id,
        TTL: i64::from(ttl),
        RENEWED: now,
        EXPIRES: date(claim_expires),
    });
    store
        .claims
        .insert_one(record)
        .session(&mut *session)
        .await?;
    Ok((
        Some(ClaimReply {
            id: claim_id.to_string(),
            ttl,
            age: 0,
            messages: claimed,
            dead_letter_queue,
        }),
        moved,
    ))
}

/// The dead-letter policy of the queue, unless it would send messages to itself.
async fn dead_letter_policy(
    store: &MongoStore,
    queue: &QueueRef,
    session: &mut ClientSession,
) -> Result<Option<DeadLetterPolicy>, MongoError> {
    let record = store
        .queues
        .find_one(of_queue(queue))
        .session(session)
        .await?;
    Ok(record
        .map(|record| fields::text(&record, METADATA))
        .as_deref()
        .and_then(DeadLetterPolicy::from_metadata)
        .filter(|policy| policy.queue != queue.queue))
}

/// Moves a message to the end of the dead letter queue (created if needed),
/// keeping its id, body and claim count, noting the queue it came from; it lives
/// there `messages_ttl` (or its own ttl) from now.
async fn move_to_dead_letter(
    store: &MongoStore,
    queue: &QueueRef,
    document: &Document,
    policy: &DeadLetterPolicy,
    now: i64,
    session: &mut ClientSession,
) -> Result<(), MongoError> {
    let own_ttl = fields::int(document, TTL).clamp(0, i64::from(u32::MAX)) as u32;
    let ttl = policy.messages_ttl.unwrap_or(own_ttl);
    tracing::info!(
        project = %queue.project,
        queue = %queue.queue,
        dead_letter_queue = %policy.queue,
        "message moved to its dead letter queue"
    );
    let dead_letter = QueueRef {
        project: queue.project.clone(),
        queue: policy.queue.clone(),
    };
    ensure_queue(store, &dead_letter, session).await?;
    let seq = next_seq(store, counter_key(&dead_letter), 1, session).await?;
    store
        .messages
        .delete_one(doc! { ID: fields::text(document, ID) })
        .session(&mut *session)
        .await?;
    let removed = Counts::removed(std::slice::from_ref(document));
    counts::record(store, queue, removed, session).await?;
    let mut added = Counts::default();
    added.add(FREE, 1);
    added.bytes = -removed.bytes;
    counts::record(store, &dead_letter, added, session).await?;
    let mut moved = document.clone();
    moved.extend(doc! {
        QUEUE: &dead_letter.queue,
        SEQ: seq,
        TTL: i64::from(ttl),
        CREATED: now,
        VISIBLE: now,
        EXPIRES: date(now + ms(ttl)),
        CLAIM_ID: Bson::Null,
        CLAIM_EXPIRES: 0_i64,
        STATE: FREE,
        DEAD_LETTER_SOURCE: &queue.queue,
    });
    store
        .messages
        .insert_one(moved)
        .session(&mut *session)
        .await?;
    Ok(())
}

fn no_such_claim(claim_id: &str) -> ZaqarError {
    ZaqarError::not_found(format!("Claim {claim_id} does not exist"))
}

/// The filter of the messages that name a claim (its index: project, queue, claim id).
fn naming(queue: &QueueRef, claim_id: &str) -> Document {
    let mut filter = of_queue(queue);
    filter.insert(CLAIM_ID, claim_id);
    filter
}

/// The filter of the live messages a live claim holds at `now`: the times are an
/// `$expr`, so a server that routes by one range (SecantusDB) reads the claim's
/// messages through the claim id index, not the whole queue (both fields are
/// always set, so `$expr`'s ordering of missing values does not matter).
fn held_by(queue: &QueueRef, claim_id: &str, now: i64) -> Document {
    let mut filter = naming(queue, claim_id);
    filter.insert(
        "$and",
        vec![doc! { "$expr": { "$and": [
            { "$gt": [format!("${CLAIM_EXPIRES}"), now] },
            { "$gt": [format!("${EXPIRES}"), date(now)] },
        ] } }],
    );
    filter
}

/// The filter of a live claim at `now`.
fn live_claim(queue: &QueueRef, claim_id: &str, now: i64) -> Document {
    let mut filter = of_ids(queue, claim_id);
    filter.insert(EXPIRES, doc! { "$gt": date(now) });
    filter
}

async fn get_claim(
    store: &MongoStore,
    queue: &QueueRef,
    claim_id: &str,
) -> StoreResult<ClaimReply> {
    let now = now_ms();
    let claim = store
        .claims
        .find_one(live_claim(queue, claim_id, now))
        .await
        .map_err(store_error)?
        .ok_or_else(|| no_such_claim(claim_id))?;
    let held = find(
        &store.messages,
        held_by(queue, claim_id, now),
        doc! { SEQ: 1 },
        u32::MAX,
    )
    .await
    .map_err(store_error)?;
    Ok(ClaimReply {
        id: claim_id.to_string(),
        ttl: fields::int(&claim, TTL).clamp(0, i64::from(u32::MAX)) as u32,
        age: whole_seconds(now - fields::int(&claim, RENEWED)) as u64,
        messages: held.iter().map(|d| fields::message(d, now)).collect(),
        dead_letter_queue: String::new(),
    })
}

/// Renews a live claim from now; its messages live at least `ttl + grace` more.
async fn update_claim(
    store: &MongoStore,
    queue: &QueueRef,
    claim_id: &str,
    ttl: u32,
    grace: u32,
) -> StoreResult<()> {
    store
        .transaction(|session| {
            let (store, queue, claim_id) = (store.clone(), queue.clone(), claim_id.to_string());
            async move {
                let now = now_ms();
                let claim_expires = now + ms(ttl);
                let renewed = store
                    .claims
                    .update_one(
                        live_claim(&queue, &claim_id, now),
                        doc! { "$set": {
                            TTL: i64::from(ttl),
                            RENEWED: now,
                            EXPIRES: date(claim_expires),
                        } },
                    )
                    .session(&mut *session)
                    .await?;
                if renewed.matched_count == 0 {
                    return Ok(Err(no_such_claim(&claim_id)));
                }
                store
                    .messages
                    .update_many(
                        held_by(&queue, &claim_id, now),
                        doc! {
                            "$set": { CLAIM_EXPIRES: claim_expires },
                            "$max": { EXPIRES: date(claim_expires + ms(grace)) },
                        },
                    )
                    .session(&mut *session)
                    .await?;
                Ok(Ok(()))
            }
            .boxed()
        })
        .await
}

/// Releases a claim: its messages are free again at once, and the queue's free
/// head goes below them.
async fn delete_claim(store: &MongoStore, queue: &QueueRef, claim_id: &str) -> StoreResult<()> {
    store
        .transaction(|session| {
            let (store, queue, claim_id) = (store.clone(), queue.clone(), claim_id.to_string());
            async move {
                release_in(&store, &queue, &claim_id, session).await?;
                store
                    .claims
                    .delete_one(of_ids(&queue, &claim_id))
                    .session(&mut *session)
                    .await?;
                Ok(Ok(()))
            }
            .boxed()
        })
        .await
}

/// Frees the messages that name `claim_id`, in `session`'s transaction.
async fn release_in(
    store: &MongoStore,
    queue: &QueueRef,
    claim_id: &str,
    session: &mut ClientSession,
) -> Result<(), MongoError> {
    let change = doc! { "$set": { CLAIM_ID: Bson::Null, CLAIM_EXPIRES: 0_i64, STATE: FREE } };
    let guard = doc! { CLAIM_ID: claim_id };
    free_found(
        store,
        queue,
        naming(queue, claim_id),
        0,
        guard,
        change,
        session,
    )
    .await
}

#[async_trait]
impl ClaimStore for MongoStore {
    async fn create_claim(
        &self,
        queue: &QueueRef,
        claim: NewClaim,
    ) -> StoreResult<Option<ClaimReply>> {
        let Lease { ttl, grace } = claim.lease;
        bounded(create_claim(self, queue, ttl, grace, claim.limit)).await
    }

    async fn get_claim(&self, queue: &QueueRef, claim_id: &str) -> StoreResult<ClaimReply> {
        bounded(get_claim(self, queue, claim_id)).await
    }

    async fn update_claim(&self, queue: &QueueRef, id: &str, lease: Lease) -> StoreResult<()> {
        bounded(update_claim(self, queue, id, lease.ttl, lease.grace)).await
    }

    async fn delete_claim(&self, queue: &QueueRef, claim_id: &str) -> StoreResult<()> {
        bounded(delete_claim(self, queue, claim_id)).await
    }
}
