//! The catalog's gRPC `AdminService` as api-node uses it for `/v2/pools` and
//! `/v2/flavors`: the same catalog nodes as placement (tried in turn), with the
//! optional admin token sent as `authorization: Bearer TOKEN`.

use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::{Request, Status};
use zaqar_proto::admin_pb as pb;
use zaqar_proto::admin_pb::admin_service_client::AdminServiceClient;
use zaqar_proto::cluster_auth::AuthChannel;
use zaqar_proto::ZaqarError;

use crate::config::ApiConfig;
use crate::routing::Catalogs;

/// Adds the admin token to every call, when there is one.
#[derive(Clone)]
pub struct BearerToken(Option<AsciiMetadataValue>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

type Client = AdminServiceClient<InterceptedService<AuthChannel, BearerToken>>;

/// A client of the catalog's AdminService.
pub struct AdminCatalog {
    catalog: Catalogs<Client>,
}

impl AdminCatalog {
    /// Connects lazily to the catalog nodes of `config` (must run inside tokio).
    pub fn new(config: &ApiConfig) -> Result<AdminCatalog, ZaqarError> {
        let token = match &config.catalog_admin_token {
            Some(token) => Some(format!("Bearer {token}").parse().map_err(|_| {
                ZaqarError::internal("catalog_admin_token must be printable ASCII")
            })?),
            None => None,
        };
        let token = BearerToken(token);
        let catalog = Catalogs::new(
            &config.catalog_endpoint,
            config.connect_timeout(),
            config.request_timeout(),
            config.grpc_client_tls()?.as_ref(),
            &config.cluster_token()?,
            move |channel| AdminServiceClient::with_interceptor(channel, token.clone()),
        )?;
        Ok(AdminCatalog { catalog })
    }

    /// The catalog's backend and, for raft, the answering node's view of the group.
    pub async fn cluster_status(&self) -> Result<pb::ClusterStatusReply, ZaqarError> {
        self.catalog
            .call(|mut admin| async move { admin.cluster_status(pb::Empty {}).await })
            .await
    }

    pub async fn list_pools(&self) -> Result<Vec<pb::Pool>, ZaqarError> {
        let reply = self
            .catalog
            .call(|mut admin| async move { admin.list_pools(pb::Empty {}).await })
            .await?;
        Ok(reply.pools)
    }

    pub async fn get_pool(&self, name: &str) -> Result<pb::Pool, ZaqarError> {
        let name = pb::PoolName { name: name.into() };
        self.catalog
            .call(|mut admin| {
                let name = name.clone();
                async move { admin.get_pool(name).await }
            })
            .await
    }

    pub async fn add_pool(&self, pool: pb::Pool) -> Result<pb::Pool, ZaqarError> {
        self.catalog
            .call(|mut admin| {
                let pool = pool.clone();
                async move { admin.add_pool(pool).await }
            })
            .await
    }

    pub async fn update_pool(&self, update: pb::PoolUpdate) -> Result<pb::Pool, ZaqarError> {
        self.catalog
            .call(|mut admin| {
                let update = update.clone();
                async move { admin.update_pool(update).await }
            })
            .await
    }

    pub async fn remove_pool(&self, name: &str) -> Result<(), ZaqarError> {
        let name = pb::PoolName { name: name.into() };
        self.catalog
            .call(|mut admin| {
                let name = name.clone();
                async move { admin.remove_pool(name).await }
            })
            .await?;
        Ok(())
    }

    pub async fn list_flavors(&self) -> Result<Vec<pb::Flavor>, ZaqarError> {
        let reply = self
            .catalog
            .call(|mut admin| async move { admin.list_flavors(pb::Empty {}).await })
            .await?;
        Ok(reply.flavors)
    }

    pub async fn get_flavor(&self, name: &str) -> Result<pb::Flavor, ZaqarError> {
        let name = pb::FlavorName { name: name.into() };
        self.catalog
            .call(|mut admin| {
                let name = name.clone();
                async move { admin.get_flavor(name).await }
            })
            .await
    }

    pub async fn put_flavor(&self, put: pb::PutFlavorRequest) -> Result<pb::Flavor, ZaqarError> {
        self.catalog
            .call(|mut admin| {
                let put = put.clone();
                async move { admin.put_flavor(put).await }
            })
            .await
    }

    pub async fn remove_flavor(&self, name: &str) -> Result<(), ZaqarError> {
        let name = pb::FlavorName { name: name.into() };
        self.catalog
            .call(|mut admin| {
                let name = name.clone();
                async move { admin.remove_flavor(name).await }
            })
            .await?;
        Ok(())
    }
}
