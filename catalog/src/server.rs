//! The gRPC `CatalogService`: unpacks requests, calls the [`CatalogBackend`], packs replies;
//! streams the backend's change feed to watchers and keeps pool-nodes' health reports.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use zaqar_proto::pb;
use zaqar_proto::pb::catalog_service_server::{CatalogService, CatalogServiceServer};
use zaqar_proto::stopping::Stopping;
use zaqar_proto::ZaqarError;

use crate::backend::CatalogBackend;
use crate::health::{HealthBoard, HealthReport};
use crate::model::{ListQueues, Placement, PoolSpec};
use crate::watch::{CatalogEvent, Watch};

/// Events a watcher's connection may buffer before the feed waits for it (the feed
/// itself then tells it to reset if it falls further behind).
const WATCH_BUFFER: usize = 256;

/// Serves one catalog backend over gRPC.
#[derive(Clone)]
pub struct CatalogServer {
    backend: Arc<dyn CatalogBackend>,
    health: Arc<HealthBoard>,
    /// Becomes true when the server stops: watch streams then end.
    stopping: Stopping,
    /// Watch streams open now.
    watchers: Arc<AtomicI64>,
}

/// Counts one open watch stream while it lives.
struct Watcher(Arc<AtomicI64>);

impl Watcher {
    fn new(watchers: &Arc<AtomicI64>) -> Watcher {
        watchers.fetch_add(1, Ordering::Relaxed);
        Watcher(watchers.clone())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl CatalogServer {
    pub fn new(backend: Arc<dyn CatalogBackend>) -> Self {
        CatalogServer {
            backend,
            health: Arc::default(),
            stopping: Stopping::never(),
            watchers: Arc::default(),
        }
    }

    /// Ends every watch stream once `shutdown` completes. Without it, a graceful stop
    /// of the gRPC server would wait for watchers (api-nodes) that never hang up.
    pub fn with_shutdown(
        mut self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.stopping = Stopping::on(shutdown);
        self
    }

    /// The Prometheus gauges of the pools' health reports to this server.
    pub fn health_metrics(&self) -> crate::health::HealthMetrics {
        crate::health::HealthMetrics {
            board: self.health.clone(),
            watchers: self.watchers.clone(),
        }
    }

    /// The tonic service to add to a `tonic::transport::Server`.
    pub fn into_service(self) -> CatalogServiceServer<CatalogServer> {
        CatalogServiceServer::new(self)
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn reply<T>(result: Result<T, ZaqarError>) -> Reply<T> {
    result.map(Response::new).map_err(Status::from)
}

fn placement_to_pb(placement: Placement) -> pb::Placement {
    pb::Placement {
        queue: Some(pb::QueueRef {
            project: placement.project,
            queue: placement.queue,
        }),
        pool: placement.pool,
        endpoint: placement.endpoint,
    }
}

fn event_to_pb(event: CatalogEvent) -> pb::CatalogEvent {
    use pb::catalog_event::Event;
    let event = match event {
        CatalogEvent::Reset => Event::Reset(pb::Empty {}),
        CatalogEvent::Placed {
            project,
            queue,
            pool,
        } => Event::Placed(pb::Placement {
            queue: Some(pb::QueueRef { project, queue }),
            pool,
            endpoint: String::new(),
        }),
        CatalogEvent::Unplaced { project, queue } => {
            Event::Unplaced(pb::QueueRef { project, queue })
        }
        CatalogEvent::PoolChanged(pool) => Event::PoolChanged(pool_to_pb(pool)),
        CatalogEvent::PoolRemoved(name) => Event::PoolRemoved(name),
    };
    pb::CatalogEvent { event: Some(event) }
}

/// Forwards `feed` to a watcher's connection until either ends or the server stops.
async fn forward(
    mut feed: Watch,
    sink: mpsc::Sender<Result<pb::CatalogEvent, Status>>,
    mut stopping: Stopping,
) {
    let stop = stopping.stopped();
    tokio::pin!(stop);
    loop {
        let event = tokio::select! {
            () = sink.closed() => return,
            () = &mut stop => {
                let _ = sink.send(Err(Status::unavailable("the catalog node is stopping"))).await;
                return;
            }
            event = feed.next() => event,
        };
        let Some(event) = event else {
            let _ = sink
                .send(Err(Status::unavailable("the catalog's change feed ended")))
                .await;
            return;
        };
        if sink.send(Ok(event_to_pb(event))).await.is_err() {
            return;
        }
    }
}

fn pool_to_pb(pool: PoolSpec) -> pb::Pool {
    pb::Pool {
        name: pool.name,
        weight: pool.weight,
        flavor: pool.flavor,
        uri: pool.uri,
        endpoint: pool.endpoint,
        options_json: pool.options_json,
    }
}

#[tonic::async_trait]
impl CatalogService for CatalogServer {
    async fn lookup(&self, request: Request<pb::QueueRef>) -> Reply<pb::LookupReply> {
        let queue = request.into_inner();
        let placement = self.backend.lookup(&queue.project, &queue.queue).await;
        reply(placement.map(|placement| pb::LookupReply {
            found: placement.is_some(),
            placement: placement.map(placement_to_pb),
        }))
    }

    async fn place_queue(&self, request: Request<pb::PlaceQueueRequest>) -> Reply<pb::Placement> {
        let req = request.into_inner();
        let queue = req
            .queue
            .ok_or_else(|| Status::from(ZaqarError::bad_request("missing queue")))?;
        let placement = if req.pool.is_empty() {
            self.backend
                .place_queue(&queue.project, &queue.queue, &req.flavor)
                .await
        } else {
            self.backend
                .place_beside(&queue.project, &queue.queue, &req.pool)
                .await
        };
        reply(placement.map(placement_to_pb))
    }

    async fn remove_queue(&self, request: Request<pb::QueueRef>) -> Reply<pb::Empty> {
        let queue = request.into_inner();
        let removed = self
            .backend
            .remove_queue(&queue.project, &queue.queue)
            .await;
        reply(removed.map(|()| pb::Empty {}))
    }

    async fn list_queues(
        &self,
        request: Request<pb::ListQueuesRequest>,
    ) -> Reply<pb::ListQueuesReply> {
        let req = request.into_inner();
        let params = ListQueues {
            marker: req.marker,
            limit: req.limit,
            name_filter: req.name_filter,
            with_count: req.with_count,
        };
        let page = self.backend.list_queues(&req.project, &params).await;
        reply(page.map(|page| pb::ListQueuesReply {
            queues: page.queues.into_iter().map(placement_to_pb).collect(),
            count: page.count,
        }))
    }

    async fn project_limits(
        &self,
        request: Request<pb::ProjectLimitsRequest>,
    ) -> Reply<pb::ProjectLimitsReply> {
        let project = request.into_inner().project;
        let limits = self.backend.get_project_limits(&project).await;
        reply(limits.map(|limits| pb::ProjectLimitsReply {
            found: limits.is_some(),
            limits_json: limits.map(|l| l.limits_json).unwrap_or_default(),
        }))
    }

    async fn list_pools(&self, _request: Request<pb::Empty>) -> Reply<pb::ListPoolsReply> {
        let pools = self.backend.list_pools().await;
        reply(pools.map(|pools| pb::ListPoolsReply {
            pools: pools.into_iter().map(pool_to_pb).collect(),
        }))
    }

    type WatchStream = ReceiverStream<Result<pb::CatalogEvent, Status>>;

    async fn watch(&self, _request: Request<pb::WatchRequest>) -> Reply<Self::WatchStream> {
        // A backend without a feed: watchers fall back to expiring what they cache.
        let watch = self
            .backend
            .watch()
            .map_err(|err| Status::unimplemented(err.description))?;
        let (sink, stream) = mpsc::channel(WATCH_BUFFER);
        let watcher = Watcher::new(&self.watchers);
        let forwarding = forward(watch, sink, self.stopping.clone());
        tokio::spawn(async move {
            forwarding.await;
            drop(watcher);
        });
        Ok(Response::new(ReceiverStream::new(stream)))
    }

    async fn report_health(&self, request: Request<pb::PoolHealthReport>) -> Reply<pb::Empty> {
        let report = request.into_inner();
        let recorded = self.health.record(HealthReport {
            pool: report.pool,
            ok: report.ok,
            detail: report.detail,
            interval: Duration::from_secs(u64::from(report.interval_seconds)),
        });
        reply(recorded.map(|()| pb::Empty {}))
    }

    async fn pool_health(&self, _request: Request<pb::Empty>) -> Reply<pb::PoolHealthReply> {
        let pools = self.backend.list_pools().await.map_err(Status::from)?;
        let pools = self
            .health
            .status(&pools)
            .into_iter()
            .map(|health| pb::PoolHealthStatus {
                pool: health.pool,
                healthy: health.healthy,
                status: health.status.to_string(),
                detail: health.detail,
                seconds_since_report: health.since_report.as_secs_f64(),
            })
            .collect();
        Ok(Response::new(pb::PoolHealthReply { pools }))
    }

    /// A pool-node's registration (admins write pools through `AdminService`).
    async fn register_pool(&self, request: Request<pb::Pool>) -> Reply<pb::Empty> {
        let pool = request.into_inner();
        let spec = PoolSpec {
            name: pool.name,
            weight: pool.weight,
            flavor: pool.flavor,
            uri: pool.uri,
            endpoint: pool.endpoint,
            options_json: pool.options_json,
        };
        reply(self.backend.register_pool(spec).await.map(|_| pb::Empty {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqlCatalog;
    use tokio_stream::wrappers::TcpListenerStream;
    use zaqar_proto::pb::catalog_service_client::CatalogServiceClient;
    use zaqar_proto::ErrorCode;

    /// A catalog server on SQLite behind a real socket, and a client of it.
    async fn serve() -> (
        CatalogServiceClient<tonic::transport::Channel>,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("sqlite://{}/catalog.db", dir.path().display());
        let backend = Arc::new(SqlCatalog::open(&uri).await.unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(CatalogServer::new(backend).into_service())
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        let client = CatalogServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        (client, dir)
    }

    /// [`serve`] with `pool-a` (at `http://127.0.0.1:7001`) registered.
    async fn serve_with_pool_a() -> (
        CatalogServiceClient<tonic::transport::Channel>,
        tempfile::TempDir,
    ) {
        let (mut client, dir) = serve().await;
        client
            .register_pool(pool("pool-a", "http://127.0.0.1:7001"))
            .await
            .unwrap();
        (client, dir)
    }

    fn pool(name: &str, endpoint: &str) -> pb::Pool {
        pb::Pool {
            name: name.into(),
            weight: 100,
            flavor: String::new(),
            uri: "redis://127.0.0.1:6379/0".into(),
            endpoint: endpoint.into(),
            options_json: String::new(),
        }
    }

    fn queue(project: &str, queue: &str) -> pb::QueueRef {
        pb::QueueRef {
            project: project.into(),
            queue: queue.into(),
        }
    }

    #[tokio::test]
    async fn placement_round_trips_over_grpc() {
        let (mut client, _dir) = serve_with_pool_a().await;
        let pools = client
            .list_pools(pb::Empty {})
            .await
            .unwrap()
            .into_inner()
            .pools;
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0].options_json, "{}");

        let lookup = client.lookup(queue("p", "q")).await.unwrap().into_inner();
        assert!(!lookup.found && lookup.placement.is_none());

        let request = pb::PlaceQueueRequest {
            queue: Some(queue("p", "q")),
            flavor: String::new(),
            pool: String::new(),
        };
        let placed = client.place_queue(request).await.unwrap().into_inner();
        assert_eq!(placed.queue, Some(queue("p", "q")));
        // A queue placed beside another goes to the pool named, a placed one stays.
        let beside = |name: &str, pool: &str| pb::PlaceQueueRequest {
            queue: Some(queue("beside", name)),
            flavor: String::new(),
            pool: pool.to_string(),
        };
        let dlq = client.place_queue(beside("q-dlq", "pool-a")).await.unwrap();
        assert_eq!(dlq.into_inner().pool, "pool-a");
        let kept = client.place_queue(beside("q-dlq", "pool-b")).await.unwrap();
        assert_eq!(kept.into_inner().pool, "pool-a");
        let unknown = client
            .place_queue(beside("q-other", "pool-b"))
            .await
            .unwrap_err();
        assert_eq!(ZaqarError::from(unknown).code, ErrorCode::NotFound);
        assert_eq!(
            (placed.pool.as_str(), placed.endpoint.as_str()),
            ("pool-a", "http://127.0.0.1:7001")
        );

        let lookup = client.lookup(queue("p", "q")).await.unwrap().into_inner();
        assert!(lookup.found);
        assert_eq!(lookup.placement, Some(placed.clone()));

        let listing = pb::ListQueuesRequest {
            project: "p".into(),
            marker: String::new(),
            limit: 10,
            name_filter: String::new(),
            with_count: true,
        };
        let listed = client
            .list_queues(listing.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!((listed.queues, listed.count), (vec![placed], 1));

        client.remove_queue(queue("p", "q")).await.unwrap();
        let listed = client.list_queues(listing).await.unwrap().into_inner();
        assert_eq!((listed.queues.len(), listed.count), (0, 0));
    }

    #[tokio::test]
    async fn errors_keep_their_codes_over_grpc() {
        let (mut client, _dir) = serve().await;
        let code = |status: Status| ZaqarError::from(status).code;

        let no_pools = pb::PlaceQueueRequest {
            queue: Some(queue("p", "q")),
            flavor: String::new(),
            pool: String::new(),
        };
        assert_eq!(
            code(client.place_queue(no_pools).await.unwrap_err()),
            ErrorCode::Unavailable
        );

        let missing = pb::PlaceQueueRequest {
            queue: None,
            flavor: String::new(),
            pool: String::new(),
        };
        assert_eq!(
            code(client.place_queue(missing).await.unwrap_err()),
            ErrorCode::BadRequest
        );

        let bad_endpoint = pool("pool-a", "localhost:7001");
        assert_eq!(
            code(client.register_pool(bad_endpoint).await.unwrap_err()),
            ErrorCode::BadRequest
        );

        assert_eq!(
            code(client.lookup(queue("", "q")).await.unwrap_err()),
            ErrorCode::BadRequest
        );
    }

    async fn next(
        stream: &mut tonic::Streaming<pb::CatalogEvent>,
    ) -> Result<Option<pb::CatalogEvent>, Status> {
        tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("an answer in time")
    }

    #[tokio::test]
    async fn watchers_hear_changes_and_the_stream_ends_when_the_server_stops() {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("sqlite://{}/catalog.db", dir.path().display());
        let backend = Arc::new(SqlCatalog::open(&uri).await.unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = CatalogServer::new(backend).with_shutdown(async {
            let _ = stopped.await;
        });
        let metrics = server.health_metrics();
        let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(server.into_service())
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = server_stopped.await;
                }),
        );
        let mut client = CatalogServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let mut stream = client
            .watch(pb::WatchRequest {})
            .await
            .unwrap()
            .into_inner();
        use pb::catalog_event::Event;
        let first = next(&mut stream).await.unwrap().unwrap();
        assert_eq!(first.event, Some(Event::Reset(pb::Empty {})));
        client
            .register_pool(pool("pool-a", "http://127.0.0.1:7001"))
            .await
            .unwrap();
        let changed = next(&mut stream).await.unwrap().unwrap();
        let Some(Event::PoolChanged(changed)) = changed.event else {
            panic!("{changed:?}")
        };
        assert_eq!(changed.endpoint, "http://127.0.0.1:7001");
        assert_eq!(metrics.watchers(), 1, "the open stream is counted");

        // Stopping: the stream ends, so a graceful stop of the server completes.
        stop.send(()).unwrap();
        stop_server.send(()).unwrap();
        let ended = next(&mut stream).await;
        assert_eq!(
            ended.map_err(|status| status.code()),
            Err(tonic::Code::Unavailable)
        );
        tokio::time::timeout(Duration::from_secs(10), serving)
            .await
            .expect("the server stops")
            .unwrap()
            .unwrap();
        assert_eq!(metrics.watchers(), 0, "the ended stream is not");
    }

    #[tokio::test]
    async fn health_reports_are_kept_per_pool() {
        let (mut client, _dir) = serve_with_pool_a().await;
        client
            .register_pool(pool("pool-b", "http://127.0.0.1:7002"))
            .await
            .unwrap();
        let report = pb::PoolHealthReport {
            pool: "pool-a".into(),
            ok: false,
            detail: "redis: connection refused".into(),
            interval_seconds: 5,
        };
        client.report_health(report.clone()).await.unwrap();
        let bad = pb::PoolHealthReport {
            interval_seconds: 0,
            ..report
        };
        let err = client.report_health(bad).await.unwrap_err();
        assert_eq!(ZaqarError::from(err).code, ErrorCode::BadRequest);

        let pools = client
            .pool_health(pb::Empty {})
            .await
            .unwrap()
            .into_inner()
            .pools;
        let summary: Vec<_> = pools
            .iter()
            .map(|p| {
                (
                    p.pool.as_str(),
                    p.healthy,
                    p.status.as_str(),
                    p.detail.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("pool-a", false, "degraded", "redis: connection refused"),
                ("pool-b", false, "no report", "")
            ]
        );
    }
}
