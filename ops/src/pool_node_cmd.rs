//! `zaqar pool-node`: the gRPC `PoolService` over one message store, registered with
//! the catalog as a pool, reporting the store's health to every catalog node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use zaqar_pool_node::serve::{self, notifier_holder, CatalogLink, Settings};
use zaqar_proto::pb::Pool;
use zaqar_proto::stopping::Stopping;

use crate::cluster_auth::{ClusterAuthArgs, InsecureClusterArgs};
use crate::config::{load, redact, PoolNodeConfig};
use crate::grpc;
use crate::shutdown::Shutdown;

/// Flags (and their environment variables) of `zaqar pool-node`; unset ones keep the
/// value of the config file, then the default.
#[derive(Debug, Args)]
pub struct PoolNodeArgs {
    /// TOML file with the settings of this command.
    #[arg(long, env = "ZAQAR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the gRPC PoolService listens [default: 127.0.0.1:7001].
    #[arg(long, env = "ZAQAR_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The message store: redis://HOST:PORT/DB (or a Sentinel or Cluster URI), sqlite://PATH
    /// or mongodb://HOSTS/DATABASE?replicaSet=NAME [default: redis://127.0.0.1:6379/0].
    #[arg(long, env = "ZAQAR_URI", hide_env_values = true)]
    pub uri: Option<String>,
    /// The pool's name in the catalog [default: pool1].
    #[arg(long, env = "ZAQAR_NAME")]
    pub name: Option<String>,
    /// The pool's share of new queues; 0 takes none [default: 100].
    #[arg(long, env = "ZAQAR_WEIGHT")]
    pub weight: Option<u32>,
    /// The pool's flavor; empty for the default (`--flavor` is the same) [default: ""].
    #[arg(long = "group", visible_alias = "flavor", env = "ZAQAR_GROUP")]
    pub flavor: Option<String>,
    /// gRPC endpoint of the catalog, or of several catalog nodes, comma-separated, tried in
    /// turn while one is unreachable [default: http://127.0.0.1:7000].
    #[arg(long, env = "ZAQAR_CATALOG")]
    pub catalog: Option<String>,
    /// Endpoint api-nodes use to reach this pool-node [default: http://LISTEN].
    #[arg(long, env = "ZAQAR_ADVERTISE")]
    pub advertise: Option<String>,
    /// Key of message bodies encrypted at rest (`_enable_encrypt_messages`), base64 of 32
    /// bytes [default: none: posts to encrypting queues are refused].
    #[arg(long, env = "ZAQAR_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<String>,
    /// Seconds between two health reports to each catalog node [default: 5].
    #[arg(long, env = "ZAQAR_HEALTH_REPORT_INTERVAL")]
    pub health_report_interval: Option<u32>,
    /// Refuse to start on a store that can lose acknowledged messages (e.g. Redis
    /// without appendonly).
    #[arg(long, env = "ZAQAR_REQUIRE_DURABLE_STORE")]
    pub require_durable_store: bool,
    #[command(flatten)]
    pub cluster: ClusterAuthArgs,
    #[command(flatten)]
    pub insecure: InsecureClusterArgs,
}

impl PoolNodeArgs {
    /// The validated settings: defaults, then the file, then env and flags.
    pub fn config(self) -> Result<PoolNodeConfig> {
        let mut config: PoolNodeConfig = load(self.config.as_deref())?;
        let PoolNodeArgs {
            config: _,
            listen,
            uri,
            name,
            weight,
            flavor,
            catalog,
            advertise,
            encryption_key,
            health_report_interval,
            require_durable_store,
            cluster,
            insecure,
        } = self;
        config.listen = listen.unwrap_or(config.listen);
        config.uri = uri.unwrap_or(config.uri);
        config.name = name.unwrap_or(config.name);
        config.weight = weight.unwrap_or(config.weight);
        config.flavor = flavor.unwrap_or(config.flavor);
        config.catalog = catalog.unwrap_or(config.catalog);
        config.advertise = advertise.or(config.advertise);
        config.encryption_key = encryption_key.or(config.encryption_key);
        config.health_report_interval_secs =
            health_report_interval.unwrap_or(config.health_report_interval_secs);
        config.cluster_token = cluster.cluster_token.or(config.cluster_token);
        config.insecure_cluster |= insecure.insecure_cluster;
        config.require_durable_store |= require_durable_store;
        config.validated()
    }
}

/// Starts the pool-node (`zaqar_pool_node::serve`), serves it, registers the pool with
/// the catalog, and serves until shutdown.
pub async fn run(config: PoolNodeConfig, shutdown: Shutdown) -> Result<()> {
    let token = config.cluster_token()?;
    let catalog = CatalogLink {
        endpoints: config.catalog.clone(),
        tls: config.grpc_tls.clone(),
        token: token.clone(),
        pool: config.name.clone(),
    };
    let settings = Settings {
        store_uri: config.uri.clone(),
        require_durable_store: config.require_durable_store,
        cipher: config.cipher()?,
        notifier: config.notifier.enabled.then(|| {
            let holder = notifier_holder(&config.listen.to_string());
            (config.notifier.clone(), holder)
        }),
        catalog: catalog.clone(),
        health_report_interval: Duration::from_secs(u64::from(config.health_report_interval_secs)),
    };
    let node = serve::start(settings, Stopping::on(shutdown.wait())).await?;
    crate::metrics::watch_pool_node(&node, config.metrics_queues);
    let listener = grpc::bind(config.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, pool = %config.name, uri = %redact(&config.uri),
        "pool-node serving");
    let router =
        grpc::server(config.tls.as_ref())?.add_service(token.require(node.server.into_service()));
    let server = tokio::spawn(grpc::serve(router, listener, shutdown.clone()));

    let pool = Pool {
        name: config.name.clone(),
        weight: config.weight,
        flavor: config.flavor.clone(),
        uri: config.uri.clone(),
        endpoint: config.endpoint(),
        options_json: String::new(),
    };
    let registered = tokio::select! {
        registered = serve::register(&catalog, pool) => registered.map_err(anyhow::Error::from),
        () = shutdown.wait() => Ok(()),
    };
    if registered.is_err() {
        shutdown.trigger();
    }
    let served = server.await.context("the pool-node server task failed");
    // Its lanes flush their delivery cursors: nothing delivered is sent again after a restart.
    if let Some(notifier) = node.notifier {
        notifier.stopped().await;
    }
    registered.and(served?)
}
