//! Where a queue lives: `(project, queue) → pool` through the catalog, with an
//! in-memory placement cache fed by the catalog's watch stream (see
//! `routing/placement_cache.rs`), and one lazily connected gRPC channel per
//! pool-node endpoint — or a direct call for a pool-node of this process
//! (`routing/pool_client.rs`). The pools' activity streams that wake long-polling
//! requests are followed in `routing/activity.rs`.
//!
//! `catalog_endpoint` may name several catalog nodes, comma-separated. A call goes to
//! the node that answered last; when it is unreachable (connection refused, connect or
//! call timeout) or answers `unavailable`, the next one is tried. Any live node of a
//! raft catalog serves every call (a follower forwards writes to its leader), and every
//! catalog call api-node makes is idempotent, so a retry elsewhere is safe.
//!
//! When no catalog node can answer (no raft quorum, all unreachable), the queues whose
//! placement the router learnt are still served from it, expired or not: placements
//! change only through the catalog. Only a queue it never saw answers 503.

pub mod activity;
mod placement_cache;
mod pool_client;
mod shared_lookups;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zaqar_proto::grpc_client::split_endpoints;

use tonic::transport::{ClientTlsConfig, Endpoint};
use zaqar_proto::cluster_auth::{AuthChannel, ClusterToken};
use zaqar_proto::pb::catalog_service_client::CatalogServiceClient;
use zaqar_proto::pb::pool_service_client::PoolServiceClient;
use zaqar_proto::pb::{self, QueueRef};
use zaqar_proto::ZaqarError;

use crate::config::ApiConfig;
pub use activity::{Activity, LongPollConfig, Ticket};
use placement_cache::{lock, watch_catalog, PlacementCache, SharedCache, WatchTarget};
pub use pool_client::{InProcessPools, PoolClient};
use shared_lookups::SharedLookups;

/// While the catalog's last call failed less than this ago, queues whose placement
/// the router knows are served without asking it.
const CATALOG_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// A queue's pool, as the router resolved it.
#[derive(Clone)]
pub struct Pool {
    pub name: String,
    pub endpoint: String,
    pub client: PoolClient,
    /// True when the placement came from the cache (it may be stale).
    pub cached: bool,
}

/// Resolves queues to pools and hands out pool clients.
pub struct Router {
    catalog: Catalogs<CatalogServiceClient<AuthChannel>>,
    connect_timeout: Duration,
    /// Carried by every call to the catalog and the pool-nodes.
    token: ClusterToken,
    request_timeout: Duration,
    /// TLS of `https://` pool-node endpoints (`grpc_tls`).
    tls: Option<ClientTlsConfig>,
    placements: SharedCache,
    /// The placement lookups asking the catalog now, which others of the queue join.
    lookups: SharedLookups,
    /// Keeps `placements` subscribed to the catalog's watch stream.
    watcher: tokio::task::JoinHandle<()>,
    pools: Mutex<HashMap<String, PoolClient>>,
    /// Pool-nodes of this process, called without gRPC.
    in_process: InProcessPools,
    /// The requests waiting for messages, and the pools' activity streams that wake them.
    activity: Activity,
}

impl Drop for Router {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

fn queue_ref(project: &str, queue: &str) -> QueueRef {
    QueueRef {
        project: project.to_string(),
        queue: queue.to_string(),
    }
}

impl Router {
    /// A router talking to the catalog of `config`, calling the pool-nodes of
    /// `in_process` directly; connects lazily (must run inside tokio).
    pub fn new(config: &ApiConfig, in_process: InProcessPools) -> Result<Router, ZaqarError> {
        let tls = config.grpc_client_tls()?;
        let token = config.cluster_token()?;
        let placements: SharedCache = std::sync::Arc::new(Mutex::new(PlacementCache::new(
            config.placement_cache_ttl(),
            config.placement_cache_size,
        )));
        let target = WatchTarget {
            endpoints: split_endpoints(&config.catalog_endpoint),
            connect_timeout: config.connect_timeout(),
            tls: tls.clone(),
            token: token.clone(),
        };
        let activity = Activity::new(config.long_poll.clone(), target.clone(), in_process.clone());
        let watcher = tokio::spawn(watch_catalog(target, placements.clone()));
        Ok(Router {
            activity,
            catalog: Catalogs::new(
                &config.catalog_endpoint,
                config.connect_timeout(),
                config.request_timeout(),
                tls.as_ref(),
                &token,
                CatalogServiceClient::new,
            )?,
            connect_timeout: config.connect_timeout(),
            token,
            request_timeout: config.request_timeout(),
            tls,
            placements,
            watcher,
            lookups: SharedLookups::default(),
            pools: Mutex::new(HashMap::new()),
            in_process,
        })
    }

