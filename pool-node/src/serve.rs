//! A pool-node's wiring, shared by `zaqar pool-node` and `zaqar standalone`: the
//! store opened and checked, its expiry sweep, the `PoolService` over it (with the
//! encryption key, the notifier and the shutdown signal), the store's health reported
//! to every catalog node, and the pool's registration with the catalog. The caller
//! serves [`PoolNode::server`] on its gRPC server.

use std::sync::Arc;
use std::time::Duration;

use zaqar_proto::cluster_auth::{AuthChannel, ClusterToken};
use zaqar_proto::grpc_client::{self, split_endpoints, GrpcClientTls};
use zaqar_proto::pb::catalog_service_client::CatalogServiceClient;
use zaqar_proto::pb::{Pool, PoolHealthReport};
use zaqar_proto::stopping::Stopping;
use zaqar_proto::uri::redact;
use zaqar_proto::ZaqarError;

use crate::{MessageCipher, MessageStore, Notifier, NotifierConfig, PoolServer};

/// First wait after a failed registration; it doubles up to [`MAX_RETRY_DELAY`].
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);
/// Limits of one call to a catalog node (registration, health report).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What [`start`] wires.
pub struct Settings {
    /// The message store (`redis://`, `sqlite://`, `mongodb://`).
    pub store_uri: String,
    /// Refuse a store whose setup can lose acknowledged messages.
    pub require_durable_store: bool,
    /// The key of encrypting queues' bodies; without it their posts are refused.
    pub cipher: Option<MessageCipher>,
    /// The notifier of subscriptions, when it runs: its settings and the name of
    /// this process in the store's delivery leases (see [`notifier_holder`]).
    pub notifier: Option<(NotifierConfig, String)>,
    /// Where the store's health is reported.
    pub catalog: CatalogLink,
    /// Time between two health reports to each catalog node.
    pub health_report_interval: Duration,
}

/// How a pool-node reaches the catalog: its nodes, TLS, token, and the pool's name.
#[derive(Clone)]
pub struct CatalogLink {
    /// One catalog node, or several, comma-separated.
    pub endpoints: String,
    pub tls: Option<GrpcClientTls>,
    pub token: ClusterToken,
    /// The pool's name in the catalog.
    pub pool: String,
}

/// A started pool-node.
pub struct PoolNode {
    pub store: Arc<dyn MessageStore>,
    /// The `PoolService` to serve.
    pub server: PoolServer,
    /// The notifier, when it runs: [`Notifier::stopped`] after the server stops
    /// flushes its delivery cursors.
    pub notifier: Option<Notifier>,
}

/// Why a pool-node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("opening the message store {uri}: {source}")]
    Store { uri: String, source: ZaqarError },
    #[error(
        "require_durable_store: the message store {uri} can lose acknowledged messages: {gaps}"
    )]
    Volatile { uri: String, gaps: String },
    #[error("starting the notifier: {0}")]
    Notifier(ZaqarError),
}

/// Why the catalog did not take the pool's registration.
#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error("no catalog endpoint in {0:?}")]
    NoEndpoint(String),
    #[error("the catalog at {endpoint} rejected pool {pool:?}: {source}")]
    Rejected {
        endpoint: String,
        pool: String,
        source: ZaqarError,
    },
}

/// Opens and checks the store, starts its expiry sweep, its health reports and its
/// notifier, and makes the `PoolService` over it. The health reports and the
/// `WatchQueues` streams stop with `stopping`; the sweep, the relay and the notifier
/// when the store and the server are dropped.
pub async fn start(settings: Settings, stopping: Stopping) -> Result<PoolNode, StartError> {
    let shown = redact(&settings.store_uri);
    let store = crate::open_store(&settings.store_uri)
        .await
        .map_err(|source| StartError::Store {
            uri: shown.clone(),
            source,
        })?;
    check_durability(&*store, &shown, settings.require_durable_store).await?;
    crate::spawn_expiry_sweep(&store);
    spawn_health_reports(
        &settings.catalog,
        store.clone(),
        settings.health_report_interval,
        &stopping,
    );
    let mut server = PoolServer::new(store.clone()).with_shutdown({
        let mut stopping = stopping.clone();
        async move { stopping.stopped().await }
    });
    match settings.cipher {
        Some(cipher) => server = server.with_encryption(cipher),
        None => tracing::info!(pool = %settings.catalog.pool,
            "no encryption_key: posts to queues with _enable_encrypt_messages are refused"),
    }
    let mut notifier = None;
    if let Some((config, holder)) = &settings.notifier {
        let spawned =
            Notifier::spawn(store.clone(), config, holder).map_err(StartError::Notifier)?;
        server = server.with_notifier(spawned.clone());
        notifier = Some(spawned);
    }
    Ok(PoolNode {
        store,
        server,
        notifier,
    })
}

