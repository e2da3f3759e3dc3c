//! `zaqar standalone`: the catalog, one pool-node and an api-node in one process.
//!
//! The catalog (a single-node raft catalog in `DATA_DIR/catalog-raft`) and the
//! pool-node (the embedded store, or `--pool-uri`) serve gRPC on ephemeral loopback
//! ports, as does the raft node; only the REST port is meant for users. Those
//! gRPC ports require a cluster token made at each start and known only to this
//! process, so that other local users cannot call them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use tokio::task::JoinSet;
use zaqar_api_node::routing::InProcessPools;
use zaqar_api_node::Listeners;
use zaqar_catalog::raft::{DirLock, RaftCatalog, RaftConfig, RaftMetrics};
use zaqar_catalog::{AdminServer, CatalogBackend, CatalogServer, PoolSpec};
use zaqar_pool_node::serve::{self, notifier_holder, CatalogLink, Settings};
use zaqar_pool_node::MessageCipher;
use zaqar_proto::cluster_auth::ClusterToken;
use zaqar_proto::stopping::Stopping;

use crate::api_node_cmd::{bind_api_node, serve_api_node, FrontDoorArgs};
use crate::config::{load, redact, StandaloneConfig};
use crate::grpc;
use crate::shutdown::Shutdown;

/// The name of the one pool in the standalone catalog.
pub const POOL_NAME: &str = "default";
const LOOPBACK: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Flags (and their environment variables) of `zaqar standalone`; unset ones keep the
/// value of the config file, then the default.
#[derive(Debug, Args)]
pub struct StandaloneArgs {
    /// TOML file with the settings of this command (data_dir, pool_uri, [api]).
    #[arg(long, env = "ZAQAR_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub front_door: FrontDoorArgs,
    /// Directory of the catalog and the embedded message store [default: ./zaqar-data].
    #[arg(long, env = "ZAQAR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Message store of the pool instead of the embedded one, e.g. redis://127.0.0.1:6379/0
    /// [default: sqlite://DATA_DIR/messages.db].
    #[arg(long, env = "ZAQAR_POOL_URI", hide_env_values = true)]
    pub pool_uri: Option<String>,
    /// Key of message bodies encrypted at rest, base64 of 32 bytes
    /// [default: generated once into DATA_DIR/encryption-key].
    #[arg(long, env = "ZAQAR_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<String>,
    /// Refuse to start on a store that can lose acknowledged messages (e.g. a --pool-uri
    /// Redis without appendonly).
    #[arg(long, env = "ZAQAR_REQUIRE_DURABLE_STORE")]
    pub require_durable_store: bool,
}

impl StandaloneArgs {
    /// The validated settings: defaults, then the file, then env and flags.
    pub fn config(self) -> Result<StandaloneConfig> {
        let mut config: StandaloneConfig = load(self.config.as_deref())?;
        self.front_door.apply(&mut config.api);
        if let Some(data_dir) = self.data_dir {
            config.data_dir = data_dir;
        }
        if let Some(pool_uri) = self.pool_uri {
            config.pool_uri = Some(pool_uri);
        }
        if let Some(encryption_key) = self.encryption_key {
            config.encryption_key = Some(encryption_key);
        }
        config.require_durable_store |= self.require_durable_store;
        config.validated()
    }
}

/// Runs the three roles until shutdown, or until one of them fails (which stops the
/// others).
pub async fn run(config: StandaloneConfig, shutdown: Shutdown) -> Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let _lock = DirLock::acquire(&config.data_dir)?;
    // The ports asked for first: the internal ones below are free ports the system
    // picks, and one of them could otherwise be the port asked for.
    let listeners = bind_api_node(&config.api)?;

    let token = process_token();
    let raft_listener = grpc::bind(LOOPBACK).await?;
    let mut raft = RaftConfig::new(1, raft_listener.local_addr()?, config.catalog_dir());
    raft.cluster_token = token.clone();
    let raft = raft.single_node();
    let node = RaftCatalog::start_on(raft, raft_listener)
        .await
        .with_context(|| format!("opening the catalog in {}", config.catalog_dir().display()))?;
    let node = Arc::new(node);
    crate::metrics::add(|registry| {
        registry.register_collector(Box::new(RaftMetrics(node.clone())))
    });
    let outcome = serve_roles(config, listeners, node.clone(), &token, shutdown).await;
    node.shutdown().await;
    outcome
}

