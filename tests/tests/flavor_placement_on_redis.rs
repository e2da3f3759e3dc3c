//! A flavor created over REST on a real cluster (catalog, two pool-nodes on their
//! own Redis servers and an api-node, as processes): queues created with that
//! `_flavor` all land on the flavor's pool, others still spread by weight.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;
use zaqar_proto::pb::catalog_service_client::CatalogServiceClient;
use zaqar_proto::pb::Empty;
use zaqar_tests::pools_on_redis::PoolsOnRedis;
use zaqar_tests::{placements, Client};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_of_a_flavor_land_on_its_pool() -> Result<()> {
    let cluster = PoolsOnRedis::start(2, &["--admin-mode"])?;
    let mut admin = Client::new(cluster.api_port, "flavor-project");
    admin.roles = Some("admin".into());
    admin.wait_ready(Duration::from_secs(30)).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pools = admin.get("/v2/pools").await?;
        assert_eq!(pools.status, 200, "{:?}", pools.body);
        if pools.body["pools"].as_array().map(Vec::len) == Some(2) {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "pools: {:?}", pools.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let tenant = Client::new(cluster.api_port, "flavor-project");
    let denied = tenant.put("/v2/flavors/gold", json!({"pool_list": ["pool-1"]}));
    assert_eq!(denied.await?.status, 403);
    let bad = admin.put("/v2/flavors/gold", json!({"pool_list": ["nope"]}));
    assert_eq!(bad.await?.status, 400);
    let created = admin
        .put("/v2/flavors/gold", json!({"pool_list": ["pool-1"]}))
        .await?;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let flavor = admin.get("/v2/flavors/gold").await?;
    assert_eq!(flavor.body["pool_list"], json!(["pool-1"]));
    assert_eq!(
        flavor.body["capabilities"],
        json!(["FIFO", "CLAIMS", "AOD", "HIGH_THROUGHPUT"])
    );
    let pool = admin.get("/v2/pools/pool-1?detailed=true").await?;
    assert_eq!(pool.body["flavor"], "gold", "{:?}", pool.body);

    for i in 0..12 {
        let path = format!("/v2/queues/gold-{i:02}");
        let made = tenant.put(&path, json!({"_flavor": "gold"})).await?;
        assert_eq!(made.status, 201, "{path}: {:?}", made.body);
        let posted = tenant
            .post(
                &format!("{path}/messages"),
                json!({"messages": [{"body": i}]}),
            )
            .await?;
        assert_eq!(posted.status, 201, "{:?}", posted.body);
    }
    let unknown = tenant
        .put("/v2/queues/lost", json!({"_flavor": "silver"}))
        .await?;
    assert_eq!(unknown.status, 400, "{:?}", unknown.body);
    assert_eq!(unknown.body["description"], "Flavor silver does not exist");

    let placed = placements(&cluster.catalog, "flavor-project").await?;
    assert_eq!(placed.len(), 12, "the unknown flavor placed nothing");
    assert!(placed.iter().all(|p| p.pool == "pool-1"), "{placed:?}");
    assert!(cluster.redis[1].queue_key_count(0)? > 0);
    assert_eq!(
        cluster.redis[0].queue_key_count(0)?,
        0,
        "pool-0 holds no queue"
    );

    // The flavor's pool holds queues: neither it nor (through it) the flavor's
    // data can be deleted; removing the flavor returns the pool to the default group.
    let refused = admin.delete("/v2/pools/pool-1").await?;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_eq!(admin.delete("/v2/flavors/gold").await?.status, 204);
    let refused = admin.delete("/v2/pools/pool-1").await?;
    assert_eq!(
        refused.status, 403,
        "still holds queues: {:?}",
        refused.body
    );
    let mut catalog = CatalogServiceClient::connect(cluster.catalog.clone()).await?;
    let pools = catalog.list_pools(Empty {}).await?.into_inner().pools;
    assert!(pools.iter().all(|p| p.flavor.is_empty()), "{pools:?}");
    Ok(())
}
