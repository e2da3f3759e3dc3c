//! Subscriptions of the MongoDB store, listed in creation order (`k` is the
//! marker), with the notifier's delivery cursor on each.
//!
//! `(project, queue, subscriber)` is a unique index; an expired document with
//! the same subscriber is deleted before a new one takes its place.

use async_trait::async_trait;
use std::collections::BTreeSet;
use std::time::Duration;

use futures::{FutureExt, TryStreamExt};
use mongodb::bson::{doc, Bson, Document};
use mongodb::error::Error as MongoError;
use mongodb::ClientSession;
use uuid::Uuid;
use zaqar_proto::pb::{QueueRef, Subscription};
use zaqar_proto::{ErrorCode, ZaqarError};

use super::fields::{
    self, CONFIRMED, CREATED, CURSOR, EXPIRES, ID, LAST, LEASE_EXPIRES, LEASE_HOLDER, OPTIONS,
    PROJECT, QUEUE, SEQ, SUBSCRIBER, TTL,
};
use super::{
    bounded, counter_key, date, find, ms, next_seq, now_ms, of_queue, parse_marker, store_error,
    MongoStore,
};
use crate::store::{DeliveryStore, StoreResult, SubscriptionStore, SubscriptionUpdate};

fn no_such_subscription(id: &str) -> ZaqarError {
    ZaqarError::not_found(format!("Subscription {id} does not exist"))
}

/// The key of a queue's subscription counter (message counter keys start with a digit).
fn subscription_counter(queue: &QueueRef) -> String {
    format!("subscriptions/{}", counter_key(queue))
}

/// The filter of a live subscription at `now`.
fn live(queue: &QueueRef, id: &str, now: i64) -> Document {
    let mut filter = of_queue(queue);
    filter.extend(doc! { ID: id, EXPIRES: { "$gt": date(now) } });
    filter
}

/// Deletes an expired subscription of `subscriber`, then returns the id of a
/// live one (other than `except`), if any.
async fn live_with_subscriber(
    store: &MongoStore,
    queue: &QueueRef,
    subscriber: &str,
    except: &str,
    now: i64,
    session: &mut ClientSession,
) -> Result<Option<String>, MongoError> {
    let mut of_subscriber = of_queue(queue);
    of_subscriber.insert(SUBSCRIBER, subscriber);
    let mut expired = of_subscriber.clone();
    expired.insert(EXPIRES, doc! { "$lte": date(now) });
    store
        .subscriptions
        .delete_many(expired)
        .session(&mut *session)
        .await?;
    of_subscriber.insert(ID, doc! { "$ne": except });
    let existing = store
        .subscriptions
        .find_one(of_subscriber)
        .session(&mut *session)
        .await?;
    Ok(existing.map(|document| fields::text(&document, ID)))
}

async fn create_subscription(
    store: &MongoStore,
    queue: &QueueRef,
    subscriber: &str,
    ttl: u32,
    options_json: &str,
    confirmed: bool,
) -> StoreResult<(String, bool)> {
    let id = Uuid::new_v4().to_string();
    store
        .transaction(|session| {
            let (store, queue, id) = (store.clone(), queue.clone(), id.clone());
            let (subscriber, options_json) = (subscriber.to_string(), options_json.to_string());
            async move {
                let now = now_ms();
                if let Some(existing) =
                    live_with_subscriber(&store, &queue, &subscriber, "", now, session).await?
                {
                    return Ok(Ok((existing, false)));
                }
                let seq = next_seq(&store, subscription_counter(&queue), 1, session).await?;
                let mut document = of_queue(&queue);
                document.extend(doc! {
                    ID: &id,
                    SEQ: seq,
                    SUBSCRIBER: &subscriber,
                    TTL: i64::from(ttl),
                    OPTIONS: &options_json,
                    CONFIRMED: confirmed,
                    CREATED: now,
                    EXPIRES: date(now + ms(ttl)),
                });
                store
                    .subscriptions
                    .insert_one(document)
                    .session(&mut *session)
                    .await?;
                Ok(Ok((id, true)))
            }
            .boxed()
        })
        .await
}

async fn list_subscriptions(
    store: &MongoStore,
    queue: &QueueRef,
    marker: &str,
    limit: u32,
) -> StoreResult<(Vec<Subscription>, String)> {
    let after = parse_marker(marker)?;
    let now = now_ms();
    let mut filter = of_queue(queue);
    filter.extend(doc! { SEQ: { "$gt": after }, EXPIRES: { "$gt": date(now) } });
    let documents = find(&store.subscriptions, filter, doc! { SEQ: 1 }, limit)
        .await
        .map_err(store_error)?;
    let next_marker = match documents.last() {
        Some(last) => fields::int(last, SEQ).to_string(),
        None => marker.to_string(),
    };
    let subscriptions = documents
        .iter()
        .map(|document| fields::subscription(document, now))
        .collect();
    Ok((subscriptions, next_marker))
}

