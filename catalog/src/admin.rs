//! The gRPC `AdminService`: pools, placement lookup and the raft cluster for operators
//! (`zaqar admin`), behind an optional shared bearer token.

use std::sync::Arc;

use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::{Request, Response, Status};
use zaqar_proto::admin_pb as pb;
use zaqar_proto::admin_pb::admin_service_server::{AdminService, AdminServiceServer};
use zaqar_proto::{ErrorCode, ZaqarError};

use crate::backend::CatalogBackend;
use crate::model::PoolSpec;
use crate::raft::{RaftCatalog, RaftStatus};

/// Serves the admin API of one catalog backend; the raft node, when the backend is raft,
/// also answers cluster status and membership changes.
#[derive(Clone)]
pub struct AdminServer {
    backend: Arc<dyn CatalogBackend>,
    kind: String,
    raft: Option<Arc<RaftCatalog>>,
}

/// Checks `authorization: Bearer TOKEN` when a token is configured.
#[derive(Clone)]
pub struct TokenCheck {
    token: Option<Arc<str>>,
}

impl Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(token) = &self.token else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        match given {
            Some(given) if constant_time_eq(given.as_bytes(), token.as_bytes()) => Ok(request),
            Some(_) => Err(ZaqarError::new(ErrorCode::Unauthorized, "wrong admin token").into()),
            None => Err(ZaqarError::new(
                ErrorCode::Unauthorized,
                "this catalog requires an admin token: authorization: Bearer TOKEN",
            )
            .into()),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AdminServer {
    /// The admin API of `backend`, whose kind (`sqlite`, `postgres`, `etcd`) status reports.
    pub fn new(backend: Arc<dyn CatalogBackend>, kind: &str) -> Self {
        AdminServer {
            backend,
            kind: kind.to_string(),
            raft: None,
        }
    }

    /// The admin API of a raft catalog node.
    pub fn for_raft(node: Arc<RaftCatalog>) -> Self {
        AdminServer {
            backend: node.clone(),
            kind: "raft".to_string(),
            raft: Some(node),
        }
    }

    /// The tonic service; every call must carry `token` when it is `Some`.
    pub fn into_service(
        self,
        token: Option<String>,
    ) -> InterceptedService<AdminServiceServer<AdminServer>, TokenCheck> {
        let check = TokenCheck {
            token: token.map(Arc::from),
        };
        AdminServiceServer::with_interceptor(self, check)
    }

    fn raft(&self) -> Result<&RaftCatalog, Status> {
        self.raft.as_deref().ok_or_else(|| {
            ZaqarError::bad_request(format!(
                "this catalog runs on {}, not raft: it has no catalog nodes to change",
                self.kind
            ))
            .into()
        })
    }

    fn status_reply(&self) -> pb::ClusterStatusReply {
        pb::ClusterStatusReply {
            backend: self.kind.clone(),
            raft: self
                .raft
                .as_ref()
                .map(|node| raft_status_to_pb(node.status())),
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn reply<T>(result: Result<T, ZaqarError>) -> Reply<T> {
    result.map(Response::new).map_err(Status::from)
}

fn pool_to_pb(pool: PoolSpec) -> pb::Pool {
    pb::Pool {
        name: pool.name,
        weight: i64::from(pool.weight),
        group: pool.group,
        uri: pool.uri,
        endpoint: pool.endpoint,
        options_json: pool.options_json,
    }
}

/// Zaqar's rule: the weight is an integer >= 0 (here also at most `u32::MAX`).
fn pool_from_pb(pool: pb::Pool) -> Result<PoolSpec, ZaqarError> {
    let weight = u32::try_from(pool.weight).map_err(|_| {
        ZaqarError::bad_request(format!(
            "invalid weight {} of pool {:?}: an integer from 0 to {}",
            pool.weight,
            pool.name,
            u32::MAX
        ))
    })?;
    Ok(PoolSpec {
        name: pool.name,
        weight,
        group: pool.group,
        uri: pool.uri,
        endpoint: pool.endpoint,
        options_json: pool.options_json,
    })
}

fn raft_status_to_pb(status: RaftStatus) -> pb::RaftStatus {
    let member = |voter: bool| move |(id, addr): (u64, String)| pb::Member { id, addr, voter };
    let leader_addr = status
        .leader
        .and_then(|leader| {
            let all = status.voters.iter().chain(&status.learners);
            all.clone()
                .find(|(id, _)| *id == leader)
                .map(|(_, a)| a.clone())
        })
        .unwrap_or_default();
    let mut members: Vec<pb::Member> = status.voters.into_iter().map(member(true)).collect();
    members.extend(status.learners.into_iter().map(member(false)));
    members.sort_by_key(|m| m.id);
    pb::RaftStatus {
        node_id: status.node_id,
        state: status.state,
        leader_id: status.leader,
        leader_addr,
        term: status.term,
        last_log_index: status.last_log_index,
        last_applied_index: status.last_applied_index,
        snapshot_index: status.snapshot_index,
        members,
    }
}

#[tonic::async_trait]
impl AdminService for AdminServer {
    async fn list_pools(&self, _request: Request<pb::Empty>) -> Reply<pb::ListPoolsReply> {
        let pools = self.backend.list_pools().await;
        reply(pools.map(|pools| pb::ListPoolsReply {
            pools: pools.into_iter().map(pool_to_pb).collect(),
        }))
    }

    async fn get_pool(&self, request: Request<pb::PoolName>) -> Reply<pb::Pool> {
        let name = request.into_inner().name;
        reply(self.backend.get_pool(&name).await.map(pool_to_pb))
    }

    async fn add_pool(&self, request: Request<pb::Pool>) -> Reply<pb::Pool> {
        let spec = pool_from_pb(request.into_inner())?.validated()?;
        let name = spec.name.clone();
        self.backend.register_pool(spec).await?;
        reply(self.backend.get_pool(&name).await.map(pool_to_pb))
    }

    async fn remove_pool(&self, request: Request<pb::PoolName>) -> Reply<pb::Empty> {
        let name = request.into_inner().name;
        reply(self.backend.remove_pool(&name).await.map(|()| pb::Empty {}))
    }

    async fn lookup_queue(
        &self,
        request: Request<pb::LookupQueueRequest>,
    ) -> Reply<pb::LookupQueueReply> {
        let req = request.into_inner();
        let placement = self.backend.lookup(&req.project, &req.queue).await;
        reply(placement.map(|placement| match placement {
            Some(placement) => pb::LookupQueueReply {
                found: true,
                pool: placement.pool,
                endpoint: placement.endpoint,
            },
            None => pb::LookupQueueReply::default(),
        }))
    }

    async fn cluster_status(&self, _request: Request<pb::Empty>) -> Reply<pb::ClusterStatusReply> {
        Ok(Response::new(self.status_reply()))
    }

    async fn add_catalog_node(
        &self,
        request: Request<pb::CatalogNode>,
    ) -> Reply<pb::ClusterStatusReply> {
        let node = request.into_inner();
        self.raft()?.add_voter(node.node_id, &node.addr).await?;
        Ok(Response::new(self.status_reply()))
    }

    async fn remove_catalog_node(
        &self,
        request: Request<pb::CatalogNodeId>,
    ) -> Reply<pb::ClusterStatusReply> {
        let node_id = request.into_inner().node_id;
        self.raft()?.remove_node(node_id).await?;
        Ok(Response::new(self.status_reply()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::testing::TestCluster;
    use crate::SqlCatalog;
    use tokio_stream::wrappers::TcpListenerStream;
    use zaqar_proto::admin_pb::admin_service_client::AdminServiceClient;

    type Client = AdminServiceClient<tonic::transport::Channel>;

    /// An admin server on a real socket, and a client of it.
    async fn serve(server: AdminServer, token: Option<&str>) -> Client {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(server.into_service(token.map(str::to_string)))
                .serve_with_incoming(TcpListenerStream::new(listener)),
        );
        AdminServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap()
    }

    fn pool(name: &str, weight: i64) -> pb::Pool {
        pb::Pool {
            name: name.into(),
            weight,
            group: String::new(),
            uri: "redis://127.0.0.1:6379/0".into(),
            endpoint: "http://127.0.0.1:7001".into(),
            options_json: String::new(),
        }
    }

    fn code(status: Status) -> ErrorCode {
        ZaqarError::from(status).code
    }

    #[tokio::test]
    async fn bad_admin_input_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("sqlite://{}/catalog.db", dir.path().display());
        let backend = Arc::new(SqlCatalog::open(&uri).await.unwrap());
        let mut client = serve(AdminServer::new(backend.clone(), "sqlite"), None).await;

        let added = client.add_pool(pool("a", 5)).await.unwrap().into_inner();
        assert_eq!((added.weight, added.options_json.as_str()), (5, "{}"));
        for weight in [-1, i64::from(u32::MAX) + 1] {
            let err = client.add_pool(pool("a", weight)).await.unwrap_err();
            assert_eq!(code(err), ErrorCode::BadRequest);
        }
        let err = client.add_pool(pool("bad name", 1)).await.unwrap_err();
        assert_eq!(code(err), ErrorCode::BadRequest);
        // The same name again replaces the pool (Zaqar's PUT).
        client.add_pool(pool("a", 7)).await.unwrap();
        let pools = client.list_pools(pb::Empty {}).await.unwrap().into_inner();
        assert_eq!(pools.pools.len(), 1);
        assert_eq!(pools.pools[0].weight, 7);

        let unknown = pb::PoolName {
            name: "nope".into(),
        };
        let err = client.get_pool(unknown.clone()).await.unwrap_err();
        assert_eq!(code(err), ErrorCode::NotFound);
        let err = client.remove_pool(unknown).await.unwrap_err();
        assert_eq!(code(err), ErrorCode::NotFound);

        backend.place_queue("p", "q", "").await.unwrap();
        let lookup = pb::LookupQueueRequest {
            project: "p".into(),
            queue: "q".into(),
        };
        let found = client.lookup_queue(lookup).await.unwrap().into_inner();
        assert!(found.found);
        assert_eq!(found.pool, "a");
        let a = pb::PoolName { name: "a".into() };
        let err = ZaqarError::from(client.remove_pool(a.clone()).await.unwrap_err());
        assert_eq!(err.code, ErrorCode::Conflict);
        assert!(err.description.contains("1 queue"), "{err}");
        assert_eq!(client.get_pool(a).await.unwrap().into_inner().weight, 7);

        let status = client.cluster_status(pb::Empty {}).await.unwrap();
        assert_eq!(status.into_inner().backend, "sqlite");
        let add = pb::CatalogNode {
            node_id: 2,
            addr: "127.0.0.1:7101".into(),
        };
        let err = client.add_catalog_node(add).await.unwrap_err();
        assert_eq!(code(err), ErrorCode::BadRequest);
    }

    #[tokio::test]
    async fn a_configured_token_is_required() {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("sqlite://{}/catalog.db", dir.path().display());
        let backend = Arc::new(SqlCatalog::open(&uri).await.unwrap());
        let mut client = serve(AdminServer::new(backend, "sqlite"), Some("s3cret")).await;
        let err = client.list_pools(pb::Empty {}).await.unwrap_err();
        assert_eq!(code(err), ErrorCode::Unauthorized);
        let mut request = Request::new(pb::Empty {});
        let wrong = "Bearer nope".parse().unwrap();
        request.metadata_mut().insert("authorization", wrong);
        assert_eq!(
            code(client.list_pools(request).await.unwrap_err()),
            ErrorCode::Unauthorized
        );
        let mut request = Request::new(pb::Empty {});
        let right = "Bearer s3cret".parse().unwrap();
        request.metadata_mut().insert("authorization", right);
        assert!(client.list_pools(request).await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn raft_status_names_the_leader_and_members() {
        let cluster = TestCluster::start(1).await;
        let node = cluster.node(1);
        let mut client = serve(AdminServer::for_raft(node.clone()), None).await;
        // A write goes through once the node has elected itself.
        node.register_pool(PoolSpec {
            name: "a".into(),
            weight: 1,
            group: String::new(),
            uri: "redis://x:1".into(),
            endpoint: "http://x:1".into(),
            options_json: String::new(),
        })
        .await
        .unwrap();
        let status = client.cluster_status(pb::Empty {}).await.unwrap();
        let status = status.into_inner();
        assert_eq!(status.backend, "raft");
        let raft = status.raft.unwrap();
        assert_eq!((raft.node_id, raft.leader_id), (1, Some(1)));
        assert_eq!(raft.members.len(), 1);
        assert!(raft.members[0].voter);
        assert_eq!(raft.leader_addr, raft.members[0].addr);
        assert!(raft.last_applied_index.is_some());
        let err = client
            .remove_catalog_node(pb::CatalogNodeId { node_id: 9 })
            .await
            .unwrap_err();
        assert_eq!(code(err), ErrorCode::NotFound);
        drop(client);
        cluster.shutdown().await;
    }
}
