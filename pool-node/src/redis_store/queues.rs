//! Queue records, stats and purges of the redis store.

use async_trait::async_trait;
use zaqar_proto::pb::{QueueRef, QueueStatsReply};
use zaqar_proto::ZaqarError;

use super::keys::QueueKeys;
use super::rows::{message, MessageRow};
use super::RedisStore;
use crate::store::{Purge, QueueStore, StoreResult};

/// What `stats.lua` returns: now, total, claimed, delayed, oldest, newest.
type StatsReply = (
    i64,
    u64,
    u64,
    u64,
    Option<MessageRow>,
    Option<MessageRow>,
    u64,
);

impl RedisStore {
    /// Deletes every message of a queue and the claims holding them; with
    /// `drop_record` the queue itself too.
    pub(super) async fn purge_messages(
        &self,
        queue: &QueueRef,
        drop_record: bool,
    ) -> StoreResult<()> {
        let keys = self.keys(queue);
        let mut invocation = self.scripts.purge.prepare_invoke();
        invocation
            .key(keys.queue().to_vec())
            .arg(if drop_record { "1" } else { "0" });
        self.run::<u8>(&invocation).await.map(drop)
    }

    /// The queues that have a key of `kind` (found with `SCAN` on every node), sorted.
    pub(super) async fn queues_with_key(&self, kind: &str) -> StoreResult<Vec<QueueRef>> {
        let mut queues = Vec::new();
        for node in &self.nodes().await? {
            let mut cursor = 0u64;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(QueueKeys::pattern(kind, self.slots))
                    .arg("COUNT")
                    .arg(1000);
                let (next, keys): (u64, Vec<String>) = self.query_on(node, &scan).await?;
                queues.extend(
                    keys.iter()
                        .filter_map(|key| QueueKeys::queue_of(key, kind, self.slots)),
                );
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        queues.sort_by(|a, b| (&a.project, &a.queue).cmp(&(&b.project, &b.queue)));
        queues.dedup();
        Ok(queues)
    }
}

#[async_trait]
impl QueueStore for RedisStore {
    async fn delete_queue(&self, queue: &QueueRef) -> StoreResult<()> {
        self.purge_messages(queue, true).await
    }

    async fn purge_queue(&self, queue: &QueueRef, purge: Purge) -> StoreResult<()> {
        if purge.messages {
            self.purge_messages(queue, false).await?;
        }
        if purge.subscriptions {
            self.purge_subscriptions(queue).await?;
        }
        Ok(())
    }

    async fn create_queue(&self, queue: &QueueRef, metadata_json: &str) -> StoreResult<bool> {
        let mut cmd = redis::cmd("HSETNX");
        cmd.arg(self.keys(queue).record())
            .arg("meta")
            .arg(metadata_json);
        self.query(&cmd).await
    }

    async fn get_queue(&self, queue: &QueueRef) -> StoreResult<Option<String>> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.keys(queue).record()).arg("meta");
        self.query(&cmd).await
    }

    async fn set_queue_metadata(&self, queue: &QueueRef, metadata_json: &str) -> StoreResult<()> {
        let mut invocation = self.scripts.set_meta.prepare_invoke();
        invocation.key(self.keys(queue).record()).arg(metadata_json);
        match self.run::<u8>(&invocation).await? {
            1 => Ok(()),
            _ => Err(ZaqarError::not_found(format!(
                "queue {} does not exist",
                queue.queue
            ))),
        }
    }

    async fn queue_stats(&self, queue: &QueueRef) -> StoreResult<QueueStatsReply> {
        let keys = self.keys(queue);
        let mut invocation = self.scripts.stats.prepare_invoke();
        invocation.key(keys.queue().to_vec());
        let (now, total, claimed, delayed, oldest, newest, bytes): StatsReply =
            self.run(&invocation).await?;
        Ok(QueueStatsReply {
            claimed,
            free: total.saturating_sub(claimed),
            delayed,
            total,
            oldest: oldest.map(|row| message(row, now)),
            newest: newest.map(|row| message(row, now)),
            bytes,
        })
    }
}
