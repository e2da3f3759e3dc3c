//! The etcd `CatalogBackend` (`etcd://host:port[,host:port...]/prefix`): pools, flavors,
//! placements and project limits as JSON values under one key prefix of an etcd v3
//! cluster.
//!
//! Placement is one etcd transaction: "if the queue has no placement key and the pool
//! key exists, put the placement, else read the placement", so concurrent placements
//! of one queue from several api-nodes (or catalog processes sharing an etcd) agree on
//! one winner. A pool is removed by a transaction that deletes it only if no
//! placement changed since the scan that found none on it (retried a few times when
//! placements keep changing). A placement stores only the pool name; endpoints are read from the
//! pool, so placements follow a pool that re-registers. Requests are bounded and
//! retried as `kv.rs` says: an unreachable etcd is `unavailable` within
//! [`REQUEST_TIMEOUT`]. The change feed is etcd's own watch on the prefix (`feed.rs`),
//! so it carries writes made through every catalog process sharing the etcd.

mod feed;
mod keys;
mod kv;

use std::collections::BTreeMap;

use async_trait::async_trait;
use etcd_client::{
    Compare, CompareOp, DeleteOptions, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse,
};
use serde::{Deserialize, Serialize};
use zaqar_proto::ZaqarError;

use crate::backend::{CatalogBackend, CatalogResult};
use crate::model::{
    flavor_not_found, pool_in_use, project_limits_not_found, validate_flavor_name,
    validate_listing, validate_pool_name, validate_project, validate_queue, FlavorSpec, ListQueues,
    Placement, PoolSpec, ProjectLimitsSpec, QueuePage,
};
use crate::watch::{EventHub, Watch};
use keys::{key_after, parse_uri, prefix_end, EtcdUri, Keys};
use kv::Kv;
pub use kv::{CONNECT_TIMEOUT, REQUEST_TIMEOUT};

/// The catalog in etcd.
pub struct EtcdCatalog {
    kv: Kv,
    keys: Keys,
    events: EventHub,
    /// The task feeding `events` from etcd's watch; aborted on drop.
    feed: tokio::task::JoinHandle<()>,
}

impl Drop for EtcdCatalog {
    fn drop(&mut self) {
        self.feed.abort();
    }
}

/// The value of a placement key.
#[derive(Serialize, Deserialize)]
struct StoredPlacement {
    pool: String,
}

/// Scans of the placements a pool removal makes before it gives up as `unavailable`.
const REMOVE_POOL_ATTEMPTS: usize = 5;
/// Read-then-write attempts of a pool-node registration racing other pool writes.
const REGISTER_ATTEMPTS: usize = 5;

/// A page of `(queue, pool)` and the number of queues matching the filter.
type RawPage = (Vec<(String, String)>, u64);

impl EtcdCatalog {
    /// Connects to the etcd members of `uri` and checks that one of them answers.
    pub async fn open(uri: &str) -> Result<EtcdCatalog, ZaqarError> {
        let EtcdUri { endpoints, prefix } = parse_uri(uri)?;
        let kv = Kv::connect(&endpoints).await?;
        let keys = Keys::new(&prefix);
        let events = EventHub::default();
        let (ready, watching) = tokio::sync::oneshot::channel();
        let feed = tokio::spawn(feed::run(
            kv.watch_client(),
            keys.clone(),
            events.clone(),
            Some(ready),
        ));
        let catalog = EtcdCatalog {
            kv,
            keys,
            events,
            feed,
        };
        let probe = GetOptions::new().with_prefix().with_count_only();
        catalog.kv.get(catalog.keys.root(), probe).await?;
        // Writes made right after opening are then in the feed (it keeps trying if not).
        if tokio::time::timeout(REQUEST_TIMEOUT, watching)
            .await
            .is_err()
        {
            tracing::warn!(%prefix, "the etcd catalog watch is not established yet");
        }
        tracing::info!(?endpoints, %prefix, "etcd catalog opened");
        Ok(catalog)
    }

    /// The endpoint of `pool`; empty when the pool is unknown.
    async fn endpoint_of(&self, pool: &str) -> CatalogResult<String> {
        let response = self.kv.get(self.keys.pool(pool), GetOptions::new()).await?;
        match response.kvs().first() {
            Some(kv) => Ok(decode::<PoolSpec>(kv)?.endpoint),
            None => Ok(String::new()),
        }
    }

