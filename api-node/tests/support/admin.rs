//! The test catalog's `AdminService`: pools and flavors over the same in-memory
//! state as its `CatalogService`, with the catalog's rules (a flavor's pools are
//! the pools of its group; a pool holding queues is not removed).

use tonic::{Request, Response, Status};
use zaqar_proto::admin_pb::admin_service_server::AdminService;
use zaqar_proto::admin_pb::*;
use zaqar_proto::pb;
use zaqar_proto::{ErrorCode, ZaqarError};

use super::MemoryCatalog;

type Reply<T> = Result<Response<T>, Status>;

fn to_admin(pool: &pb::Pool) -> Pool {
    Pool {
        name: pool.name.clone(),
        weight: i64::from(pool.weight),
        group: pool.group.clone(),
        uri: pool.uri.clone(),
        endpoint: pool.endpoint.clone(),
        options_json: pool.options_json.clone(),
    }
}

fn weight(weight: i64) -> Result<u32, Status> {
    u32::try_from(weight)
        .map_err(|_| ZaqarError::bad_request(format!("invalid weight {weight}")).into())
}

fn pool_missing(name: &str) -> Status {
    ZaqarError::not_found(format!("pool {name:?} does not exist")).into()
}

fn flavor_missing(name: &str) -> Status {
    ZaqarError::not_found(format!("Flavor {name} does not exist")).into()
}

impl MemoryCatalog {
    fn flavor(&self, name: &str) -> Option<Flavor> {
        if !self.flavors.lock().unwrap().contains(name) {
            return None;
        }
        let mut pools: Vec<pb::Pool> = self.pools.lock().unwrap().clone();
        pools.retain(|p| p.group == name);
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        let capabilities = match pools.first() {
            Some(p) if p.uri.starts_with("redis") => ["FIFO", "CLAIMS", "AOD", "HIGH_THROUGHPUT"]
                .map(String::from)
                .to_vec(),
            _ => vec![],
        };
        Some(Flavor {
            name: name.into(),
            capabilities,
            pool_list: pools.into_iter().map(|p| p.name).collect(),
        })
    }

    fn set_group(&self, pool: &str, group: &str) {
        for p in self.pools.lock().unwrap().iter_mut() {
            if p.name == pool {
                p.group = group.into();
            }
        }
    }
}

