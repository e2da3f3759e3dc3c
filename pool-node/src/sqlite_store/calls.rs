//! Every call of the SQLite store runs in a task of its own ([`SqliteStore::detached`]):
//! each trait's implementation, in the file of its concern, runs there the function
//! of the same name.
//!
//! A caller may give up on a call (its client disconnected, a request timeout); the
//! call itself then goes on to its end in its task. sqlx's SQLite connections are not
//! safe to drop in the middle of a transaction: a `BEGIN` or `COMMIT` cancelled at the
//! wrong moment can leave the one writer connection inside a transaction, and every
//! later write then fails ("attempted to call begin_with at non-zero transaction
//! depth"); a read transaction left open would pin the WAL. So no transaction of this
//! store is ever dropped half-way.

use std::future::Future;

use async_trait::async_trait;
use zaqar_proto::ZaqarError;

use super::SqliteStore;
use crate::store::{MessageStore, StoreResult};

impl SqliteStore {
    /// Runs `call` on a clone of the store in a task of its own and waits for it.
    pub(super) async fn detached<T, F, Fut>(&self, call: F) -> StoreResult<T>
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
