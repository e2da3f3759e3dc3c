//! Subscriptions in the redis store.

use async_trait::async_trait;
use std::time::Duration;

use uuid::Uuid;
use zaqar_proto::pb::{QueueRef, Subscription};
use zaqar_proto::ZaqarError;

use super::rows::{next_marker, parse_marker, subscription, SubscriptionRow};
use super::RedisStore;
use crate::store::{DeliveryStore, StoreResult, SubscriptionStore, SubscriptionUpdate};

fn no_subscription(id: &str) -> ZaqarError {
    ZaqarError::not_found(format!("subscription {id} does not exist"))
}

impl RedisStore {
    /// A live subscription; with `confirm`, sets whether it is confirmed first.
    pub(super) async fn subscription(
        &self,
        queue: &QueueRef,
        id: &str,
        confirm: Option<bool>,
    ) -> StoreResult<Subscription> {
        let keys = self.keys(queue);
        let mut invocation = self.scripts.sub_get.prepare_invoke();
        invocation
            .key(keys.subscription(id))
            .arg(id)
            .arg(confirm.map_or(String::new(), |c| u8::from(c).to_string()));
        let reply: Option<(i64, SubscriptionRow)> = self.run(&invocation).await?;
        let (now, row) = reply.ok_or_else(|| no_subscription(id))?;
        Ok(subscription(row, &queue.queue, now))
    }

    pub(super) async fn purge_subscriptions(&self, queue: &QueueRef) -> StoreResult<()> {
        let keys = self.keys(queue);
        let mut invocation = self.scripts.sub_purge.prepare_invoke();
        invocation
            .key(keys.subscriptions())
            .key(keys.subscribers())
            .arg(keys.subscription_prefix());
        self.run::<u8>(&invocation).await.map(drop)
    }
}

impl RedisStore {
    /// Runs `sub_cursor.lua` in `mode` ('get', 'set' or 'reset').
    pub(super) async fn cursor(
        &self,
        queue: &QueueRef,
        id: &str,
        mode: &str,
        marker: &str,
    ) -> StoreResult<Option<String>> {
        let keys = self.keys(queue);
        let mut invocation = self.scripts.sub_cursor.prepare_invoke();
        invocation
            .key(keys.subscription(id))
            .key(keys.record())
            .arg(id)
            .arg(mode)
            .arg(marker);
        self.run(&invocation).await
    }

    /// Runs `sub_lease.lua` in `mode` ('take' or 'release'); whether `holder` holds the lease.
    pub(super) async fn lease(
        &self,
        queue: &QueueRef,
        id: &str,
        holder: &str,
        mode: &str,
        ttl: Duration,
    ) -> StoreResult<bool> {
        let mut invocation = self.scripts.sub_lease.prepare_invoke();
        invocation
            .key(self.keys(queue).subscription(id))
            .arg(id)
            .arg(holder)
            .arg(mode)
            .arg(ttl.as_millis().max(1) as u64);
        Ok(self.run::<u8>(&invocation).await? == 1)
    }
}

#[async_trait]
impl SubscriptionStore for RedisStore {
    async fn get_subscription(&self, queue: &QueueRef, id: &str) -> StoreResult<Subscription> {
        self.subscription(queue, id, None).await
    }

    async fn confirm_subscription(
        &self,
        queue: &QueueRef,
        id: &str,
        confirmed: bool,
    ) -> StoreResult<()> {
        self.subscription(queue, id, Some(confirmed))
            .await
            .map(drop)
    }

    async fn create_subscription(
        &self,
        queue: &QueueRef,
        subscriber: &str,
        ttl: u32,
        options_json: &str,
        confirmed: bool,
    ) -> StoreResult<(String, bool)> {
        let keys = self.keys(queue);
        let mut invocation = self.scripts.sub_create.prepare_invoke();
        invocation
            .key(keys.subscriptions())
            .key(keys.subscribers())
            .key(keys.subscription_seq())
            .arg(keys.subscription_prefix())
            .arg(Uuid::new_v4().to_string())
            .arg(subscriber)
            .arg(ttl)
            .arg(options_json)
            .arg(u8::from(confirmed));
        let (id, created): (String, u8) = self.run(&invocation).await?;
        Ok((id, created == 1))
    }