/// Refuses (with `require_durable`) or warns loudly about a store whose setup
/// can lose acknowledged messages; `shown` names it.
async fn check_durability(
    store: &dyn MessageStore,
    shown: &str,
    require_durable: bool,
) -> Result<(), StartError> {
    let volatility = store
        .volatility()
        .await
        .map_err(|source| StartError::Store {
            uri: shown.to_string(),
            source,
        })?;
    let Some(gaps) = volatility else {
        return Ok(());
    };
    if require_durable {
        return Err(StartError::Volatile {
            uri: shown.to_string(),
            gaps,
        });
    }
    tracing::warn!(store = %shown, %gaps,
        "VOLATILE STORE: this pool can lose messages it acknowledged (see docs/configuration.md, durable stores); \
         pools report it as degraded, and --require-durable-store refuses to start on it");
    Ok(())
}

/// Registers `pool` with the catalog nodes of `link`, tried in turn. While every
/// node is unreachable or unavailable it retries with a bounded backoff. A catalog
/// that answers with any other error rejected the pool: that is returned, since
/// retrying cannot help.
pub async fn register(link: &CatalogLink, pool: Pool) -> Result<(), RegistrationError> {
    let endpoints = split_endpoints(&link.endpoints);
    if endpoints.is_empty() {
        return Err(RegistrationError::NoEndpoint(link.endpoints.clone()));
    }
    let mut delay = FIRST_RETRY_DELAY;
    let mut attempt = 1u32;
    loop {
        for endpoint in &endpoints {
            match try_register(endpoint, link, pool.clone()).await {
                Ok(()) => {
                    tracing::info!(pool = %pool.name, catalog = endpoint, endpoint = %pool.endpoint,
                        attempt, "pool registered with the catalog");
                    return Ok(());
                }
                Err(err) if err.code.retryable() => {
                    tracing::warn!(pool = %pool.name, catalog = endpoint, attempt, error = %err,
                        "catalog node unreachable");
                }
                Err(source) => {
                    return Err(RegistrationError::Rejected {
                        endpoint: endpoint.clone(),
                        pool: pool.name,
                        source,
                    })
                }
            }
        }
        tracing::warn!(pool = %pool.name, catalog = %link.endpoints, attempt,
            retry_in_ms = delay.as_millis() as u64, "no catalog node took the registration, retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RETRY_DELAY);
        attempt += 1;
    }
}

async fn try_register(endpoint: &str, link: &CatalogLink, pool: Pool) -> Result<(), ZaqarError> {
    let channel = grpc_client::connect(
        endpoint,
        link.tls.as_ref(),
        &link.token,
        CONNECT_TIMEOUT,
        CALL_TIMEOUT,
    )
    .await?;
    CatalogServiceClient::new(channel)
        .register_pool(pool)
        .await?;
    Ok(())
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

/// Reports the health of `store` (its own check) as the pool of `link` to each of
/// its catalog nodes every `interval`, one task per node, until `stopping`. A node
/// that is down is skipped until it answers again; a catalog that keeps no reports
/// (an older one) is logged once.
fn spawn_health_reports(
    link: &CatalogLink,
    store: Arc<dyn MessageStore>,
    interval: Duration,
    stopping: &Stopping,
) {
    for endpoint in split_endpoints(&link.endpoints) {
        let reporter = HealthReporter {
            catalog: endpoint,
            link: link.clone(),
            store: store.clone(),
            interval,
        };
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = reporter.run() => {}
                () = stopping.stopped() => {}
            }
        });
    }
}

/// Sends one pool's health reports to one catalog node.
struct HealthReporter {
    catalog: String,
    link: CatalogLink,
    store: Arc<dyn MessageStore>,
    interval: Duration,
}

impl HealthReporter {
    async fn run(self) {
        let mut client = None;
        let mut refused = false;
        loop {
            let report = PoolHealthReport {
                pool: self.link.pool.clone(),
                interval_seconds: u32::try_from(self.interval.as_secs()).unwrap_or(u32::MAX),
                ..self.check().await
            };
            match self.send(&mut client, report).await {
                Ok(()) => refused = false,
                Err(err) if err.code.retryable() => {
                    client = None;
                    tracing::debug!(pool = %self.link.pool, catalog = %self.catalog, error = %err,
                        "health report not delivered");
                }
                Err(err) => {
                    if !refused {
                        tracing::warn!(pool = %self.link.pool, catalog = %self.catalog, error = %err,
                            "the catalog refused the health report");
                    }
                    refused = true;
                }
            }
            tokio::time::sleep(self.interval).await;
        }
    }

