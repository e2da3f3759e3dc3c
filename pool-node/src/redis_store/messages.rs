//! Posting, listing, getting, deleting and popping messages in the redis store.

use uuid::Uuid;
use zaqar_proto::pb::{Message, NewMessage, QueueRef};
use zaqar_proto::{ErrorCode, ZaqarError};

use super::keys::QueueKeys;
use super::rows::{checksum, messages, next_marker, parse_marker, MessageRow};
use super::RedisStore;
use crate::store::{CheckedPost, ListParams, StoreResult};

fn flag(value: bool) -> &'static str {
    if value {
        "1"
    } else {
        "0"
    }
}

impl RedisStore {
    /// Posts `new` in one script call; with `plain`, stores nothing when the queue
    /// encrypts, and with `expected_metadata`, when the queue's metadata is another
    /// (see `post.lua`).
    pub(super) async fn post(
        &self,
        queue: &QueueRef,
        client_id: &str,
        new: &[NewMessage],
        plain: bool,
        expected_metadata: Option<&str>,
    ) -> StoreResult<CheckedPost> {
        let keys = QueueKeys::new(queue);
        let ids: Vec<String> = new.iter().map(|_| Uuid::new_v4().to_string()).collect();
        let mut invocation = self.scripts.post.prepare_invoke();
        invocation
            .key(keys.queue().to_vec())
            .arg(client_id)
            .arg(flag(plain))
            .arg(flag(expected_metadata.is_some()))
            .arg(expected_metadata.unwrap_or(""));
        for (id, message) in ids.iter().zip(new) {
            invocation
                .arg(id)
                .arg(message.ttl)
                .arg(message.delay)
                .arg(&message.body_json)
                .arg(checksum(&message.body_json));
        }
        Ok(match self.run::<i64>(&invocation).await? {
            -1 => CheckedPost::Encrypts,
            -2 => CheckedPost::StaleMetadata,
            _ => CheckedPost::Posted(ids),
        })
    }

    pub(super) async fn list(
        &self,
        queue: &QueueRef,
        params: &ListParams,
    ) -> StoreResult<(Vec<Message>, String)> {
        let after = parse_marker(&params.marker)?;
        let keys = QueueKeys::new(queue);
        let mut invocation = self.scripts.list.prepare_invoke();
        invocation
            .key(keys.queue().to_vec())
            .arg(after)
            .arg(params.limit)
            .arg(&params.client_id)
            .arg(flag(params.echo))
            .arg(flag(params.include_claimed))
            .arg(flag(params.include_delayed));
        let (now, rows, last): (i64, Vec<MessageRow>, u64) = self.run(&invocation).await?;
        Ok((messages(rows, now), next_marker(last, &params.marker)))
    }

    pub(super) async fn get(&self, queue: &QueueRef, ids: &[String]) -> StoreResult<Vec<Message>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = QueueKeys::new(queue);
        let mut invocation = self.scripts.get.prepare_invoke();
        invocation.key(keys.queue().to_vec()).arg(ids);
        let (now, rows): (i64, Vec<MessageRow>) = self.run(&invocation).await?;
        Ok(messages(rows, now))
    }

    /// Deletes `ids` all or none; `mode` is one of `delete.lua`'s claim rules.
    pub(super) async fn delete(
        &self,
        queue: &QueueRef,
        ids: &[String],
        mode: &str,
        claim_ids: &[String],
    ) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let keys = QueueKeys::new(queue);
        let mut invocation = self.scripts.delete.prepare_invoke();
        invocation
            .key(keys.queue().to_vec())
            .arg(mode)
            .arg(ids.len())
            .arg(ids)
            .arg(claim_ids);
        let refused: String = self.run(&invocation).await?;
        match (refused.is_empty(), mode) {
            (true, _) => Ok(()),
            // A claim id was given for this very message, as Zaqar 23 answers.
            (false, "own") => Err(ZaqarError::titled(
                ErrorCode::BadRequest,
                "Unable to delete",
                "The specified claim does not exist or has expired.",
            )),
            (false, _) => Err(ZaqarError::titled(
                ErrorCode::Forbidden,
                "Unable to delete",
                "This message is claimed; it cannot be deleted without a valid claim ID.",
            )),
        }
    }

    pub(super) async fn pop(&self, queue: &QueueRef, limit: u32) -> StoreResult<Vec<Message>> {
        let keys = QueueKeys::new(queue);
        let mut invocation = self.scripts.pop.prepare_invoke();
        invocation.key(keys.queue().to_vec()).arg(limit);
        let (now, rows): (i64, Vec<MessageRow>) = self.run(&invocation).await?;
        Ok(messages(rows, now))
    }
}
