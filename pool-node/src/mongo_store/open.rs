//! Connecting a [`MongoStore`] to the replica set its URI names: the driver's
//! options (timeouts, write concern) and the store's collections, indexes and
//! schema upgrades.

use std::time::Duration;

use mongodb::options::WriteConcern;
use mongodb::{Client, Database};
use zaqar_proto::mongo;
use zaqar_proto::ZaqarError;

use super::{bounded, store_error, MongoStore};
use crate::store::StoreResult;

/// The longest the upgrade of a database of an older build may take.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(3600);

impl MongoStore {
    /// Connects to `uri`, creating the indexes and upgrading the schema.
    pub async fn connect(uri: &str) -> StoreResult<Self> {
        let options = mongo::client_options(uri, "zaqar-pool-node").await?;
        let write_concern = options.write_concern.clone().unwrap_or_default();
        let database = mongo::database_name(&options);
        let hosts = options.hosts.len();
        let client = Client::with_options(options).map_err(store_error)?;
        let store = MongoStore::on(client, &database, write_concern);
        bounded(store.create_indexes()).await?;
        // An upgrade reads every message once: longer than one call, still bounded.
        tokio::time::timeout(UPGRADE_TIMEOUT, store.upgrade())
            .await
            .map_err(|_| {
                ZaqarError::unavailable(format!(
                    "the upgrade of the mongodb message store did not finish within \
                     {UPGRADE_TIMEOUT:?}"
                ))
            })??;
        tracing::info!(database, hosts, "mongodb message store opened");
        Ok(store)
    }

    fn on(client: Client, database: &str, write_concern: WriteConcern) -> Self {
        let db: Database = client.database(database);
        MongoStore {
            queues: db.collection("queues"),
            counters: db.collection("counters"),
            messages: db.collection("messages"),
            claims: db.collection("claims"),
            subscriptions: db.collection("subscriptions"),
            idempotency: db.collection("idempotency"),
            client,
            write_concern,
        }
    }
}