    /// The store's health check, then what in its setup can lose acknowledged
    /// messages (`MessageStore::volatility`), within one interval.
    async fn check(&self) -> PoolHealthReport {
        let checked = tokio::time::timeout(self.interval, async {
            self.store.health().await?;
            self.store.volatility().await
        })
        .await;
        let (ok, detail) = match checked {
            Ok(Ok(None)) => (true, String::new()),
            Ok(Ok(Some(gaps))) => (false, format!("volatile store: {gaps}")),
            Ok(Err(err)) => (false, err.description),
            Err(_) => (
                false,
                format!("the store's health check took over {:?}", self.interval),
            ),
        };
        PoolHealthReport {
            ok,
            detail,
            ..Default::default()
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
                let channel = grpc_client::connect(
                    &self.catalog,
                    self.link.tls.as_ref(),
                    &self.link.token,
                    CONNECT_TIMEOUT,
                    CALL_TIMEOUT.min(self.interval),
                )
                .await?;
                client.insert(CatalogServiceClient::new(channel))
            }
        };
        connected.report_health(report).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use tokio::net::TcpListener;
    use tonic::transport::server::TcpIncoming;
    use tonic::transport::Server;
    use zaqar_catalog::{CatalogBackend, CatalogServer, SqlCatalog};
    use zaqar_proto::pb;

    fn link(endpoints: &str) -> CatalogLink {
        CatalogLink {
            endpoints: endpoints.to_string(),
            tls: None,
            token: ClusterToken::none(),
            pool: "pool-a".into(),
        }
    }

    async fn bind(addr: SocketAddr) -> TcpListener {
        TcpListener::bind(addr).await.unwrap()
    }

    /// Serves a catalog over `backend` on `listener`.
    fn serve_catalog(listener: TcpListener, backend: Arc<SqlCatalog>) {
        let incoming = TcpIncoming::from_listener(listener, true, None).unwrap();
        let router = Server::builder().add_service(CatalogServer::new(backend).into_service());
        tokio::spawn(router.serve_with_incoming(incoming));
    }

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
    async fn catalog(listener: TcpListener, dir: &tempfile::TempDir) -> Arc<SqlCatalog> {
        let uri = format!("sqlite://{}/catalog.db", dir.path().display());
        let backend = Arc::new(SqlCatalog::open(&uri).await.unwrap());
        serve_catalog(listener, backend.clone());
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
            tokio::spawn(
                async move { register(&link(&endpoint), pool("http://10.0.0.1:7001")).await },
            );
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(
            !registering.is_finished(),
            "registered with no catalog running"
        );

        let listener = bind(SocketAddr::from(([127, 0, 0, 1], port))).await;
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
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await;
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        catalog(listener, &dir).await;
        let rejected = tokio::time::timeout(
            Duration::from_secs(5),
            register(&link(&endpoint), pool("not-an-endpoint")),
        )
        .await
        .expect("no retry on a rejection");
        assert!(
            matches!(rejected, Err(RegistrationError::Rejected { .. })),
            "{rejected:?}"
        );
    }

    #[tokio::test]
    async fn registration_skips_a_dead_catalog_node() {
        let dir = tempfile::tempdir().unwrap();
        // Port 0 cannot be connected to: a node that is down, whatever else runs here.
        let dead = "127.0.0.1:0";
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await;
        let live = listener.local_addr().unwrap();
        let backend = catalog(listener, &dir).await;
        let endpoints = format!("http://{dead}, http://{live}");
        tokio::time::timeout(
            Duration::from_secs(5),
            register(&link(&endpoints), pool("http://10.0.0.1:7001")),
        )
        .await
        .expect("registered through the live node")
        .unwrap();
        assert_eq!(backend.get_pool("pool-a").await.unwrap().weight, 5);
    }

    #[tokio::test]
    async fn a_re_registration_keeps_what_an_admin_changed() {
        let dir = tempfile::tempdir().unwrap();
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await;
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let backend = catalog(listener, &dir).await;
        register(&link(&endpoint), pool("http://10.0.0.1:7001"))
            .await
            .unwrap();
        let mut changed = backend.get_pool("pool-a").await.unwrap();
        changed.weight = 0;
        changed.flavor = "slow".into();
        backend.add_pool(changed).await.unwrap();

        register(&link(&endpoint), pool("http://10.0.0.2:7001"))
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
        let store = crate::open_store(&store_uri).await.unwrap();
        let mut endpoints = Vec::new();
        for node in ["a", "b"] {
            let node_dir = dir.path().join(node);
            std::fs::create_dir_all(&node_dir).unwrap();
            let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await;
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
            serve_catalog(listener, backend);
        }
        spawn_health_reports(
            &link(&endpoints.join(",")),
            store,
            Duration::from_secs(1),
            &Stopping::never(),
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
    }
}
