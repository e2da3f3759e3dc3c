//! `zaqar pool-node`: the gRPC `PoolService` over one message store, registered with
//! the catalog as a pool.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use zaqar_pool_node::{Notifier, PoolServer};
use zaqar_proto::pb::catalog_service_client::CatalogServiceClient;
use zaqar_proto::pb::Pool;
use zaqar_proto::ZaqarError;

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
    /// The message store: redis://HOST:PORT/DB or sqlite://PATH [default: redis://127.0.0.1:6379/0].
    #[arg(long, env = "ZAQAR_URI", hide_env_values = true)]
    pub uri: Option<String>,
    /// The pool's name in the catalog [default: pool1].
    #[arg(long, env = "ZAQAR_NAME")]
    pub name: Option<String>,
    /// The pool's share of new queues; 0 takes none [default: 100].
    #[arg(long, env = "ZAQAR_WEIGHT")]
    pub weight: Option<u32>,
    /// The pool group; empty for the default group [default: ""].
    #[arg(long, env = "ZAQAR_GROUP")]
    pub group: Option<String>,
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
            group,
            catalog,
            advertise,
            encryption_key,
        } = self;
        config.listen = listen.unwrap_or(config.listen);
        config.uri = uri.unwrap_or(config.uri);
        config.name = name.unwrap_or(config.name);
        config.weight = weight.unwrap_or(config.weight);
        config.group = group.unwrap_or(config.group);
        config.catalog = catalog.unwrap_or(config.catalog);
        config.advertise = advertise.or(config.advertise);
        config.encryption_key = encryption_key.or(config.encryption_key);
        config.validated()
    }
}

/// Opens the store, serves it, registers the pool with the catalog, and serves until
/// shutdown.
pub async fn run(config: PoolNodeConfig, shutdown: Shutdown) -> Result<()> {
    let store = zaqar_pool_node::open_store(&config.uri)
        .await
        .with_context(|| format!("opening the message store {}", redact(&config.uri)))?;
    let listener = grpc::bind(config.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, pool = %config.name, uri = %redact(&config.uri),
        "pool-node serving");
    let mut pool_server = PoolServer::new(store.clone());
    match config.cipher()? {
        Some(cipher) => pool_server = pool_server.with_encryption(cipher),
        None => tracing::info!(pool = %config.name,
            "no encryption_key: posts to queues with _enable_encrypt_messages are refused"),
    }
    if config.notifier.enabled {
        pool_server = pool_server.with_notifier(Notifier::spawn(store, &config.notifier)?);
    }
    let router = tonic::transport::Server::builder().add_service(pool_server.into_service());
    let server = tokio::spawn(grpc::serve(router, listener, shutdown.clone()));

    let pool = Pool {
        name: config.name.clone(),
        weight: config.weight,
        group: config.group.clone(),
        uri: config.uri.clone(),
        endpoint: config.endpoint(),
        options_json: String::new(),
    };
    let registered = tokio::select! {
        registered = register(&config.catalog, pool) => registered,
        () = shutdown.wait() => Ok(()),
    };
    if registered.is_err() {
        shutdown.trigger();
    }
    let served = server.await.context("the pool-node server task failed")?;
    registered.and(served)
}

/// Registers `pool` with the catalog at `catalog`: one endpoint or several catalog
/// nodes, comma-separated, tried in turn. While every node is unreachable or
/// unavailable it retries with a bounded backoff. A catalog that answers with any other
/// error rejected the pool: that is returned, since retrying cannot help.
pub async fn register(catalog: &str, pool: Pool) -> Result<()> {
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
            match try_register(endpoint, pool.clone()).await {
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

async fn try_register(catalog: &str, pool: Pool) -> Result<(), ZaqarError> {
    let endpoint = tonic::transport::Endpoint::from_shared(catalog.to_string())
        .map_err(|err| {
            ZaqarError::bad_request(format!("invalid catalog endpoint {catalog:?}: {err}"))
        })?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    let channel = endpoint
        .connect()
        .await
        .map_err(|err| ZaqarError::unavailable(format!("cannot connect: {err}")))?;
    CatalogServiceClient::new(channel)
        .register_pool(pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use zaqar_catalog::{CatalogBackend, CatalogServer, SqlCatalog};

    fn pool(endpoint: &str) -> Pool {
        Pool {
            name: "pool-a".into(),
            weight: 5,
            group: "fast".into(),
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
        let router = tonic::transport::Server::builder()
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
        let registering =
            tokio::spawn(async move { register(&endpoint, pool("http://10.0.0.1:7001")).await });
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
        assert_eq!((registered.weight, registered.group.as_str()), (5, "fast"));
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
            register(&endpoint, pool("not-an-endpoint")),
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
            register(&endpoints, pool("http://10.0.0.1:7001")),
        )
        .await
        .expect("registered through the live node")
        .unwrap();
        assert_eq!(backend.get_pool("pool-a").await.unwrap().weight, 5);
    }
}