async fn get_subscription(
    store: &MongoStore,
    queue: &QueueRef,
    id: &str,
) -> StoreResult<Subscription> {
    let now = now_ms();
    let document = store
        .subscriptions
        .find_one(live(queue, id, now))
        .await
        .map_err(store_error)?
        .ok_or_else(|| no_such_subscription(id))?;
    Ok(fields::subscription(&document, now))
}

async fn update_subscription(
    store: &MongoStore,
    queue: &QueueRef,
    id: &str,
    update: &SubscriptionUpdate,
) -> StoreResult<()> {
    store
        .transaction(|session| {
            let (store, queue, id, update) =
                (store.clone(), queue.clone(), id.to_string(), update.clone());
            async move {
                let now = now_ms();
                let Some(current) = store
                    .subscriptions
                    .find_one(live(&queue, &id, now))
                    .session(&mut *session)
                    .await?
                else {
                    return Ok(Err(no_such_subscription(&id)));
                };
                let current_subscriber = fields::text(&current, SUBSCRIBER);
                let subscriber = update.subscriber.unwrap_or(current_subscriber.clone());
                if subscriber != current_subscriber
                    && live_with_subscriber(&store, &queue, &subscriber, &id, now, session)
                        .await?
                        .is_some()
                {
                    return Ok(Err(ZaqarError::new(
                        ErrorCode::Conflict,
                        format!("A subscription of {subscriber} to this queue already exists"),
                    )));
                }
                let mut changed = current;
                if let Some(ttl) = update.ttl {
                    // A new ttl counts from now; without one the expiry stays.
                    changed.insert(TTL, i64::from(ttl));
                    changed.insert(EXPIRES, date(now + ms(ttl)));
                }
                if let Some(options_json) = update.options_json {
                    changed.insert(OPTIONS, options_json);
                }
                changed.insert(SUBSCRIBER, subscriber);
                // Replaced by a delete and an insert rather than updated in place:
                // SecantusDB keeps the old key of an updated field in a unique
                // index, which would keep the old subscriber taken (see README).
                store
                    .subscriptions
                    .delete_one(doc! { ID: &id })
                    .session(&mut *session)
                    .await?;
                store
                    .subscriptions
                    .insert_one(changed)
                    .session(&mut *session)
                    .await?;
                Ok(Ok(()))
            }
            .boxed()
        })
        .await
}

async fn delete_subscription(store: &MongoStore, queue: &QueueRef, id: &str) -> StoreResult<()> {
    let mut filter = of_queue(queue);
    filter.insert(ID, id);
    store
        .subscriptions
        .delete_one(filter)
        .await
        .map_err(store_error)?;
    Ok(())
}

async fn confirm_subscription(
    store: &MongoStore,
    queue: &QueueRef,
    id: &str,
    confirmed: bool,
) -> StoreResult<()> {
    let done = store
        .subscriptions
        .update_one(
            live(queue, id, now_ms()),
            doc! { "$set": { CONFIRMED: confirmed } },
        )
        .await
        .map_err(store_error)?;
    if done.matched_count == 0 {
        return Err(no_such_subscription(id));
    }
    Ok(())
}

/// The delivery cursor of a live subscription.
async fn delivery_cursor(
    store: &MongoStore,
    queue: &QueueRef,
    id: &str,
) -> StoreResult<Option<String>> {
    let document = store
        .subscriptions
        .find_one(live(queue, id, now_ms()))
        .await
        .map_err(store_error)?;
    Ok(document.and_then(|document| match document.get(CURSOR) {
        Some(Bson::String(marker)) => Some(marker.clone()),
        _ => None,
    }))
}

