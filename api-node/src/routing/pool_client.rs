//! The client of one pool-node's `PoolService`: over gRPC, or — when the pool-node
//! runs in the same process (`zaqar standalone`) — a direct call of its service,
//! with no protobuf encoding, no HTTP/2 and no socket in between.
//!
//! Both answer the same `Result<Response<_>, Status>`, so an operation does not
//! know which one it talks to. An in-process call is bounded by the same
//! `request_timeout` as a gRPC call, and a timeout is the same status (no
//! zaqar-rs error code: the pool counts as unreachable, 503).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tonic::{Response, Status};
use zaqar_proto::cluster_auth::AuthChannel;
use zaqar_proto::pb::pool_service_client::PoolServiceClient;
use zaqar_proto::pb::*;
use zaqar_proto::DynPoolService;

/// Pool-nodes served by this process, by the endpoint they are registered with.
pub type InProcessPools = HashMap<String, Arc<DynPoolService>>;

/// A client of one pool-node.
#[derive(Clone)]
pub enum PoolClient {
    /// A pool-node reached over gRPC.
    Grpc(PoolServiceClient<AuthChannel>),
    /// A pool-node of this process, called directly.
    InProcess {
        service: Arc<DynPoolService>,
        timeout: Duration,
    },
}

/// One method per RPC, with the signature of the generated gRPC client's; each call
/// is counted and timed (`zaqar_pool_calls_total`, `zaqar_pool_call_duration_seconds`).
macro_rules! pool_calls {
    ($($method:ident($request:ty) -> $reply:ty;)*) => {
        impl PoolClient {
            $(
                pub async fn $method(&mut self, request: $request) -> Result<Response<$reply>, Status> {
                    let started = std::time::Instant::now();
                    let answer = match self {
                        PoolClient::Grpc(client) => client.$method(request).await,
                        PoolClient::InProcess { service, timeout } => {
                            let call = service.$method(tonic::Request::new(request));
                            tokio::time::timeout(*timeout, call)
                                .await
                                .unwrap_or_else(|_| Err(Status::cancelled("Timeout expired")))
                        }
                    };
                    let code = answer.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
                    crate::metrics::record_pool_call(stringify!($method), code, started.elapsed());
                    answer
                }
            )*
        }
    };
}

pool_calls! {
    create_queue(CreateQueueRequest) -> CreateQueueReply;
    get_queue(QueueRef) -> GetQueueReply;
    set_queue_metadata(SetQueueMetadataRequest) -> Empty;
    delete_queue(QueueRef) -> Empty;
    queue_stats(QueueRef) -> QueueStatsReply;
    purge_queue(PurgeQueueRequest) -> Empty;
    post_messages(PostMessagesRequest) -> PostMessagesReply;
    list_messages(ListMessagesRequest) -> ListMessagesReply;
    get_messages(GetMessagesRequest) -> MessagesReply;
    delete_messages(DeleteMessagesRequest) -> Empty;
    delete_message(DeleteMessageRequest) -> Empty;
    pop_messages(PopMessagesRequest) -> MessagesReply;
    create_claim(CreateClaimRequest) -> ClaimReply;
    get_claim(ClaimRef) -> ClaimReply;
    update_claim(UpdateClaimRequest) -> Empty;
    delete_claim(ClaimRef) -> Empty;
    create_subscription(CreateSubscriptionRequest) -> CreateSubscriptionReply;
    list_subscriptions(ListSubscriptionsRequest) -> ListSubscriptionsReply;
    get_subscription(SubscriptionRef) -> Subscription;
    update_subscription(UpdateSubscriptionRequest) -> Empty;
    delete_subscription(SubscriptionRef) -> Empty;
    confirm_subscription(ConfirmSubscriptionRequest) -> Empty;
    health(Empty) -> HealthReply;
}
