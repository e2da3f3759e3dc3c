//! The `MessageStore` calls of the SQLite store, each run in a task of its own.
//!
//! A caller may give up on a call (its client disconnected, a request timeout); the
//! call itself then goes on to its end in its task. sqlx's SQLite connections are not
//! safe to drop in the middle of a transaction: a `BEGIN` or `COMMIT` cancelled at the
//! wrong moment can leave the one writer connection inside a transaction, and every
//! later write then fails ("attempted to call begin_with at non-zero transaction
//! depth"); a read transaction left open would pin the WAL. So no transaction of this
//! store is ever dropped half-way.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use zaqar_proto::pb::{ClaimReply, Message, NewMessage, QueueRef, QueueStatsReply, Subscription};
use zaqar_proto::ZaqarError;

use super::{claims, messages, queues, subscriptions, SqliteStore};
use crate::store::{
    CheckedPost, ClaimStore, DeliveryStore, ListParams, MessageLog, MessageStore, Once, Post,
    QueueStore, StoreResult, SubscriptionStore, SubscriptionUpdate,
};

impl SqliteStore {
    /// Runs `call` on a clone of the store in a task of its own and waits for it.
    async fn detached<T, F, Fut>(&self, call: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(SqliteStore) -> Fut,
        Fut: Future<Output = StoreResult<T>> + Send + 'static,
    {
        tokio::spawn(call(self.clone()))
            .await
            .map_err(|err| ZaqarError::internal(format!("a sqlite store call failed: {err}")))?
    }
}

#[async_trait]
impl QueueStore for SqliteStore {
    async fn create_queue(&self, queue: &QueueRef, metadata_json: &str) -> StoreResult<bool> {
        let (queue, metadata) = (queue.clone(), metadata_json.to_owned());
        self.detached(|s| async move { queues::create(&s, &queue, &metadata).await })
            .await
    }

    async fn get_queue(&self, queue: &QueueRef) -> StoreResult<Option<String>> {
        let queue = queue.clone();
        self.detached(|s| async move { queues::get(&s, &queue).await })
            .await
    }

    async fn set_queue_metadata(&self, queue: &QueueRef, metadata_json: &str) -> StoreResult<()> {
        let (queue, metadata) = (queue.clone(), metadata_json.to_owned());
        self.detached(|s| async move { queues::set_metadata(&s, &queue, &metadata).await })
            .await
    }

    async fn delete_queue(&self, queue: &QueueRef) -> StoreResult<()> {
        let queue = queue.clone();
        self.detached(|s| async move { queues::delete(&s, &queue).await })
            .await
    }

    async fn queue_stats(&self, queue: &QueueRef) -> StoreResult<QueueStatsReply> {
        let queue = queue.clone();
        self.detached(|s| async move { queues::stats(&s, &queue).await })
            .await
    }

    async fn purge_queue(
        &self,
        queue: &QueueRef,
        messages: bool,
        subscriptions: bool,
    ) -> StoreResult<()> {
        let queue = queue.clone();
        self.detached(
            move |s| async move { queues::purge(&s, &queue, messages, subscriptions).await },
        )
        .await
    }
}

#[async_trait]
impl MessageLog for SqliteStore {
    async fn post_messages(
        &self,
        queue: &QueueRef,
        client_id: &str,
        new: &[NewMessage],
    ) -> StoreResult<Vec<String>> {
        let (queue, client_id, new) = (queue.clone(), client_id.to_owned(), new.to_vec());
        self.detached(|s| async move { messages::post(&s, &queue, &client_id, &new).await })
            .await
    }

    async fn post_once(
        &self,
        queue: &QueueRef,
        post: Post<'_>,
        once: &Once,
    ) -> StoreResult<CheckedPost> {
        let (queue, client_id) = (queue.clone(), post.client_id.to_owned());
        let (new, plain) = (post.messages.to_vec(), post.plain);
        let (expected, once) = (post.expected_metadata.map(str::to_owned), once.clone());
        self.detached(|s| async move {
            let post = Post {
                client_id: &client_id,
                messages: &new,
                plain,
                expected_metadata: expected.as_deref(),
            };
            messages::post_once(&s, &queue, post, &once).await
        })
        .await
    }

