//! `zaqar catalog`: the gRPC `CatalogService` and `AdminService` over a raft catalog
//! node (the default) or the catalog database named by `--uri`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use zaqar_catalog::raft::{RaftCatalog, RaftMetrics};
use zaqar_catalog::{AdminServer, CatalogServer};

use crate::cluster_auth::{self, ClusterAuthArgs, InsecureClusterArgs};
use crate::config::{load, redact, CatalogConfig};
use crate::grpc;
use crate::shutdown::Shutdown;

/// Flags (and their environment variables) of `zaqar catalog`; unset ones keep the
/// value of the config file, then the default.
#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// TOML file with the settings of this command.
    #[arg(long, env = "ZAQAR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the gRPC CatalogService and AdminService listen [default: 127.0.0.1:7000].
    #[arg(long, env = "ZAQAR_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// A database instead of raft: sqlite://PATH, postgres://USER@HOST:PORT/DB or
    /// etcd://HOST:PORT[,HOST:PORT...]/PREFIX. The raft flags are rejected with it.
    #[arg(long, env = "ZAQAR_URI", hide_env_values = true)]
    pub uri: Option<String>,
    /// Directory of this raft node's log and snapshot [default: ./zaqar-data/catalog-raft].
    #[arg(long, env = "ZAQAR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// This raft node's id, unique in the cluster and never reused [default: 1].
    #[arg(long, env = "ZAQAR_NODE_ID")]
    pub node_id: Option<u64>,
    /// Where the raft service listens for its peers [default: 127.0.0.1:7100].
    #[arg(long, env = "ZAQAR_RAFT_LISTEN")]
    pub raft_listen: Option<SocketAddr>,
    /// HOST:PORT under which the peers reach this node [default: --raft-listen].
    #[arg(long, env = "ZAQAR_RAFT_ADVERTISE")]
    pub raft_advertise: Option<String>,
    /// The local address raft connections to the peers leave from [default: the system's choice].
    #[arg(long, env = "ZAQAR_RAFT_SOURCE_IP")]
    pub raft_source_ip: Option<IpAddr>,
    /// Voters of a new cluster, ID=HOST:PORT,... [default: this node alone].
    #[arg(long, env = "ZAQAR_MEMBERS", value_delimiter = ',')]
    pub members: Option<Vec<String>>,
    /// Start without a cluster and wait to be added with `zaqar admin nodes add`.
    #[arg(long, env = "ZAQAR_JOIN")]
    pub join: bool,
    /// Cut a raft log damaged before its end at the damage (a copy is kept beside it) and
    /// start; the leader sends what was cut. Only while the other nodes are up.
    #[arg(long, env = "ZAQAR_REPAIR_LOG")]
    pub repair_log: bool,
    /// Require `authorization: Bearer TOKEN` on every AdminService call.
    #[arg(long, env = "ZAQAR_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterAuthArgs,
    #[command(flatten)]
    pub insecure: InsecureClusterArgs,
}

impl CatalogArgs {
    /// The validated settings: defaults, then the file, then env and flags.
    pub fn config(self) -> Result<CatalogConfig> {
        let mut config: CatalogConfig = load(self.config.as_deref())?;
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        let flags = [
            (self.uri, &mut config.uri),
            (self.raft_advertise, &mut config.raft_advertise),
            (self.admin_token, &mut config.admin_token),
        ];
        for (flag, setting) in flags {
            if flag.is_some() {
                *setting = flag;
            }
        }
        if self.data_dir.is_some() {
            config.data_dir = self.data_dir;
        }
        if self.node_id.is_some() {
            config.node_id = self.node_id;
        }
        if self.raft_listen.is_some() {
            config.raft_listen = self.raft_listen;
        }
        if self.raft_source_ip.is_some() {
            config.raft_source_ip = self.raft_source_ip;
        }
        if self.members.is_some() {
            config.members = self.members;
        }
        config.join |= self.join;
        config.repair_log |= self.repair_log;
        if self.cluster.cluster_token.is_some() {
            config.cluster_token = self.cluster.cluster_token;
        }
        config.insecure_cluster |= self.insecure.insecure_cluster;
        config.validated()
    }
}

/// Adds the pools' health report gauges of `catalog` to the process's metrics.
fn add_health_metrics(catalog: &CatalogServer) {
    let health = catalog.health_metrics();
    crate::metrics::add(|registry| registry.register_collector(Box::new(health)));
}

/// Opens the catalog and serves it until shutdown; a raft node is stopped after.
pub async fn run(config: CatalogConfig, shutdown: Shutdown) -> Result<()> {
    let listener = grpc::bind(config.listen).await?;
    let listen = listener.local_addr()?;
    let token = config.admin_token.clone();
    let cluster = cluster_auth::token(config.cluster_token.as_deref())?;
    // With mTLS, the admin API requires the client certificate too.
    let mutual = config.tls.as_ref().is_some_and(|tls| tls.mutual());
    let Some(uri) = &config.uri else {
        let raft = config.raft_config()?;
        let node = Arc::new(
            RaftCatalog::start(raft.clone())
                .await
                .context("starting the raft catalog node")?,
        );
        crate::metrics::add(|registry| {
            registry.register_collector(Box::new(RaftMetrics(node.clone())))
        });
        tracing::info!(%listen, node_id = raft.node_id, raft = %raft.advertise_addr,
            admin_token = token.is_some(), cluster_token = cluster.is_set(), tls = config.tls.is_some(),
            mtls = mutual, "catalog serving on raft");
        let catalog = CatalogServer::new(node.clone()).with_shutdown(shutdown.wait());
        add_health_metrics(&catalog);
        let router = grpc::server(config.tls.as_ref())?
            .add_service(cluster.require(catalog.into_service()))
            .add_service(
                cluster
                    .require(AdminServer::for_raft(node.clone()).into_service_with(token, mutual)),
            );
        let served = grpc::serve(router, listener, shutdown).await;
        node.shutdown().await;
        return served;
    };
    let backend = zaqar_catalog::open_backend(uri).await?;
    tracing::info!(%listen, uri = %redact(uri), admin_token = token.is_some(),
        cluster_token = cluster.is_set(), tls = config.tls.is_some(), mtls = mutual,
        "catalog serving");
    let kind = zaqar_catalog::backend_kind(uri);
    let catalog = CatalogServer::new(backend.clone()).with_shutdown(shutdown.wait());
    add_health_metrics(&catalog);
    let router = grpc::server(config.tls.as_ref())?
        .add_service(cluster.require(catalog.into_service()))
        .add_service(
            cluster.require(AdminServer::new(backend, kind).into_service_with(token, mutual)),
        );
    grpc::serve(router, listener, shutdown).await
}
