//! Each queue's messages per state and the bytes of their bodies, kept in count
//! documents so that stats read a few documents instead of counting the queue.
//!
//! Every write that adds messages, removes them or changes their state adds its
//! change to one of the queue's [`SHARDS`] count documents in `counters` (`_id`
//! `n<shard>:<counter key>`, fields `nf`, `nc`, `nd`: free, claimed and delayed as
//! written; `nb` the bytes of their bodies, each message's kept in its `z`), chosen
//! at random, inside the write's own transaction: writes of one
//! queue rarely pick the same document, so they rarely conflict over it. Stats add
//! the shards up ([`read`]) and take off what has changed without a write: claims
//! ended, delays passed and messages expired but not yet swept (`queues::queue_stats`).
//! The documents stay when the queue is deleted, as its sequence counter does.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::error::Error as MongoError;
use mongodb::ClientSession;
use zaqar_proto::pb::QueueRef;

use super::fields::{self, CLAIMED, DELAYED, ID, PROJECT, QUEUE, SIZE, STATE};
use super::{counter_key, MongoStore};

/// Count documents per queue.
const SHARDS: u32 = 8;
/// The fields of the counts of [`FREE`], [`CLAIMED`] and [`DELAYED`] messages.
const FREE_COUNT: &str = "nf";
const CLAIMED_COUNT: &str = "nc";
const DELAYED_COUNT: &str = "nd";
/// The field of the bytes of the bodies.
const BYTES: &str = "nb";

/// Messages per state and their bytes: a change to add to a queue's counts, or their sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub free: i64,
    pub claimed: i64,
    pub delayed: i64,
    pub bytes: i64,
}

impl Counts {
    /// Adds `n` messages in `state`.
    pub fn add(&mut self, state: i32, n: i64) {
        match state {
            CLAIMED => self.claimed += n,
            DELAYED => self.delayed += n,
            _ => self.free += n,
        }
    }

    /// The change of removing `documents` (each read with its state and size).
    pub fn removed(documents: &[Document]) -> Counts {
        let mut change = Counts::default();
        for document in documents {
            change.add(state_of(document), -1);
            change.bytes -= fields::int(document, SIZE);
        }
        change
    }

    /// The change of moving `documents` (each read with its state) to `to`.
    pub fn moved(documents: &[Document], to: i32) -> Counts {
        let mut change = Counts::removed(documents);
        change.add(to, documents.len() as i64);
        change.bytes = 0;
        change
    }

    pub fn total(&self) -> i64 {
        self.free + self.claimed + self.delayed
    }
}

/// A message's state as written (messages without one are free).
pub(super) fn state_of(document: &Document) -> i32 {
    fields::int(document, STATE) as i32
}

fn shard_key(queue: &QueueRef, shard: u32) -> String {
    format!("n{shard}:{}", counter_key(queue))
}

/// Adds `change` to one of the queue's count documents, in `session`'s transaction.
pub(super) async fn record(
    store: &MongoStore,
    queue: &QueueRef,
    change: Counts,
    session: &mut ClientSession,
) -> Result<(), MongoError> {
    if change == Counts::default() {
        return Ok(());
    }
    let shard = u32::from(uuid::Uuid::new_v4().as_bytes()[0]) % SHARDS;
    store
        .counters
        .update_one(
            doc! { ID: shard_key(queue, shard) },
            doc! { "$inc": {
                FREE_COUNT: change.free,
                CLAIMED_COUNT: change.claimed,
                DELAYED_COUNT: change.delayed,
                BYTES: change.bytes,
            } },
        )
        .upsert(true)
        .session(session)
        .await
        .map(drop)
}

/// Adds the change of removing `documents` (of any queues, each read with its
/// project, queue, state and size) to their queues' counts, in `session`'s transaction.
pub(super) async fn record_removed(
    store: &MongoStore,
    documents: &[Document],
    session: &mut ClientSession,
) -> Result<(), MongoError> {
    let mut by_queue: BTreeMap<(String, String), Counts> = BTreeMap::new();
    for document in documents {
        let queue = (
            fields::text(document, PROJECT),
            fields::text(document, QUEUE),
        );
        let change = by_queue.entry(queue).or_default();
        change.add(state_of(document), -1);
        change.bytes -= fields::int(document, SIZE);
    }
    for ((project, queue), change) in by_queue {
        record(store, &QueueRef { project, queue }, change, &mut *session).await?;
    }
    Ok(())
}

