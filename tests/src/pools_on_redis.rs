//! A cluster of `zaqar` processes on real Redis servers: a SQLite catalog, one
//! pool-node per Redis (`pool-0`, `pool-1`, ..., weight 100) and an api-node.

use std::time::{Duration, Instant};

use anyhow::Result;
use zaqar_proto::pb::catalog_service_client::CatalogServiceClient;
use zaqar_proto::pb::Empty;

use crate::{spawn_pool_node, spawn_sqlite_catalog, start_api_node, Process, Redis};

/// The cluster; every process stops when it is dropped (fields drop in order: the
/// roles, then the Redis servers, then their directory).
pub struct PoolsOnRedis {
    _processes: Vec<Process>,
    /// The Redis server of `pool-<index>`.
    pub redis: Vec<Redis>,
    /// The catalog's gRPC endpoint.
    pub catalog: String,
    /// The api-node's REST port (it may not answer yet: `Client::wait_ready`).
    pub api_port: u16,
    _dir: tempfile::TempDir,
}

impl PoolsOnRedis {
    /// Starts `pools` Redis servers and pool-nodes, and an api-node with `api_extra`.
    pub fn start(pools: usize, api_extra: &[&str]) -> Result<PoolsOnRedis> {
        let dir = tempfile::tempdir()?;
        let (catalog_process, catalog) = spawn_sqlite_catalog(dir.path())?;
        let mut processes = vec![catalog_process];
        let mut redis = Vec::new();
        for index in 0..pools {
            let server = Redis::start()?;
            let name = format!("pool-{index}");
            processes.push(spawn_pool_node(
                dir.path(),
                &name,
                &server.uri(0),
                &catalog,
                &[],
            )?);
            redis.push(server);
        }
        let (api, api_port) = start_api_node(dir.path(), "api-node", &catalog, api_extra)?;
        processes.push(api);
        Ok(PoolsOnRedis {
            _processes: processes,
            redis,
            catalog,
            api_port,
            _dir: dir,
        })
    }

    /// Waits until at least `count` pools are registered with the catalog.
    pub async fn wait_for_pools(&self, count: usize) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut client = CatalogServiceClient::connect(self.catalog.clone()).await?;
        loop {
            let pools = client.list_pools(Empty {}).await?.into_inner().pools;
            if pools.len() >= count {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "only {} pools registered",
                pools.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
