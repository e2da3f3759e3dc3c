//! Three `zaqar catalog` processes as a raft cluster, driven by `zaqar admin`: the
//! cluster elects a leader, keeps its pools and takes writes through a survivor when
//! the leader is killed (kill -9), the killed node catches up after a restart, and a
//! fourth node joins with `zaqar admin nodes add`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use zaqar_proto::pb::catalog_service_client::CatalogServiceClient;
use zaqar_proto::pb::{PlaceQueueRequest, QueueRef};
use zaqar_tests::catalog_cluster::{admin, caught_up, eventually, CatalogNode as Node};
use zaqar_tests::within;

/// The whole test finishes in this time or fails.
const TEST_TIMEOUT: Duration = Duration::from_secs(240);
/// How long the cluster may take to elect a leader or to catch up.
const SETTLE: Duration = Duration::from_secs(30);
/// How long writes may fail after the leader was killed.
const FAILOVER: Duration = Duration::from_secs(15);

/// The status of the node at `endpoint` once it knows a leader and `voters` voters.
async fn settled_status(endpoint: &str, voters: usize) -> Result<Value> {
    let endpoints = [endpoint.to_string()];
    eventually("a leader and all voters", SETTLE, || async {
        let status = admin(&endpoints, &["status"]).await?;
        let members = status["members"].as_array().context("no members")?;
        let voting = members.iter().filter(|m| m["voter"] == true).count();
        ensure!(status["leader_id"].is_u64(), "no leader: {status}");
        ensure!(voting == voters, "{voting} voters: {status}");
        Ok(status)
    })
    .await
}

fn pool_names(pools: &Value) -> BTreeSet<String> {
    let pools = pools.as_array().cloned().unwrap_or_default();
    pools
        .iter()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect()
}

fn add_pool<'a>(name: &'a str, port: &'a str) -> [&'a str; 9] {
    [
        "pools",
        "add",
        name,
        "--uri",
        "redis://127.0.0.1:6379/0",
        "--endpoint",
        port,
        "--weight",
        "10",
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raft_catalog_survives_its_leader_and_grows_to_four_nodes() -> Result<()> {
    within(TEST_TIMEOUT, scenario()).await
}

async fn scenario() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut nodes: Vec<Node> = Vec::new();
    for id in 1..=3 {
        nodes.push(Node::new(id, dir.path()));
    }
    let members: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}={}", n.id, n.raft_addr()))
        .collect();
    for node in &mut nodes {
        node.args
            .extend(["--members".to_string(), members.join(",")]);
        node.start(dir.path())?;
    }
    let all: Vec<String> = nodes.iter().map(Node::endpoint).collect();

    let status = settled_status(&all[0], 3).await?;
    assert_eq!(status["backend"], "raft");
    assert_eq!(status["members"].as_array().map(Vec::len), Some(3));
    let added = admin(&all, &add_pool("pool-a", "http://127.0.0.1:7001")).await?;
    assert_eq!(
        (added["name"].as_str(), added["weight"].as_i64()),
        (Some("pool-a"), Some(10))
    );

    // kill -9 the leader; a survivor takes writes and still has the first pool.
    let leader = status["leader_id"].as_u64().context("leader id")?;
    let leader_index = nodes
        .iter()
        .position(|n| n.id == leader)
        .context("leader")?;
    nodes[leader_index].process = None;
    let killed_at = Instant::now();
    let survivors: Vec<String> = nodes
        .iter()
        .filter(|n| n.id != leader)
        .map(Node::endpoint)
        .collect();
    let pool_b = add_pool("pool-b", "http://127.0.0.1:7002");
    eventually("a write through a survivor", FAILOVER, || {
        admin(&survivors, &pool_b)
    })
    .await?;
    let mut catalog = CatalogServiceClient::connect(survivors[0].clone()).await?;
    let place = PlaceQueueRequest {
        queue: Some(QueueRef {
            project: "p".into(),
            queue: "after-failover".into(),
        }),
        flavor: String::new(),
        pool: String::new(),
    };
    let placed = catalog.place_queue(place).await?.into_inner();
    assert!(placed.pool.starts_with("pool-"), "{placed:?}");
    assert!(killed_at.elapsed() < FAILOVER, "{:?}", killed_at.elapsed());
    let pools = pool_names(&admin(&survivors, &["pools", "list"]).await?);
    assert_eq!(pools, BTreeSet::from(["pool-a".into(), "pool-b".into()]));
    let status = settled_status(&survivors[0], 3).await?;
    assert_ne!(status["leader_id"].as_u64(), Some(leader));

    // The killed node restarts and catches up.
    nodes[leader_index].start(dir.path())?;
    let restarted = [nodes[leader_index].endpoint()];
    let target = status["last_applied_index"].as_u64().context("applied")?;
    caught_up(&restarted[0], target, SETTLE).await?;
    let lookup = admin(&restarted, &["queue", "lookup", "p", "after-failover"]).await?;
    assert_eq!(lookup["pool"].as_str(), Some(placed.pool.as_str()));

    // A fourth node joins through whichever node leads.
    let mut fourth = Node::new(4, dir.path());
    fourth.args.push("--join".to_string());
    fourth.start(dir.path())?;
    let status = admin(&all, &["nodes", "add", "4", &fourth.raft_addr()]).await?;
    let ids: Vec<u64> = status["members"]
        .as_array()
        .context("members")?
        .iter()
        .filter_map(|m| m["id"].as_u64())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    settled_status(&fourth.endpoint(), 4).await?;
    let pools = pool_names(&admin(&[fourth.endpoint()], &["pools", "list"]).await?);
    assert_eq!(pools.len(), 2, "{pools:?}");
    drop(nodes);
    drop(fourth);
    Ok(())
}
