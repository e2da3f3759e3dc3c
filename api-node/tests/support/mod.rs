//! Test harness: the real pool-node service (`PoolServer` over a SQLite store in a
//! temporary directory) and the real catalog (`CatalogServer` and `AdminServer` over
//! a SQLite catalog), served over gRPC on a loopback port, an api-node in front of
//! them, and a small HTTP client.
#![allow(dead_code)]

pub mod isolation;
pub mod keystone;
pub mod routes;
pub mod unwatched;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::server::Router;
use zaqar_api_node::ApiConfig;
use zaqar_catalog::{AdminServer, CatalogBackend, CatalogServer, Placement, PoolSpec};
use zaqar_pool_node::{MessageStore, PoolServer};
use zaqar_proto::pb::catalog_service_server::CatalogServiceServer;
use zaqar_proto::pb::pool_service_server::PoolServiceServer;
use zaqar_proto::pb::{Pool, QueueRef};

/// A header value meaning "do not send this header".
pub const OMIT: &str = "<omit>";

pub const CLIENT_ID: &str = "3381af92-2b9e-11e3-b191-71861300734c";

/// A running api-node over an in-memory pool and catalog.
pub struct Harness {
    pub base: String,
    /// Where the WebSocket API listens.
    pub ws: SocketAddr,
    pub project: String,
    /// A Keystone token sent with every request (`X-Auth-Token`), if any.
    pub token: Option<String>,
    pub catalog: Arc<TestCatalog>,
    /// The first pool (`pool-1`).
    pub pool: Arc<TestPool>,
    http: reqwest::Client,
    stops: Vec<oneshot::Sender<()>>,
    /// The stores of [`Harness::extra_pool`], kept while they are served.
    extra_pools: Vec<TestPool>,
}

/// An answer: status, headers and JSON body (`Value::Null` when empty).
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a Zaqar error body with this status and title.
    pub fn assert_error(&self, status: u16, title: &str) {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["title"], title, "body: {}", self.body);
        assert!(self.body["description"].is_string(), "body: {}", self.body);
        assert_eq!(self.header("content-type"), Some("application/json"));
    }
}

/// The real pool-node service over a SQLite store of its own, removed when dropped.
pub struct TestPool {
    pub store: Arc<dyn MessageStore>,
    /// The store's URI (`sqlite://...`), as the pool is registered with.
    pub uri: String,
    _dir: tempfile::TempDir,
}

impl TestPool {
    pub async fn new() -> TestPool {
        // Tests comparing answers mask strings with digits as varying values (ids,
        // times): the prefix gives every store path one, whatever the random part.
        let dir = tempfile::Builder::new().prefix("pool1-").tempdir().unwrap();
        let uri = format!("sqlite://{}", dir.path().join("messages.db").display());
        let store = zaqar_pool_node::open_store(&uri).await.unwrap();
        TestPool {
            store,
            uri,
            _dir: dir,
        }
    }

    /// Its gRPC `PoolService`.
    pub fn service(&self) -> PoolServiceServer<PoolServer> {
        PoolServer::new(self.store.clone()).into_service()
    }

    /// Whether the store has the queue.
    pub async fn has_queue(&self, project: &str, queue: &str) -> bool {
        let queue = QueueRef {
            project: project.into(),
            queue: queue.into(),
        };
        self.store.get_queue(&queue).await.unwrap().is_some()
    }

    /// Deletes the queue from the store, as another api-node would.
    pub async fn forget_queue(&self, project: &str, queue: &str) {
        let queue = QueueRef {
            project: project.into(),
            queue: queue.into(),
        };
        self.store.delete_queue(&queue).await.unwrap();
    }
}

/// The real catalog over a SQLite catalog of its own, removed when dropped.
pub struct TestCatalog {
    pub backend: Arc<dyn CatalogBackend>,
    uri: String,
    /// Whether `Watch` streams the catalog's changes (else it is unimplemented).
    watched: bool,
    _dir: tempfile::TempDir,
}

impl TestCatalog {
    pub async fn new() -> Arc<TestCatalog> {
        TestCatalog::open(true).await
    }

    /// A catalog without a change feed, as api-nodes meet one whose backend has
    /// none (see `unwatched.rs`).
    pub async fn unwatched() -> Arc<TestCatalog> {
        TestCatalog::open(false).await
    }

    async fn open(watched: bool) -> Arc<TestCatalog> {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("sqlite://{}", dir.path().join("catalog.db").display());
        let backend = zaqar_catalog::open_backend(&uri).await.unwrap();
        Arc::new(TestCatalog {
            backend,
            uri,
            watched,
            _dir: dir,
        })
    }

    /// Registers `pool` as its pool-node would.
    pub async fn register(&self, pool: &Pool) {
        self.backend
            .register_pool(PoolSpec {
                name: pool.name.clone(),
                weight: pool.weight,
                flavor: pool.flavor.clone(),
                uri: pool.uri.clone(),
                endpoint: pool.endpoint.clone(),
                options_json: pool.options_json.clone(),
            })
            .await
            .unwrap();
    }

    pub async fn pools(&self) -> Vec<PoolSpec> {
        self.backend.list_pools().await.unwrap()
    }

    pub async fn lookup(&self, project: &str, queue: &str) -> Option<Placement> {
        self.backend.lookup(project, queue).await.unwrap()
    }

    /// Forgets a queue's placement and places it on `pool` again, as another api-node
    /// deleting and re-creating it through another catalog process on the same
    /// database would: through a handle of its own, whose writes reach no watcher of
    /// this one (so an api-node learns of the move only by looking the queue up again).
    pub async fn place_elsewhere(&self, project: &str, queue: &str, pool: &str) {
        let elsewhere = zaqar_catalog::open_backend(&self.uri).await.unwrap();
        elsewhere.remove_queue(project, queue).await.unwrap();
        elsewhere.place_on(project, queue, pool).await.unwrap();
    }

