//! `zaqar pool-node`: the gRPC `PoolService` over one message store, registered with
//! the catalog as a pool, reporting the store's health to every catalog node.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use zaqar_api_node::tls::GrpcClientTls;
use zaqar_pool_node::{MessageStore, Notifier, PoolServer};
use zaqar_proto::cluster_auth::{AuthChannel, ClusterToken};
use zaqar_proto::pb::catalog_service_client::CatalogServiceClient;
use zaqar_proto::pb::{Pool, PoolHealthReport};
use zaqar_proto::ZaqarError;

use crate::cluster_auth::{ClusterAuthArgs, InsecureClusterArgs};
use crate::config::{load, redact, PoolNodeConfig};
use crate::grpc;
use crate::shutdown::Shutdown;

/// First wait after a failed registration; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);
/// Limits of one registration attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Opens the store, serves it, registers the pool with the catalog, and serves until
/// shutdown.
pub async fn run(config: PoolNodeConfig, shutdown: Shutdown) -> Result<()> {
    let store = zaqar_pool_node::open_store(&config.uri)
        .await
        .with_context(|| format!("opening the message store {}", redact(&config.uri)))?;
    check_durability(&*store, &redact(&config.uri), config.require_durable_store).await?;
    crate::metrics::watch_queue_depths(&store, config.metrics_queues);
    zaqar_pool_node::spawn_expiry_sweep(&store);
    let listener = grpc::bind(config.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, pool = %config.name, uri = %redact(&config.uri),
        "pool-node serving");
    let token = config.cluster_token()?;
    spawn_health_reports(
        &config.catalog,
        config.grpc_tls.as_ref(),
        &token,
        &config.name,
        store.clone(),
        Duration::from_secs(u64::from(config.health_report_interval_secs)),
        &shutdown,
    );
    let mut pool_server = PoolServer::new(store.clone()).with_shutdown(shutdown.wait());
    match config.cipher()? {
        Some(cipher) => pool_server = pool_server.with_encryption(cipher),
        None => tracing::info!(pool = %config.name,
            "no encryption_key: posts to queues with _enable_encrypt_messages are refused"),
    }
    let mut notifier = None;
    if config.notifier.enabled {
        let holder = notifier_holder(&config.listen.to_string());
        let spawned = Notifier::spawn(store, &config.notifier, &holder)?;
        let gauges = spawned.metrics();
        crate::metrics::add(|registry| registry.register_collector(Box::new(gauges)));
        notifier = Some(spawned.clone());
        pool_server = pool_server.with_notifier(spawned);
    }
    let router =
        grpc::server(config.tls.as_ref())?.add_service(token.require(pool_server.into_service()));
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
        registered = register(&config.catalog, config.grpc_tls.as_ref(), &token, pool) => registered,
        () = shutdown.wait() => Ok(()),
    };
    if registered.is_err() {
        shutdown.trigger();
    }
    let served = server.await.context("the pool-node server task failed");
    // Its lanes flush their delivery cursors: nothing delivered is sent again after a restart.
    if let Some(notifier) = notifier {
        notifier.stopped().await;
    }
    registered.and(served?)
}

/// Registers `pool` with the catalog at `catalog`: one endpoint or several catalog
/// nodes, comma-separated, tried in turn. While every node is unreachable or
/// unavailable it retries with a bounded backoff. A catalog that answers with any other
/// error rejected the pool: that is returned, since retrying cannot help.
pub async fn register(
    catalog: &str,
    tls: Option<&GrpcClientTls>,
    token: &ClusterToken,
    pool: Pool,
) -> Result<()> {
    let endpoints: Vec<&str> = catalog
        .split(',')
        .map(str::trim)
        .filter(|endpoint| !endpoint.is_empty())
        .collect();
    if endpoints.is_empty() {
        bail!("no catalog endpoint in {catalog:?}");
    }
    let mut delay = FIRST_RETRY_DELAY;
    let mut attempt = 1u32;
    loop {
        for endpoint in &endpoints {
            match try_register(endpoint, tls, token, pool.clone()).await {
                Ok(()) => {
                    tracing::info!(pool = %pool.name, catalog = endpoint, endpoint = %pool.endpoint,
                        attempt, "pool registered with the catalog");
                    return Ok(());
                }
                Err(err) if err.code.retryable() => {
                    tracing::warn!(pool = %pool.name, catalog = endpoint, attempt, error = %err,
                        "catalog node unreachable");
                }
                Err(err) => bail!(
                    "the catalog at {endpoint} rejected pool {:?}: {err}",
                    pool.name
                ),
            }
        }
        tracing::warn!(pool = %pool.name, catalog, attempt, retry_in_ms = delay.as_millis() as u64,
            "no catalog node took the registration, retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RETRY_DELAY);
        attempt += 1;
    }
}

/// The name of this process's notifier in the store's delivery leases: the host
/// name and `place` (what sets it apart on the host: its listen address or data
/// directory), so that pool-nodes sharing a store differ and a restarted one
/// takes its leases back.
pub fn notifier_holder(place: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    format!("{}/{place}", host.trim())
}

/// Reports the health of `store` (its own check) as pool `pool` to each catalog node
/// of `catalog` every `interval`, one task per node, until shutdown. A node that is
/// down is skipped until it answers again; a catalog that keeps no reports (an older
/// one) is logged once.
pub fn spawn_health_reports(
    catalog: &str,
    tls: Option<&GrpcClientTls>,
    token: &ClusterToken,
    pool: &str,
    store: Arc<dyn MessageStore>,
    interval: Duration,
    shutdown: &Shutdown,
) {
    for endpoint in catalog.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let reporter = HealthReporter {
            catalog: endpoint.to_string(),
            tls: tls.cloned(),
            token: token.clone(),
            pool: pool.to_string(),
            store: store.clone(),
            interval,
        };
        let stop = shutdown.wait();
        tokio::spawn(async move {
            tokio::select! {
                () = reporter.run() => {}
                () = stop => {}
            }
        });
    }
}

