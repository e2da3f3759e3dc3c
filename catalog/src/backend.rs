//! The `CatalogBackend` seam: pools, flavors, queue placement and per-project limits, one
//! implementation per backend (raft, SQL, etcd, MongoDB).

use async_trait::async_trait;
use rand::Rng;
use zaqar_proto::ZaqarError;

use crate::model::{
    validate_flavor, validate_queue, FlavorSpec, ListQueues, Placement, PoolSpec,
    ProjectLimitsSpec, QueuePage,
};
use crate::watch::Watch;
use crate::weighted::choose_pool;

/// What every catalog call returns.
pub type CatalogResult<T> = Result<T, ZaqarError>;

/// Pools, flavors, queue placement and per-project limits.
///
/// Guarantees every implementation keeps (and the conformance suite checks):
///
/// - **Placement is compare-and-set.** [`place_on`](Self::place_on) writes a placement
///   only when the queue has none, atomically, and returns the placement in force. So
///   when several api-nodes place the same queue at once, exactly one choice wins and
///   every caller is told the same pool; a live queue never moves.
/// - **Placement is idempotent.** [`place_queue`](Self::place_queue) returns an existing
///   placement unchanged; only an unplaced queue gets a pool chosen by weight.
/// - **Pools are upserted.** Registering a pool again (an admin's write) replaces its
///   weight, flavor, URI, endpoint and options; placements refer to the pool by name, so
///   they follow a pool-node that re-registers with a new endpoint. A pool-node's own
///   registration ([`register_pool`](Self::register_pool)) changes only the
///   URI and endpoint of a pool that exists, so a restart keeps an admin's changes.
/// - **Changes are watched.** [`watch`](Self::watch) streams placement and pool
///   changes (see [`crate::watch`]); a backend without a feed says `unavailable`, and
///   api-nodes then fall back to expiring their cached placements.
/// - **Flavors are upserted records** (name, capabilities); a flavor's pools are the
///   pools whose flavor is its name, so [`crate::flavors`] writes pools' flavors to change
///   them.
/// - **Project limits are upserted records** (project, limits JSON), validated with
///   [`ProjectLimitsSpec::validated`] before they are stored; they are not watched
///   (api-nodes ask for a project's limits and keep them for a while).
/// - **A pool is removed only when empty.** [`remove_pool`](Self::remove_pool) deletes
///   a pool only while no queue is placed on it, atomically with respect to placements:
///   a queue is never left placed on a pool that no longer exists.
/// - **Errors**: invalid input is `bad_request`; an unknown pool is `not_found`; a
///   store that cannot be reached is `unavailable` (retrying is safe: every call is
///   idempotent).
///
/// A replicated backend (raft) implements the writes as log entries: `add_pool`,
/// `place_on` (a conditional insert decided by the state machine) and `remove_queue`.
/// The weighted choice happens before the proposal, in the provided `place_queue`.
#[async_trait]
pub trait CatalogBackend: Send + Sync + 'static {
    /// Adds the pool, or replaces the pool of the same name.
    async fn add_pool(&self, pool: PoolSpec) -> CatalogResult<()>;

    /// A pool-node's registration: adds the pool whole when it is new; otherwise
    /// changes only its URI and endpoint (weight, flavor and options stay as an admin
    /// set them). Returns the pool as stored.
    ///
    /// This default reads then writes, so an admin write landing in between may be
    /// overwritten; backends override it with one atomic write.
    async fn register_pool(&self, pool: PoolSpec) -> CatalogResult<PoolSpec> {
        let pool = pool.validated()?;
        let stored = match self.get_pool(&pool.name).await {
            Ok(existing) => PoolSpec {
                uri: pool.uri,
                endpoint: pool.endpoint,
                ..existing
            },
            Err(err) if err.code == zaqar_proto::ErrorCode::NotFound => pool,
            Err(err) => return Err(err),
        };
        self.add_pool(stored.clone()).await?;
        Ok(stored)
    }

    /// A feed of the placement and pool changes this backend sees from now on (see
    /// [`crate::watch`]). The default has none: `unavailable`, which `CatalogService`
    /// answers as UNIMPLEMENTED, and api-nodes then expire cached placements by age.
    fn watch(&self) -> CatalogResult<Watch> {
        Err(ZaqarError::unavailable(
            "this catalog backend has no change feed",
        ))
    }

    /// All pools, sorted by name.
    async fn list_pools(&self) -> CatalogResult<Vec<PoolSpec>>;

    /// Removes the pool named `name`: `not_found` when there is none, `conflict`
    /// (naming how many) while queues are placed on it; nothing changes on error.
    async fn remove_pool(&self, name: &str) -> CatalogResult<()>;

    /// The pool named `name`; `not_found` when there is none.
    async fn get_pool(&self, name: &str) -> CatalogResult<PoolSpec>;

    /// Adds the flavor, or replaces the flavor of the same name.
    async fn put_flavor(&self, flavor: FlavorSpec) -> CatalogResult<()>;

    /// The flavor named `name`; `not_found` when there is none.
    async fn get_flavor(&self, name: &str) -> CatalogResult<FlavorSpec>;

    /// All flavors, sorted by name.
    async fn list_flavors(&self) -> CatalogResult<Vec<FlavorSpec>>;

    /// Removes the flavor named `name` (its pools keep their flavor); `not_found` when
    /// there is none.
    async fn remove_flavor(&self, name: &str) -> CatalogResult<()>;

    /// Sets a project's limits, replacing what it had.
    async fn put_project_limits(&self, limits: ProjectLimitsSpec) -> CatalogResult<()>;

    /// The limits of `project`, if an operator set some.
    async fn get_project_limits(&self, project: &str) -> CatalogResult<Option<ProjectLimitsSpec>>;

    /// Every project's limits, sorted by project.
    async fn list_project_limits(&self) -> CatalogResult<Vec<ProjectLimitsSpec>>;

    /// Removes a project's limits; `not_found` when it has none.
    async fn remove_project_limits(&self, project: &str) -> CatalogResult<()>;

    /// Where the queue lives, if it was placed.
    async fn lookup(&self, project: &str, queue: &str) -> CatalogResult<Option<Placement>>;

    /// Places the queue on `pool` unless it is already placed (compare-and-set), and
    /// returns the placement in force, which names another pool if the queue was
    /// placed before. `not_found` when `pool` does not exist.
    async fn place_on(&self, project: &str, queue: &str, pool: &str) -> CatalogResult<Placement>;

    /// Forgets the queue's placement; nothing happens when it has none.
    async fn remove_queue(&self, project: &str, queue: &str) -> CatalogResult<()>;

    /// The placed queues of `project`, sorted by name, after `params.marker`, at most
    /// `params.limit`, whose names contain `params.name_filter`; with the number of
    /// queues matching the filter.
    async fn list_queues(&self, project: &str, params: &ListQueues) -> CatalogResult<QueuePage>;

    /// Places a queue on `pool` (a dead letter queue beside its queue) unless it is
    /// placed already, and returns the placement in force.
    async fn place_beside(
        &self,
        project: &str,
        queue: &str,
        pool: &str,
    ) -> CatalogResult<Placement> {
        validate_queue(project, queue)?;
        if let Some(placement) = self.lookup(project, queue).await? {
            return Ok(placement);
        }
        let placement = self.place_on(project, queue, pool).await?;
        tracing::info!(project, queue, pool = %placement.pool, "queue placed beside another");
        Ok(placement)
    }

    /// Places a queue of `flavor` (empty for the default flavor) and returns its
    /// placement: the existing one, or a new one on a pool chosen by weight among the
    /// flavor's pools (see [`crate::weighted`]).
    ///
    /// `unavailable` when no pool of the default flavor can take queues (none has
    /// registered yet, or all have weight 0); `bad_request` when a named flavor has no
    /// pool that can take queues (or neither a pool nor a flavor record).
    async fn place_queue(
        &self,
        project: &str,
        queue: &str,
        flavor: &str,
    ) -> CatalogResult<Placement> {
        validate_queue(project, queue)?;
        validate_flavor(flavor, "flavor")?;
        if let Some(placement) = self.lookup(project, queue).await? {
            return Ok(placement);
        }
        let pools = self.list_pools().await?;
        let Some(pool) = choose_pool(&pools, flavor, random_point) else {
            return Err(if flavor.is_empty() {
                ZaqarError::unavailable(
                    "no pool can take new queues: none is registered with a weight above 0",
                )
            } else if pools.iter().all(|p| p.flavor != flavor)
                && self.get_flavor(flavor).await.is_err()
            {
                // Zaqar's answer to `_flavor` naming no flavor.
                ZaqarError::bad_request(format!("Flavor {flavor} does not exist"))
            } else {
                ZaqarError::bad_request(format!(
                    "flavor {flavor:?} has no pool that can take new queues"
                ))
            });
        };
        let placement = self.place_on(project, queue, &pool.name).await?;
        tracing::info!(project, queue, pool = %placement.pool, "queue placed");
        Ok(placement)
    }
}

/// A uniformly random point in `0..total`.
fn random_point(total: u64) -> u64 {
    rand::thread_rng().gen_range(0..total)
}