    async fn list_messages(
        &self,
        queue: &QueueRef,
        params: &ListParams,
    ) -> StoreResult<(Vec<Message>, String)> {
        let (queue, params) = (queue.clone(), params.clone());
        self.detached(|s| async move { messages::list(&s, &queue, &params).await })
            .await
    }

    async fn get_messages(&self, queue: &QueueRef, ids: &[String]) -> StoreResult<Vec<Message>> {
        let (queue, ids) = (queue.clone(), ids.to_vec());
        self.detached(|s| async move { messages::get_many(&s, &queue, &ids).await })
            .await
    }

    async fn delete_messages(
        &self,
        queue: &QueueRef,
        ids: &[String],
        claim_ids: &[String],
    ) -> StoreResult<()> {
        let (queue, ids, claim_ids) = (queue.clone(), ids.to_vec(), claim_ids.to_vec());
        self.detached(|s| async move { messages::delete_many(&s, &queue, &ids, &claim_ids).await })
            .await
    }

    async fn delete_message(
        &self,
        queue: &QueueRef,
        id: &str,
        claim_id: Option<&str>,
    ) -> StoreResult<()> {
        let (queue, id, claim_id) = (queue.clone(), id.to_owned(), claim_id.map(str::to_owned));
        self.detached(|s| async move {
            messages::delete_one(&s, &queue, &id, claim_id.as_deref()).await
        })
        .await
    }

    async fn pop_messages(&self, queue: &QueueRef, limit: u32) -> StoreResult<Vec<Message>> {
        let queue = queue.clone();
        self.detached(move |s| async move { messages::pop(&s, &queue, limit).await })
            .await
    }
}

#[async_trait]
impl ClaimStore for SqliteStore {
    async fn create_claim(
        &self,
        queue: &QueueRef,
        ttl: u32,
        grace: u32,
        limit: u32,
    ) -> StoreResult<Option<ClaimReply>> {
        let queue = queue.clone();
        self.detached(move |s| async move { claims::create(&s, &queue, ttl, grace, limit).await })
            .await
    }

    async fn get_claim(&self, queue: &QueueRef, claim_id: &str) -> StoreResult<ClaimReply> {
        let (queue, claim_id) = (queue.clone(), claim_id.to_owned());
        self.detached(|s| async move { claims::get(&s, &queue, &claim_id).await })
            .await
    }

    async fn update_claim(
        &self,
        queue: &QueueRef,
        claim_id: &str,
        ttl: u32,
        grace: u32,
    ) -> StoreResult<()> {
        let (queue, claim_id) = (queue.clone(), claim_id.to_owned());
        self.detached(
            move |s| async move { claims::update(&s, &queue, &claim_id, ttl, grace).await },
        )
        .await
    }

    async fn delete_claim(&self, queue: &QueueRef, claim_id: &str) -> StoreResult<()> {
        let (queue, claim_id) = (queue.clone(), claim_id.to_owned());
        self.detached(|s| async move { claims::delete(&s, &queue, &claim_id).await })
            .await
    }
}

#[async_trait]
impl SubscriptionStore for SqliteStore {
    async fn create_subscription(
        &self,
        queue: &QueueRef,
        subscriber: &str,
        ttl: u32,
        options_json: &str,
        confirmed: bool,
    ) -> StoreResult<(String, bool)> {
        let (queue, subscriber, options) = (
            queue.clone(),
            subscriber.to_owned(),
            options_json.to_owned(),
        );
        self.detached(move |s| async move {
            subscriptions::create(&s, &queue, &subscriber, ttl, &options, confirmed).await
        })
        .await
    }

    async fn list_subscriptions(
        &self,
        queue: &QueueRef,
        marker: &str,
        limit: u32,
    ) -> StoreResult<(Vec<Subscription>, String)> {
        let (queue, marker) = (queue.clone(), marker.to_owned());
        self.detached(move |s| async move { subscriptions::list(&s, &queue, &marker, limit).await })
            .await
    }

