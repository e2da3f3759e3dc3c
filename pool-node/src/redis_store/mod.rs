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
//! version and migrations in `migration.rs`.
//!
//! Every call is bounded by [`CALL_TIMEOUT`] (or the URI's `socket_timeout`):
//! a Redis that is down or hung gives `Unavailable` quickly, and
//! `ConnectionManager` reconnects by itself once Redis is back. The URI is read
//! as Zaqar reads it (`zaqar_proto::redis_uri`): one server over TCP (or TLS) or a
//! Unix socket, or the master of a Sentinel group, followed through failovers
//! (`link.rs`). With `min_replicas_ack=N` every call waits until N replicas have
//! what it wrote (`WAIT`), so that an acknowledged write survives a failover.

mod claims;
mod connection;
mod durability;
mod expiry;
mod group_commit;
mod keys;
mod link;
mod messages;
mod migration;
mod queues;
mod relay;
mod rows;
mod scripts;
mod subscriptions;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use connection::{Connection, Transport};
use keys::{QueueKeys, Slots};
use link::Link;
use redis::aio::ConnectionManagerConfig;
use redis::{
    ConnectionAddr, ConnectionInfo, FromRedisValue, RedisConnectionInfo, RedisError, RedisResult,
    ScriptInvocation,
};
use zaqar_proto::pb::{ClaimReply, Message, NewMessage, QueueRef, QueueStatsReply, Subscription};
use zaqar_proto::redis_uri::{RedisTarget, RedisUri};
use zaqar_proto::ZaqarError;

use crate::store::{
    CheckedPost, ClaimStore, DeliveryStore, ListParams, MessageLog, MessageStore, Once, Post,
    QueueStore, StoreResult, SubscriptionStore, SubscriptionUpdate,
};
use group_commit::GroupCommit;
use messages::{DeleteCall, PostCall, PostKey};
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

