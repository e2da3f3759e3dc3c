//! The Redis backend of `MessageStore`: small Lua scripts over per-queue hashes and sorted sets.
//!
//! Every operation that reads or writes messages, claims or subscriptions is
//! one Lua script (see `lua/`), so it is atomic and compares expiries with one
//! clock: the Redis server's (`TIME`). A queue's messages are packed
//! (`cmsgpack`) in one hash, indexed by sorted sets; a message past its expiry
//! is ignored by every read and removed lazily (by the scans that meet it, a
//! few with every post, by stats, and by the expiry sweep of `expiry.rs`, which
//! counts them), and the queue's message keys expire by themselves an hour
//! after its last message, so a queue nobody touches any more leaves only its
//! record. One hash per queue instead of one key per
//! message halves Redis's memory per message. Claims and subscriptions are
//! hashes that Redis expires by itself (`PEXPIREAT`). Counts come from
//! `ZCOUNT` over sorted sets scored by expiry, without scanning. Free, claimed
//! and delayed messages are indexed apart, so a claim, a pop or a default
//! listing reads only what it returns: no script's work grows with the depth
//! of a queue (see `lua/prelude.lua`). The key layout is in `keys.rs`, its
//! version and migrations in `migration.rs`. Each store trait is implemented in
//! the file of its concern (`queues.rs`, `messages.rs`, `claims.rs`, `subscriptions.rs`).
//!
//! Every call is bounded by [`CALL_TIMEOUT`] (or the URI's `socket_timeout`):
//! a Redis that is down or hung gives `Unavailable` quickly, and
//! `ConnectionManager` reconnects by itself once Redis is back. The URI is read
//! as Zaqar reads it (`zaqar_proto::redis_uri`): one server over TCP (or TLS) or a
//! Unix socket, or the master of a Sentinel group, followed through failovers
//! (`open.rs`, `link.rs`). With `min_replicas_ack=N` every call waits until N replicas have
//! what it wrote (`WAIT`), so that an acknowledged write survives a failover.

mod calls;
mod claims;
mod connection;
mod durability;
mod expiry;
mod group_commit;
mod keys;
mod link;
mod messages;
mod migration;
mod open;
mod queues;
mod relay;
mod rows;
mod scripts;
mod subscriptions;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use zaqar_proto::ZaqarError;

use crate::store::{MessageStore, StoreResult};
use calls::unavailable;
use group_commit::GroupCommit;
use keys::Slots;
use link::Link;
use messages::{DeleteCall, PostCall, PostKey};
use relay::Listen;
use scripts::Scripts;

/// The longest any one store call waits for Redis (connecting included).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest one connection attempt takes (a host that drops packets).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the cluster client tries a call again (after a redirection, or while
/// the cluster fails over), within the call timeout.
const CLUSTER_RETRIES: u32 = 8;

/// A `MessageStore` on one Redis server, or on the master of a Sentinel group.
/// A clone shares everything (connection, scripts, batches).
#[derive(Clone)]
pub struct RedisStore {
    link: Arc<Link>,
    scripts: Arc<Scripts>,
    /// Posts waiting per queue (and checks) for the post in flight to end.
    posts: Arc<GroupCommit<PostKey, PostCall>>,
    /// Deletes waiting per queue for the delete in flight to end.
    deletes: Arc<GroupCommit<String, DeleteCall>>,
    /// The longest wait for one call.
    call_timeout: Duration,
    /// Replicas that must have a write before it is acknowledged (`WAIT`); 0: none.
    min_replicas_ack: u32,
    /// Which keys share a slot: a project's, or (Redis Cluster) a queue's.
    slots: Slots,
    /// Where the expiry sweep's next step begins.
    sweep: Arc<std::sync::Mutex<expiry::SweepCursor>>,
    /// The database number (the activity relay's channel is per database).
    db: i64,
    /// Where the activity relay subscribes.
    listen: Arc<Listen>,
}

/// Opens the redis store at `uri` (`redis://host:port/db`); `Unavailable`
/// within [`CALL_TIMEOUT`] when Redis cannot be reached.
pub async fn open(uri: &str) -> Result<Arc<dyn MessageStore>, ZaqarError> {
    Ok(Arc::new(RedisStore::connect(uri).await?))
}

#[async_trait]
impl MessageStore for RedisStore {
    async fn health(&self) -> StoreResult<()> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop)
    }

    // These two run the inherent methods of the same names (durability.rs, expiry.rs).
    async fn volatility(&self) -> StoreResult<Option<String>> {
        RedisStore::volatility(self).await
    }

    async fn remove_expired_messages(&self) -> StoreResult<u64> {
        RedisStore::remove_expired_messages(self).await
    }

    fn relay_activity(&self, relay: crate::activity::Relay) {
        relay::spawn(self.clone(), relay);
    }
}