    async fn list_subscriptions(
        &self,
        queue: &QueueRef,
        marker: &str,
        limit: u32,
    ) -> StoreResult<(Vec<Subscription>, String)> {
        let after = parse_marker(marker)?;
        let keys = self.keys(queue);
        let mut invocation = self.scripts.sub_list.prepare_invoke();
        invocation
            .key(keys.subscriptions())
            .arg(keys.subscription_prefix())
            .arg(after)
            .arg(limit);
        let (now, rows, last): (i64, Vec<SubscriptionRow>, u64) = self.run(&invocation).await?;
        let subscriptions = rows
            .into_iter()
            .map(|row| subscription(row, &queue.queue, now))
            .collect();
        Ok((subscriptions, next_marker(last, marker)))
    }

    async fn update_subscription(
        &self,
        queue: &QueueRef,
        id: &str,
        update: &SubscriptionUpdate,
    ) -> StoreResult<()> {
        let keys = self.keys(queue);
        let mut invocation = self.scripts.sub_update.prepare_invoke();
        invocation
            .key(keys.subscription(id))
            .key(keys.subscribers())
            .arg(keys.subscription_prefix())
            .arg(id)
            .arg(update.subscriber.as_deref().unwrap_or(""))
            .arg(update.ttl.map_or(String::new(), |ttl| ttl.to_string()))
            .arg(update.options_json.as_deref().unwrap_or(""));
        let outcome: String = self.run(&invocation).await?;
        match outcome.as_str() {
            "ok" => Ok(()),
            "conflict" => Err(ZaqarError::new(
                zaqar_proto::ErrorCode::Conflict,
                "the subscriber already has a subscription on this queue",
            )),
            _ => Err(no_subscription(id)),
        }
    }

    async fn delete_subscription(&self, queue: &QueueRef, id: &str) -> StoreResult<()> {
        let keys = self.keys(queue);
        let mut invocation = self.scripts.sub_delete.prepare_invoke();
        invocation
            .key(keys.subscription(id))
            .key(keys.subscriptions())
            .key(keys.subscribers())
            .arg(id);
        self.run::<u8>(&invocation).await.map(drop)
    }
}

#[async_trait]
impl DeliveryStore for RedisStore {
    async fn delivery_cursor(&self, queue: &QueueRef, id: &str) -> StoreResult<Option<String>> {
        self.cursor(queue, id, "get", "").await
    }

    async fn set_delivery_cursor(
        &self,
        queue: &QueueRef,
        id: &str,
        marker: &str,
    ) -> StoreResult<()> {
        self.cursor(queue, id, "set", marker).await.map(drop)
    }

    async fn reset_delivery_cursor(&self, queue: &QueueRef, id: &str) -> StoreResult<String> {
        let marker = self.cursor(queue, id, "reset", "").await?;
        Ok(marker.unwrap_or_default())
    }

    async fn take_delivery_lease(
        &self,
        queue: &QueueRef,
        id: &str,
        holder: &str,
        ttl: Duration,
    ) -> StoreResult<bool> {
        self.lease(queue, id, holder, "take", ttl).await
    }

    async fn release_delivery_lease(
        &self,
        queue: &QueueRef,
        id: &str,
        holder: &str,
    ) -> StoreResult<()> {
        self.lease(queue, id, holder, "release", Duration::ZERO)
            .await
            .map(drop)
    }

    /// The queues whose subscription index exists.
    async fn subscribed_queues(&self) -> StoreResult<Vec<QueueRef>> {
        self.queues_with_key("subs").await
    }
}
