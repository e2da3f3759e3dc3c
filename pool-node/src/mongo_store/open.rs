//! Connecting a [`MongoStore`] to the replica set its URI names: the driver's
//! options (timeouts, write concern) and the store's collections, indexes and
//! schema upgrades.

use std::time::Duration;

use mongodb::options::{Acknowledgment, ClientOptions, WriteConcern};
use mongodb::{Client, Database};
use zaqar_proto::ZaqarError;

use super::{bounded, store_error, MongoStore};
use crate::store::StoreResult;

/// How long the driver looks for a usable server (the primary) before a call
/// fails, unless the URI sets `serverSelectionTimeoutMS`.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(3);
/// One connection attempt, unless the URI sets `connectTimeoutMS`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest the upgrade of a database of an older build may take.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(3600);
/// The database when the URI names none.
const DEFAULT_DATABASE: &str = "zaqar";

impl MongoStore {
    /// Connects to `uri`, creating the indexes and upgrading the schema.
    pub async fn connect(uri: &str) -> StoreResult<Self> {
        // The URI may hold a password: it is neither logged nor put in errors.
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|err| ZaqarError::bad_request(format!("invalid mongodb URI: {err}")))?;
        options
            .server_selection_timeout
            .get_or_insert(SERVER_SELECTION_TIMEOUT);
        options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
        // Majority and journaled unless the URI says otherwise.
        let concern = options
            .write_concern
            .get_or_insert_with(WriteConcern::default);
        concern.w.get_or_insert(Acknowledgment::Majority);
        concern.journal.get_or_insert(true);
        let write_concern = concern.clone();
        options
            .app_name
            .get_or_insert_with(|| "zaqar-pool-node".to_string());
        let database = options
            .default_database
            .clone()
            .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
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