#[tonic::async_trait]
impl AdminService for MemoryCatalog {
    async fn list_pools(&self, _: Request<Empty>) -> Reply<ListPoolsReply> {
        let mut pools: Vec<Pool> = self.pools.lock().unwrap().iter().map(to_admin).collect();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Response::new(ListPoolsReply { pools }))
    }

    async fn get_pool(&self, r: Request<PoolName>) -> Reply<Pool> {
        let name = r.into_inner().name;
        let pools = self.pools.lock().unwrap();
        let pool = pools.iter().find(|p| p.name == name);
        pool.map(|p| Response::new(to_admin(p)))
            .ok_or_else(|| pool_missing(&name))
    }

    async fn add_pool(&self, r: Request<Pool>) -> Reply<Pool> {
        let pool = r.into_inner();
        if !zaqar_proto::limits::is_valid_name(&pool.name, 256) {
            return Err(ZaqarError::bad_request("invalid pool name").into());
        }
        let stored = pb::Pool {
            name: pool.name.clone(),
            weight: weight(pool.weight)?,
            group: pool.group,
            uri: pool.uri,
            endpoint: pool.endpoint,
            options_json: pool.options_json,
        };
        let mut pools = self.pools.lock().unwrap();
        pools.retain(|p| p.name != pool.name);
        pools.push(stored.clone());
        Ok(Response::new(to_admin(&stored)))
    }

    async fn update_pool(&self, r: Request<PoolUpdate>) -> Reply<Pool> {
        let update = r.into_inner();
        let new_weight = update.weight.map(weight).transpose()?;
        let mut pools = self.pools.lock().unwrap();
        let pool = pools
            .iter_mut()
            .find(|p| p.name == update.name)
            .ok_or_else(|| pool_missing(&update.name))?;
        pool.weight = new_weight.unwrap_or(pool.weight);
        pool.uri = update.uri.unwrap_or(pool.uri.clone());
        pool.group = update.group.unwrap_or(pool.group.clone());
        pool.endpoint = update.endpoint.unwrap_or(pool.endpoint.clone());
        pool.options_json = update.options_json.unwrap_or(pool.options_json.clone());
        Ok(Response::new(to_admin(pool)))
    }

    async fn remove_pool(&self, r: Request<PoolName>) -> Reply<Empty> {
        let name = r.into_inner().name;
        let held = self
            .placements
            .lock()
            .unwrap()
            .values()
            .filter(|p| p.pool == name)
            .count();
        let mut pools = self.pools.lock().unwrap();
        if !pools.iter().any(|p| p.name == name) {
            return Err(pool_missing(&name));
        }
        if held > 0 {
            let message =
                format!("pool {name:?} still holds {held} queues; delete or migrate them first");
            return Err(ZaqarError::new(ErrorCode::Conflict, message).into());
        }
        pools.retain(|p| p.name != name);
        Ok(Response::new(Empty {}))
    }

    async fn list_flavors(&self, _: Request<Empty>) -> Reply<ListFlavorsReply> {
        let names: Vec<String> = self.flavors.lock().unwrap().iter().cloned().collect();
        let flavors = names.iter().filter_map(|n| self.flavor(n)).collect();
        Ok(Response::new(ListFlavorsReply { flavors }))
    }

    async fn get_flavor(&self, r: Request<FlavorName>) -> Reply<Flavor> {
        let name = r.into_inner().name;
        self.flavor(&name)
            .map(Response::new)
            .ok_or_else(|| flavor_missing(&name))
    }

    async fn put_flavor(&self, r: Request<PutFlavorRequest>) -> Reply<Flavor> {
        let put = r.into_inner();
        if put.pool_list.is_empty() {
            return Err(ZaqarError::bad_request("empty pool_list").into());
        }
        if put.replace && self.flavor(&put.name).is_none() {
            return Err(flavor_missing(&put.name));
        }
        let known: Vec<String> = self
            .pools
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.name.clone())
            .collect();
        if let Some(unknown) = put.pool_list.iter().find(|p| !known.contains(p)) {
            let name = &put.name;
            let message =
                format!("Flavor {name} could not be created, error:Pool {unknown} does not exist");
            return Err(ZaqarError::bad_request(message).into());
        }
        self.flavors.lock().unwrap().insert(put.name.clone());
        if put.replace {
            for pool in known.iter().filter(|p| !put.pool_list.contains(p)) {
                let in_flavor = self
                    .pools
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|p| &p.name == pool && p.group == put.name);
                if in_flavor {
                    self.set_group(pool, "");
                }
            }
        }
        for pool in &put.pool_list {
            self.set_group(pool, &put.name);
        }
        Ok(Response::new(self.flavor(&put.name).unwrap_or_default()))
    }

    async fn remove_flavor(&self, r: Request<FlavorName>) -> Reply<Empty> {
        let name = r.into_inner().name;
        if !self.flavors.lock().unwrap().remove(&name) {
            return Err(flavor_missing(&name));
        }
        for p in self
            .pools
            .lock()
            .unwrap()
            .iter_mut()
            .filter(|p| p.group == name)
        {
            p.group.clear();
        }
        Ok(Response::new(Empty {}))
    }

    async fn lookup_queue(&self, r: Request<LookupQueueRequest>) -> Reply<LookupQueueReply> {
        let r = r.into_inner();
        let placements = self.placements.lock().unwrap();
        let reply = match placements.get(&(r.project, r.queue)) {
            Some(p) => LookupQueueReply {
                found: true,
                pool: p.pool.clone(),
                endpoint: p.endpoint.clone(),
            },
            None => LookupQueueReply::default(),
        };
        Ok(Response::new(reply))
    }

    async fn cluster_status(&self, _: Request<Empty>) -> Reply<ClusterStatusReply> {
        Ok(Response::new(ClusterStatusReply {
            backend: "memory".into(),
            raft: None,
        }))
    }

    async fn add_catalog_node(&self, _: Request<CatalogNode>) -> Reply<ClusterStatusReply> {
        Err(ZaqarError::bad_request("the test catalog has no raft nodes").into())
    }

    async fn remove_catalog_node(&self, _: Request<CatalogNodeId>) -> Reply<ClusterStatusReply> {
        Err(ZaqarError::bad_request("the test catalog has no raft nodes").into())
    }
}
