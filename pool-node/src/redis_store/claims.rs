//! Claims in the redis store: create (with dead lettering), get, renew, release.

use async_trait::async_trait;
use uuid::Uuid;
use zaqar_proto::pb::{ClaimReply, QueueRef};
use zaqar_proto::ZaqarError;

use super::keys::{QueueKeys, Slots};
use super::rows::{messages, seconds, MessageRow};
use super::RedisStore;
use crate::dead_letter::DeadLetterPolicy;
use crate::store::{nothing_claimed, ClaimStore, Lease, NewClaim, QueueStore, StoreResult};

/// Parked messages moved to a dead letter queue per call, and calls per claim.
const PARKED_BATCH: usize = 100;
const PARKED_BATCHES: usize = 10;

fn no_claim(claim_id: &str) -> ZaqarError {
    ZaqarError::not_found(format!("claim {claim_id} does not exist or has expired"))
}

impl RedisStore {
    /// Moves the messages parked in `keys`' parked zset to the dead letter queue
    /// `dead`, oldest first: adds them there (skipping any it has already, from a
    /// move cut short), then removes them from the parked zset. At most
    /// [`PARKED_BATCHES`] batches.
    pub(super) async fn move_parked(&self, keys: &QueueKeys, dead: &QueueKeys) -> StoreResult<()> {
        for _ in 0..PARKED_BATCHES {
            let mut oldest = redis::cmd("ZRANGE");
            oldest.arg(keys.parked()).arg(0).arg(PARKED_BATCH - 1);
            let members: Vec<Vec<u8>> = self.query(&oldest).await?;
            if members.is_empty() {
                return Ok(());
            }
            let mut put = self.scripts.dead_letter_put.prepare_invoke();
            put.key(dead.queue().to_vec()).arg(&members);
            let added = self.run::<u64>(&put).await?;
            crate::metrics::count_dead_lettered("redis", added);
            let mut done = redis::cmd("ZREM");
            done.arg(keys.parked()).arg(&members);
            self.query::<u64>(&done).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl ClaimStore for RedisStore {
    async fn create_claim(
        &self,
        queue: &QueueRef,
        claim: NewClaim,
    ) -> StoreResult<Option<ClaimReply>> {
        // The script needs the dead letter policy, which lives in the metadata.
        let policy = self
            .get_queue(queue)
            .await?
            .and_then(|metadata| DeadLetterPolicy::from_metadata(&metadata));
        let keys = self.keys(queue);
        let dead = keys.sibling(policy.as_ref().map_or(&queue.queue, |p| &p.queue));
        // A dead letter queue in another slot of a cluster is filled in a second call.
        let park = self.slots == Slots::Queue && dead.record() != keys.record();
        let claim_id = Uuid::new_v4().to_string();
        let dead_letter_queue = policy.as_ref().map(|p| p.queue.clone()).unwrap_or_default();
        let mut invocation = self.scripts.claim_create.prepare_invoke();
        invocation
            .key(keys.queue().to_vec())
            .key(if park { &keys } else { &dead }.queue().to_vec())
            .key(keys.claim(&claim_id))
            .key(keys.parked())
            .arg(&claim_id)
            .arg(claim.lease.ttl)
            .arg(claim.lease.grace)
            .arg(claim.limit)
            .arg(policy.as_ref().map_or(0, |p| p.max_claim_count))
            .arg(policy.and_then(|p| p.messages_ttl).unwrap_or(0))
            .arg(if park { "1" } else { "0" })
            .arg(&queue.queue);
        let (now, rows, parked, moved): (i64, Vec<MessageRow>, u64, u64) =
            self.run(&invocation).await?;
        crate::metrics::count_dead_lettered("redis", moved);
        if parked > 0 {
            // The claim stands; what is still parked moves with the next claim.
            if let Err(err) = self.move_parked(&keys, &dead).await {
                tracing::warn!(error = %err, "dead lettering deferred to the next claim");
            }
        }
        let dead_letter_queue = if moved + parked > 0 {
            dead_letter_queue
        } else {
            String::new()
        };
        if rows.is_empty() {
            return Ok(nothing_claimed(dead_letter_queue));
        }
        Ok(Some(ClaimReply {
            id: claim_id,
            ttl: claim.lease.ttl,
            age: 0,
            messages: messages(rows, now),
            dead_letter_queue,
        }))
    }

    async fn get_claim(&self, queue: &QueueRef, claim_id: &str) -> StoreResult<ClaimReply> {
        let keys = self.keys(queue);
        let mut invocation = self.scripts.claim_get.prepare_invoke();
        invocation
            .key(keys.claim(claim_id))
            .key(keys.queue().to_vec())
            .arg(claim_id);
        let reply: Option<(i64, u32, i64, Vec<MessageRow>)> = self.run(&invocation).await?;
        let (now, ttl, expires_ms, rows) = reply.ok_or_else(|| no_claim(claim_id))?;
        // The age counts from the last renewal, as Zaqar's does.
        let renewed_ms = expires_ms - i64::from(ttl) * 1000;
        Ok(ClaimReply {
            id: claim_id.to_string(),
            ttl,
            age: seconds(renewed_ms, now),
            messages: messages(rows, now),
            dead_letter_queue: String::new(),
        })
    }

    async fn update_claim(&self, queue: &QueueRef, id: &str, lease: Lease) -> StoreResult<()> {
        let keys = self.keys(queue);
        let mut invocation = self.scripts.claim_update.prepare_invoke();
        invocation
            .key(keys.claim(id))
            .key(keys.queue().to_vec())
            .arg(id)
            .arg(lease.ttl)
            .arg(lease.grace);
        match self.run::<u8>(&invocation).await? {
            1 => Ok(()),
            _ => Err(no_claim(id)),
        }
    }

    async fn delete_claim(&self, queue: &QueueRef, claim_id: &str) -> StoreResult<()> {
        let keys = self.keys(queue);
        let mut invocation = self.scripts.claim_delete.prepare_invoke();
        invocation
            .key(keys.claim(claim_id))
            .key(keys.queue().to_vec())
            .arg(claim_id);
        self.run::<u8>(&invocation).await.map(drop)
    }
}
