//! The Redis backend of `MessageStore`: small Lua scripts over per-queue hashes and sorted sets.
//!
//! Every operation that reads or writes messages, claims or subscriptions is
//! one Lua script (see `lua/`), so it is atomic and compares expiries with one
//! clock: the Redis server's (`TIME`). A queue's messages are packed
//! (`cmsgpack`) in one hash, indexed by sorted sets; a message past its expiry
//! is ignored by every read and removed lazily (by the scans that meet it, a
//! few with every post, and by stats), and the queue's message keys expire by
//! themselves a minute after its last message, so a queue nobody touches any
//! more leaves only its record. One hash per queue instead of one key per
//! message halves Redis's memory per message. Claims and subscriptions are
//! hashes that Redis expires by itself (`PEXPIREAT`). Counts come from
//! `ZCOUNT` over sorted sets scored by expiry, without scanning. Free, claimed
//! and delayed messages are indexed apart, so a claim, a pop or a default
//! listing reads only what it returns: no script's work grows with the depth
//! of a queue (see `lua/prelude.lua`). The key layout is in `keys.rs`, its
//! version and migrations in `migration.rs`.
//!
//! Every call is bounded by [`CALL_TIMEOUT`] (or the URI's `socket_timeout`):
//! a Redis that is down or hung gives `Unavailable` quickly, and
//! `ConnectionManager` reconnects by itself once Redis is back. The URI is read
//! as Zaqar reads it (`zaqar_proto::redis_uri`): one server over TCP or a Unix
//! socket; a Sentinel group is refused for now (issue 16).

mod claims;
mod durability;
mod keys;
mod messages;
mod migration;
mod queues;
mod rows;
mod scripts;
mod subscriptions;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{
    ConnectionAddr, ConnectionInfo, FromRedisValue, RedisConnectionInfo, RedisError, RedisResult,
    ScriptInvocation,
};
use zaqar_proto::pb::{ClaimReply, Message, NewMessage, QueueRef, QueueStatsReply, Subscription};
use zaqar_proto::redis_uri::{RedisTarget, RedisUri};
use zaqar_proto::ZaqarError;

use crate::store::{CheckedPost, ListParams, MessageStore, StoreResult, SubscriptionUpdate};
use scripts::Scripts;

/// The longest any one store call waits for Redis (connecting included).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest one connection attempt takes (a host that drops packets).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A `MessageStore` on one Redis server.
pub struct RedisStore {
    conn: ConnectionManager,
    scripts: Scripts,
    /// The longest wait for one call.
    call_timeout: Duration,
}

/// Opens the redis store at `uri` (`redis://host:port/db`); `Unavailable`
/// within [`CALL_TIMEOUT`] when Redis cannot be reached.
pub async fn open(uri: &str) -> Result<Arc<dyn MessageStore>, ZaqarError> {
    Ok(Arc::new(RedisStore::connect(uri).await?))
}

/// The one mapping of Redis errors: the store is unavailable, retrying later is safe.
fn unavailable(err: RedisError) -> ZaqarError {
    ZaqarError::unavailable(format!("the redis store failed: {err}"))
}

/// Runs a Redis call within `limit`.
async fn bounded<T>(limit: Duration, call: impl Future<Output = RedisResult<T>>) -> StoreResult<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(unavailable),
        Err(_) => Err(ZaqarError::unavailable(format!(
            "the redis store did not answer within {limit:?}"
        ))),
    }
}

/// The redis crate's connection settings of `uri`.
fn connection_info(uri: &RedisUri) -> Result<ConnectionInfo, ZaqarError> {
    let addr = match &uri.target {
        RedisTarget::Tcp {
            host,
            port,
            tls: false,
        } => ConnectionAddr::Tcp(host.clone(), *port),
        RedisTarget::Tcp {
            host,
            port,
            tls: true,
        } => ConnectionAddr::TcpTls {
            host: host.clone(),
            port: *port,
            insecure: false,
            tls_params: None,
        },
        RedisTarget::Unix { path } => ConnectionAddr::Unix(path.into()),
        RedisTarget::Sentinel { .. } => {
            return Err(ZaqarError::bad_request(
                "Redis Sentinel pools are not supported by this build yet: \
                 give the master's address (redis://HOST:PORT?dbid=N)",
            ))
        }
    };
    Ok(ConnectionInfo {
        addr,
        redis: RedisConnectionInfo {
            db: uri.db,
            username: uri.username.clone(),
            password: uri.password.clone(),
            ..Default::default()
        },
    })
}

impl RedisStore {
    /// Connects to `uri`; a malformed URI is `BadRequest`, an unreachable server `Unavailable`.
    pub async fn connect(uri: &str) -> StoreResult<Self> {
        // The URI may hold a password: it is neither logged nor put in errors.
        let parsed = RedisUri::parse(uri)
            .map_err(|err| ZaqarError::bad_request(format!("invalid redis URI: {err}")))?;
        let client = redis::Client::open(connection_info(&parsed)?)
            .map_err(|err| ZaqarError::bad_request(format!("invalid redis URI: {err}")))?;
        let addr = client.get_connection_info().addr.to_string();
        let call_timeout = parsed.socket_timeout.unwrap_or(CALL_TIMEOUT);
        // One attempt per (re)connection: a refused call triggers the next
        // attempt, so a restarted Redis is picked up at the next call.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(CONNECT_TIMEOUT.min(call_timeout))
            .set_response_timeout(call_timeout);
        let connecting = ConnectionManager::new_with_config(client, config);
        let conn = bounded(call_timeout.max(CONNECT_TIMEOUT), connecting).await?;
        tracing::debug!(%addr, db = parsed.db, "connected to the redis store");
        let store = RedisStore {
            conn,
            scripts: Scripts::new(),
            call_timeout,
        };
        store.ensure_layout().await?;
        Ok(store)
    }