    /// The requests waiting for messages (long polling) and what wakes them.
    pub fn activity(&self) -> &Activity {
        &self.activity
    }

    /// The client of a pool-node endpoint (one channel per endpoint, reused).
    pub fn pool_client(&self, endpoint: &str) -> Result<PoolClient, ZaqarError> {
        if let Some(service) = self.in_process.get(endpoint) {
            return Ok(PoolClient::InProcess {
                service: service.clone(),
                timeout: self.request_timeout,
            });
        }
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = pools.get(endpoint) {
            return Ok(client.clone());
        }
        let channel = lazy_channel(
            endpoint,
            self.connect_timeout,
            self.request_timeout,
            self.tls.as_ref(),
            &self.token,
        )?;
        let client = PoolClient::Grpc(PoolServiceClient::new(channel));
        pools.insert(endpoint.to_string(), client.clone());
        Ok(client)
    }

    /// The pool of a queue, or `None` when the queue was never placed.
    pub async fn lookup(&self, project: &str, queue: &str) -> Result<Option<Pool>, ZaqarError> {
        if let Some(cached) = self.cached(project, queue) {
            crate::metrics::record_lookup("cached");
            return Ok(Some(self.pool(&cached.pool, &cached.endpoint, true)?));
        }
        if let Some(known) = self.known_while_catalog_fails(project, queue)? {
            return Ok(Some(known));
        }
        match self.lookup_fresh(project, queue).await {
            Err(err) => self.last_known(project, queue, err).map(Some),
            found => found,
        }
    }

    /// The placement last learnt for a queue when the catalog failed with `err`
    /// (no quorum, unreachable): placements change only through the catalog, so
    /// the queue is still there. `err` when nothing was learnt or the failure is
    /// an answer (not a transient one).
    fn last_known(&self, project: &str, queue: &str, err: ZaqarError) -> Result<Pool, ZaqarError> {
        if !err.code.retryable() {
            return Err(err);
        }
        let known = self.last_learnt(project, queue).ok_or(err)?;
        tracing::debug!(
            project,
            queue,
            "the catalog cannot answer: using the placement last learnt"
        );
        known
    }

    /// The placement last learnt for a queue, without asking the catalog, while its
    /// last call failed less than [`CATALOG_PROBE_INTERVAL`] ago: during an outage
    /// one request in that interval waits for the catalog, not every one.
    fn known_while_catalog_fails(
        &self,
        project: &str,
        queue: &str,
    ) -> Result<Option<Pool>, ZaqarError> {
        if !self.catalog.failed_within(CATALOG_PROBE_INTERVAL) {
            return Ok(None);
        }
        self.last_learnt(project, queue).transpose()
    }

    /// The pool of the placement last learnt for a queue, even expired or untrusted.
    fn last_learnt(&self, project: &str, queue: &str) -> Option<Result<Pool, ZaqarError>> {
        let known = lock(&self.placements).get_even_expired(project, queue)?;
        crate::metrics::record_lookup("last_known");
        Some(self.pool(&known.pool, &known.endpoint, true))
    }

    /// Whether any catalog node ever answered this api-node: it then knows where
    /// the queues it served are, and can go on serving them while the catalog
    /// cannot answer.
    pub fn catalog_answered(&self) -> bool {
        self.catalog.answered.load(Ordering::Relaxed)
    }

