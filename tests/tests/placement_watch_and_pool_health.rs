//! A raft catalog, two pool-nodes on two real Redis servers and two api-nodes whose
//! placement caches never expire by age (`placement_cache_ttl_ms` of an hour), as
//! separate processes:
//!
//! - a restarted pool-node re-registers without undoing an admin's weight;
//! - a queue deleted and re-created on the other pool through the second api-node is
//!   then served by the first one from the new pool, with the old pool-node dead: only
//!   the catalog's watch stream can have told the first api-node (its cached placement
//!   would send it to the dead pool-node, which answers nothing, not "not found");
//! - every pool reports its health, and `/v2/health` shows the killed pool-node's pool
//!   as unhealthy once its reports stop.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use zaqar_proto::pb::catalog_service_client::CatalogServiceClient;
use zaqar_proto::pb::{Empty, QueueRef};
use zaqar_tests::catalog_cluster::{admin as admin_cli, eventually, CatalogNode};
use zaqar_tests::{free_port, wait_for_port, zaqar_bin, Client, Process, Redis};

const PROJECT: &str = "watch-project";
const WAIT: Duration = Duration::from_secs(10);

/// The command line of pool-node `name` on `redis`, listening on `port`, reporting
/// its health every second.
fn pool_node_args(name: &str, port: u16, redis: &Redis, catalog: &str) -> Vec<String> {
    let mut args = zaqar_tests::pool_node_args(name, port, &redis.uri(0), 100, catalog);
    args.extend(["--health-report-interval".into(), "1".into()]);
    args
}

fn spawn(name: &str, args: &[String], dir: &Path) -> Result<Process> {
    Process::spawn(name, &zaqar_bin(), args, dir)
}

/// An api-node on `catalog` whose cached placements never expire by age.
fn spawn_api_node(name: &str, catalog: &str, dir: &Path) -> Result<(Process, u16)> {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(&config, "placement_cache_ttl_ms = 3600000\n")?;
    let port = free_port();
    let args = [
        "api-node".to_string(),
        "--admin-mode".into(),
        "--config".into(),
        config.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--ws-listen".into(),
        format!("127.0.0.1:{}", free_port()),
        "--catalog".into(),
        catalog.into(),
    ];
    Ok((spawn(name, &args, dir)?, port))
}

async fn set_weight(admin: &Client, pool: &str, weight: u32) -> Result<()> {
    let path = format!("/v2/pools/{pool}");
    let reply = admin.patch(&path, json!({"weight": weight})).await?;
    ensure!(reply.status == 200, "PATCH {path}: {reply:?}");
    Ok(())
}

/// The pool entry of `GET /v2/health` (as an admin) for `pool`.
async fn health_of(admin: &Client, pool: &str) -> Result<Value> {
    let reply = admin.get("/v2/health").await?;
    ensure!(reply.status == 200, "GET /v2/health: {reply:?}");
    Ok(reply.body[pool].clone())
}

