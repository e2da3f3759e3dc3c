//! The gRPC `AdminService`: pools, flavors, per-project limits, placement lookup and the raft
//! cluster for operators (`zaqar admin`), behind an optional shared bearer token.

use std::sync::Arc;

use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::{Request, Response, Status};
use zaqar_proto::admin_pb as pb;
use zaqar_proto::admin_pb::admin_service_server::{AdminService, AdminServiceServer};
use zaqar_proto::{ErrorCode, ZaqarError};

use crate::backend::CatalogBackend;
use crate::flavors::{self, FlavorView, PoolUpdate};
use crate::model::{project_limits_not_found, PoolSpec, ProjectLimitsSpec};
use crate::raft::{RaftCatalog, RaftStatus};

/// Serves the admin API of one catalog backend; the raft node, when the backend is raft,
/// also answers cluster status and membership changes.
#[derive(Clone)]
pub struct AdminServer {
    backend: Arc<dyn CatalogBackend>,
    kind: String,
    raft: Option<Arc<RaftCatalog>>,
}

/// Checks the admin credential: a client certificate when one is required
/// (mTLS; the TLS handshake has verified it against the client CA), and
/// `authorization: Bearer TOKEN` when a token is configured.
#[derive(Clone)]
pub struct TokenCheck {
    token: Option<Arc<str>>,
    client_cert: bool,
}

impl Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let certified = request.peer_certs().is_some_and(|certs| !certs.is_empty());
        if self.client_cert && !certified {
            return Err(ZaqarError::new(
                ErrorCode::Unauthorized,
                "this catalog's admin API requires a client certificate (mTLS)",
            )
            .into());
        }
        let Some(token) = &self.token else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        match given {
            Some(given) if zaqar_proto::constant_time_eq(given.as_bytes(), token.as_bytes()) => {
                Ok(request)
            }
            Some(_) => Err(ZaqarError::new(ErrorCode::Unauthorized, "wrong admin token").into()),
            None => Err(ZaqarError::new(
                ErrorCode::Unauthorized,
                "this catalog requires an admin token: authorization: Bearer TOKEN",
            )
            .into()),
        }
    }
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
        self.into_service_with(token, false)
    }

    /// Like [`AdminServer::into_service`]; with `client_cert`, every call must
    /// also come over a TLS connection with a verified client certificate.
    pub fn into_service_with(
        self,
        token: Option<String>,
        client_cert: bool,
    ) -> InterceptedService<AdminServiceServer<AdminServer>, TokenCheck> {
        let check = TokenCheck {
            token: token.map(Arc::from),
            client_cert,
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
        flavor: pool.flavor,
        uri: pool.uri,
        endpoint: pool.endpoint,
        options_json: pool.options_json,
    }
}

/// Zaqar's rule: the weight is an integer from 0 to `u32::MAX`.
fn weight_from_pb(weight: i64, pool: &str) -> Result<u32, ZaqarError> {
    u32::try_from(weight).map_err(|_| {
        ZaqarError::bad_request(format!(
            "invalid weight {weight} of pool {pool:?}: an integer from 0 to {}",
            u32::MAX
        ))
    })
}

fn pool_from_pb(pool: pb::Pool) -> Result<PoolSpec, ZaqarError> {
    let weight = weight_from_pb(pool.weight, &pool.name)?;
    Ok(PoolSpec {
        name: pool.name,
        weight,
        flavor: pool.flavor,
        uri: pool.uri,
        endpoint: pool.endpoint,
        options_json: pool.options_json,
    })
}

fn flavor_to_pb(flavor: FlavorView) -> pb::Flavor {
    pb::Flavor {
        name: flavor.name,
        capabilities: flavor.capabilities,
        pool_list: flavor.pool_list,
    }
}

fn project_limits_to_pb(limits: ProjectLimitsSpec) -> pb::ProjectLimits {
    pb::ProjectLimits {
        project: limits.project,
        limits_json: limits.limits_json,
    }
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
        self.backend.add_pool(spec).await?;
        reply(self.backend.get_pool(&name).await.map(pool_to_pb))
    }

    async fn remove_pool(&self, request: Request<pb::PoolName>) -> Reply<pb::Empty> {
        let name = request.into_inner().name;
        reply(self.backend.remove_pool(&name).await.map(|()| pb::Empty {}))
    }

    async fn update_pool(&self, request: Request<pb::PoolUpdate>) -> Reply<pb::Pool> {
        let update = request.into_inner();
        let weight = match update.weight {
            Some(weight) => Some(weight_from_pb(weight, &update.name)?),
            None => None,
        };
        let update = PoolUpdate {
            name: update.name,
            weight,
            uri: update.uri,
            flavor: update.flavor,
            endpoint: update.endpoint,
            options_json: update.options_json,
        };
        reply(
            flavors::update_pool(&*self.backend, update)
                .await
                .map(pool_to_pb),
        )
    }

    async fn list_flavors(&self, _request: Request<pb::Empty>) -> Reply<pb::ListFlavorsReply> {
        let listed = flavors::list_flavors(&*self.backend).await;
        reply(listed.map(|flavors| pb::ListFlavorsReply {
            flavors: flavors.into_iter().map(flavor_to_pb).collect(),
        }))
    }

    async fn get_flavor(&self, request: Request<pb::FlavorName>) -> Reply<pb::Flavor> {
        let name = request.into_inner().name;
        reply(
            flavors::get_flavor(&*self.backend, &name)
                .await
                .map(flavor_to_pb),
        )
    }

    async fn put_flavor(&self, request: Request<pb::PutFlavorRequest>) -> Reply<pb::Flavor> {
        let req = request.into_inner();
        let written = flavors::put_flavor(&*self.backend, &req.name, &req.pool_list, req.replace);
        reply(written.await.map(flavor_to_pb))
    }

    async fn remove_flavor(&self, request: Request<pb::FlavorName>) -> Reply<pb::Empty> {
        let name = request.into_inner().name;
        let removed = flavors::remove_flavor(&*self.backend, &name).await;
        reply(removed.map(|()| pb::Empty {}))
    }

    async fn list_project_limits(
        &self,
        _request: Request<pb::Empty>,
    ) -> Reply<pb::ListProjectLimitsReply> {
        let listed = self.backend.list_project_limits().await;
        reply(listed.map(|projects| pb::ListProjectLimitsReply {
            projects: projects.into_iter().map(project_limits_to_pb).collect(),
        }))
    }

    async fn get_project_limits(
        &self,
        request: Request<pb::ProjectId>,
    ) -> Reply<pb::ProjectLimits> {
        let project = request.into_inner().project;
        let found = self.backend.get_project_limits(&project).await?;
        let found = found.ok_or_else(|| project_limits_not_found(&project));
        reply(found.map(project_limits_to_pb))
    }

    async fn put_project_limits(
        &self,
        request: Request<pb::ProjectLimits>,
    ) -> Reply<pb::ProjectLimits> {
        let limits = request.into_inner();
        let spec = ProjectLimitsSpec {
            project: limits.project,
            limits_json: limits.limits_json,
        }
        .validated()?;
        self.backend.put_project_limits(spec.clone()).await?;
        Ok(Response::new(project_limits_to_pb(spec)))
    }

    async fn remove_project_limits(&self, request: Request<pb::ProjectId>) -> Reply<pb::Empty> {
        let project = request.into_inner().project;
        let removed = self.backend.remove_project_limits(&project).await;
        reply(removed.map(|()| pb::Empty {}))
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
#[path = "admin_tests.rs"]
mod tests;