    /// The pool of a queue, placing the queue on a pool of `flavor` (empty for the
    /// default flavor) first if it has none.
    pub async fn place(
        &self,
        project: &str,
        queue: &str,
        flavor: &str,
    ) -> Result<Pool, ZaqarError> {
        self.place_by(project, queue, flavor, "").await
    }

    /// Places `queue` on the pool named `pool` (a dead letter queue beside its
    /// queue) unless it is placed already; the pool it is on.
    pub async fn place_beside(
        &self,
        project: &str,
        queue: &str,
        pool: &str,
    ) -> Result<Pool, ZaqarError> {
        self.place_by(project, queue, "", pool).await
    }

    /// Places `queue` on `pool`, or when that is empty on a pool of `flavor`.
    async fn place_by(
        &self,
        project: &str,
        queue: &str,
        flavor: &str,
        pool: &str,
    ) -> Result<Pool, ZaqarError> {
        if let Some(cached) = self.cached(project, queue) {
            crate::metrics::record_lookup("cached");
            return self.pool(&cached.pool, &cached.endpoint, true);
        }
        if let Some(known) = self.known_while_catalog_fails(project, queue)? {
            return Ok(known);
        }
        let epoch = lock(&self.placements).epoch();
        let request = pb::PlaceQueueRequest {
            queue: Some(queue_ref(project, queue)),
            flavor: flavor.to_string(),
            pool: pool.to_string(),
        };
        let placement = self
            .catalog
            .call(|mut catalog| {
                let request = request.clone();
                async move { catalog.place_queue(request).await }
            })
            .await;
        let placement = match placement {
            Ok(placement) => placement,
            Err(err) => return self.last_known(project, queue, err),
        };
        tracing::debug!(project, queue, pool = %placement.pool, "queue placed");
        crate::metrics::record_lookup("catalog");
        self.remember(project, queue, &placement.pool, &placement.endpoint, epoch);
        self.pool(&placement.pool, &placement.endpoint, false)
    }

    /// Asks the catalog again after `stale` answered as if the queue were not
    /// there; returns the new pool only if the placement changed.
    pub async fn refresh(&self, project: &str, queue: &str, stale: &Pool) -> Option<Pool> {
        self.forget(project, queue);
        // Its own question, asked after the placement was forgotten: one already in
        // flight may have been asked before the queue moved.
        let epoch = lock(&self.placements).epoch();
        let found = match self.ask_catalog(project, queue, epoch).await {
            Ok(Some((name, endpoint))) => self.pool(&name, &endpoint, false).map(Some),
            Ok(None) => Ok(None),
            Err(err) => Err(err),
        };
        match found {
            Ok(Some(pool)) if pool.endpoint != stale.endpoint || pool.name != stale.name => {
                tracing::info!(project, queue, pool = %pool.name, "placement changed");
                Some(pool)
            }
            _ => None,
        }
    }

    /// Forgets a queue's placement, here and in the catalog (after the queue was deleted).
    pub async fn remove(&self, project: &str, queue: &str) -> Result<(), ZaqarError> {
        self.forget(project, queue);
        self.catalog
            .call(
                |mut catalog| async move { catalog.remove_queue(queue_ref(project, queue)).await },
            )
            .await?;
        Ok(())
    }

    /// The placed queues of a project, sorted by name, and (with `with_count`) how
    /// many match `name_filter`.
    pub async fn list_queues(
        &self,
        project: &str,
        marker: &str,
        limit: u32,
        name_filter: &str,
        with_count: bool,
    ) -> Result<(Vec<pb::Placement>, u64), ZaqarError> {
        let request = pb::ListQueuesRequest {
            project: project.to_string(),
            marker: marker.to_string(),
            limit,
            name_filter: name_filter.to_string(),
            with_count,
        };
        let reply = self
            .catalog
            .call(|mut catalog| {
                let request = request.clone();
                async move { catalog.list_queues(request).await }
            })
            .await?;
        Ok((reply.queues, reply.count))
    }

