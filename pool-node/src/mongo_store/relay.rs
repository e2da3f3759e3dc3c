//! The activity relay between the pool-nodes of one MongoDB store (replicas of a pool):
//! each inserts its batches of changed queues (see `crate::activity`) into the
//! collection `activity` and follows the collection's inserts through a change stream,
//! passing what the others inserted to its own `WatchQueues` streams. So an api-node
//! that follows one replica's stream hears of posts made through every replica.
//!
//! A batch is written with `w: 1` and no journal (it is a wake-up, not data), and goes
//! a minute later (the collection's TTL index). When the change stream breaks (a
//! failover), the relay opens it again after [`RESUBSCRIBE_AFTER`] and passes on
//! `everything`, since batches may have been missed meanwhile. A batch that cannot be
//! written is dropped: the waits it would have ended end at their time.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::{Acknowledgment, CollectionOptions, WriteConcern};
use mongodb::Collection;
use zaqar_proto::pb::{QueueActivity, QueueRef};

use super::fields::{self, EXPIRES};
use super::{date, now_ms, MongoStore};
use crate::activity::Relay;

/// Pause before opening the change stream again after it broke or could not be opened.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);
/// How long a batch stays in the collection.
const KEPT_FOR: Duration = Duration::from_secs(60);
/// Field names of a batch: the relay that wrote it, `everything`, the queues.
const FROM: &str = "f";
const EVERYTHING: &str = "all";
const QUEUES: &str = "qs";

/// The relay's collection, written without waiting for a majority or the journal.
pub(super) fn collection(store: &MongoStore) -> Collection<Document> {
    let light = WriteConcern::builder()
        .w(Acknowledgment::Nodes(1))
        .journal(false)
        .build();
    let options = CollectionOptions::builder().write_concern(light).build();
    let database = store.client.database(&store.messages.namespace().db);
    database.collection_with_options("activity", options)
}

/// Starts writing `relay`'s changes and passing on the others', until the pool-node
/// whose changes it relays is gone. Needs a tokio runtime (none: nothing).
pub(super) fn spawn(store: MongoStore, relay: Relay) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let relay = Arc::new(relay);
    let from = i64::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .unwrap_or_default(),
    );
    runtime.spawn(publish(store.clone(), relay.clone(), from));
    runtime.spawn(listen(store, relay, from));
}

async fn publish(store: MongoStore, relay: Arc<Relay>, from: i64) {
    let activity = collection(&store);
    while let Some(event) = relay.next().await {
        let queues: Vec<Bson> = event
            .queues
            .into_iter()
            .map(|q| Bson::Array(vec![q.project.into(), q.queue.into()]))
            .collect();
        let batch = doc! {
            FROM: from,
            EVERYTHING: event.everything,
            QUEUES: queues,
            EXPIRES: date(now_ms() + KEPT_FOR.as_millis() as i64),
        };
        if let Err(err) = activity.insert_one(batch).await {
            tracing::debug!(error = %err, "queue activity not written for the other pool-nodes");
        }
    }
}

/// The event a batch written by another relay stands for; `None` for this relay's own.
fn heard(batch: &Document, from: i64) -> Option<QueueActivity> {
    if fields::int(batch, FROM) == from {
        return None;
    }
    let queues = batch
        .get_array(QUEUES)
        .map(|queues| {
            queues
                .iter()
                .filter_map(|queue| match queue {
                    Bson::Array(pair) => match pair.as_slice() {
                        [Bson::String(project), Bson::String(queue)] => Some(QueueRef {
                            project: project.clone(),
                            queue: queue.clone(),
                        }),
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(QueueActivity {
        everything: batch.get_bool(EVERYTHING).unwrap_or(false),
        queues,
    })
}

async fn listen(store: MongoStore, relay: Arc<Relay>, from: i64) {
    let activity = collection(&store);
    while !relay.is_gone() {
        // Its own batches are left out by the server (and by `heard`, should a
        // server pass them anyway).
        let mut inserts = doc! { "operationType": "insert" };
        inserts.insert(format!("fullDocument.{FROM}"), doc! { "$ne": from });
        let watching = activity
            .watch()
            .pipeline([doc! { "$match": inserts }])
            .await;
        match watching {
            Ok(mut stream) => {
                // Batches may have been missed before the stream opened.
                relay.heard(&QueueActivity {
                    everything: true,
                    queues: Vec::new(),
                });
                loop {
                    let next = tokio::select! {
                        next = stream.next() => next,
                        () = tokio::time::sleep(RESUBSCRIBE_AFTER) => {
                            if relay.is_gone() {
                                return;
                            }
                            continue;
                        }
                    };
                    match next {
                        Some(Ok(change)) => {
                            if let Some(event) = change
                                .full_document
                                .as_ref()
                                .and_then(|batch| heard(batch, from))
                            {
                                relay.heard(&event);
                            }
                        }
                        Some(Err(err)) => {
                            tracing::info!(error = %err, "the activity change stream broke; opening it again");
                            break;
                        }
                        None => break,
                    }
                }
            }
            Err(err) => tracing::debug!(error = %err, "no activity change stream yet"),
        }
        tokio::time::sleep(RESUBSCRIBE_AFTER).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_heard_by_the_other_relays_only() {
        let batch = doc! {
            FROM: 7_i64,
            EVERYTHING: false,
            QUEUES: [["p 1", "orders"]],
        };
        assert_eq!(heard(&batch, 7), None);
        let event = heard(&batch, 8).expect("another relay's batch");
        assert!(!event.everything);
        assert_eq!(
            event.queues,
            [QueueRef {
                project: "p 1".into(),
                queue: "orders".into()
            }]
        );
    }
}
