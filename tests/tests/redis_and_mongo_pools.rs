//! A catalog on MongoDB (SecantusDB at `ZAQAR_TEST_MONGO_URL`), one pool-node on a
//! real Redis and one on MongoDB, and an api-node, as processes: queues are placed
//! on both pools at once, messages and claims work through REST on each, and
//! `zaqar admin pools list` shows both pools with their store URIs.
//!
//! Needs a `zaqar` built with the cargo features `zaqar-pool-node/mongodb` and
//! `zaqar-catalog/mongodb`;
//! skipped without `ZAQAR_TEST_MONGO_URL` unless `CI` is set.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use zaqar_tests::{
    placements, spawn_catalog, spawn_pool_node, start_api_node, zaqar_bin, Client, Process, Redis,
};

const PROJECT: &str = "mixed-project";

struct Cluster {
    catalog: String,
    api_port: u16,
    mongo_uri: String,
    _redis: Redis,
    _processes: Vec<Process>,
    _dir: tempfile::TempDir,
}

fn start_cluster(mongo_uri: String) -> Result<Cluster> {
    let dir = tempfile::tempdir()?;
    let redis = Redis::start()?;
    // The catalog too is on MongoDB, in a database of its own.
    let catalog_db = mongo_uri.replacen("?", "_catalog?", 1);
    let (catalog_process, catalog) = spawn_catalog(dir.path(), &catalog_db)?;
    let mut processes = vec![catalog_process];
    for (name, uri) in [
        ("redis-pool", redis.uri(0)),
        ("mongo-pool", mongo_uri.clone()),
    ] {
        processes.push(spawn_pool_node(dir.path(), name, &uri, &catalog, &[])?);
    }
    let (api, api_port) = start_api_node(dir.path(), "api-node", &catalog, &[])?;
    processes.push(api);
    Ok(Cluster {
        catalog,
        api_port,
        mongo_uri,
        _redis: redis,
        _processes: processes,
        _dir: dir,
    })
}

/// `zaqar admin --json pools list`, once both pools have registered.
fn admin_pools(catalog: &str) -> Result<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = Command::new(zaqar_bin())
            .args(["admin", "--catalog", catalog, "--json", "pools", "list"])
            .output()?;
        ensure!(
            output.status.success(),
            "zaqar admin failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let pools: Vec<Value> = serde_json::from_slice(&output.stdout)?;
        if pools.len() == 2 {
            return Ok(pools);
        }
        ensure!(Instant::now() < deadline, "pools: {pools:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_are_placed_on_a_redis_pool_and_a_mongo_pool_at_once() -> Result<()> {
    let Some(mongo_uri) = zaqar_tests::stores::mongo_database_uri("zaqar_cluster") else {
        return Ok(());
    };
    let cluster = start_cluster(mongo_uri)?;
    let pools = admin_pools(&cluster.catalog)?;
    let by_name = |name: &str| pools.iter().find(|p| p["name"] == name).cloned();
    let mongo = by_name("mongo-pool").expect("the mongo pool is listed");
    assert_eq!(mongo["uri"], json!(cluster.mongo_uri));
    let redis = by_name("redis-pool").expect("the redis pool is listed");
    assert!(redis["uri"].as_str().unwrap_or("").starts_with("redis://"));

    let client = Client::new(cluster.api_port, PROJECT);
    client.wait_ready(Duration::from_secs(30)).await?;
    let queues: Vec<String> = (0..16).map(|i| format!("queue-{i:02}")).collect();
    for queue in &queues {
        let path = format!("/v2/queues/{queue}/messages");
        let body = json!({"messages": [{"body": {"queue": queue, "n": 1}, "ttl": 300},
                                       {"body": {"queue": queue, "n": 2}, "ttl": 300}]});
        let posted = client.post(&path, body).await?;
        assert_eq!(posted.status, 201, "{queue}: {:?}", posted.body);
    }

    let placed = placements(&cluster.catalog, PROJECT).await?;
    assert_eq!(placed.len(), queues.len());
    let on_mongo = placed.iter().filter(|p| p.pool == "mongo-pool").count();
    assert!(
        on_mongo > 0 && on_mongo < queues.len(),
        "all queues on one pool: {on_mongo} of {} on mongo",
        queues.len()
    );

    // Every queue, wherever it lives, claims its messages in order and deletes them.
    for queue in &queues {
        let claim_path = format!("/v2/queues/{queue}/claims?limit=5");
        let claimed = client
            .post(&claim_path, json!({"ttl": 60, "grace": 60}))
            .await?;
        assert_eq!(claimed.status, 201, "{queue}: {:?}", claimed.body);
        let messages = claimed.body["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let numbers: Vec<&Value> = messages.iter().map(|m| &m["body"]["n"]).collect();
        assert_eq!(numbers, [&json!(1), &json!(2)], "{queue}: FIFO");
        for message in &messages {
            let href = message["href"].as_str().expect("an href");
            let deleted = client.delete(href).await?;
            assert_eq!(deleted.status, 204, "{href}: {:?}", deleted.body);
        }
        let stats = client.get(&format!("/v2/queues/{queue}/stats")).await?;
        assert_eq!(stats.body["messages"]["total"], json!(0), "{queue}");
    }
    Ok(())
}