/// Registers the pool and serves the roles on top of the raft catalog `node`.
async fn serve_roles(
    config: StandaloneConfig,
    listeners: Listeners,
    node: Arc<RaftCatalog>,
    token: &ClusterToken,
    shutdown: Shutdown,
) -> Result<()> {
    let admin = AdminServer::for_raft(node.clone());
    let catalog: Arc<dyn CatalogBackend> = node;
    let catalog_listener = grpc::bind(LOOPBACK).await?;
    let catalog_endpoint = format!("http://{}", catalog_listener.local_addr()?);

    let pool_uri = config.pool_uri();
    let pool_listener = grpc::bind(LOOPBACK).await?;
    let pool_endpoint = format!("http://{}", pool_listener.local_addr()?);

    let mut roles = JoinSet::new();
    // The admin API (for api-node's /v2/pools and /v2/flavors) needs no admin
    // token: only this process knows the cluster token.
    let catalog_server = CatalogServer::new(catalog.clone()).with_shutdown(shutdown.wait());
    let health = catalog_server.health_metrics();
    crate::metrics::add(|registry| registry.register_collector(Box::new(health)));
    let catalog_router = grpc::server(None)?
        .add_service(token.require(catalog_server.into_service()))
        .add_service(token.require(admin.into_service(None)));
    roles.spawn(role(
        "catalog",
        grpc::serve(catalog_router, catalog_listener, shutdown.clone()),
    ));
    let data_dir = std::fs::canonicalize(&config.data_dir).unwrap_or(config.data_dir.clone());
    let settings = Settings {
        store_uri: pool_uri.clone(),
        require_durable_store: config.require_durable_store,
        cipher: Some(encryption_key(&config)?),
        notifier: config.notifier.enabled.then(|| {
            let holder = notifier_holder(&data_dir.display().to_string());
            (config.notifier.clone(), holder)
        }),
        catalog: CatalogLink {
            endpoints: catalog_endpoint.clone(),
            tls: None,
            token: token.clone(),
            pool: POOL_NAME.to_string(),
        },
        health_report_interval: std::time::Duration::from_secs(5),
    };
    let node = serve::start(settings, Stopping::on(shutdown.wait())).await?;
    crate::metrics::watch_pool_node(&node, config.metrics_queues);
    let pool_server = node.server;
    // Registered once the store is open and checked (a store that cannot serve
    // writes nothing to the catalog). Each start has new ports; placements follow
    // the pool's re-registered endpoint, and an admin's weight or options stay.
    catalog
        .register_pool(PoolSpec {
            name: POOL_NAME.to_string(),
            weight: 100,
            flavor: String::new(),
            uri: pool_uri.clone(),
            endpoint: pool_endpoint.clone(),
            options_json: String::new(),
        })
        .await?;
    tracing::info!(data_dir = %config.data_dir.display(), pool_uri = %redact(&pool_uri),
        catalog = %catalog_endpoint, pool = %pool_endpoint, "standalone roles wired");

    // The api-node calls the pool-node directly; its gRPC server stays for anything
    // else that reaches the registered endpoint (`zaqar admin`, health checks).
    let in_process = InProcessPools::from([(
        pool_endpoint.clone(),
        Arc::new(pool_server.clone()) as Arc<zaqar_proto::DynPoolService>,
    )]);
    let pool_router = grpc::server(None)?.add_service(token.require(pool_server.into_service()));
    roles.spawn(role(
        "pool-node",
        grpc::serve(pool_router, pool_listener, shutdown.clone()),
    ));
    let signed_url_secret = signed_url_secret(&config)?;
    let mut api = config.api;
    api.catalog_endpoint = catalog_endpoint;
    api.signed_url_secret_key = Some(signed_url_secret);
    api.cluster_token = Some(token.secret().to_string());
    tracing::info!(listen = %api.listen, "zaqar standalone serving REST");
    roles.spawn(role(
        "api-node",
        serve_api_node(listeners, api, in_process, shutdown.clone()),
    ));

    // The first role to stop, for whatever reason, stops the others.
    let mut outcome = Ok(());
    while let Some(finished) = roles.join_next().await {
        shutdown.trigger();
        let result = finished
            .context("a role panicked")
            .and_then(|result| result);
        if let Err(err) = result {
            tracing::error!(error = %format!("{err:#}"), "standalone role failed");
            if outcome.is_ok() {
                outcome = Err(err);
            }
        }
    }
    // Its lanes flush their delivery cursors: nothing delivered is sent again after a restart.
    if let Some(notifier) = node.notifier {
        notifier.stopped().await;
    }
    outcome
}

