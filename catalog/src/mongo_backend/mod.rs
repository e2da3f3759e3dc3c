//! The MongoDB `CatalogBackend` (`mongodb://host[,host...]/database?replicaSet=name`):
//! pools, placements, flavors and project limits as documents of one database of a
//! replica set.
//!
//! Collections: `catalog_pools` (`_id` the name; `w`, `g`, `u`, `e`, `o` the weight,
//! flavor, URI, endpoint and options; `n` how many queues are placed on it),
//! `catalog_placements` (`_id` = [`placement_key`], `p`, `q`, `pool`),
//! `catalog_flavors` (`_id` the name, `c` the capabilities JSON) and
//! `catalog_project_limits` (`_id` the project, `l` the limits JSON).
//!
//! Placement is a transaction that returns an existing placement, or increments the
//! pool's `n` and inserts the placement; removing a pool is a transaction that
//! deletes it only while `n` is 0. Both write the pool document, so a placement and
//! the removal of its pool conflict and one of them starts again: a queue is never
//! left on a removed pool. Concurrent placements of one queue conflict on its
//! `_id`, and the one that starts again finds the winner's placement.
//!
//! The change feed ([`CatalogBackend::watch`]) is a MongoDB change stream on the
//! database (`feed.rs`), so it carries the writes of every catalog process sharing it.

mod docs;
mod feed;
mod records;

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use mongodb::bson::{doc, Document};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure, TRANSIENT_TRANSACTION_ERROR};
use mongodb::options::IndexOptions;
use mongodb::{Client, ClientSession, Collection, IndexModel};
use zaqar_proto::mongo::{self, int, text};
use zaqar_proto::ZaqarError;

use crate::backend::{CatalogBackend, CatalogResult};
use crate::model::{
    flavor_not_found, pool_in_use, project_limits_not_found, validate_flavor_name,
    validate_listing, validate_pool_name, validate_project, validate_queue, FlavorSpec, ListQueues,
    Placement, PoolSpec, ProjectLimitsSpec, QueuePage,
};
use crate::watch::{EventHub, Watch};
use docs::{contains, flavor_from_doc, pool_not_found, project_limits_from_doc};
pub(crate) use docs::{placement_key, pool_from_doc};

/// The longest any one catalog call takes (transaction retries included).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Server error codes: a duplicate key, a write conflict between transactions.
const DUPLICATE_KEY: i32 = 11000;
const WRITE_CONFLICT: i32 = 112;

/// The catalog in MongoDB.
pub struct MongoCatalog {
    client: Client,
    collections: Collections,
    events: EventHub,
    /// The task feeding `events` from the change stream; aborted on drop.
    feed: tokio::task::JoinHandle<()>,
}

/// The catalog's collections; cheap to clone into a transaction body.
#[derive(Clone)]
struct Collections {
    pools: Collection<Document>,
    placements: Collection<Document>,
    flavors: Collection<Document>,
    project_limits: Collection<Document>,
}

impl Drop for MongoCatalog {
    fn drop(&mut self) {
        self.feed.abort();
    }
}

impl MongoCatalog {
    /// Connects, creates the indexes and opens the change stream (so writes made
    /// from now on are in the feed); `bad_request` for a malformed URI,
    /// `unavailable` when no primary answers.
    pub async fn open(uri: &str) -> Result<MongoCatalog, ZaqarError> {
        let options = mongo::client_options(uri, "zaqar-catalog").await?;
        let name = mongo::database_name(&options);
        let client = Client::with_options(options).map_err(store_error)?;
        let database = client.database(&name);
        let collections = Collections {
            pools: database.collection(feed::POOLS),
            placements: database.collection(feed::PLACEMENTS),
            flavors: database.collection("catalog_flavors"),
            project_limits: database.collection("catalog_project_limits"),
        };
        bounded(async {
            let by_project = IndexModel::builder()
                .keys(doc! { "p": 1, "q": 1 })
                .options(IndexOptions::builder().unique(true).build())
                .build();
            let by_pool = IndexModel::builder().keys(doc! { "pool": 1 }).build();
            collections
                .placements
                .create_indexes([by_project, by_pool])
                .await
                .map_err(store_error)
        })
        .await?;
        let events = EventHub::default();
        let stream = bounded(feed::open(&database)).await?;
        let feed = tokio::spawn(feed::run(database, stream, events.clone()));
        tracing::info!(database = %name, "mongodb catalog opened");
        Ok(MongoCatalog {
            client,
            collections,
            events,
            feed,
        })
    }