/// The store's health check, then what in its setup can lose acknowledged
/// messages (`MessageStore::volatility`).
async fn check_store(store: &dyn MessageStore) -> Result<Option<String>, ZaqarError> {
    store.health().await?;
    store.volatility().await
}

/// Refuses (with `require_durable`) or warns loudly about a store whose setup
/// can lose acknowledged messages; `what` names it in the message.
pub async fn check_durability(
    store: &dyn MessageStore,
    what: &str,
    require_durable: bool,
) -> Result<()> {
    let Some(gaps) = store.volatility().await? else {
        return Ok(());
    };
    if require_durable {
        bail!("require_durable_store: the message store {what} can lose acknowledged messages: {gaps}");
    }
    tracing::warn!(store = %what, %gaps,
        "VOLATILE STORE: this pool can lose messages it acknowledged (see docs/configuration.md, durable stores); \
         pools report it as degraded, and --require-durable-store refuses to start on it");
    Ok(())
}

/// Sends one pool's health reports to one catalog node.
struct HealthReporter {
    catalog: String,
    tls: Option<GrpcClientTls>,
    token: ClusterToken,
    pool: String,
    store: Arc<dyn MessageStore>,
    interval: Duration,
}

impl HealthReporter {
    async fn run(self) {
        let mut client = None;
        let mut refused = false;
        loop {
            let checked = tokio::time::timeout(self.interval, check_store(&*self.store)).await;
            let (ok, detail) = match checked {
                Ok(Ok(None)) => (true, String::new()),
                Ok(Ok(Some(gaps))) => (false, format!("volatile store: {gaps}")),
                Ok(Err(err)) => (false, err.description),
                Err(_) => (
                    false,
                    format!("the store's health check took over {:?}", self.interval),
                ),
            };
            let report = PoolHealthReport {
                pool: self.pool.clone(),
                ok,
                detail,
                interval_seconds: u32::try_from(self.interval.as_secs()).unwrap_or(u32::MAX),
            };
            match self.send(&mut client, report).await {
                Ok(()) => refused = false,
                Err(err) if err.code.retryable() => {
                    client = None;
                    tracing::debug!(pool = %self.pool, catalog = %self.catalog, error = %err,
                        "health report not delivered");
                }
                Err(err) => {
                    if !refused {
                        tracing::warn!(pool = %self.pool, catalog = %self.catalog, error = %err,
                            "the catalog refused the health report");
                    }
                    refused = true;
                }
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    async fn send(
        &self,
        client: &mut Option<CatalogServiceClient<AuthChannel>>,
        report: PoolHealthReport,
    ) -> Result<(), ZaqarError> {
        let connected = match client {
            Some(connected) => connected,
            None => {
                let timeout = CALL_TIMEOUT.min(self.interval);
                let channel = grpc::connect(
                    &self.catalog,
                    self.tls.as_ref(),
                    &self.token,
                    CONNECT_TIMEOUT,
                    timeout,
                )
                .await?;
                client.insert(CatalogServiceClient::new(channel))
            }
        };
        connected.report_health(report).await?;
        Ok(())
    }
}

async fn try_register(
    catalog: &str,
    tls: Option<&GrpcClientTls>,
    token: &ClusterToken,
    pool: Pool,
) -> Result<(), ZaqarError> {
    let channel = grpc::connect(catalog, tls, token, CONNECT_TIMEOUT, CALL_TIMEOUT).await?;
    CatalogServiceClient::new(channel)
        .register_pool(pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zaqar_catalog::{CatalogBackend, CatalogServer, SqlCatalog};
    use zaqar_proto::pb;

    fn pool(endpoint: &str) -> Pool {
        Pool {
            name: "pool-a".into(),
            weight: 5,
            flavor: "fast".into(),
            uri: "redis://127.0.0.1:6379/0".into(),
            endpoint: endpoint.into(),
            options_json: String::new(),
        }
    }

    /// A catalog on SQLite served on `listener`.
    async fn catalog(
        listener: tokio::net::TcpListener,
        dir: &tempfile::TempDir,
    ) -> Arc<SqlCatalog> {
        let uri = format!("sqlite://{}/catalog.db", dir.path().display());
        let backend = Arc::new(SqlCatalog::open(&uri).await.unwrap());
        let router = grpc::server(None)
            .unwrap()
            .add_service(CatalogServer::new(backend.clone()).into_service());
        tokio::spawn(grpc::serve(router, listener, Shutdown::default()));
        backend
    }

    #[tokio::test]
    async fn registration_waits_for_a_catalog_that_starts_late() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let registering = tokio::spawn(async move {
            register(
                &endpoint,
                None,
                &ClusterToken::none(),
                pool("http://10.0.0.1:7001"),
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            !registering.is_finished(),
            "registered with no catalog running"
        );

        let listener = grpc::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .unwrap();
        let backend = catalog(listener, &dir).await;
        tokio::time::timeout(Duration::from_secs(10), registering)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let registered = backend.get_pool("pool-a").await.unwrap();
        assert_eq!((registered.weight, registered.flavor.as_str()), (5, "fast"));
        assert_eq!(registered.endpoint, "http://10.0.0.1:7001");
    }

    #[tokio::test]
    async fn a_rejected_registration_is_an_error_not_a_retry() {
        let dir = tempfile::tempdir().unwrap();
        let listener = grpc::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        catalog(listener, &dir).await;
        let rejected = tokio::time::timeout(
            Duration::from_secs(5),
            register(
                &endpoint,
                None,
                &ClusterToken::none(),
                pool("not-an-endpoint"),
            ),
        )
        .await
        .expect("no retry on a rejection");
        assert!(format!("{:#}", rejected.unwrap_err()).contains("rejected"));
    }

    #[tokio::test]
    async fn registration_skips_a_dead_catalog_node() {
        let dir = tempfile::tempdir().unwrap();
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let listener = grpc::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let live = listener.local_addr().unwrap();
        let backend = catalog(listener, &dir).await;
        let endpoints = format!("http://{dead}, http://{live}");
        tokio::time::timeout(
            Duration::from_secs(5),
            register(
                &endpoints,
                None,
                &ClusterToken::none(),
                pool("http://10.0.0.1:7001"),
            ),
        )
        .await
        .expect("registered through the live node")
        .unwrap();
        assert_eq!(backend.get_pool("pool-a").await.unwrap().weight, 5);
    }

    #[tokio::test]
    async fn a_re_registration_keeps_what_an_admin_changed() {
        let dir = tempfile::tempdir().unwrap();
        let listener = grpc::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let backend = catalog(listener, &dir).await;
        register(
            &endpoint,
            None,
            &ClusterToken::none(),
            pool("http://10.0.0.1:7001"),
        )
        .await
        .unwrap();
        let mut changed = backend.get_pool("pool-a").await.unwrap();
        changed.weight = 0;
        changed.flavor = "slow".into();
        backend.add_pool(changed).await.unwrap();

        register(
            &endpoint,
            None,
            &ClusterToken::none(),
            pool("http://10.0.0.2:7001"),
        )
        .await
        .unwrap();
        let stored = backend.get_pool("pool-a").await.unwrap();
        assert_eq!(
            (
                stored.weight,
                stored.flavor.as_str(),
                stored.endpoint.as_str()
            ),
            (0, "slow", "http://10.0.0.2:7001")
        );
    }

    #[tokio::test]
    async fn the_store_health_reaches_every_catalog_node() {
        let dir = tempfile::tempdir().unwrap();
        let store_uri = format!("sqlite://{}/messages.db", dir.path().display());
        let store = zaqar_pool_node::open_store(&store_uri).await.unwrap();
        let mut endpoints = Vec::new();
        for node in ["a", "b"] {
            let node_dir = dir.path().join(node);
            std::fs::create_dir_all(&node_dir).unwrap();
            let listener = grpc::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .unwrap();
            endpoints.push(format!("http://{}", listener.local_addr().unwrap()));
            let uri = format!("sqlite://{}/catalog.db", node_dir.display());
            let backend = Arc::new(SqlCatalog::open(&uri).await.unwrap());
            backend
                .add_pool(zaqar_catalog::PoolSpec {
                    name: "pool-a".into(),
                    weight: 1,
                    flavor: String::new(),
                    uri: store_uri.clone(),
                    endpoint: "http://10.0.0.1:7001".into(),
                    options_json: String::new(),
                })
                .await
                .unwrap();
            let router = grpc::server(None)
                .unwrap()
                .add_service(CatalogServer::new(backend).into_service());
            tokio::spawn(grpc::serve(router, listener, Shutdown::default()));
        }
        let shutdown = Shutdown::default();
        spawn_health_reports(
            &endpoints.join(","),
            None,
            &ClusterToken::none(),
            "pool-a",
            store,
            Duration::from_secs(1),
            &shutdown,
        );
        for endpoint in &endpoints {
            let mut client = CatalogServiceClient::connect(endpoint.clone())
                .await
                .unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let reply = client.pool_health(pb::Empty {}).await.unwrap().into_inner();
                let status = &reply.pools[0];
                if status.status == "ok" {
                    assert!(status.healthy);
                    break;
                }
                assert_eq!(status.status, "no report", "{status:?}");
                assert!(tokio::time::Instant::now() < deadline, "no report arrived");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        shutdown.trigger();
    }
}