/// A cluster token for this process alone: 256 random bits.
fn process_token() -> ClusterToken {
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    ClusterToken::new(Some(&token)).expect("64 hex digits make a valid token")
}

/// `serving`, with the role named in its error.
async fn role(
    name: &'static str,
    serving: impl std::future::Future<Output = Result<()>>,
) -> Result<()> {
    serving.await.with_context(|| format!("{name} stopped"))
}

/// The secret of pre-signed URLs: the configured one, else one generated at the
/// first start and kept in `DATA_DIR/signed-url-secret` (mode 0600), so shared
/// URLs stay valid across restarts.
fn signed_url_secret(config: &StandaloneConfig) -> Result<String> {
    if let Some(secret) = &config.api.signed_url_secret_key {
        return Ok(secret.clone());
    }
    data_dir_secret(&config.data_dir.join("signed-url-secret"), || {
        format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        )
    })
}

/// The key of message bodies encrypted at rest: the configured one, else one
/// generated at the first start and kept in `DATA_DIR/encryption-key` (mode 0600).
/// Encrypted messages are readable only with it: back it up with the data.
fn encryption_key(config: &StandaloneConfig) -> Result<MessageCipher> {
    if let Some(cipher) = crate::config::cipher_of(config.encryption_key.as_deref())? {
        return Ok(cipher);
    }
    let path = config.data_dir.join("encryption-key");
    let key = data_dir_secret(&path, || {
        tracing::info!(path = %path.display(), "generating the message encryption key");
        MessageCipher::generate_base64_key()
    })?;
    MessageCipher::from_base64_key(&key)
        .map_err(|err| anyhow::anyhow!("{} (in {})", err.description, path.display()))
}

/// The secret kept in the file `path`, or a new one from `generate` written there
/// (mode 0600) when the file is missing or empty. A file that cannot be read is an
/// error, never overwritten.
fn data_dir_secret(path: &Path, generate: impl FnOnce() -> String) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(secret) if !secret.trim().is_empty() => return Ok(secret.trim().to_string()),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    }
    let secret = generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    std::io::Write::write_all(&mut file, secret.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &tempfile::TempDir) -> StandaloneConfig {
        StandaloneConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        }
    }

    #[test]
    fn the_encryption_key_is_generated_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(&dir);
        let first = encryption_key(&config).unwrap();
        let path = dir.path().join("encryption-key");
        let stored = std::fs::read_to_string(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let sealed = first.encrypt(r#"{"kept":true}"#).unwrap();
        let again = encryption_key(&config).unwrap();
        assert_eq!(again.decrypt(&sealed).unwrap(), r#"{"kept":true}"#);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), stored);
    }

    #[test]
    fn a_configured_key_wins_and_a_corrupt_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let key = MessageCipher::generate_base64_key();
        let configured = StandaloneConfig {
            encryption_key: Some(key.clone()),
            ..config(&dir)
        };
        let sealed = encryption_key(&configured).unwrap().encrypt("{}").unwrap();
        assert!(!dir.path().join("encryption-key").exists());
        let same = MessageCipher::from_base64_key(&key).unwrap();
        assert_eq!(same.decrypt(&sealed).unwrap(), "{}");

        std::fs::write(dir.path().join("encryption-key"), "not a key").unwrap();
        let err = encryption_key(&config(&dir)).unwrap_err();
        assert!(format!("{err:#}").contains("encryption-key"), "{err:#}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("encryption-key")).unwrap(),
            "not a key"
        );
    }
}