    /// Drops the catalog's database (tests).
    #[cfg(test)]
    pub(crate) async fn drop_database(&self) -> CatalogResult<()> {
        self.collections
            .pools
            .client()
            .database(self.collections.pools.namespace().db.as_str())
            .drop()
            .await
            .map_err(store_error)
    }

    /// Runs `body` in a transaction and commits it; after a write conflict or a
    /// duplicate key it runs again from the start (and finds what the other wrote).
    async fn transaction<R, F>(&self, mut body: F) -> CatalogResult<R>
    where
        F: FnMut(Collections, &mut ClientSession) -> TxBody<'_, R>,
    {
        bounded(async {
            let mut session = self.client.start_session().await.map_err(store_error)?;
            let mut attempt: u64 = 0;
            loop {
                attempt += 1;
                session.start_transaction().await.map_err(store_error)?;
                let failure = match body(self.collections.clone(), &mut session).await {
                    Ok(Ok(value)) => match session.commit_transaction().await {
                        Ok(()) => return Ok(value),
                        Err(err) => err,
                    },
                    Ok(Err(refusal)) => {
                        let _ = session.abort_transaction().await;
                        return Err(refusal);
                    }
                    Err(err) => {
                        let _ = session.abort_transaction().await;
                        err
                    }
                };
                if !is_conflict(&failure) {
                    return Err(store_error(failure));
                }
                tokio::time::sleep(Duration::from_millis(attempt.min(20) * 5)).await;
            }
        })
        .await
    }

    async fn endpoints(&self) -> CatalogResult<std::collections::HashMap<String, String>> {
        let pools = self.list_pools().await?;
        Ok(pools.into_iter().map(|p| (p.name, p.endpoint)).collect())
    }
}

/// What a transaction body returns: a driver failure (retried if it was a
/// conflict), or the catalog's answer (a refusal aborts the transaction).
type TxBody<'s, R> = BoxFuture<'s, Result<CatalogResult<R>, MongoError>>;

/// The catalog store failing: retrying later is safe.
fn store_error(err: MongoError) -> ZaqarError {
    ZaqarError::unavailable(format!("the mongodb catalog failed: {err}"))
}

fn error_code(err: &MongoError) -> Option<i32> {
    match err.kind.as_ref() {
        ErrorKind::Command(command) => Some(command.code),
        ErrorKind::Write(WriteFailure::WriteError(write)) => Some(write.code),
        _ => None,
    }
}

fn is_conflict(err: &MongoError) -> bool {
    err.contains_label(TRANSIENT_TRANSACTION_ERROR)
        || matches!(error_code(err), Some(WRITE_CONFLICT | DUPLICATE_KEY))
}

async fn bounded<T>(call: impl Future<Output = CatalogResult<T>>) -> CatalogResult<T> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result,
        Err(_) => Err(ZaqarError::unavailable(format!(
            "the mongodb catalog did not answer within {CALL_TIMEOUT:?}"
        ))),
    }
}

#[async_trait]
impl CatalogBackend for MongoCatalog {
    async fn add_pool(&self, pool: PoolSpec) -> CatalogResult<()> {
        let pool = pool.validated()?;
        let fields = doc! {
            "w": i64::from(pool.weight), "g": &pool.flavor, "u": &pool.uri,
            "e": &pool.endpoint, "o": &pool.options_json,
        };
        bounded(async {
            self.collections
                .pools
                .update_one(
                    doc! { "_id": &pool.name },
                    doc! { "$set": fields, "$setOnInsert": { "n": 0_i64 } },
                )
                .upsert(true)
                .await
                .map_err(store_error)
        })
        .await?;
        tracing::info!(pool = %pool.name, weight = pool.weight, flavor = %pool.flavor,
            endpoint = %pool.endpoint, "pool registered");
        Ok(())
    }

    async fn register_pool(&self, pool: PoolSpec) -> CatalogResult<PoolSpec> {
        let pool = pool.validated()?;
        let update = doc! {
            "$set": { "u": &pool.uri, "e": &pool.endpoint },
            "$setOnInsert": {
                "w": i64::from(pool.weight), "g": &pool.flavor, "o": &pool.options_json,
                "n": 0_i64,
            },
        };
        bounded(async {
            self.collections
                .pools
                .update_one(doc! { "_id": &pool.name }, update)
                .upsert(true)
                .await
                .map_err(store_error)
        })
        .await?;
        let stored = self.get_pool(&pool.name).await?;
        tracing::info!(pool = %stored.name, weight = stored.weight, flavor = %stored.flavor,
            endpoint = %stored.endpoint, "pool-node registered");
        Ok(stored)
    }

