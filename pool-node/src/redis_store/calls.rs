//! How every call of the store reaches Redis: on the node that holds its keys,
//! bounded in time, its errors mapped to `Unavailable`, and with
//! `min_replicas_ack` not acknowledged before enough replicas have it.

use std::future::Future;
use std::time::Duration;

use redis::{FromRedisValue, RedisError, RedisResult, ScriptInvocation};
use zaqar_proto::pb::QueueRef;
use zaqar_proto::ZaqarError;

use super::connection::{self, Connection};
use super::keys::QueueKeys;
use super::RedisStore;
use crate::store::StoreResult;

/// The one mapping of Redis errors: the store is unavailable, retrying later is safe.
pub(super) fn unavailable(err: RedisError) -> ZaqarError {
    ZaqarError::unavailable(format!("the redis store failed: {err}"))
}

/// Runs a Redis call within `limit`.
pub(super) async fn bounded<T>(
    limit: Duration,
    call: impl Future<Output = RedisResult<T>>,
) -> StoreResult<T> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(unavailable),
        Err(_) => Err(ZaqarError::unavailable(format!(
            "the redis store did not answer within {limit:?}"
        ))),
    }
}

impl RedisStore {
    /// The keys of `queue` in this store's slot layout.
    pub(super) fn keys(&self, queue: &QueueRef) -> QueueKeys {
        QueueKeys::new(queue, self.slots)
    }

    /// Runs a script (see [`Self::call`]).
    pub(super) async fn run<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> StoreResult<T> {
        self.call(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await
    }

    /// Runs one plain command (see [`Self::call`]).
    pub(super) async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> StoreResult<T> {
        self.call(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// The nodes that together hold every key (see [`Connection::nodes`]).
    pub(super) async fn nodes(&self) -> StoreResult<Vec<connection::Node>> {
        self.call(|mut conn| async move { conn.nodes().await })
            .await
    }

    /// Runs one plain command on `node` (see [`Self::call`]).
    pub(super) async fn query_on<T: FromRedisValue>(
        &self,
        node: &connection::Node,
        cmd: &redis::Cmd,
    ) -> StoreResult<T> {
        self.call(|mut conn| async move { conn.query_on(node, cmd).await })
            .await
    }

    /// Runs `op` within the call timeout. A call that never ran (a refused
    /// connection, or a master demoted since) is tried once more, on the
    /// connection the link makes next. With `min_replicas_ack`, the call is
    /// acknowledged only once that many replicas have what it wrote.
    pub(super) async fn call<T, F, Fut>(&self, op: F) -> StoreResult<T>
    where
        F: Fn(Connection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let limit = self.call_timeout;
        let mut used = None;
        let attempt = async {
            let mut current = self.link.connection().await?;
            used = Some(current.clone());
            let mut result = op(current.conn.clone()).await;
            if let Err(err) = &result {
                if self.link.failed(&current, err) {
                    current = self.link.connection().await?;
                    used = Some(current.clone());
                    result = op(current.conn.clone()).await;
                }
            }
            let value = result.inspect_err(|err| {
                self.link.failed(&current, err);
            });
            let value = value.map_err(unavailable)?;
            // A master without its replicas may be one the sentinels replaced.
            self.replicated(current.conn.clone())
                .await
                .inspect_err(|_| self.link.forget(&current))?;
            Ok(value)
        };
        match tokio::time::timeout(limit, attempt).await {
            Ok(result) => result,
            Err(_) => {
                if let Some(used) = &used {
                    self.link.forget(used);
                }
                Err(ZaqarError::unavailable(format!(
                    "the redis store did not answer within {limit:?}"
                )))
            }
        }
    }

    /// With `min_replicas_ack`: waits (half the call timeout at most) until that many
    /// replicas have every write made on `conn` so far.
    async fn replicated(&self, mut conn: Connection) -> StoreResult<()> {
        if self.min_replicas_ack == 0 {
            return Ok(());
        }
        let wait_ms = (self.call_timeout / 2).as_millis().max(1) as u64;
        let acks: u32 = redis::cmd("WAIT")
            .arg(self.min_replicas_ack)
            .arg(wait_ms)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if acks < self.min_replicas_ack {
            return Err(ZaqarError::unavailable(format!(
                "the redis store's write reached {acks} of the {} replicas min_replicas_ack \
                 asks for within {wait_ms} ms; it may be kept or lost",
                self.min_replicas_ack
            )));
        }
        Ok(())
    }
}