/// Stores the delivery cursor of a live subscription (nothing when it is missing).
async fn set_delivery_cursor(
    store: &MongoStore,
    queue: &QueueRef,
    id: &str,
    marker: &str,
) -> StoreResult<()> {
    store
        .subscriptions
        .update_one(
            live(queue, id, now_ms()),
            doc! { "$set": { CURSOR: marker } },
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

/// Sets the delivery cursor to the last sequence number the queue ever handed
/// out (its counter outlives deleted messages and queues); returns it.
async fn reset_delivery_cursor(
    store: &MongoStore,
    queue: &QueueRef,
    id: &str,
) -> StoreResult<String> {
    let counter = store
        .counters
        .find_one(doc! { ID: counter_key(queue) })
        .await
        .map_err(store_error)?;
    let marker = counter
        .map_or(0, |counter| fields::int(&counter, LAST))
        .to_string();
    set_delivery_cursor(store, queue, id, &marker).await?;
    Ok(marker)
}

/// Takes or renews the delivery lease of a live subscription for `holder`;
/// whether `holder` holds it now. The lease expiry is this pool-node's clock
/// (ms): pool-nodes sharing a store are expected to keep their clocks close.
async fn take_delivery_lease(
    store: &MongoStore,
    queue: &QueueRef,
    id: &str,
    holder: &str,
    ttl: Duration,
) -> StoreResult<bool> {
    let now = now_ms();
    let mut filter = live(queue, id, now);
    filter.insert(
        "$or",
        vec![
            doc! { LEASE_HOLDER: holder },
            doc! { LEASE_EXPIRES: { "$lte": now } },
            doc! { LEASE_EXPIRES: { "$exists": false } },
        ],
    );
    let expires = now.saturating_add(ttl.as_millis() as i64);
    let done = store
        .subscriptions
        .update_one(
            filter,
            doc! { "$set": { LEASE_HOLDER: holder, LEASE_EXPIRES: expires } },
        )
        .await
        .map_err(store_error)?;
    Ok(done.matched_count == 1)
}

/// Gives up the delivery lease of a subscription if `holder` holds it.
async fn release_delivery_lease(
    store: &MongoStore,
    queue: &QueueRef,
    id: &str,
    holder: &str,
) -> StoreResult<()> {
    let mut filter = of_queue(queue);
    filter.extend(doc! { ID: id, LEASE_HOLDER: holder });
    store
        .subscriptions
        .update_one(
            filter,
            doc! { "$unset": { LEASE_HOLDER: "", LEASE_EXPIRES: "" } },
        )
        .await
        .map_err(store_error)?;
    Ok(())
}

/// The queues with at least one live subscription, sorted.
pub(super) async fn subscribed_queues(store: &MongoStore) -> StoreResult<Vec<QueueRef>> {
    let documents: Vec<Document> = store
        .subscriptions
        .find(doc! { EXPIRES: { "$gt": date(now_ms()) } })
        .projection(doc! { PROJECT: 1, QUEUE: 1 })
        .await
        .map_err(store_error)?
        .try_collect()
        .await
        .map_err(store_error)?;
    let queues: BTreeSet<(String, String)> = documents
        .iter()
        .map(|d| (fields::text(d, PROJECT), fields::text(d, QUEUE)))
        .collect();
    Ok(queues
        .into_iter()
        .map(|(project, queue)| QueueRef { project, queue })
        .collect())
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
        bounded(create_subscription(
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
        bounded(list_subscriptions(self, queue, marker, limit)).await
    }

    async fn get_subscription(&self, queue: &QueueRef, id: &str) -> StoreResult<Subscription> {
        bounded(get_subscription(self, queue, id)).await
    }

    async fn update_subscription(
        &self,
        queue: &QueueRef,
        id: &str,
        update: &SubscriptionUpdate,
    ) -> StoreResult<()> {
        bounded(update_subscription(self, queue, id, update)).await
    }

    async fn delete_subscription(&self, queue: &QueueRef, id: &str) -> StoreResult<()> {
        bounded(delete_subscription(self, queue, id)).await
    }

    async fn confirm_subscription(
        &self,
        queue: &QueueRef,
        id: &str,
        confirmed: bool,
    ) -> StoreResult<()> {
        bounded(confirm_subscription(self, queue, id, confirmed)).await
    }
}

#[async_trait]
impl DeliveryStore for MongoStore {
    async fn delivery_cursor(&self, queue: &QueueRef, id: &str) -> StoreResult<Option<String>> {
        bounded(delivery_cursor(self, queue, id)).await
    }

    async fn set_delivery_cursor(
        &self,
        queue: &QueueRef,
        id: &str,
        marker: &str,
    ) -> StoreResult<()> {
        bounded(set_delivery_cursor(self, queue, id, marker)).await
    }

    async fn reset_delivery_cursor(&self, queue: &QueueRef, id: &str) -> StoreResult<String> {
        bounded(reset_delivery_cursor(self, queue, id)).await
    }

    async fn take_delivery_lease(
        &self,
        queue: &QueueRef,
        id: &str,
        holder: &str,
        ttl: Duration,
    ) -> StoreResult<bool> {
        bounded(take_delivery_lease(self, queue, id, holder, ttl)).await
    }

    async fn release_delivery_lease(
        &self,
        queue: &QueueRef,
        id: &str,
        holder: &str,
    ) -> StoreResult<()> {
        bounded(release_delivery_lease(self, queue, id, holder)).await
    }

    async fn subscribed_queues(&self) -> StoreResult<Vec<QueueRef>> {
        bounded(subscribed_queues(self)).await
    }
}