    /// An unfiltered page: the count and the page in one transaction, at one revision.
    async fn page(&self, project: &str, params: &ListQueues) -> CatalogResult<RawPage> {
        let prefix = self.keys.project(project);
        let counted = TxnOp::get(
            prefix.clone(),
            Some(GetOptions::new().with_prefix().with_count_only()),
        );
        let mut reads = Vec::new();
        if params.with_count {
            reads.push(counted);
        }
        if params.limit > 0 {
            let start = if params.marker.is_empty() {
                prefix.clone().into_bytes()
            } else {
                key_after(&format!("{prefix}{}", params.marker))
            };
            let options = GetOptions::new()
                .with_range(prefix_end(&prefix))
                .with_limit(i64::from(params.limit));
            reads.push(TxnOp::get(start, Some(options)));
        }
        let responses = self
            .kv
            .txn(Txn::new().and_then(reads))
            .await?
            .op_responses();
        let count = match (params.with_count, responses.first()) {
            (true, Some(TxnOpResponse::Get(counted))) => {
                u64::try_from(counted.count()).unwrap_or(0)
            }
            _ => 0,
        };
        let page = read_at(&responses, usize::from(params.with_count))
            .iter()
            .map(|kv| {
                Ok((
                    queue_name(&prefix, kv)?,
                    decode::<StoredPlacement>(kv)?.pool,
                ))
            })
            .collect::<CatalogResult<_>>()?;
        Ok((page, count))
    }

    /// A filtered page: with `with_count` the count covers every matching name, so
    /// the whole project is scanned; without, the scan stops when the page is full.
    async fn filtered_page(&self, project: &str, params: &ListQueues) -> CatalogResult<RawPage> {
        let prefix = self.keys.project(project);
        let (mut page, mut count) = (Vec::new(), 0u64);
        let all = self
            .kv
            .scan(prefix.clone().into_bytes(), prefix_end(&prefix));
        for kv in all.await? {
            let name = queue_name(&prefix, &kv)?;
            if !name.contains(&params.name_filter) {
                continue;
            }
            let wanted = page.len() < params.limit as usize;
            if !wanted && !params.with_count {
                break;
            }
            if params.with_count {
                count += 1;
            }
            if wanted && name.as_bytes() > params.marker.as_bytes() {
                page.push((name, decode::<StoredPlacement>(&kv)?.pool));
            }
        }
        Ok((page, count))
    }

    /// Deletes `key` if it exists, in one transaction; whether it existed.
    async fn delete_existing(&self, key: String) -> CatalogResult<bool> {
        let exists = Compare::create_revision(key.clone(), CompareOp::Greater, 0);
        let txn = Txn::new()
            .when([exists])
            .and_then([TxnOp::delete(key, None)]);
        Ok(self.kv.txn(txn).await?.succeeded())
    }

    /// Deletes every key under the prefix.
    #[cfg(test)]
    pub(crate) async fn purge(&self) -> CatalogResult<()> {
        let options = DeleteOptions::new().with_prefix();
        self.kv.delete(self.keys.root(), options).await
    }
}

