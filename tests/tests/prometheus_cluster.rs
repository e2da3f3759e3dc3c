//! A real Prometheus scrapes a whole cluster on loopback, every role with
//! `--metrics-listen`: three raft catalog nodes, two pool-nodes (each on its own
//! Redis) and two api-nodes. After a bounded load, its query API shows posts on both
//! pools (and the gRPC calls that carried them), a queue's free and claimed depth equal
//! to what `GET /stats` says, exactly one raft leader, and the health report age of a
//! killed pool-node growing.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use zaqar_tests::catalog_cluster::{eventually, start_raft_group};
use zaqar_tests::prometheus::{Prometheus, Target};
use zaqar_tests::{free_port, spawn_api_node, spawn_pool_node, within, Client, Redis};

const TEST_TIMEOUT: Duration = Duration::from_secs(180);
const PROJECT: &str = "metrics-cluster";

/// `--metrics-listen` on a free port, and a scrape target for it.
fn metrics(job: &str, labels: &[(&str, &str)]) -> (String, Target) {
    let port = free_port();
    let target = Target {
        job: job.to_string(),
        port,
        labels: labels
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
    };
    (format!("127.0.0.1:{port}"), target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_the_whole_cluster() -> Result<()> {
    within(TEST_TIMEOUT, scenario()).await
}

async fn scenario() -> Result<()> {
    let tempdir = tempfile::tempdir()?;
    let dir = tempdir.path();
    let mut targets = Vec::new();

    let mut catalog_listens = Vec::new();
    for _ in 0..3 {
        let (listen, target) = metrics("catalog", &[("role", "catalog")]);
        catalog_listens.push(listen);
        targets.push(target);
    }
    let (_nodes, catalogs) = start_raft_group(dir, 3, |node| {
        let listen = &catalog_listens[(node.id - 1) as usize];
        vec!["--metrics-listen".into(), listen.clone()]
    })
    .await?;

    let redis = [Redis::start()?, Redis::start()?];
    let mut pool_nodes = Vec::new();
    for (index, redis) in redis.iter().enumerate() {
        let name = format!("pool-{}", index + 1);
        let (listen, target) = metrics("pool-node", &[("role", "pool-node"), ("pool", &name)]);
        let extra = ["--metrics-listen", listen.as_str()];
        pool_nodes.push(Some(spawn_pool_node(
            dir,
            &name,
            &redis.uri(0),
            &catalogs,
            &extra,
        )?));
        targets.push(target);
    }
    let mut api_nodes = Vec::new();
    let mut clients = Vec::new();
    for index in 0..2 {
        let (listen, target) = metrics("api-node", &[("role", "api-node")]);
        let extra = ["--metrics-listen", listen.as_str()];
        let (process, port) =
            spawn_api_node(dir, &format!("api-node-{index}"), &catalogs, &extra).await?;
        api_nodes.push(process);
        clients.push(Client::new(port, PROJECT));
        targets.push(target);
    }

    // A bounded load: 16 queues (spread over both pools), through both api-nodes.
    eventually("both pools registered", Duration::from_secs(30), || async {
        let created = clients[0].put("/v2/queues/first", json!({})).await?;
        ensure!(created.status == 201, "{created:?}");
        Ok(())
    })
    .await?;
    for n in 0..16 {
        let path = format!("/v2/queues/q{n}/messages");
        let posted = clients[n % 2]
            .post(&path, json!({"messages": [{"body": n}]}))
            .await?;
        ensure!(posted.status == 201, "{posted:?}");
    }
    // One queue with a known depth: 5 posted, 2 of them claimed.
    let watched = &clients[0];
    let messages: Vec<Value> = (0..5).map(|n| json!({"ttl": 600, "body": n})).collect();
    let posted = watched
        .post("/v2/queues/watched/messages", json!({"messages": messages}))
        .await?;
    ensure!(posted.status == 201, "{posted:?}");
    let claimed = watched
        .post(
            "/v2/queues/watched/claims?limit=2",
            json!({"ttl": 300, "grace": 60}),
        )
        .await?;
    ensure!(claimed.status == 201, "{claimed:?}");
    let stats = watched.get("/v2/queues/watched/stats").await?;
    let free = stats.body["messages"]["free"].as_f64().context("free")?;
    let held = stats.body["messages"]["claimed"]
        .as_f64()
        .context("claimed")?;
    ensure!((free, held) == (3.0, 2.0), "{stats:?}");

    let prometheus = Prometheus::start(dir, &targets)?;
    let pools_posting =
        r#"count(sum by (pool) (zaqar_messages_total{role="pool-node",event="posted"}) > 0)"#;
    prometheus.eventually_equals(pools_posting, 2.0).await?;
    // Both pool-nodes served the posts as gRPC calls, and the catalogs the api-nodes'.
    let pool_calls = r#"count(sum by (instance) (zaqar_grpc_server_calls_total{role="pool-node",service="PoolService",method="PostMessages",code="ok"}) > 0)"#;
    prometheus.eventually_equals(pool_calls, 2.0).await?;
    let catalog_calls =
        r#"sum(zaqar_grpc_server_calls_total{role="catalog",service="CatalogService"}) > bool 0"#;
    prometheus.eventually_equals(catalog_calls, 1.0).await?;
    let free_depth = r#"sum(zaqar_queue_messages{queue="watched",state="free"})"#;
    prometheus.eventually_equals(free_depth, free).await?;
    let claimed_depth = r#"sum(zaqar_queue_messages{queue="watched",state="claimed"})"#;
    prometheus.eventually_equals(claimed_depth, held).await?;
    prometheus
        .eventually_equals("sum(zaqar_raft_is_leader)", 1.0)
        .await?;
    // Every catalog node holds every placement (at least the watched queue's).
    let placed = r#"min(zaqar_catalog_placements{role="catalog"}) >= bool 1"#;
    prometheus.eventually_equals(placed, 1.0).await?;
    prometheus
        .eventually_equals(r#"count(up{role="api-node"} == 1)"#, 2.0)
        .await?;
    // Both api-nodes follow the catalog's placement changes as they happen.
    let watching = r#"sum(zaqar_catalog_watch_connected{role="api-node"})"#;
    prometheus.eventually_equals(watching, 2.0).await?;
    let watchers = r#"sum(zaqar_catalog_watchers{role="catalog"}) >= bool 2"#;
    prometheus.eventually_equals(watchers, 1.0).await?;

    // A killed pool-node stops reporting: its report's age grows on the catalogs.
    pool_nodes[1] = None;
    let age = r#"min(zaqar_pool_report_age_seconds{pool="pool-2"})"#;
    let first = prometheus.value(age).await?.context("an age for pool-2")?;
    ensure!(first < 8.0, "pool-2's report was already old: {first}");
    let grown = r#"min(zaqar_pool_report_age_seconds{pool="pool-2"}) > bool 8"#;
    prometheus.eventually_equals(grown, 1.0).await?;
    let fresh = r#"max(zaqar_pool_report_age_seconds{pool="pool-1"}) < bool 8"#;
    prometheus.eventually_equals(fresh, 1.0).await?;
    drop(api_nodes);
    Ok(())
}
