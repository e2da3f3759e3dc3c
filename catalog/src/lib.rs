//! catalog: pools, flavors and queue placement behind the `CatalogBackend` seam, served over gRPC.
//!
//! The backend is chosen from the catalog URI scheme by [`open_backend`]; every backend
//! implements [`CatalogBackend`] and passes the one conformance suite in
//! `conformance/`. [`CatalogServer`] serves any backend as `CatalogService`, and
//! [`AdminServer`] as the operators' `AdminService`.

pub mod admin;
pub mod backend;
#[cfg(feature = "etcd")]
pub mod etcd_backend;
pub mod flavors;
pub mod health;
pub mod model;
#[cfg(feature = "mongodb")]
pub mod mongo_backend;
pub mod raft;
pub mod server;
pub mod sql_backend;
mod sql_feed;
pub mod watch;
pub mod weighted;

#[cfg(test)]
mod conformance;

use std::sync::Arc;

pub use admin::AdminServer;
pub use backend::{CatalogBackend, CatalogResult};
#[cfg(feature = "etcd")]
pub use etcd_backend::EtcdCatalog;
pub use flavors::{FlavorView, PoolUpdate};
pub use health::{HealthBoard, HealthReport, PoolHealth};
pub use model::{FlavorSpec, ListQueues, Placement, PoolSpec, ProjectLimitsSpec, QueuePage};
pub use server::CatalogServer;
pub use sql_backend::SqlCatalog;
pub use watch::{CatalogEvent, EventHub, Watch};
use zaqar_proto::uri::CatalogKind;
use zaqar_proto::ZaqarError;

/// The optional catalog backends this build has (cargo features): `etcd`, `mongodb`.
pub fn optional_backends() -> Vec<&'static str> {
    let mut backends = Vec::new();
    if cfg!(feature = "etcd") {
        backends.push("etcd");
    }
    if cfg!(feature = "mongodb") {
        backends.push("mongodb");
    }
    backends
}

/// Opens the catalog named by `uri`: `sqlite://path/to/catalog.db`,
/// `postgres://user@host:port/database`, with the `etcd` feature
/// `etcd://host:port[,host:port...]/prefix`, or with the `mongodb` feature
/// `mongodb://host[,host...]/database?replicaSet=name`.
pub async fn open_backend(uri: &str) -> Result<Arc<dyn CatalogBackend>, ZaqarError> {
    match CatalogKind::of(uri)? {
        CatalogKind::Sqlite | CatalogKind::Postgres => Ok(Arc::new(SqlCatalog::open(uri).await?)),
        CatalogKind::Etcd => open_etcd(uri).await,
        CatalogKind::Mongodb => open_mongo(uri).await,
    }
}

/// The kind of backend `uri` names, as cluster status reports it: `sqlite`, `postgres`,
/// `etcd` or `mongodb` (`unknown` for anything else).
pub fn backend_kind(uri: &str) -> &'static str {
    CatalogKind::of(uri).map_or("unknown", CatalogKind::name)
}

#[cfg(feature = "etcd")]
async fn open_etcd(uri: &str) -> Result<Arc<dyn CatalogBackend>, ZaqarError> {
    Ok(Arc::new(etcd_backend::EtcdCatalog::open(uri).await?))
}

#[cfg(not(feature = "etcd"))]
async fn open_etcd(uri: &str) -> Result<Arc<dyn CatalogBackend>, ZaqarError> {
    Err(ZaqarError::bad_request(format!(
        "cannot open {uri:?}: this build of zaqar has no etcd catalog (cargo feature `etcd`)"
    )))
}

#[cfg(feature = "mongodb")]
async fn open_mongo(uri: &str) -> Result<Arc<dyn CatalogBackend>, ZaqarError> {
    Ok(Arc::new(mongo_backend::MongoCatalog::open(uri).await?))
}

#[cfg(not(feature = "mongodb"))]
async fn open_mongo(_uri: &str) -> Result<Arc<dyn CatalogBackend>, ZaqarError> {
    Err(ZaqarError::bad_request(
        "this build of zaqar has no MongoDB catalog (cargo feature `zaqar-catalog/mongodb`)",
    ))
}
