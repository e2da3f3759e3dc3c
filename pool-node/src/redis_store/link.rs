//! How the redis store reaches its server: one fixed address (a TCP host or a Unix
//! socket), a Redis Cluster, or the master a Sentinel group names, found again after
//! a failover.
//!
//! A fixed server is one `ConnectionManager`, which reconnects by itself; a cluster
//! is one `ClusterConnection`, which follows the cluster by itself. A Sentinel
//! pool asks the sentinels, in their order, which server is the master, checks with
//! `ROLE` that it is one, and keeps a `ConnectionManager` to it until a call shows it is
//! gone: refused, dropped, timed out, or demoted to a replica (`READONLY`). The next call
//! then asks the sentinels again. While no sentinel names a master that answers as one,
//! calls fail at once with `Unavailable` (503), never wait for a master to appear.
//! A master that a failover replaced may go on accepting writes for seconds (until the
//! sentinels demote it), so a watcher asks the sentinels every [`SENTINEL_POLL`] which
//! master they name, and drops the connection as soon as it is another.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, ConnectionInfo, ErrorKind, RedisConnectionInfo, RedisError, Value,
};
use zaqar_proto::ZaqarError;

use super::connection::{Connection, Transport};
use crate::store::StoreResult;

/// How often a Sentinel link asks the sentinels which server is the master.
pub(super) const SENTINEL_POLL: Duration = Duration::from_millis(500);
/// How long the calls of a Sentinel link share the failure of a resolution.
const RESOLVE_AGAIN_AFTER: Duration = Duration::from_millis(100);

/// A connection to the server the store uses now, and which resolution made it.
#[derive(Clone)]
pub(super) struct Current {
    pub conn: Connection,
    generation: u64,
    /// The master's address (Sentinel), as the sentinels named it.
    master: Option<(String, u16)>,
}

/// Where the server is found.
enum Source {
    /// One server or a cluster: its connection is made once and never replaced.
    Fixed,
    /// The master of a Sentinel group.
    Sentinel {
        /// The sentinels, in the URI's order.
        sentinels: Vec<ConnectionInfo>,
        /// The master's name in the sentinels' configuration.
        master: String,
        /// Database and credentials of the master (and its replicas).
        node: RedisConnectionInfo,
        /// Plain TCP or TLS, to the sentinels and to the master alike.
        transport: Transport,
    },
}

/// The store's way to its server.
pub(super) struct Link {
    source: Source,
    current: RwLock<Option<Current>>,
    /// One resolution at a time: the calls that fail together ask the sentinels once.
    /// Holds when the last one failed, and why: the calls waiting for it share its
    /// answer for [`RESOLVE_AGAIN_AFTER`] instead of each asking again in turn.
    resolving: tokio::sync::Mutex<Option<(Instant, ZaqarError)>>,
    generations: AtomicU64,
    config: ConnectionManagerConfig,
    /// The longest one connection attempt (to a sentinel or a master) takes.
    connect_timeout: Duration,
}

impl Link {
    /// A link to the one server of `client`, connected now.
    pub async fn server(
        client: redis::Client,
        config: ConnectionManagerConfig,
        connect_timeout: Duration,
    ) -> Result<Link, RedisError> {
        let conn = ConnectionManager::new_with_config(client, config.clone()).await?;
        Ok(Self::fixed(
            Connection::Server(conn),
            config,
            connect_timeout,
        ))
    }

    /// A link to a Redis Cluster through `client`, connected now.
    pub async fn cluster(
        client: redis::cluster::ClusterClient,
        config: ConnectionManagerConfig,
        connect_timeout: Duration,
    ) -> Result<Link, RedisError> {
        let conn = client.get_async_connection().await?;
        Ok(Self::fixed(
            Connection::Cluster(conn),
            config,
            connect_timeout,
        ))
    }

    fn fixed(conn: Connection, config: ConnectionManagerConfig, connect_timeout: Duration) -> Link {
        Link {
            source: Source::Fixed,
            current: RwLock::new(Some(Current {
                conn,
                generation: 0,
                master: None,
            })),
            resolving: tokio::sync::Mutex::new(None),
            generations: AtomicU64::new(0),
            config,
            connect_timeout,
        }
    }