    /// Every registered pool.
    pub async fn list_pools(&self) -> Result<Vec<pb::Pool>, ZaqarError> {
        let reply = self
            .catalog
            .call(|mut catalog| async move { catalog.list_pools(pb::Empty {}).await })
            .await?;
        Ok(reply.pools)
    }

    /// The latest health report of every pool, as the catalog holds them.
    pub async fn pool_health(&self) -> Result<Vec<pb::PoolHealthStatus>, ZaqarError> {
        let reply = self
            .catalog
            .call(|mut catalog| async move { catalog.pool_health(pb::Empty {}).await })
            .await?;
        Ok(reply.pools)
    }

    /// The limits an operator set for `project` through the catalog's admin API (a
    /// JSON object), if any. `unavailable` at once, without asking, while the
    /// catalog's last call failed less than [`CATALOG_PROBE_INTERVAL`] ago.
    pub async fn project_limits(&self, project: &str) -> Result<Option<String>, ZaqarError> {
        if self.catalog.failed_within(CATALOG_PROBE_INTERVAL) {
            return Err(ZaqarError::unavailable("the catalog cannot answer"));
        }
        let request = pb::ProjectLimitsRequest {
            project: project.to_string(),
        };
        let reply = self
            .catalog
            .call(|mut catalog| {
                let request = request.clone();
                async move { catalog.project_limits(request).await }
            })
            .await?;
        Ok(reply.found.then_some(reply.limits_json))
    }

    /// The pool of a placement listed by the catalog.
    pub fn pool_of(&self, placement: &pb::Placement) -> Result<Pool, ZaqarError> {
        self.pool(&placement.pool, &placement.endpoint, false)
    }

    /// Asks the catalog where `queue` is, or waits for the answer to the same question
    /// already asked by another request (`routing/shared_lookups.rs`).
    async fn lookup_fresh(&self, project: &str, queue: &str) -> Result<Option<Pool>, ZaqarError> {
        let epoch = lock(&self.placements).epoch();
        let asking = || self.ask_catalog(project, queue, epoch);
        let (answer, asked) = self.lookups.ask(project, queue, epoch, asking).await;
        if !asked && answer.is_ok() {
            crate::metrics::record_lookup("shared");
        }
        match answer? {
            Some((name, endpoint)) => Ok(Some(self.pool(&name, &endpoint, false)?)),
            None => Ok(None),
        }
    }

    /// Asks the catalog where `queue` is, at placement `epoch`, and caches the
    /// placement it answers: the pool's name and endpoint, `None` when the queue has none.
    async fn ask_catalog(&self, project: &str, queue: &str, epoch: u64) -> shared_lookups::Answer {
        let reply = self
            .catalog
            .call(|mut catalog| async move { catalog.lookup(queue_ref(project, queue)).await })
            .await?;
        crate::metrics::record_lookup("catalog");
        match reply.placement {
            Some(placement) if reply.found => {
                self.remember(project, queue, &placement.pool, &placement.endpoint, epoch);
                Ok(Some((placement.pool, placement.endpoint)))
            }
            _ => Ok(None),
        }
    }

    fn pool(&self, name: &str, endpoint: &str, cached: bool) -> Result<Pool, ZaqarError> {
        Ok(Pool {
            name: name.to_string(),
            endpoint: endpoint.to_string(),
            client: self.pool_client(endpoint)?,
            cached,
        })
    }

    fn cached(&self, project: &str, queue: &str) -> Option<placement_cache::CachedPlacement> {
        lock(&self.placements).get(project, queue)
    }

    /// Caches a placement the catalog gave in answer to a question asked at `epoch`.
    fn remember(&self, project: &str, queue: &str, pool: &str, endpoint: &str, epoch: u64) {
        lock(&self.placements).insert(project, queue, pool, endpoint, epoch);
    }