    fn watch(&self) -> CatalogResult<Watch> {
        Ok(self.events.subscribe())
    }

    async fn list_pools(&self) -> CatalogResult<Vec<PoolSpec>> {
        bounded(async {
            let cursor = self
                .collections
                .pools
                .find(doc! {})
                .sort(doc! { "_id": 1 })
                .await
                .map_err(store_error)?;
            let docs: Vec<Document> = cursor.try_collect().await.map_err(store_error)?;
            Ok(docs.iter().map(pool_from_doc).collect())
        })
        .await
    }

    async fn remove_pool(&self, name: &str) -> CatalogResult<()> {
        validate_pool_name(name)?;
        let name = name.to_string();
        self.transaction(|collections, session| {
            let name = name.clone();
            async move {
                let Some(pool) = collections
                    .pools
                    .find_one(doc! { "_id": &name })
                    .session(&mut *session)
                    .await?
                else {
                    return Ok(Err(pool_not_found(&name)));
                };
                let placed = int(&pool, "n");
                if placed > 0 {
                    return Ok(Err(pool_in_use(&name, placed as u64)));
                }
                collections
                    .pools
                    .delete_one(doc! { "_id": &name })
                    .session(&mut *session)
                    .await?;
                Ok(Ok(()))
            }
            .boxed()
        })
        .await?;
        tracing::info!(pool = %name, "pool removed");
        Ok(())
    }

    async fn get_pool(&self, name: &str) -> CatalogResult<PoolSpec> {
        let found = bounded(async {
            self.collections
                .pools
                .find_one(doc! { "_id": name })
                .await
                .map_err(store_error)
        })
        .await?;
        found
            .map(|doc| pool_from_doc(&doc))
            .ok_or_else(|| pool_not_found(name))
    }

    async fn put_flavor(&self, flavor: FlavorSpec) -> CatalogResult<()> {
        let flavor = flavor.validated()?;
        let capabilities = serde_json::to_string(&flavor.capabilities)
            .map_err(|err| ZaqarError::internal(format!("capabilities to JSON: {err}")))?;
        records::put(&self.collections.flavors, &flavor.name, "c", &capabilities).await
    }

    async fn get_flavor(&self, name: &str) -> CatalogResult<FlavorSpec> {
        validate_flavor_name(name)?;
        match records::get(&self.collections.flavors, name).await? {
            Some(doc) => flavor_from_doc(&doc),
            None => Err(flavor_not_found(name)),
        }
    }

    async fn list_flavors(&self) -> CatalogResult<Vec<FlavorSpec>> {
        let docs = records::list(&self.collections.flavors).await?;
        docs.iter().map(flavor_from_doc).collect()
    }

    async fn remove_flavor(&self, name: &str) -> CatalogResult<()> {
        validate_flavor_name(name)?;
        if !records::remove(&self.collections.flavors, name).await? {
            return Err(flavor_not_found(name));
        }
        Ok(())
    }

    async fn put_project_limits(&self, limits: ProjectLimitsSpec) -> CatalogResult<()> {
        let limits = limits.validated()?;
        let collection = &self.collections.project_limits;
        records::put(collection, &limits.project, "l", &limits.limits_json).await
    }

    async fn get_project_limits(&self, project: &str) -> CatalogResult<Option<ProjectLimitsSpec>> {
        validate_project(project)?;
        let found = records::get(&self.collections.project_limits, project).await?;
        Ok(found.as_ref().map(project_limits_from_doc))
    }

    async fn list_project_limits(&self) -> CatalogResult<Vec<ProjectLimitsSpec>> {
        let docs = records::list(&self.collections.project_limits).await?;
        Ok(docs.iter().map(project_limits_from_doc).collect())
    }

    async fn remove_project_limits(&self, project: &str) -> CatalogResult<()> {
        validate_project(project)?;
        if !records::remove(&self.collections.project_limits, project).await? {
            return Err(project_limits_not_found(project));
        }
        Ok(())
    }

