//! A test-only in-memory `CatalogService`: pools registered by the harness and
//! queue placements on the first pool of the queue's flavor (see `admin.rs` for
//! its `AdminService`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use tonic::{Request, Response, Status};
use zaqar_proto::pb::catalog_service_server::CatalogService;
use zaqar_proto::pb::*;
use zaqar_proto::ZaqarError;

type Reply<T> = Result<Response<T>, Status>;

/// The in-memory catalog.
#[derive(Default)]
pub struct MemoryCatalog {
    pub pools: Mutex<Vec<Pool>>,
    pub placements: Mutex<BTreeMap<(String, String), Placement>>,
    /// Names of the flavors (their pools are the pools of their group).
    pub flavors: Mutex<BTreeSet<String>>,
    /// The latest health report of each pool.
    pub health: Mutex<BTreeMap<String, PoolHealthReport>>,
}

impl MemoryCatalog {
    /// Places a queue on a given pool (as another api-node or an operator would).
    pub fn place_on(&self, project: &str, queue: &str, pool: &Pool) {
        let placement = Placement {
            queue: Some(QueueRef {
                project: project.into(),
                queue: queue.into(),
            }),
            pool: pool.name.clone(),
            endpoint: pool.endpoint.clone(),
        };
        self.placements
            .lock()
            .unwrap()
            .insert((project.into(), queue.into()), placement);
    }
}

#[tonic::async_trait]
impl CatalogService for MemoryCatalog {
    async fn lookup(&self, r: Request<QueueRef>) -> Reply<LookupReply> {
        let q = r.into_inner();
        let placement = self
            .placements
            .lock()
            .unwrap()
            .get(&(q.project, q.queue))
            .cloned();
        Ok(Response::new(LookupReply {
            found: placement.is_some(),
            placement,
        }))
    }

    async fn place_queue(&self, r: Request<PlaceQueueRequest>) -> Reply<Placement> {
        let r = r.into_inner();
        let q = r.queue.unwrap_or_default();
        let k = (q.project.clone(), q.queue.clone());
        if let Some(existing) = self.placements.lock().unwrap().get(&k) {
            return Ok(Response::new(existing.clone()));
        }
        // The first pool of the flavor's group that takes queues.
        let flavor = r.flavor;
        let pool = self
            .pools
            .lock()
            .unwrap()
            .iter()
            .find(|p| p.group == flavor && (flavor.is_empty() || p.weight > 0))
            .cloned();
        let pool = match pool {
            Some(pool) => pool,
            None if flavor.is_empty() => {
                return Err(ZaqarError::unavailable("No pool is registered.").into())
            }
            None => {
                let message = format!("Flavor {flavor} does not exist");
                return Err(ZaqarError::bad_request(message).into());
            }
        };
        self.place_on(&q.project, &q.queue, &pool);
        let placement = self
            .placements
            .lock()
            .unwrap()
            .get(&k)
            .cloned()
            .unwrap_or_default();
        Ok(Response::new(placement))
    }

    async fn remove_queue(&self, r: Request<QueueRef>) -> Reply<Empty> {
        let q = r.into_inner();
        self.placements
            .lock()
            .unwrap()
            .remove(&(q.project, q.queue));
        Ok(Response::new(Empty {}))
    }

    async fn list_queues(&self, r: Request<ListQueuesRequest>) -> Reply<ListQueuesReply> {
        let r = r.into_inner();
        let placements = self.placements.lock().unwrap();
        let matching: Vec<&Placement> = placements
            .iter()
            .filter(|((project, queue), _)| project == &r.project && queue.contains(&r.name_filter))
            .map(|(_, p)| p)
            .collect();
        let queues = matching
            .iter()
            .filter(|p| p.queue.as_ref().is_some_and(|q| q.queue > r.marker))
            .take(r.limit as usize)
            .map(|p| (*p).clone())
            .collect();
        Ok(Response::new(ListQueuesReply {
            queues,
            count: matching.len() as u64,
        }))
    }

    async fn list_pools(&self, _: Request<Empty>) -> Reply<ListPoolsReply> {
        Ok(Response::new(ListPoolsReply {
            pools: self.pools.lock().unwrap().clone(),
        }))
    }

    /// No change feed: api-node caches placements by age, as with a catalog whose
    /// backend has none.
    type WatchStream = tokio_stream::wrappers::ReceiverStream<Result<CatalogEvent, Status>>;

    async fn watch(&self, _: Request<WatchRequest>) -> Reply<Self::WatchStream> {
        Err(Status::unimplemented(
            "the test catalog has no watch stream",
        ))
    }

    async fn report_health(&self, r: Request<PoolHealthReport>) -> Reply<Empty> {
        let report = r.into_inner();
        self.health
            .lock()
            .unwrap()
            .insert(report.pool.clone(), report);
        Ok(Response::new(Empty {}))
    }

    /// Reports count as fresh; a pool without one has "no report".
    async fn pool_health(&self, _: Request<Empty>) -> Reply<PoolHealthReply> {
        let health = self.health.lock().unwrap();
        let pools = self
            .pools
            .lock()
            .unwrap()
            .iter()
            .map(|pool| match health.get(&pool.name) {
                Some(report) => PoolHealthStatus {
                    pool: pool.name.clone(),
                    healthy: report.ok,
                    status: if report.ok { "ok" } else { "degraded" }.into(),
                    detail: report.detail.clone(),
                    seconds_since_report: 0.0,
                },
                None => PoolHealthStatus {
                    pool: pool.name.clone(),
                    healthy: false,
                    status: "no report".into(),
                    detail: String::new(),
                    seconds_since_report: 0.0,
                },
            })
            .collect();
        Ok(Response::new(PoolHealthReply { pools }))
    }

    async fn register_pool(&self, r: Request<Pool>) -> Reply<Empty> {
        let pool = r.into_inner();
        let mut pools = self.pools.lock().unwrap();
        pools.retain(|p| p.name != pool.name);
        pools.push(pool);
        Ok(Response::new(Empty {}))
    }
}