/// Where the activity relay (`relay.rs`) subscribes.
enum Listen {
    /// The one server.
    Server(redis::Client),
    /// Any node of a Redis Cluster, tried in order.
    Cluster(Vec<redis::Client>),
    /// The master the sentinels name.
    Sentinel,
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

/// The redis crate's connection settings of a single server or a sentinel.
fn node_info(
    addr: ConnectionAddr,
    db: i64,
    username: &Option<String>,
    password: &Option<String>,
) -> ConnectionInfo {
    ConnectionInfo {
        addr,
        redis: credentials(db, username, password),
    }
}

/// Plain TCP, or (`rediss://`) TLS checked against the roots of `ssl_ca_certs` or,
/// without it, the system's.
fn transport(tls: bool, parsed: &RedisUri) -> StoreResult<Transport> {
    if !tls {
        return Ok(Transport::Plain);
    }
    let roots = match &parsed.ssl_ca_certs {
        None => None,
        Some(path) => Some(std::fs::read(path).map_err(|err| {
            ZaqarError::bad_request(format!("invalid redis URI: ssl_ca_certs {path}: {err}"))
        })?),
    };
    Ok(Transport::Tls { roots })
}

/// The database and credentials of a connection.
fn credentials(
    db: i64,
    username: &Option<String>,
    password: &Option<String>,
) -> RedisConnectionInfo {
    RedisConnectionInfo {
        db,
        username: username.clone(),
        password: password.clone(),
        ..Default::default()
    }
}

impl RedisStore {
    /// Connects to `uri`; a malformed URI is `BadRequest`, an unreachable server `Unavailable`.
    pub async fn connect(uri: &str) -> StoreResult<Self> {
        // The URI may hold a password: it is neither logged nor put in errors.
        let parsed = RedisUri::parse(uri)
            .map_err(|err| ZaqarError::bad_request(format!("invalid redis URI: {err}")))?;
        let call_timeout = parsed.socket_timeout.unwrap_or(CALL_TIMEOUT);
        let connect_timeout = CONNECT_TIMEOUT.min(call_timeout);
        // One attempt per (re)connection: a refused call triggers the next
        // attempt, so a restarted Redis is picked up at the next call.
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(connect_timeout)
            .set_response_timeout(call_timeout);
        let (user, password) = (&parsed.username, &parsed.password);
        let server = |addr| node_info(addr, parsed.db, user, password);
        let invalid =
            |err: RedisError| ZaqarError::bad_request(format!("invalid redis URI: {err}"));
        let (link, listen) = match &parsed.target {
            RedisTarget::Tcp { host, port, tls } => {
                let transport = transport(*tls, &parsed)?;
                let client = transport
                    .client(server(transport.addr(host.clone(), *port)))
                    .map_err(invalid)?;
                let listen = Listen::Server(client.clone());
                let link = Self::server_link(client, config, connect_timeout, call_timeout).await?;
                (link, listen)
            }
            RedisTarget::Unix { path } => {
                let client = redis::Client::open(server(ConnectionAddr::Unix(path.into())))
                    .map_err(invalid)?;
                let listen = Listen::Server(client.clone());
                let link = Self::server_link(client, config, connect_timeout, call_timeout).await?;
                (link, listen)
            }
            RedisTarget::Cluster { nodes } => {
                let clients = nodes
                    .iter()
                    .map(|(host, port)| {
                        redis::Client::open(node_info(
                            ConnectionAddr::Tcp(host.clone(), *port),
                            0,
                            user,
                            password,
                        ))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(invalid)?;
                let link =
                    Self::cluster_link(nodes, &parsed, config, connect_timeout, call_timeout)
                        .await?;
                (link, Listen::Cluster(clients))
            }
            RedisTarget::Sentinel {
                sentinels,
                master,
                username,
                password,
                tls,
            } => {
                let transport = transport(*tls, &parsed)?;
                let sentinels = sentinels
                    .iter()
                    .map(|(host, port)| {
                        let addr = transport.addr(host.clone(), *port);
                        node_info(addr, 0, username, password)
                    })
                    .collect();
                let node = credentials(parsed.db, &parsed.username, &parsed.password);
                let master = master.clone();
                let link =
                    Link::sentinel(sentinels, master, node, transport, config, connect_timeout);
                (link, Listen::Sentinel)
            }
        };
        tracing::debug!(db = parsed.db, "connected to the redis store");
        let store = RedisStore {
            link,
            scripts: Arc::new(Scripts::new()),
            posts: Arc::default(),
            deletes: Arc::default(),
            call_timeout,
            min_replicas_ack: parsed.min_replicas_ack,
            slots: match parsed.target {
                RedisTarget::Cluster { .. } => Slots::Queue,
                _ => Slots::Project,
            },
            sweep: Arc::default(),
            db: parsed.db,
            listen: Arc::new(listen),
        };
        store.ensure_layout().await?;
        Ok(store)
    }

    /// The link to one server, connected within the call timeout.
    async fn server_link(
        client: redis::Client,
        config: ConnectionManagerConfig,
        connect_timeout: Duration,
        call_timeout: Duration,
    ) -> StoreResult<Arc<Link>> {
        let connecting = Link::server(client, config, connect_timeout);
        bounded(call_timeout.max(CONNECT_TIMEOUT), connecting)
            .await
            .map(Arc::new)
    }

    /// The link to a Redis Cluster through any of `nodes`, connected within the call
    /// timeout. The cluster client follows `MOVED`/`ASK` and the cluster's failovers;
    /// it retries a call a few times while a failover is under way.
    async fn cluster_link(
        nodes: &[(String, u16)],
        parsed: &RedisUri,
        config: ConnectionManagerConfig,
        connect_timeout: Duration,
        call_timeout: Duration,
    ) -> StoreResult<Arc<Link>> {
        let nodes = nodes
            .iter()
            .map(|(host, port)| {
                node_info(
                    ConnectionAddr::Tcp(host.clone(), *port),
                    0,
                    &parsed.username,
                    &parsed.password,
                )
            })
            .collect::<Vec<_>>();
        let mut builder = redis::cluster::ClusterClient::builder(nodes)
            .connection_timeout(connect_timeout)
            .response_timeout(call_timeout)
            .retries(CLUSTER_RETRIES);
        if let Some(user) = &parsed.username {
            builder = builder.username(user.clone());
        }
        if let Some(password) = &parsed.password {
            builder = builder.password(password.clone());
        }
        let client = builder
            .build()
            .map_err(|err| ZaqarError::bad_request(format!("invalid redis URI: {err}")))?;
        let connecting = Link::cluster(client, config, connect_timeout);
        bounded(call_timeout.max(CONNECT_TIMEOUT), connecting)
            .await
            .map(Arc::new)
    }

    /// The keys of `queue` in this store's slot layout.
    fn keys(&self, queue: &QueueRef) -> QueueKeys {
        QueueKeys::new(queue, self.slots)
    }

    /// Runs a script (see [`Self::call`]).
    async fn run<T: FromRedisValue>(&self, invocation: &ScriptInvocation<'_>) -> StoreResult<T> {
        self.call(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await
    }

    /// Runs one plain command (see [`Self::call`]).
    async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> StoreResult<T> {
        self.call(|mut conn| async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// The nodes that together hold every key (see [`Connection::nodes`]).
    async fn nodes(&self) -> StoreResult<Vec<connection::Node>> {
        self.call(|mut conn| async move { conn.nodes().await })
            .await
    }

    /// Runs one plain command on `node` (see [`Self::call`]).
    async fn query_on<T: FromRedisValue>(
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
    async fn call<T, F, Fut>(&self, op: F) -> StoreResult<T>
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

#[async_trait]
impl QueueStore for RedisStore {
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
}

#[async_trait]
impl MessageLog for RedisStore {
    async fn post_messages(
        &self,
        queue: &QueueRef,
        client_id: &str,
        messages: &[NewMessage],
    ) -> StoreResult<Vec<String>> {
        match self
            .post(queue, client_id, messages, false, None, None)
            .await?
        {
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
        self.post(queue, client_id, messages, true, expected_metadata, None)
            .await
    }

    async fn post_once(
        &self,
        queue: &QueueRef,
        post: Post<'_>,
        once: &Once,
    ) -> StoreResult<CheckedPost> {
        let Post {
            client_id,
            messages,
            plain,
            expected_metadata,
        } = post;
        self.post(
            queue,
            client_id,
            messages,
            plain,
            expected_metadata,
            Some(once),
        )
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
}

#[async_trait]
impl ClaimStore for RedisStore {
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
}

#[async_trait]
impl SubscriptionStore for RedisStore {
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

    async fn subscribed_queues(&self) -> StoreResult<Vec<QueueRef>> {
        self.queues_with_subscriptions().await
    }
}

#[async_trait]
impl MessageStore for RedisStore {
    async fn health(&self) -> StoreResult<()> {
        self.query::<String>(&redis::cmd("PING")).await.map(drop)
    }

    async fn volatility(&self) -> StoreResult<Option<String>> {
        self.persistence_gaps().await
    }

    async fn remove_expired_messages(&self) -> StoreResult<u64> {
        self.sweep_expired().await
    }

    fn relay_activity(&self, relay: crate::activity::Relay) {
        relay::spawn(self.clone(), relay);
    }
}
