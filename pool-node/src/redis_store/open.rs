//! Connecting a [`RedisStore`] to what its URI names: one server (TCP, TLS or a
//! Unix socket), a Redis Cluster, or the master of a Sentinel group.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManagerConfig;
use redis::{ConnectionAddr, ConnectionInfo, RedisConnectionInfo, RedisError};
use zaqar_proto::redis_uri::{RedisTarget, RedisUri};
use zaqar_proto::ZaqarError;

use super::calls::bounded;
use super::connection::Transport;
use super::keys::Slots;
use super::link::Link;
use super::relay::Listen;
use super::scripts::Scripts;
use super::{RedisStore, CALL_TIMEOUT, CLUSTER_RETRIES, CONNECT_TIMEOUT};
use crate::store::StoreResult;

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
}