    async fn get_subscription(&self, queue: &QueueRef, id: &str) -> StoreResult<Subscription> {
        let (queue, id) = (queue.clone(), id.to_owned());
        self.detached(|s| async move { subscriptions::get(&s, &queue, &id).await })
            .await
    }

    async fn update_subscription(
        &self,
        queue: &QueueRef,
        id: &str,
        update: &SubscriptionUpdate,
    ) -> StoreResult<()> {
        let (queue, id, update) = (queue.clone(), id.to_owned(), update.clone());
        self.detached(|s| async move { subscriptions::update(&s, &queue, &id, &update).await })
            .await
    }

    async fn delete_subscription(&self, queue: &QueueRef, id: &str) -> StoreResult<()> {
        let (queue, id) = (queue.clone(), id.to_owned());
        self.detached(|s| async move { subscriptions::delete(&s, &queue, &id).await })
            .await
    }

    async fn confirm_subscription(
        &self,
        queue: &QueueRef,
        id: &str,
        confirmed: bool,
    ) -> StoreResult<()> {
        let (queue, id) = (queue.clone(), id.to_owned());
        self.detached(
            move |s| async move { subscriptions::confirm(&s, &queue, &id, confirmed).await },
        )
        .await
    }
}

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn delivery_cursor(&self, queue: &QueueRef, id: &str) -> StoreResult<Option<String>> {
        let (queue, id) = (queue.clone(), id.to_owned());
        self.detached(|s| async move { subscriptions::cursor(&s, &queue, &id).await })
            .await
    }

    async fn set_delivery_cursor(
        &self,
        queue: &QueueRef,
        id: &str,
        marker: &str,
    ) -> StoreResult<()> {
        let (queue, id, marker) = (queue.clone(), id.to_owned(), marker.to_owned());
        self.detached(|s| async move {
            subscriptions::set_cursor(&s, &queue, &id, Some(&marker))
                .await
                .map(drop)
        })
        .await
    }

    async fn reset_delivery_cursor(&self, queue: &QueueRef, id: &str) -> StoreResult<String> {
        let (queue, id) = (queue.clone(), id.to_owned());
        self.detached(|s| async move { subscriptions::set_cursor(&s, &queue, &id, None).await })
            .await
    }

    async fn take_delivery_lease(
        &self,
        queue: &QueueRef,
        id: &str,
        holder: &str,
        ttl: Duration,
    ) -> StoreResult<bool> {
        let (queue, id, holder) = (queue.clone(), id.to_owned(), holder.to_owned());
        self.detached(move |s| async move {
            subscriptions::take_lease(&s, &queue, &id, &holder, ttl).await
        })
        .await
    }

    async fn release_delivery_lease(
        &self,
        _queue: &QueueRef,
        id: &str,
        holder: &str,
    ) -> StoreResult<()> {
        let (id, holder) = (id.to_owned(), holder.to_owned());
        self.detached(|s| async move { subscriptions::release_lease(&s, &id, &holder).await })
            .await
    }

    async fn subscribed_queues(&self) -> StoreResult<Vec<QueueRef>> {
        self.detached(|s| async move { subscriptions::subscribed_queues(&s).await })
            .await
    }
}

#[async_trait]
impl MessageStore for SqliteStore {
    async fn health(&self) -> StoreResult<()> {
        self.detached(|s| async move {
            sqlx::query("SELECT 1")
                .execute(&s.reader)
                .await
                .map_err(super::store_error)?;
            Ok(())
        })
        .await
    }

    async fn volatility(&self) -> StoreResult<Option<String>> {
        self.detached(|s| async move { s.volatility().await }).await
    }

    async fn remove_expired_messages(&self) -> StoreResult<u64> {
        self.detached(|s| async move { s.remove_expired_batch(super::now_ms()).await })
            .await
    }

    /// One pool-node serves a SQLite file: there is no other to relay to.
    fn relay_activity(&self, relay: crate::activity::Relay) {
        drop(relay);
    }
}
