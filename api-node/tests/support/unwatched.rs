//! The real catalog service as a catalog without a change feed answers: every call
//! goes to `CatalogServer` but `Watch`, which is unimplemented, so an api-node keeps
//! its cached placements by age and learns of a move only by looking again (the
//! path tests of that fallback drive).

use tonic::{Request, Response, Status};
use zaqar_catalog::CatalogServer;
use zaqar_proto::pb::catalog_service_server::CatalogService;
use zaqar_proto::pb::*;

type Reply<T> = Result<Response<T>, Status>;

pub struct Unwatched(pub CatalogServer);

#[tonic::async_trait]
impl CatalogService for Unwatched {
    async fn lookup(&self, request: Request<QueueRef>) -> Reply<LookupReply> {
        self.0.lookup(request).await
    }

    async fn place_queue(&self, request: Request<PlaceQueueRequest>) -> Reply<Placement> {
        self.0.place_queue(request).await
    }

    async fn remove_queue(&self, request: Request<QueueRef>) -> Reply<Empty> {
        self.0.remove_queue(request).await
    }

    async fn list_queues(&self, request: Request<ListQueuesRequest>) -> Reply<ListQueuesReply> {
        self.0.list_queues(request).await
    }

    async fn list_pools(&self, request: Request<Empty>) -> Reply<ListPoolsReply> {
        self.0.list_pools(request).await
    }

    async fn register_pool(&self, request: Request<Pool>) -> Reply<Empty> {
        self.0.register_pool(request).await
    }

    type WatchStream = tokio_stream::wrappers::ReceiverStream<Result<CatalogEvent, Status>>;

    async fn watch(&self, _: Request<WatchRequest>) -> Reply<Self::WatchStream> {
        Err(Status::unimplemented("this catalog has no change feed"))
    }

    async fn report_health(&self, request: Request<PoolHealthReport>) -> Reply<Empty> {
        self.0.report_health(request).await
    }

    async fn pool_health(&self, request: Request<Empty>) -> Reply<PoolHealthReply> {
        self.0.pool_health(request).await
    }

    async fn project_limits(
        &self,
        request: Request<ProjectLimitsRequest>,
    ) -> Reply<ProjectLimitsReply> {
        self.0.project_limits(request).await
    }
}
