//! Posting, listing, getting, deleting and popping messages in the redis store.
//!
//! Posts and deletes go through group commit (`group_commit.rs`): those that
//! arrive on a queue while one is in flight run together in the next script call.

use async_trait::async_trait;
use uuid::Uuid;
use zaqar_proto::pb::{Message, NewMessage, QueueRef};
use zaqar_proto::ZaqarError;

use super::group_commit::Batched;
use super::keys::QueueKeys;
use super::rows::{checksum, messages, next_marker, parse_marker, MessageRow};
use super::RedisStore;
use crate::store::{
    claim_not_holding, claimed_without_claim_id, CheckedPost, ListParams, MessageLog, Once, Post,
    StoreResult,
};

fn flag(value: bool) -> &'static str {
    if value {
        "1"
    } else {
        "0"
    }
}

/// One post waiting to join a batch of posts on its queue (see `group_commit.rs`).
pub(super) struct PostCall {
    keys: QueueKeys,
    plain: bool,
    expected_metadata: Option<String>,
    once: Option<Once>,
    client_id: String,
    ids: Vec<String>,
    messages: Vec<NewMessage>,
}

/// Posts share a batch when they go to one queue with the same checks.
pub(super) type PostKey = (String, bool, Option<String>);

/// What `post.lua` did with one post of a batch.
#[derive(Debug, Clone)]
pub(super) enum PostAnswer {
    /// The batch was refused (`post.lua`'s -1 or -2): nothing stored.
    Refused(i64),
    Stored,
    /// Nothing stored: the post's idempotency key brought these ids before.
    Repeated(Vec<String>),
}

impl Batched for PostCall {
    type Answer = PostAnswer;

    fn weight(&self) -> usize {
        self.messages.iter().map(|m| m.body_json.len() + 80).sum()
    }

    async fn run(store: RedisStore, calls: Vec<Self>) -> Vec<StoreResult<PostAnswer>> {
        let Some(first) = calls.first() else {
            return Vec::new();
        };
        let mut invocation = store.scripts.post.prepare_invoke();
        invocation
            .key(first.keys.queue().to_vec())
            .arg(flag(first.plain))
            .arg(flag(first.expected_metadata.is_some()))
            .arg(first.expected_metadata.as_deref().unwrap_or(""));
        let mut slot = first.keys.queue().len();
        for call in &calls {
            match &call.once {
                Some(once) => {
                    slot += 1;
                    invocation
                        .key(call.keys.idempotency(&once.key))
                        .arg(slot)
                        .arg(u64::from(once.window_s.max(1)) * 1000);
                }
                None => {
                    invocation.arg(0).arg(0);
                }
            }
            invocation.arg(call.messages.len());
            for (id, message) in call.ids.iter().zip(&call.messages) {
                invocation
                    .arg(&call.client_id)
                    .arg(id)
                    .arg(message.ttl)
                    .arg(message.delay)
                    .arg(&message.body_json)
                    .arg(checksum(&message.body_json));
            }
        }
        match store.run::<redis::Value>(&invocation).await {
            Ok(redis::Value::Int(code)) if code < 0 => {
                vec![Ok(PostAnswer::Refused(code)); calls.len()]
            }
            // The server time: no post had a key, so every one stored.
            Ok(redis::Value::Int(_)) => vec![Ok(PostAnswer::Stored); calls.len()],
            Ok(redis::Value::Array(answers)) if answers.len() == calls.len() + 1 => answers
                .into_iter()
                .skip(1)
                .map(|answer| {
                    let seen: String =
                        redis::from_redis_value(&answer).map_err(super::unavailable)?;
                    Ok(if seen.is_empty() {
                        PostAnswer::Stored
                    } else {
                        PostAnswer::Repeated(seen.split(',').map(str::to_string).collect())
                    })
                })
                .collect(),
            Ok(other) => vec![
                Err(ZaqarError::internal(format!(
                    "post.lua answered {other:?} for {} posts",
                    calls.len()
                )));
                calls.len()
            ],
            Err(err) => vec![Err(err); calls.len()],
        }
    }
}

/// One delete waiting to join a batch of deletes on its queue.
pub(super) struct DeleteCall {
    keys: QueueKeys,
    mode: &'static str,
    ids: Vec<String>,
    claim_ids: Vec<String>,
}

impl Batched for DeleteCall {
    /// The id of a message the claim rules refuse, or '' when deleted.
    type Answer = String;

    fn weight(&self) -> usize {
        (self.ids.len() + self.claim_ids.len()) * 40
    }

    async fn run(store: RedisStore, calls: Vec<Self>) -> Vec<StoreResult<String>> {
        let Some(first) = calls.first() else {
            return Vec::new();
        };
        let mut invocation = store.scripts.delete.prepare_invoke();
        invocation.key(first.keys.queue().to_vec());
        for call in &calls {
            invocation
                .arg(call.mode)
                .arg(call.ids.len())
                .arg(call.claim_ids.len())
                .arg(&call.ids)
                .arg(&call.claim_ids);
        }
        match store.run::<Vec<String>>(&invocation).await {
            Ok(refused) if refused.len() == calls.len() => refused.into_iter().map(Ok).collect(),
            Ok(refused) => vec![
                Err(ZaqarError::internal(format!(
                    "delete.lua answered {} groups of {}",
                    refused.len(),
                    calls.len()
                )));
                calls.len()
            ],
            Err(err) => vec![Err(err); calls.len()],
        }
    }
}