/// The message bodies of the queue, as `client` lists them.
async fn bodies(client: &Client, queue: &str) -> Result<Vec<Value>> {
    let path = format!("/v2/queues/{queue}/messages?echo=true");
    let reply = client.get(&path).await?;
    ensure!(reply.status == 200, "GET {path}: {reply:?}");
    let messages = reply.body["messages"].as_array().context("no messages")?;
    Ok(messages.iter().map(|m| m["body"].clone()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_nodes_follow_placement_changes_and_pools_report_health() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let redis = [Redis::start()?, Redis::start()?];
    let mut catalog_node = CatalogNode::new(1, dir.path());
    catalog_node.start(dir.path())?;
    let catalog = catalog_node.endpoint();

    let mut pool_nodes = Vec::new();
    for (index, redis) in redis.iter().enumerate() {
        let (name, port) = (format!("pool-{index}"), free_port());
        pool_nodes.push(spawn(
            &name,
            &pool_node_args(&name, port, redis, &catalog),
            dir.path(),
        )?);
        wait_for_port(port, WAIT)?;
    }
    let (_first_api, first_port) = spawn_api_node("api-1", &catalog, dir.path())?;
    let (_second_api, second_port) = spawn_api_node("api-2", &catalog, dir.path())?;
    let first = Client::new(first_port, PROJECT);
    let second = Client::new(second_port, PROJECT);
    let mut admin = Client::new(first_port, PROJECT);
    admin.roles = Some("admin".into());
    first.wait_ready(WAIT).await?;
    second.wait_ready(WAIT).await?;

    // Both pools register and report.
    for pool in ["pool-0", "pool-1"] {
        eventually(&format!("{pool} reports healthy"), WAIT, || async {
            let health = health_of(&admin, pool).await?;
            ensure!(health["report"]["healthy"] == true, "{health}");
            ensure!(health["report"]["status"] == "ok", "{health}");
            Ok(())
        })
        .await?;
    }

    // An admin drains pool-1; its pool-node restarts elsewhere and re-registers
    // without undoing that.
    set_weight(&admin, "pool-1", 0).await?;
    pool_nodes[1].kill();
    let moved_port = free_port();
    pool_nodes[1] = spawn(
        "pool-1-restarted",
        &pool_node_args("pool-1", moved_port, &redis[1], &catalog),
        dir.path(),
    )?;
    wait_for_port(moved_port, WAIT)?;
    let moved = format!("http://127.0.0.1:{moved_port}");
    let mut catalog_client = CatalogServiceClient::connect(catalog.clone()).await?;
    let pool_1 = eventually("pool-1 re-registered", WAIT, || {
        let mut catalog_client = catalog_client.clone();
        let moved = moved.clone();
        async move {
            let pools = catalog_client
                .list_pools(Empty {})
                .await?
                .into_inner()
                .pools;
            let pool = pools.into_iter().find(|p| p.name == "pool-1");
            let pool = pool.context("pool-1 is gone")?;
            ensure!(pool.endpoint == moved, "{pool:?}");
            Ok(pool)
        }
    })
    .await?;
    assert_eq!(pool_1.weight, 0, "{pool_1:?}");

    // The first api-node places the queue on pool-0 and caches that.
    let queue = "moving-queue";
    let path = format!("/v2/queues/{queue}");
    assert_eq!(first.call("PUT", &path, None).await?.status, 201);
    let post = |body: Value| json!({"messages": [{"body": body, "ttl": 300}]});
    let posted = first
        .post(&format!("{path}/messages"), post(json!("one")))
        .await?;
    assert_eq!(posted.status, 201, "{posted:?}");
    assert_eq!(bodies(&first, queue).await?, [json!("one")]);

    // Through the second api-node, the queue is deleted and re-created on pool-1.
    set_weight(&admin, "pool-1", 100).await?;
    set_weight(&admin, "pool-0", 0).await?;
    assert_eq!(second.delete(&path).await?.status, 204);
    assert_eq!(second.call("PUT", &path, None).await?.status, 201);
    let posted = second
        .post(&format!("{path}/messages"), post(json!("two")))
        .await?;
    assert_eq!(posted.status, 201, "{posted:?}");
    let lookup = catalog_client
        .lookup(QueueRef {
            project: PROJECT.into(),
            queue: queue.into(),
        })
        .await?
        .into_inner();
    assert_eq!(lookup.placement.map(|p| p.pool).as_deref(), Some("pool-1"));

    // pool-0's pool-node dies: a stale placement on the first api-node would now fail.
    pool_nodes[0].kill();
    let listed = eventually("the first api-node lists the new queue", WAIT, || async {
        bodies(&first, queue).await
    })
    .await?;
    assert_eq!(listed, [json!("two")]);

    // pool-0's reports stop: after three intervals it is unhealthy; pool-1 is fine.
    let health = eventually("pool-0 reported unhealthy", WAIT, || async {
        let health = health_of(&admin, "pool-0").await?;
        ensure!(health["report"]["healthy"] == false, "{health}");
        Ok(health)
    })
    .await?;
    assert_eq!(health["report"]["status"], "stale", "{health}");
    assert!(
        health["report"]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("no report for")),
        "{health}"
    );
    assert_eq!(health["storage_reachable"], false, "{health}");
    let pool_1 = health_of(&admin, "pool-1").await?;
    assert_eq!(pool_1["report"]["healthy"], true, "{pool_1}");

    // `zaqar admin pools list` shows the same.
    let listed = admin_cli(std::slice::from_ref(&catalog), &["pools", "list"]).await?;
    let health: Vec<(&str, &str)> = listed
        .as_array()
        .context("a list of pools")?
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or(""),
                p["health"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(health.len(), 2, "{listed}");
    assert!(
        health[0].0 == "pool-0" && health[0].1.starts_with("stale: no report for"),
        "{listed}"
    );
    assert_eq!(health[1], ("pool-1", "ok"), "{listed}");
    Ok(())
}