    fn forget(&self, project: &str, queue: &str) {
        lock(&self.placements).remove(project, queue);
        self.lookups.forget(project, queue);
    }
}

/// The catalog nodes of a comma-separated `catalog_endpoint`, tried in turn, each
/// through a client `C` of one of its gRPC services.
pub(crate) struct Catalogs<C> {
    nodes: Vec<(String, C)>,
    /// The longest one call takes, over every node it tries.
    request_timeout: Duration,
    /// The node that answered last, tried first.
    preferred: AtomicUsize,
    /// Some node answered once.
    answered: AtomicBool,
    /// When a call last failed on every node for want of an answer; `None` after an answer.
    failed_at: Mutex<Option<Instant>>,
}

impl<C: Clone> Catalogs<C> {
    pub(crate) fn new(
        endpoints: &str,
        connect_timeout: Duration,
        request_timeout: Duration,
        tls: Option<&ClientTlsConfig>,
        token: &ClusterToken,
        client: impl Fn(AuthChannel) -> C,
    ) -> Result<Catalogs<C>, ZaqarError> {
        let nodes = split_endpoints(endpoints)
            .into_iter()
            .map(|endpoint| {
                let channel =
                    lazy_channel(&endpoint, connect_timeout, request_timeout, tls, token)?;
                Ok((endpoint, client(channel)))
            })
            .collect::<Result<Vec<_>, ZaqarError>>()?;
        if nodes.is_empty() {
            return Err(ZaqarError::internal(format!(
                "no catalog endpoint in {endpoints:?}"
            )));
        }
        Ok(Catalogs {
            nodes,
            request_timeout,
            preferred: AtomicUsize::new(0),
            answered: AtomicBool::new(false),
            failed_at: Mutex::new(None),
        })
    }

    /// Whether a call failed on every node less than `interval` ago (and none answered since).
    fn failed_within(&self, interval: Duration) -> bool {
        self.failed_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < interval)
    }

    /// Makes `call` on the preferred node, then on the next ones while a node is
    /// unreachable or unavailable; any other answer is final. The whole call takes
    /// at most the request timeout: each node gets an equal share of what is left,
    /// so that a node that holds the call (one cut off from its peers) leaves time
    /// for the others.
    pub(crate) async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, ZaqarError>
    where
        F: FnMut(C) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let count = self.nodes.len();
        let first = self.preferred.load(Ordering::Relaxed) % count;
        let deadline = Instant::now() + self.request_timeout;
        let mut step = 0;
        loop {
            let index = (first + step) % count;
            let (endpoint, client) = &self.nodes[index];
            let share = deadline.saturating_duration_since(Instant::now()) / (count - step) as u32;
            let answer = match tokio::time::timeout(share, call(client.clone())).await {
                Ok(answer) => answer,
                Err(_) => Err(tonic::Status::unavailable(format!(
                    "the catalog node gave no answer within {share:?}"
                ))),
            };
            match answer {
                Ok(reply) => {
                    if step > 0 {
                        self.preferred.store(index, Ordering::Relaxed);
                    }
                    self.answered.store(true, Ordering::Relaxed);
                    *self.failed_at.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    return Ok(reply.into_inner());
                }
                Err(status) => {
                    let err = ZaqarError::from(status);
                    step += 1;
                    if !err.code.retryable() {
                        return Err(err);
                    }
                    if step == count {
                        *self.failed_at.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(Instant::now());
                        return Err(err);
                    }
                    tracing::warn!(catalog = %endpoint, error = %err,
                        "catalog node unavailable, trying the next one");
                }
            }
        }
    }
}

/// A channel that connects on first use and fails fast when the peer is down;
/// with TLS when `tls` is set and the endpoint is `https://`; each call carries `token`.
fn lazy_channel(
    endpoint: &str,
    connect_timeout: Duration,
    request_timeout: Duration,
    tls: Option<&ClientTlsConfig>,
    token: &ClusterToken,
) -> Result<AuthChannel, ZaqarError> {
    let invalid = |err| ZaqarError::internal(format!("invalid gRPC endpoint {endpoint:?}: {err}"));
    let mut endpoint = Endpoint::from_shared(endpoint.to_string()).map_err(invalid)?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.clone()).map_err(invalid)?;
    }
    Ok(token.attach(
        endpoint
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .connect_lazy(),
    ))
}