/// A stored value that does not decode was not written by us.
fn decode<T: for<'de> Deserialize<'de>>(kv: &KeyValue) -> CatalogResult<T> {
    serde_json::from_slice(kv.value()).map_err(|err| {
        ZaqarError::internal(format!(
            "unexpected etcd catalog value at {:?}: {err}",
            String::from_utf8_lossy(kv.key())
        ))
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("catalog records serialize")
}

/// The queue name of a placement key under the project `prefix`.
fn queue_name(prefix: &str, kv: &KeyValue) -> CatalogResult<String> {
    let name = kv.key().strip_prefix(prefix.as_bytes()).unwrap_or_default();
    String::from_utf8(name.to_vec())
        .map_err(|_| ZaqarError::internal(format!("unexpected etcd catalog key {:?}", kv.key())))
}

/// The key-values of the `index`th read of a transaction.
fn read_at(responses: &[TxnOpResponse], index: usize) -> &[KeyValue] {
    match responses.get(index) {
        Some(TxnOpResponse::Get(response)) => response.kvs(),
        _ => &[],
    }
}

#[async_trait]
impl CatalogBackend for EtcdCatalog {
    async fn put_flavor(&self, flavor: FlavorSpec) -> CatalogResult<()> {
        let flavor = flavor.validated()?;
        self.kv
            .put(self.keys.flavor(&flavor.name), encode(&flavor))
            .await?;
        tracing::info!(flavor = %flavor.name, "flavor stored");
        Ok(())
    }

    async fn get_flavor(&self, name: &str) -> CatalogResult<FlavorSpec> {
        validate_flavor_name(name)?;
        let response = self
            .kv
            .get(self.keys.flavor(name), GetOptions::new())
            .await?;
        match response.kvs().first() {
            Some(kv) => decode(kv),
            None => Err(flavor_not_found(name)),
        }
    }

    async fn list_flavors(&self) -> CatalogResult<Vec<FlavorSpec>> {
        let flavors = self.keys.flavors();
        let kvs = self
            .kv
            .scan(flavors.clone().into_bytes(), prefix_end(&flavors));
        kvs.await?.iter().map(decode).collect()
    }

    async fn remove_flavor(&self, name: &str) -> CatalogResult<()> {
        validate_flavor_name(name)?;
        if self.delete_existing(self.keys.flavor(name)).await? {
            Ok(())
        } else {
            Err(flavor_not_found(name))
        }
    }

    async fn put_project_limits(&self, limits: ProjectLimitsSpec) -> CatalogResult<()> {
        let limits = limits.validated()?;
        let key = self.keys.project_limits(&limits.project);
        self.kv.put(key, encode(&limits)).await?;
        tracing::info!(project = %limits.project, limits = %limits.limits_json, "project limits stored");
        Ok(())
    }

    async fn get_project_limits(&self, project: &str) -> CatalogResult<Option<ProjectLimitsSpec>> {
        validate_project(project)?;
        let key = self.keys.project_limits(project);
        let response = self.kv.get(key, GetOptions::new()).await?;
        response.kvs().first().map(decode).transpose()
    }

    async fn list_project_limits(&self) -> CatalogResult<Vec<ProjectLimitsSpec>> {
        let all = self.keys.project_limits_all();
        let kvs = self.kv.scan(all.clone().into_bytes(), prefix_end(&all));
        let mut listed = kvs
            .await?
            .iter()
            .map(decode)
            .collect::<CatalogResult<Vec<ProjectLimitsSpec>>>()?;
        // Keys sort by escaped id; the listing sorts by the id itself.
        listed.sort_by(|a, b| a.project.cmp(&b.project));
        Ok(listed)
    }

    async fn remove_project_limits(&self, project: &str) -> CatalogResult<()> {
        validate_project(project)?;
        if self
            .delete_existing(self.keys.project_limits(project))
            .await?
        {
            tracing::info!(project, "project limits removed");
            Ok(())
        } else {
            Err(project_limits_not_found(project))
        }
    }

    async fn add_pool(&self, pool: PoolSpec) -> CatalogResult<()> {
        let pool = pool.validated()?;
        self.kv
            .put(self.keys.pool(&pool.name), encode(&pool))
            .await?;
        tracing::info!(pool = %pool.name, weight = pool.weight, flavor = %pool.flavor,
            endpoint = %pool.endpoint, "pool registered");
        Ok(())
    }

    async fn register_pool(&self, pool: PoolSpec) -> CatalogResult<PoolSpec> {
        let pool = pool.validated()?;
        let key = self.keys.pool(&pool.name);
        for _ in 0..REGISTER_ATTEMPTS {
            let response = self.kv.get(key.clone(), GetOptions::new()).await?;
            // Written only if the pool is still as read: absent, or at that revision.
            let (stored, unchanged) = match response.kvs().first() {
                Some(kv) => (
                    PoolSpec {
                        uri: pool.uri.clone(),
                        endpoint: pool.endpoint.clone(),
                        ..decode::<PoolSpec>(kv)?
                    },
                    Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision()),
                ),
                None => (
                    pool.clone(),
                    Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                ),
            };
            let txn = Txn::new().when([unchanged]).and_then([TxnOp::put(
                key.clone(),
                encode(&stored),
                None,
            )]);
            if self.kv.txn(txn).await?.succeeded() {
                tracing::info!(pool = %stored.name, weight = stored.weight,
                    flavor = %stored.flavor, endpoint = %stored.endpoint, "pool-node registered");
                return Ok(stored);
            }
        }
        Err(ZaqarError::unavailable(format!(
            "pool {:?} was not registered: it kept changing; try again",
            pool.name
        )))
    }

    fn watch(&self) -> CatalogResult<Watch> {
        Ok(self.events.subscribe())
    }

    async fn remove_pool(&self, name: &str) -> CatalogResult<()> {
        validate_pool_name(name)?;
        let placements = self.keys.placements();
        for _ in 0..REMOVE_POOL_ATTEMPTS {
            self.get_pool(name).await?;
            let scan = self
                .kv
                .scan_at(placements.clone().into_bytes(), prefix_end(&placements));
            let (kvs, revision) = scan.await?;
            let mut count = 0u64;
            for kv in &kvs {
                if decode::<StoredPlacement>(kv)?.pool == name {
                    count += 1;
                }
            }
            if count > 0 {
                return Err(pool_in_use(name, count));
            }
            // Deleted only if no placement was written after the scan.
            let unchanged =
                Compare::mod_revision(placements.clone(), CompareOp::Less, revision + 1)
                    .with_range(prefix_end(&placements));
            let txn = Txn::new()
                .when([unchanged])
                .and_then([TxnOp::delete(self.keys.pool(name), None)]);
            if self.kv.txn(txn).await?.succeeded() {
                tracing::info!(pool = %name, "pool removed");
                return Ok(());
            }
        }
        Err(ZaqarError::unavailable(format!(
            "pool {name:?} was not removed: placements kept changing; try again"
        )))
    }

    async fn list_pools(&self) -> CatalogResult<Vec<PoolSpec>> {
        let pools = self.keys.pools();
        let kvs = self.kv.scan(pools.clone().into_bytes(), prefix_end(&pools));
        kvs.await?.iter().map(decode).collect()
    }

    async fn get_pool(&self, name: &str) -> CatalogResult<PoolSpec> {
        let response = self.kv.get(self.keys.pool(name), GetOptions::new()).await?;
        match response.kvs().first() {
            Some(kv) => decode(kv),
            None => Err(ZaqarError::not_found(format!(
                "pool {name:?} does not exist"
            ))),
        }
    }

    async fn lookup(&self, project: &str, queue: &str) -> CatalogResult<Option<Placement>> {
        validate_queue(project, queue)?;
        let key = self.keys.placement(project, queue);
        let response = self.kv.get(key, GetOptions::new()).await?;
        let Some(kv) = response.kvs().first() else {
            return Ok(None);
        };
        let pool = decode::<StoredPlacement>(kv)?.pool;
        let endpoint = self.endpoint_of(&pool).await?;
        Ok(Some(Placement::new(project, queue, pool, endpoint)))
    }

    async fn place_on(&self, project: &str, queue: &str, pool: &str) -> CatalogResult<Placement> {
        validate_queue(project, queue)?;
        let key = self.keys.placement(project, queue);
        let pool_key = self.keys.pool(pool);
        let stored = encode(&StoredPlacement { pool: pool.into() });
        let txn = Txn::new()
            .when([
                Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                Compare::create_revision(pool_key.clone(), CompareOp::Greater, 0),
            ])
            .and_then([
                TxnOp::put(key.clone(), stored, None),
                TxnOp::get(pool_key, None),
            ])
            .or_else([TxnOp::get(key, None)]);
        let response = self.kv.txn(txn).await?;
        let responses = response.op_responses();
        let (pool, endpoint) = if response.succeeded() {
            let spec = read_at(&responses, 1).first().map(decode::<PoolSpec>);
            let endpoint = spec.transpose()?.map(|p| p.endpoint).unwrap_or_default();
            (pool.to_string(), endpoint)
        } else if let Some(kv) = read_at(&responses, 0).first() {
            let pool = decode::<StoredPlacement>(kv)?.pool;
            let endpoint = self.endpoint_of(&pool).await?;
            (pool, endpoint)
        } else {
            // No placement to keep, so the pool is what failed the comparison.
            return Err(ZaqarError::not_found(format!(
                "pool {pool:?} does not exist"
            )));
        };
        Ok(Placement::new(project, queue, pool, endpoint))
    }

    async fn remove_queue(&self, project: &str, queue: &str) -> CatalogResult<()> {
        validate_queue(project, queue)?;
        let key = self.keys.placement(project, queue);
        self.kv.delete(key, DeleteOptions::new()).await?;
        tracing::debug!(project, queue, "queue placement removed");
        Ok(())
    }

    async fn list_queues(&self, project: &str, params: &ListQueues) -> CatalogResult<QueuePage> {
        validate_listing(project, params)?;
        let (page, count) = if params.name_filter.is_empty() {
            self.page(project, params).await?
        } else {
            self.filtered_page(project, params).await?
        };
        let endpoints: BTreeMap<String, String> = if page.is_empty() {
            BTreeMap::new()
        } else {
            let pools = self.list_pools().await?;
            pools.into_iter().map(|p| (p.name, p.endpoint)).collect()
        };
        let queues = page
            .into_iter()
            .map(|(queue, pool)| {
                let endpoint = endpoints.get(&pool).cloned().unwrap_or_default();
                Placement::new(project, queue, pool, endpoint)
            })
            .collect();
        Ok(QueuePage { queues, count })
    }
}

#[cfg(test)]
mod tests;
