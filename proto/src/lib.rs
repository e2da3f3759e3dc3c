//! The contract between zaqar-rs roles: generated gRPC code, shared limits and errors.

pub mod cluster_auth;
pub mod error;
pub mod filter;
pub mod grpc_client;
pub mod limits;
#[cfg(feature = "mongodb")]
pub mod mongo;
pub mod redis_uri;
pub mod stopping;
pub mod timefmt;
pub mod trace;
pub mod uri;

/// Generated prost messages and tonic clients/servers of `zaqar.v1`.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("zaqar.v1");
}

/// Generated prost messages and tonic clients/servers of `zaqar.raft.v1`, the internal
/// protocol between catalog raft nodes.
pub mod raft_pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("zaqar.raft.v1");
}

/// Generated prost messages and tonic clients/servers of `zaqar.admin.v1`, the operators'
/// API of the catalog (`zaqar admin`).
pub mod admin_pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("zaqar.admin.v1");
}

/// The stream of `PoolService::watch_queues`, boxed: every pool-node answers with this
/// type, so that a pool-node of the same process can be called as a [`DynPoolService`].
pub type QueueActivityStream = std::pin::Pin<
    Box<
        dyn tonic::codegen::tokio_stream::Stream<Item = Result<pb::QueueActivity, tonic::Status>>
            + Send,
    >,
>;

/// A pool-node's `PoolService` as a trait object (`zaqar standalone` calls it in process).
pub type DynPoolService =
    dyn pb::pool_service_server::PoolService<WatchQueuesStream = QueueActivityStream>;

pub use cluster_auth::constant_time_eq;
pub use error::{ErrorCode, ZaqarError};