impl RedisStore {
    /// Posts `post` (see [`Post`] for its checks), in one script call with the
    /// posts to the same queue that wait meanwhile (see `post.lua`). With `once`,
    /// stores nothing when its key was seen within its window.
    pub(super) async fn post(
        &self,
        queue: &QueueRef,
        post: Post<'_>,
        once: Option<&Once>,
    ) -> StoreResult<CheckedPost> {
        let Post {
            client_id,
            messages: new,
            plain,
            expected_metadata,
        } = post;
        let keys = self.keys(queue);
        let ids: Vec<String> = new.iter().map(|_| Uuid::new_v4().to_string()).collect();
        let expected_metadata = expected_metadata.map(str::to_string);
        let key = (keys.record(), plain, expected_metadata.clone());
        let call = PostCall {
            keys,
            plain,
            expected_metadata,
            once: once.cloned(),
            client_id: client_id.to_string(),
            ids: ids.clone(),
            messages: new.to_vec(),
        };
        Ok(match self.posts.submit(key, call, self).await? {
            PostAnswer::Refused(-1) => CheckedPost::Encrypts,
            PostAnswer::Refused(_) => CheckedPost::StaleMetadata,
            PostAnswer::Stored => CheckedPost::Posted(ids),
            PostAnswer::Repeated(first) => CheckedPost::Repeated(first),
        })
    }

    /// Deletes `ids` all or none, in one script call with the deletes on the
    /// same queue that wait meanwhile; `mode` is one of `delete.lua`'s claim rules.
    pub(super) async fn delete(
        &self,
        queue: &QueueRef,
        ids: &[String],
        mode: &'static str,
        claim_ids: &[String],
    ) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let keys = self.keys(queue);
        let call = DeleteCall {
            mode,
            ids: ids.to_vec(),
            claim_ids: claim_ids.to_vec(),
            keys: keys.clone(),
        };
        let refused = self.deletes.submit(keys.record(), call, self).await?;
        match (refused.is_empty(), mode) {
            (true, _) => Ok(()),
            // A claim id was given for this very message, as Zaqar 23 answers.
            (false, "own") => Err(claim_not_holding()),
            (false, _) => Err(claimed_without_claim_id()),
        }
    }
}

#[async_trait]
impl MessageLog for RedisStore {
    async fn post_messages(
        &self,
        queue: &QueueRef,
        client_id: &str,
        messages: &[NewMessage],
    ) -> StoreResult<Vec<String>> {
        let post = Post {
            client_id,
            messages,
            plain: false,
            expected_metadata: None,
        };
        match self.post(queue, post, None).await? {
            CheckedPost::Posted(ids) => Ok(ids),
            refused => Err(ZaqarError::internal(format!(
                "an unchecked post was refused: {refused:?}"
            ))),
        }
    }

    async fn post_checked_messages(
        &self,
        queue: &QueueRef,
        client_id: &str,
        messages: &[NewMessage],
        expected_metadata: Option<&str>,
    ) -> StoreResult<CheckedPost> {
        let post = Post {
            client_id,
            messages,
            plain: true,
            expected_metadata,
        };
        self.post(queue, post, None).await
    }

    async fn post_once(
        &self,
        queue: &QueueRef,
        post: Post<'_>,
        once: &Once,
    ) -> StoreResult<CheckedPost> {
        self.post(queue, post, Some(once)).await
    }

    async fn delete_messages(
        &self,
        queue: &QueueRef,
        ids: &[String],
        claim_ids: &[String],
    ) -> StoreResult<()> {
        let mode = if claim_ids.is_empty() { "any" } else { "held" };
        self.delete(queue, ids, mode, claim_ids).await
    }

    async fn delete_message(
        &self,
        queue: &QueueRef,
        id: &str,
        claim_id: Option<&str>,
    ) -> StoreResult<()> {
        let ids = [id.to_string()];
        match claim_id {
            Some(claim_id) => {
                self.delete(queue, &ids, "own", &[claim_id.to_string()])
                    .await
            }
            None => self.delete(queue, &ids, "held", &[]).await,
        }
    }

    async fn list_messages(
        &self,
        queue: &QueueRef,
        params: &ListParams,
    ) -> StoreResult<(Vec<Message>, String)> {
        let after = parse_marker(&params.marker)?;
        let keys = self.keys(queue);
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

    async fn get_messages(&self, queue: &QueueRef, ids: &[String]) -> StoreResult<Vec<Message>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys = self.keys(queue);
        let mut invocation = self.scripts.get.prepare_invoke();
        invocation.key(keys.queue().to_vec()).arg(ids);
        let (now, rows): (i64, Vec<MessageRow>) = self.run(&invocation).await?;
        Ok(messages(rows, now))
    }

    async fn pop_messages(&self, queue: &QueueRef, limit: u32) -> StoreResult<Vec<Message>> {
        let keys = self.keys(queue);
        let mut invocation = self.scripts.pop.prepare_invoke();
        invocation.key(keys.queue().to_vec()).arg(limit);
        let (now, rows): (i64, Vec<MessageRow>) = self.run(&invocation).await?;
        Ok(messages(rows, now))
    }
}