    async fn lookup(&self, project: &str, queue: &str) -> CatalogResult<Option<Placement>> {
        validate_queue(project, queue)?;
        let found = bounded(async {
            self.collections
                .placements
                .find_one(doc! { "_id": placement_key(project, queue) })
                .await
                .map_err(store_error)
        })
        .await?;
        let Some(placement) = found else {
            return Ok(None);
        };
        let pool = text(&placement, "pool");
        let endpoint = match self.get_pool(&pool).await {
            Ok(spec) => spec.endpoint,
            Err(err) if err.code == zaqar_proto::ErrorCode::NotFound => String::new(),
            Err(err) => return Err(err),
        };
        Ok(Some(Placement::new(project, queue, pool, endpoint)))
    }

    async fn place_on(&self, project: &str, queue: &str, pool: &str) -> CatalogResult<Placement> {
        validate_queue(project, queue)?;
        let (project, queue, pool) = (project.to_string(), queue.to_string(), pool.to_string());
        let key = placement_key(&project, &queue);
        let placed_on = self
            .transaction(|collections, session| {
                let (project, queue, pool, key) =
                    (project.clone(), queue.clone(), pool.clone(), key.clone());
                async move {
                    if let Some(existing) = collections
                        .placements
                        .find_one(doc! { "_id": &key })
                        .session(&mut *session)
                        .await?
                    {
                        return Ok(Ok(text(&existing, "pool")));
                    }
                    let counted = collections
                        .pools
                        .update_one(doc! { "_id": &pool }, doc! { "$inc": { "n": 1_i64 } })
                        .session(&mut *session)
                        .await?;
                    if counted.matched_count == 0 {
                        return Ok(Err(pool_not_found(&pool)));
                    }
                    collections
                        .placements
                        .insert_one(doc! { "_id": &key, "p": &project, "q": &queue, "pool": &pool })
                        .session(&mut *session)
                        .await?;
                    Ok(Ok(pool))
                }
                .boxed()
            })
            .await?;
        let placement = self.lookup(&project, &queue).await?;
        Ok(placement.unwrap_or_else(|| Placement::new(&project, queue, placed_on, String::new())))
    }

    async fn remove_queue(&self, project: &str, queue: &str) -> CatalogResult<()> {
        validate_queue(project, queue)?;
        let key = placement_key(project, queue);
        self.transaction(|collections, session| {
            let key = key.clone();
            async move {
                let Some(placement) = collections
                    .placements
                    .find_one_and_delete(doc! { "_id": &key })
                    .session(&mut *session)
                    .await?
                else {
                    return Ok(Ok(()));
                };
                collections
                    .pools
                    .update_one(
                        doc! { "_id": text(&placement, "pool") },
                        doc! { "$inc": { "n": -1_i64 } },
                    )
                    .session(&mut *session)
                    .await?;
                Ok(Ok(()))
            }
            .boxed()
        })
        .await?;
        tracing::debug!(project, queue, "queue placement removed");
        Ok(())
    }

    async fn list_queues(&self, project: &str, params: &ListQueues) -> CatalogResult<QueuePage> {
        validate_listing(project, params)?;
        let mut filter = doc! { "p": project };
        if !params.name_filter.is_empty() {
            filter.insert("q", doc! { "$regex": contains(&params.name_filter) });
        }
        let count = if params.with_count {
            bounded(async {
                self.collections
                    .placements
                    .count_documents(filter.clone())
                    .await
                    .map_err(store_error)
            })
            .await?
        } else {
            0
        };
        if params.limit == 0 {
            return Ok(QueuePage {
                queues: Vec::new(),
                count,
            });
        }
        let mut page = filter;
        let mut names = doc! { "$gt": &params.marker };
        if !params.name_filter.is_empty() {
            names.insert("$regex", contains(&params.name_filter));
        }
        page.insert("q", names);
        let docs: Vec<Document> = bounded(async {
            let cursor = self
                .collections
                .placements
                .find(page)
                .sort(doc! { "q": 1 })
                .limit(i64::from(params.limit))
                .await
                .map_err(store_error)?;
            cursor.try_collect().await.map_err(store_error)
        })
        .await?;
        let endpoints = self.endpoints().await?;
        let queues = docs
            .iter()
            .map(|doc| {
                let pool = text(doc, "pool");
                let endpoint = endpoints.get(&pool).cloned().unwrap_or_default();
                Placement::new(project, text(doc, "q"), pool, endpoint)
            })
            .collect();
        Ok(QueuePage { queues, count })
    }
}