    /// `router` with the catalog's `CatalogService` and `AdminService`.
    pub fn add_services(&self, router: Router) -> Router {
        let catalog = CatalogServer::new(self.backend.clone());
        let router = if self.watched {
            router.add_service(catalog.into_service())
        } else {
            router.add_service(CatalogServiceServer::new(unwatched::Unwatched(catalog)))
        };
        router.add_service(AdminServer::new(self.backend.clone(), "sqlite").into_service(None))
    }
}

/// Serves the pool, and the catalog if any, on one loopback port.
async fn serve_backends(
    pool: &TestPool,
    catalog: Option<&TestCatalog>,
) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let mut router = tonic::transport::Server::builder().add_service(pool.service());
    if let Some(catalog) = catalog {
        router = catalog.add_services(router);
    }
    let server = router.serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
        let _ = stopped.await;
    });
    tokio::spawn(server);
    (addr, stop)
}

impl Harness {
    /// An api-node with default settings (but admin mode) over a fresh pool and catalog.
    pub async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    /// Like [`Harness::start`], adjusting the api-node config first.
    pub async fn start_with(adjust: impl FnOnce(&mut ApiConfig)) -> Harness {
        Harness::start_over(TestCatalog::new().await, adjust).await
    }

    /// Like [`Harness::start_with`], over `catalog` (e.g. [`TestCatalog::unwatched`]).
    pub async fn start_over(
        catalog: Arc<TestCatalog>,
        adjust: impl FnOnce(&mut ApiConfig),
    ) -> Harness {
        let pool = Arc::new(TestPool::new().await);
        let (backend, backend_stop) = serve_backends(&pool, Some(&catalog)).await;
        catalog
            .register(&Pool {
                name: "pool-1".into(),
                weight: 100,
                uri: pool.uri.clone(),
                endpoint: format!("http://{backend}"),
                ..Default::default()
            })
            .await;
        let mut config = ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            catalog_endpoint: format!("http://{backend}"),
            // Most tests drive the privileged routes; admin_mode.rs checks them off.
            admin_mode: true,
            ..ApiConfig::default()
        };
        adjust(&mut config);
        Harness::over(config, catalog, pool, vec![backend_stop]).await
    }

    /// An api-node whose catalog is at `catalog_endpoint` (none answering there: see
    /// [`dead_endpoint`]), with short timeouts: 500 ms to connect, 1 s a request.
    pub async fn with_catalog_at(catalog_endpoint: String) -> Harness {
        let config = ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            catalog_endpoint,
            connect_timeout_ms: 500,
            request_timeout_ms: 1_000,
            ..ApiConfig::default()
        };
        let (catalog, pool) = (TestCatalog::new().await, Arc::new(TestPool::new().await));
        Harness::over(config, catalog, pool, Vec::new()).await
    }

    /// An api-node with `config` (its catalog may be anything, even down), whose
    /// tests inspect `catalog` and `pool`. The WebSocket API always listens on a free
    /// port of 127.0.0.1.
    pub async fn over(
        mut config: ApiConfig,
        catalog: Arc<TestCatalog>,
        pool: Arc<TestPool>,
        mut stops: Vec<oneshot::Sender<()>>,
    ) -> Harness {
        config.ws_listen = Some("127.0.0.1:0".parse().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let bound = zaqar_api_node::bind_all(config, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
        tokio::spawn(bound.server);
        stops.push(stop);
        Harness {
            base: format!("http://{}", bound.rest),
            ws: bound.websocket.unwrap(),
            project: format!("project-{}", uuid::Uuid::new_v4().simple()),
            token: None,
            catalog,
            pool,
            http: reqwest::Client::new(),
            stops,
            extra_pools: Vec::new(),
        }
    }

    /// A pool-node (on a store of its own) on its own port, not yet registered anywhere.
    pub async fn extra_pool(&mut self, name: &str) -> Pool {
        let pool = TestPool::new().await;
        let (addr, stop) = serve_backends(&pool, None).await;
        self.stops.push(stop);
        let described = Pool {
            name: name.into(),
            weight: 100,
            uri: pool.uri.clone(),
            endpoint: format!("http://{addr}"),
            ..Default::default()
        };
        self.extra_pools.push(pool);
        described
    }

    /// A request with the usual identity headers; `headers` override them, and
    /// the value [`OMIT`] leaves a header out.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        let mut defaults = vec![
            ("X-Project-ID", self.project.as_str()),
            ("Client-ID", CLIENT_ID),
        ];
        if body.is_some() {
            defaults.push(("Content-Type", "application/json"));
        }
        if let Some(token) = &self.token {
            defaults.push(("X-Auth-Token", token));
        }
        for (name, value) in defaults {
            if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                request = request.header(name, value);
            }
        }
        for (name, value) in headers {
            if *value != OMIT {
                request = request.header(*name, *value);
            }
        }
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None, &[]).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.call("DELETE", path, None, &[]).await
    }

    pub async fn send(&self, method: &str, path: &str, body: &str) -> Answer {
        self.call(method, path, Some(body), &[]).await
    }

    /// Posts messages to a queue and returns their ids.
    pub async fn post_messages(&self, queue: &str, messages: Value) -> Vec<String> {
        let answer = self
            .send(
                "POST",
                &format!("/v2/queues/{queue}/messages"),
                &serde_json::json!({"messages": messages}).to_string(),
            )
            .await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|href| {
                href.as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

/// The URL of a loopback port nothing listens on (a port the system gave and took
/// back).
pub fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}