    /// Runs a script. A refused connection means the call never reached
    /// Redis, so it is tried once more, on the reconnection the refusal started.
    async fn run<T: FromRedisValue>(&self, invocation: &ScriptInvocation<'_>) -> StoreResult<T> {
        let mut conn = self.conn.clone();
        bounded(self.call_timeout, async {
            match invocation.invoke_async(&mut conn).await {
                Err(err) if err.is_connection_refusal() => invocation.invoke_async(&mut conn).await,
                other => other,
            }
        })
        .await
    }

    /// Runs one plain command, with the same retry rule as [`Self::run`].
    async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> StoreResult<T> {
        let mut conn = self.conn.clone();
        bounded(self.call_timeout, async {
            match cmd.query_async(&mut conn).await {
                Err(err) if err.is_connection_refusal() => cmd.query_async(&mut conn).await,
                other => other,
            }
        })
        .await
    }
}

#[async_trait]
impl MessageStore for RedisStore {
    async fn create_queue(&self, queue: &QueueRef, metadata_json: &str) -> StoreResult<bool> {
        self.create_queue_record(queue, metadata_json).await
    }

    async fn get_queue(&self, queue: &QueueRef) -> StoreResult<Option<String>> {
        self.queue_metadata(queue).await
    }

    async fn set_queue_metadata(&self, queue: &QueueRef, metadata_json: &str) -> StoreResult<()> {
        self.replace_metadata(queue, metadata_json).await
    }

    async fn delete_queue(&self, queue: &QueueRef) -> StoreResult<()> {
        self.purge_messages(queue, true).await
    }

    async fn queue_stats(&self, queue: &QueueRef) -> StoreResult<QueueStatsReply> {
        self.stats(queue).await
    }

    async fn purge_queue(
        &self,
        queue: &QueueRef,
        messages: bool,
        subscriptions: bool,
    ) -> StoreResult<()> {
        if messages {
            self.purge_messages(queue, false).await?;
        }
        if subscriptions {
            self.purge_subscriptions(queue).await?;
        }
        Ok(())
    }

    async fn post_messages(
        &self,
        queue: &QueueRef,
        client_id: &str,
        messages: &[NewMessage],
    ) -> StoreResult<Vec<String>> {
        match self.post(queue, client_id, messages, false, None).await? {
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
        self.post(queue, client_id, messages, true, expected_metadata)
            .await
    }

    async fn list_messages(
        &self,
        queue: &QueueRef,
        params: &ListParams,
    ) -> StoreResult<(Vec<Message>, String)> {
        self.list(queue, params).await
    }

    async fn get_messages(&self, queue: &QueueRef, ids: &[String]) -> StoreResult<Vec<Message>> {
        self.get(queue, ids).await
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

    async fn pop_messages(&self, queue: &QueueRef, limit: u32) -> StoreResult<Vec<Message>> {
        self.pop(queue, limit).await
    }

    async fn create_claim(
        &self,
        queue: &QueueRef,
        ttl: u32,
        grace: u32,
        limit: u32,
    ) -> StoreResult<Option<ClaimReply>> {
        self.claim(queue, ttl, grace, limit).await
    }

    async fn get_claim(&self, queue: &QueueRef, claim_id: &str) -> StoreResult<ClaimReply> {
        self.claim_of(queue, claim_id).await
    }

    async fn update_claim(
        &self,
        queue: &QueueRef,
        claim_id: &str,
        ttl: u32,
        grace: u32,
    ) -> StoreResult<()> {
        self.renew_claim(queue, claim_id, ttl, grace).await
    }

    async fn delete_claim(&self, queue: &QueueRef, claim_id: &str) -> StoreResult<()> {
        self.release_claim(queue, claim_id).await
    }

    async fn create_subscription(
        &self,
        queue: &QueueRef,
        subscriber: &str,
        ttl: u32,
        options_json: &str,
        confirmed: bool,
    ) -> StoreResult<(String, bool)> {
        self.subscribe(queue, subscriber, ttl, options_json, confirmed)
            .await
    }

    async fn list_subscriptions(
        &self,
        queue: &QueueRef,
        marker: &str,
        limit: u32,
    ) -> StoreResult<(Vec<Subscription>, String)> {
        self.subscriptions(queue, marker, limit).await
    }

    async fn get_subscription(&self, queue: &QueueRef, id: &str) -> StoreResult<Subscription> {
        self.subscription(queue, id, None).await
    }

    async fn update_subscription(
        &self,
        queue: &QueueRef,
        id: &str,
        update: &SubscriptionUpdate,
    ) -> StoreResult<()> {
        self.change_subscription(queue, id, update).await
    }

    async fn delete_subscription(&self, queue: &QueueRef, id: &str) -> StoreResult<()> {
        self.unsubscribe(queue, id).await
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

    async fn subscribed_queues(&self) -> StoreResult<Vec<QueueRef>> {
        self.queues_with_subscriptions().await
    }

    async fn health(&self) -> StoreResult<()> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop)
    }

    async fn volatility(&self) -> StoreResult<Option<String>> {
        self.persistence_gaps().await
    }
}
