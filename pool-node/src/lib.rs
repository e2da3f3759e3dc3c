//! pool-node: serves `PoolService` over gRPC on one message store.
//!
//! The store is chosen from the pool URI scheme (`redis://`, `sqlite://`, `mongodb://`) by
//! [`open_store`]; every backend implements [`MessageStore`] and passes the one
//! conformance suite in `conformance/`.

pub mod activity;
pub mod dead_letter;
pub mod encryption;
pub mod expiry;
pub mod metrics;
#[cfg(feature = "mongodb")]
pub mod mongo_store;
pub mod notifier;
pub mod quota;
pub mod redis_store;
pub mod serve;
pub mod server;
pub mod sqlite_store;
pub mod store;

#[cfg(test)]
mod conformance;

use std::sync::Arc;

pub use encryption::MessageCipher;
pub use expiry::spawn_expiry_sweep;
pub use notifier::{Notifier, NotifierConfig};
pub use server::PoolServer;
pub use store::{MessageStore, StoreResult};
use zaqar_proto::uri::StoreKind;
use zaqar_proto::ZaqarError;

/// The optional message stores this build has (cargo features): `mongodb`.
pub fn optional_stores() -> Vec<&'static str> {
    let mut stores = Vec::new();
    if cfg!(feature = "mongodb") {
        stores.push("mongodb");
    }
    stores
}

/// Opens the store named by `uri` (see [`StoreKind`]): `redis://host:port/db`,
/// `sqlite://path/to/file.db` or, with the `mongodb` feature,
/// `mongodb://host[,host...]/database?replicaSet=name`.
/// Every call to it is measured (see [`metrics`]).
pub async fn open_store(uri: &str) -> Result<Arc<dyn MessageStore>, ZaqarError> {
    use metrics::MeteredStore;
    let kind = StoreKind::of(uri)?;
    let store = match kind {
        StoreKind::Redis => redis_store::open(uri).await?,
        StoreKind::Sqlite => sqlite_store::open(&uri["sqlite://".len()..]).await?,
        StoreKind::Mongodb => open_mongo(uri).await?,
    };
    Ok(MeteredStore::wrap(store, kind.name()))
}

#[cfg(feature = "mongodb")]
async fn open_mongo(uri: &str) -> Result<Arc<dyn MessageStore>, ZaqarError> {
    mongo_store::open(uri).await
}

#[cfg(not(feature = "mongodb"))]
async fn open_mongo(_uri: &str) -> Result<Arc<dyn MessageStore>, ZaqarError> {
    Err(ZaqarError::bad_request(
        "this build of zaqar has no MongoDB message store (cargo feature `zaqar-pool-node/mongodb`)",
    ))
}
