//! The gRPC `CatalogService`: unpacks requests, calls the [`CatalogBackend`], packs replies.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use zaqar_proto::pb;
use zaqar_proto::pb::catalog_service_server::{CatalogService, CatalogServiceServer};
use zaqar_proto::ZaqarError;

use crate::backend::CatalogBackend;
use crate::model::{ListQueues, Placement, PoolSpec};

/// Serves one catalog backend over gRPC.
#[derive(Clone)]
pub struct CatalogServer {
    backend: Arc<dyn CatalogBackend>,
}

impl CatalogServer {
    pub fn new(backend: Arc<dyn CatalogBackend>) -> Self {
        CatalogServer { backend }
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

fn pool_to_pb(pool: PoolSpec) -> pb::Pool {
    pb::Pool {
        name: pool.name,
        weight: pool.weight,
        group: pool.group,
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
        let placement = self
            .backend
            .place_queue(&queue.project, &queue.queue, &req.flavor)
            .await;
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
        };
        let page = self.backend.list_queues(&req.project, &params).await;
        reply(page.map(|page| pb::ListQueuesReply {
            queues: page.queues.into_iter().map(placement_to_pb).collect(),
            count: page.count,
        }))
    }

    async fn list_pools(&self, _request: Request<pb::Empty>) -> Reply<pb::ListPoolsReply> {
        let pools = self.backend.list_pools().await;
        reply(pools.map(|pools| pb::ListPoolsReply {
            pools: pools.into_iter().map(pool_to_pb).collect(),
        }))
    }

    async fn register_pool(&self, request: Request<pb::Pool>) -> Reply<pb::Empty> {
        let pool = request.into_inner();
        let spec = PoolSpec {
            name: pool.name,
            weight: pool.weight,
            group: pool.group,
            uri: pool.uri,
            endpoint: pool.endpoint,
            options_json: pool.options_json,
        };
        reply(
            self.backend
                .register_pool(spec)
                .await
                .map(|()| pb::Empty {}),
        )
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

    fn pool(name: &str, endpoint: &str) -> pb::Pool {
        pb::Pool {
            name: name.into(),
            weight: 100,
            group: String::new(),
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
        let (mut client, _dir) = serve().await;
        client
            .register_pool(pool("pool-a", "http://127.0.0.1:7001"))
            .await
            .unwrap();
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
        };
        let placed = client.place_queue(request).await.unwrap().into_inner();
        assert_eq!(placed.queue, Some(queue("p", "q")));
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
        };
        assert_eq!(
            code(client.place_queue(no_pools).await.unwrap_err()),
            ErrorCode::Unavailable
        );

        let missing = pb::PlaceQueueRequest {
            queue: None,
            flavor: String::new(),
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
}