/// The sum of the queue's count documents.
pub(super) async fn read(
    store: &MongoStore,
    queue: &QueueRef,
    session: &mut ClientSession,
) -> Result<Counts, MongoError> {
    let keys: Vec<String> = (0..SHARDS).map(|shard| shard_key(queue, shard)).collect();
    let documents: Vec<Document> = store
        .counters
        .find(doc! { ID: { "$in": keys } })
        .session(&mut *session)
        .await?
        .stream(session)
        .try_collect()
        .await?;
    let mut sum = Counts::default();
    for document in &documents {
        sum.free += fields::int(document, FREE_COUNT);
        sum.claimed += fields::int(document, CLAIMED_COUNT);
        sum.delayed += fields::int(document, DELAYED_COUNT);
        sum.bytes += fields::int(document, BYTES);
    }
    Ok(sum)
}

/// Counts every queue's messages and writes the counts (shard 0 of each queue,
/// the other shards removed): the upgrade of a database whose writes kept none.
/// Reads every message once. A database without messages is left as it is (a new
/// one, where another pool-node may already be counting its writes).
pub(super) async fn fill(store: &MongoStore) -> Result<u64, MongoError> {
    if store.messages.find_one(doc! {}).await?.is_none() {
        return Ok(0);
    }
    store
        .counters
        .delete_many(doc! { ID: { "$regex": "^n[0-9]+:" } })
        .await?;
    let pipeline = [doc! { "$group": {
        ID: { "p": format!("${PROJECT}"), "q": format!("${QUEUE}"), "s": format!("${STATE}") },
        "n": { "$sum": 1 },
        "b": { "$sum": format!("${SIZE}") },
    } }];
    let groups: Vec<Document> = store
        .messages
        .aggregate(pipeline)
        .await?
        .try_collect()
        .await?;
    let mut by_queue: BTreeMap<(String, String), Counts> = BTreeMap::new();
    for group in &groups {
        let Ok(key) = group.get_document(ID) else {
            continue;
        };
        let queue = (fields::text(key, "p"), fields::text(key, "q"));
        let state = fields::int(key, "s") as i32;
        let counts = by_queue.entry(queue).or_default();
        counts.add(state, fields::int(group, "n"));
        counts.bytes += fields::int(group, "b");
    }
    let queues = by_queue.len() as u64;
    for ((project, queue), counts) in by_queue {
        let queue = QueueRef { project, queue };
        store
            .counters
            .replace_one(
                doc! { ID: shard_key(&queue, 0) },
                doc! {
                    ID: shard_key(&queue, 0),
                    FREE_COUNT: counts.free,
                    CLAIMED_COUNT: counts.claimed,
                    DELAYED_COUNT: counts.delayed,
                    BYTES: counts.bytes,
                },
            )
            .upsert(true)
            .await?;
    }
    Ok(queues)
}

#[cfg(test)]
mod tests {
    use super::super::fields::FREE;
    use super::*;

    #[test]
    fn changes_add_up_by_state() {
        let documents = [
            doc! { STATE: FREE, SIZE: 3_i64 },
            doc! { STATE: CLAIMED, SIZE: 4_i64 },
            doc! { STATE: CLAIMED },
            doc! {},
        ];
        let removed = Counts::removed(&documents);
        assert_eq!(
            removed,
            Counts {
                free: -2,
                claimed: -2,
                delayed: 0,
                bytes: -7,
            }
        );
        let moved = Counts::moved(&documents[1..3], FREE);
        assert_eq!(
            moved,
            Counts {
                free: 2,
                claimed: -2,
                delayed: 0,
                bytes: 0,
            }
        );
        assert_eq!(moved.total(), 0);
    }
}