    /// A link to the master named `master` by `sentinels`; connects at the first call,
    /// and watches the sentinels (every [`SENTINEL_POLL`]) while the link lives.
    pub fn sentinel(
        sentinels: Vec<ConnectionInfo>,
        master: String,
        node: RedisConnectionInfo,
        transport: Transport,
        config: ConnectionManagerConfig,
        connect_timeout: Duration,
    ) -> Arc<Link> {
        let link = Arc::new(Link {
            source: Source::Sentinel {
                sentinels,
                master,
                node,
                transport,
            },
            current: RwLock::new(None),
            resolving: tokio::sync::Mutex::new(None),
            generations: AtomicU64::new(0),
            config,
            connect_timeout,
        });
        tokio::spawn(watch_sentinels(Arc::downgrade(&link)));
        link
    }

    fn current(&self) -> Option<Current> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The connection to use now: the one in use, or (Sentinel) a new one to the
    /// master the sentinels name.
    pub async fn connection(&self) -> StoreResult<Current> {
        if let Some(current) = self.current() {
            return Ok(current);
        }
        let mut last_failure = self.resolving.lock().await;
        if let Some(current) = self.current() {
            return Ok(current);
        }
        if let Some((when, why)) = &*last_failure {
            if when.elapsed() < RESOLVE_AGAIN_AFTER {
                return Err(why.clone());
            }
        }
        let (conn, master) = self
            .resolve()
            .await
            .inspect_err(|why| *last_failure = Some((Instant::now(), why.clone())))?;
        *last_failure = None;
        let current = Current {
            conn: Connection::Server(conn),
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
            master: Some(master),
        };
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(current.clone());
        Ok(current)
    }

    /// After `err` on `used`: whether the call may be tried again on a new
    /// connection because it never ran (refused, or refused by a demoted master).
    /// A Sentinel link forgets a connection that failed so, or that dropped, so
    /// that the next call asks the sentinels again.
    pub fn failed(&self, used: &Current, err: &RedisError) -> bool {
        let never_ran = err.is_connection_refusal() || err.kind() == ErrorKind::ReadOnly;
        if never_ran || err.is_connection_dropped() || err.is_io_error() {
            self.forget(used);
        }
        never_ran
    }

    /// Drops `used` (Sentinel only), e.g. after a call on it timed out.
    pub fn forget(&self, used: &Current) {
        if matches!(self.source, Source::Fixed) {
            return;
        }
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if current
            .as_ref()
            .is_some_and(|c| c.generation == used.generation)
        {
            tracing::info!("the redis master stopped answering; asking the sentinels again");
            *current = None;
        }
    }

    /// A client of the master the sentinels name now (Sentinel only), for a connection
    /// of its own such as the activity relay's subscription.
    pub async fn master_client(&self) -> StoreResult<redis::Client> {
        let Source::Sentinel {
            node, transport, ..
        } = &self.source
        else {
            return Err(ZaqarError::internal("not a Sentinel link"));
        };
        let current = self.connection().await?;
        let Some((host, port)) = current.master else {
            return Err(ZaqarError::unavailable("no master named by the sentinels"));
        };
        let address = ConnectionInfo {
            addr: transport.addr(host, port),
            redis: node.clone(),
        };
        transport
            .client(address)
            .map_err(|err| ZaqarError::unavailable(err.to_string()))
    }

    /// The sentinels of a Sentinel link.
    fn sentinels(&self) -> &[ConnectionInfo] {
        match &self.source {
            Source::Sentinel { sentinels, .. } => sentinels,
            Source::Fixed => &[],
        }
    }

    /// A connection to the master the first sentinel that knows one names, and its address.
    async fn resolve(&self) -> StoreResult<(ConnectionManager, (String, u16))> {
        let Source::Sentinel {
            sentinels,
            master,
            node,
            transport,
        } = &self.source
        else {
            unreachable!("a fixed link always holds its connection");
        };
        let mut failures = Vec::new();
        for sentinel in sentinels {
            match self
                .master_named_by(sentinel, master, node, transport)
                .await
            {
                Ok(conn) => return Ok(conn),
                Err(why) => failures.push(format!("{}: {why}", sentinel.addr)),
            }
        }
        Err(ZaqarError::unavailable(format!(
            "no sentinel names a reachable master {master:?} ({})",
            failures.join("; ")
        )))
    }

