//! One connection type over the two the redis crate gives: to one server (a
//! `ConnectionManager`, which reconnects by itself) or to a Redis Cluster (a
//! `ClusterConnection`, which follows `MOVED`/`ASK` redirections and the
//! cluster's failovers by itself). Both are cheap to clone and multiplex calls.

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, RedisResult, Value};

/// A node a command that is about the whole keyspace (`SCAN`, `CONFIG GET`) goes
/// to: the one server, or one master of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Node {
    TheServer,
    Master { host: String, port: u16 },
}

/// A connection to the store's server or cluster.
// Cloned for every call: boxing the larger variant would allocate each time.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub(super) enum Connection {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Server(conn) => conn.req_packed_command(cmd),
            Connection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Server(conn) => conn.req_packed_commands(cmd, offset, count),
            Connection::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Server(conn) => conn.get_db(),
            Connection::Cluster(conn) => conn.get_db(),
        }
    }
}

impl Connection {
    /// The nodes that together hold every key: the server, or each master of the cluster.
    pub async fn nodes(&mut self) -> RedisResult<Vec<Node>> {
        let Connection::Cluster(_) = self else {
            return Ok(vec![Node::TheServer]);
        };
        // Each entry: start slot, end slot, then the master [host, port, id, ...]
        // and its replicas.
        let ranges: Vec<Vec<Value>> = redis::cmd("CLUSTER").arg("SLOTS").query_async(self).await?;
        let mut nodes = Vec::new();
        for range in ranges {
            if let Some(master) = range.get(2) {
                let fields: Vec<Value> = FromRedisValue::from_redis_value(master)?;
                let (Some(host), Some(port)) = (fields.first(), fields.get(1)) else {
                    continue;
                };
                let node = Node::Master {
                    host: String::from_redis_value(host)?,
                    port: u16::from_redis_value(port)?,
                };
                if !nodes.contains(&node) {
                    nodes.push(node);
                }
            }
        }
        Ok(nodes)
    }

    /// Runs `cmd` on `node`.
    pub async fn query_on<T: FromRedisValue>(&mut self, node: &Node, cmd: &Cmd) -> RedisResult<T> {
        match (self, node) {
            (Connection::Cluster(conn), Node::Master { host, port }) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                T::from_redis_value(&conn.route_command(cmd, routing).await?)
            }
            (conn, _) => cmd.query_async(conn).await,
        }
    }
}

/// How a server is reached: plain TCP, or TLS with its certificate checked against
/// `roots` (a PEM file's content) or, without them, the system's roots.
#[derive(Clone, Debug, Default)]
pub(super) enum Transport {
    #[default]
    Plain,
    Tls {
        roots: Option<Vec<u8>>,
    },
}

impl Transport {
    /// The address of `host:port` over this transport.
    pub fn addr(&self, host: String, port: u16) -> redis::ConnectionAddr {
        match self {
            Transport::Plain => redis::ConnectionAddr::Tcp(host, port),
            Transport::Tls { .. } => redis::ConnectionAddr::TcpTls {
                host,
                port,
                insecure: false,
                tls_params: None,
            },
        }
    }

    /// The redis crate's client of `info` (whose address came from [`Self::addr`]).
    pub fn client(&self, info: redis::ConnectionInfo) -> RedisResult<redis::Client> {
        match self {
            Transport::Tls { roots: Some(roots) } => {
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(roots.clone()),
                };
                redis::Client::build_with_tls(info, certificates)
            }
            _ => redis::Client::open(info),
        }
    }
}
