//! Claims in the redis store: create (with dead lettering), get, renew, release.

use uuid::Uuid;
use zaqar_proto::pb::{ClaimReply, QueueRef};
use zaqar_proto::ZaqarError;

use super::keys::QueueKeys;
use super::rows::{messages, seconds, MessageRow};
use super::RedisStore;
use crate::dead_letter::DeadLetterPolicy;
use crate::store::StoreResult;

fn no_claim(claim_id: &str) -> ZaqarError {
    ZaqarError::not_found(format!("claim {claim_id} does not exist or has expired"))
}

impl RedisStore {
    pub(super) async fn claim(
        &self,
        queue: &QueueRef,
        ttl: u32,
        grace: u32,
        limit: u32,
    ) -> StoreResult<Option<ClaimReply>> {
        // The script needs the dead letter policy, which lives in the metadata.
        let policy = self
            .queue_metadata(queue)
            .await?
            .and_then(|metadata| DeadLetterPolicy::from_metadata(&metadata));
        let keys = QueueKeys::new(queue);
        let dead = keys.sibling(policy.as_ref().map_or(&queue.queue, |p| &p.queue));
        let claim_id = Uuid::new_v4().to_string();
        let mut invocation = self.scripts.claim_create.prepare_invoke();
        invocation
            .key(keys.queue().to_vec())
            .key(dead.queue().to_vec())
            .key(keys.claim(&claim_id))
            .arg(&claim_id)
            .arg(ttl)
            .arg(grace)
            .arg(limit)
            .arg(policy.as_ref().map_or(0, |p| p.max_claim_count))
            .arg(policy.and_then(|p| p.messages_ttl).unwrap_or(0));
        let (now, rows): (i64, Vec<MessageRow>) = self.run(&invocation).await?;
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(ClaimReply {
            id: claim_id,
            ttl,
            age: 0,
            messages: messages(rows, now),
        }))
    }

    pub(super) async fn claim_of(
        &self,
        queue: &QueueRef,
        claim_id: &str,
    ) -> StoreResult<ClaimReply> {
        let keys = QueueKeys::new(queue);
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
        })
    }

    pub(super) async fn renew_claim(
        &self,
        queue: &QueueRef,
        claim_id: &str,
        ttl: u32,
        grace: u32,
    ) -> StoreResult<()> {
        let keys = QueueKeys::new(queue);
        let mut invocation = self.scripts.claim_update.prepare_invoke();
        invocation
            .key(keys.claim(claim_id))
            .key(keys.queue().to_vec())
            .arg(claim_id)
            .arg(ttl)
            .arg(grace);
        match self.run::<u8>(&invocation).await? {
            1 => Ok(()),
            _ => Err(no_claim(claim_id)),
        }
    }

    pub(super) async fn release_claim(&self, queue: &QueueRef, claim_id: &str) -> StoreResult<()> {
        let keys = QueueKeys::new(queue);
        let mut invocation = self.scripts.claim_delete.prepare_invoke();
        invocation
            .key(keys.claim(claim_id))
            .key(keys.queue().to_vec())
            .arg(claim_id);
        self.run::<u8>(&invocation).await.map(drop)
    }
}