    /// Asks `sentinel` for the master's address, connects to it and checks its role.
    async fn master_named_by(
        &self,
        sentinel: &ConnectionInfo,
        master: &str,
        node: &RedisConnectionInfo,
        transport: &Transport,
    ) -> Result<(ConnectionManager, (String, u16)), String> {
        let limit = self.connect_timeout;
        let mut asking = self.sentinel_connection(sentinel).await?;
        let (host, port) = self.master_address(&mut asking, master).await?;
        let address = ConnectionInfo {
            addr: transport.addr(host.clone(), port),
            redis: node.clone(),
        };
        let checked = async {
            let client = transport.client(address)?;
            let mut conn = ConnectionManager::new_with_config(client, self.config.clone()).await?;
            let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut conn).await?;
            Ok::<_, RedisError>((conn, role))
        };
        let (conn, role) = tokio::time::timeout(limit, checked)
            .await
            .map_err(|_| format!("master {host}:{port} gave no answer within {limit:?}"))?
            .map_err(|err| format!("master {host}:{port}: {err}"))?;
        match role.first() {
            Some(Value::BulkString(name)) if name == b"master" => {
                tracing::info!(%host, port, "the sentinels name this redis master");
                Ok((conn, (host, port)))
            }
            _ => Err(format!("{host}:{port} is not a master (yet)")),
        }
    }
}

impl Link {
    /// A connection to `sentinel`, made within the connect timeout.
    async fn sentinel_connection(
        &self,
        sentinel: &ConnectionInfo,
    ) -> Result<MultiplexedConnection, String> {
        let limit = self.connect_timeout;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(limit)
            .set_response_timeout(limit);
        let transport = match &self.source {
            Source::Sentinel { transport, .. } => transport.clone(),
            Source::Fixed => Transport::Plain,
        };
        let connecting = async {
            transport
                .client(sentinel.clone())?
                .get_multiplexed_async_connection_with_config(&config)
                .await
        };
        tokio::time::timeout(limit, connecting)
            .await
            .map_err(|_| format!("no answer within {limit:?}"))?
            .map_err(|err| err.to_string())
    }

    /// The address of `master` as the sentinel on `conn` names it.
    async fn master_address(
        &self,
        conn: &mut MultiplexedConnection,
        master: &str,
    ) -> Result<(String, u16), String> {
        let limit = self.connect_timeout;
        let mut ask = redis::cmd("SENTINEL");
        ask.arg("get-master-addr-by-name").arg(master);
        tokio::time::timeout(limit, ask.query_async::<Option<(String, u16)>>(conn))
            .await
            .map_err(|_| format!("no answer within {limit:?}"))?
            .map_err(|err| err.to_string())?
            .ok_or_else(|| "it watches no master of that name".to_string())
    }

    /// Drops the connection in use when the sentinel on `asking` (or, when it fails,
    /// the next one that answers) names another master. Returns the connection to
    /// ask next time.
    async fn check_master(
        &self,
        mut asking: Option<MultiplexedConnection>,
    ) -> Option<MultiplexedConnection> {
        let Source::Sentinel { master, .. } = &self.source else {
            return None;
        };
        let current = self.current()?;
        for sentinel in std::iter::once(None).chain(self.sentinels().iter().map(Some)) {
            let mut conn = match (asking.take(), sentinel) {
                (Some(conn), None) => conn,
                (None, None) => continue,
                (_, Some(sentinel)) => match self.sentinel_connection(sentinel).await {
                    Ok(conn) => conn,
                    Err(_) => continue,
                },
            };
            if let Ok(named) = self.master_address(&mut conn, master).await {
                if current.master.as_ref() != Some(&named) {
                    tracing::info!(
                        host = %named.0,
                        port = named.1,
                        "the sentinels name another redis master"
                    );
                    self.forget(&current);
                }
                return Some(conn);
            }
        }
        None
    }
}

/// Asks the sentinels of `link` which master they name, every [`SENTINEL_POLL`],
/// until the link is dropped.
async fn watch_sentinels(link: Weak<Link>) {
    let mut tick = tokio::time::interval(SENTINEL_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut asking = None;
    loop {
        tick.tick().await;
        let Some(link) = link.upgrade() else {
            return;
        };
        asking = link.check_master(asking).await;
    }
}
