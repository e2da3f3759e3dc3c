//! The catalog loses its quorum under a running cluster (three raft catalog nodes,
//! a pool-node on Redis, an api-node): the api-node keeps answering `/v2/ping` and
//! serving the queues whose placement it learnt, and only what needs a new
//! placement answers 503 with Zaqar's error body. Then the last catalog node dies
//! too, past the placement cache's expiry: the known queues are still served.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::json;
use zaqar_tests::catalog_cluster::{eventually, start_raft_group};
use zaqar_tests::{free_port, spawn_pool_node, within, zaqar_bin, Client, Process, Redis};

/// The whole test finishes in this time or fails.
const TEST_TIMEOUT: Duration = Duration::from_secs(150);
/// How long the cluster may take to start and elect a leader.
const SETTLE: Duration = Duration::from_secs(30);
/// The api-node's `placement_cache_ttl_ms`, short so that the test waits past it.
const CACHE_TTL: Duration = Duration::from_secs(2);
/// The longest a refused request may take (the catalog call's own timeout bounds it).
const REFUSAL_WITHIN: Duration = Duration::from_secs(12);

/// Checks that the api-node serves queue `queue` fully: ping, post, list, claim,
/// delete of the claimed message.
async fn serves(client: &Client, queue: &str) -> Result<()> {
    let ping = client.get("/v2/ping").await?;
    ensure!(ping.status == 204, "ping: {ping:?}");
    let path = format!("/v2/queues/{queue}/messages");
    let posted = client
        .post(&path, json!({"messages": [{"ttl": 300, "body": "x"}]}))
        .await?;
    ensure!(posted.status == 201, "post to {queue}: {posted:?}");
    let listed = client.get(&format!("{path}?echo=true")).await?;
    ensure!(listed.status == 200, "list of {queue}: {listed:?}");
    let claimed = client
        .post(
            &format!("/v2/queues/{queue}/claims?limit=1"),
            json!({"ttl": 60, "grace": 60}),
        )
        .await?;
    ensure!(claimed.status == 201, "claim on {queue}: {claimed:?}");
    let href = claimed.body["messages"][0]["href"]
        .as_str()
        .context("a claimed message")?;
    let deleted = client.delete(href).await?;
    ensure!(deleted.status == 204, "delete on {queue}: {deleted:?}");
    Ok(())
}

/// Checks that creating a queue the api-node never saw answers 503 with Zaqar's body.
/// The raft part of `/v2/health`'s `catalog` (the client must be an admin).
async fn catalog_in_health(admin: &Client) -> Result<serde_json::Value> {
    let health = admin.get("/v2/health").await?;
    ensure!(health.status == 200, "{health:?}");
    ensure!(
        health.body["catalog"]["backend"] == "raft",
        "{}",
        health.body
    );
    Ok(health.body["catalog"]["raft"].clone())
}

async fn refuses_a_new_placement(client: &Client, queue: &str) -> Result<()> {
    let started = Instant::now();
    let created = client
        .put(&format!("/v2/queues/{queue}"), json!({}))
        .await?;
    ensure!(created.status == 503, "new queue {queue}: {created:?}");
    ensure!(
        created.body["title"] == "Service temporarily unavailable",
        "{created:?}"
    );
    ensure!(
        started.elapsed() < REFUSAL_WITHIN,
        "the refusal took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_nodes_keep_serving_known_queues_without_a_catalog_quorum() -> Result<()> {
    within(TEST_TIMEOUT, scenario()).await
}

async fn scenario() -> Result<()> {
    let tempdir = tempfile::tempdir()?;
    let dir = tempdir.path().to_path_buf();
    let bin = zaqar_bin();
    let (mut nodes, catalogs) = start_raft_group(&dir, 3, |_| Vec::new()).await?;
    let redis = Redis::start()?;
    let _pool = spawn_pool_node(&dir, "pool-1", &redis.uri(0), &catalogs, &[])?;
    let config = dir.join("api-node.toml");
    std::fs::write(
        &config,
        format!(
            "catalog_endpoint = \"{catalogs}\"\nplacement_cache_ttl_ms = {}\nadmin_mode = true\n",
            CACHE_TTL.as_millis()
        ),
    )?;
    let api_port = free_port();
    let _api = Process::spawn(
        "api-node",
        &bin,
        &[
            "api-node",
            "--config",
            &config.to_string_lossy(),
            "--listen",
            &format!("127.0.0.1:{api_port}"),
            "--ws-listen",
            &format!("127.0.0.1:{}", free_port()),
        ],
        &dir,
    )?;
    let client = Client::new(api_port, "quorum-project");
    client.wait_ready(SETTLE).await?;
    // Queues are placed once the pool has registered.
    eventually("a first queue placed", SETTLE, || async {
        let created = client.put("/v2/queues/known-1", json!({})).await?;
        ensure!(created.status == 201, "{created:?}");
        Ok(())
    })
    .await?;
    let created = client.put("/v2/queues/known-2", json!({})).await?;
    ensure!(created.status == 201, "{created:?}");
    serves(&client, "known-1").await?;
    serves(&client, "known-2").await?;
    let mut admin = Client::new(api_port, "quorum-project");
    admin.roles = Some("admin".into());
    let raft = catalog_in_health(&admin).await?;
    ensure!(
        raft["has_leader"] == true && raft["voters"] == 3,
        "before: {raft}"
    );
    // Each pool says how far its notifications run behind (no subscription here).
    let health = admin.get("/v2/health").await?;
    let lag = &health.body["pool-1"]["notifier_lag_seconds"];
    ensure!(*lag == 0.0, "{}", health.body);

    // Two of three catalog nodes die: no quorum.
    nodes[0].kill();
    nodes[1].kill();
    serves(&client, "known-1").await?;
    // The node left says so in the health report once its election timeout passed.
    eventually("the health report without a leader", SETTLE, || async {
        let raft = catalog_in_health(&admin).await?;
        ensure!(raft["has_leader"] == false, "{raft}");
        Ok(())
    })
    .await?;
    tokio::time::sleep(CACHE_TTL + Duration::from_secs(1)).await;
    serves(&client, "known-2").await?;
    refuses_a_new_placement(&client, "never-seen").await?;
    serves(&client, "known-1").await?;

    // The last one dies too: still the known queues, past the cache's expiry.
    nodes[2].kill();
    tokio::time::sleep(CACHE_TTL + Duration::from_secs(1)).await;
    serves(&client, "known-1").await?;
    serves(&client, "known-2").await?;
    refuses_a_new_placement(&client, "never-seen-either").await?;
    Ok(())
}
