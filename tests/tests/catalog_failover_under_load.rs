//! Three `zaqar catalog` processes as a raft cluster, two pools (each a pool-node on
//! its own real Redis) and two api-nodes, every role given all three catalog
//! endpoints. Clients create queues and post messages through both api-nodes while the
//! raft leader is killed (kill -9): no acknowledged write is lost, writes resume
//! within the promised 5 s, queues spread over both pools by weight, the killed node
//! catches up after a restart, and a full restart of every catalog node keeps the pools
//! and placements.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use zaqar_proto::pb::catalog_service_client::CatalogServiceClient;
use zaqar_proto::pb::{Empty, ListQueuesRequest};
use zaqar_tests::catalog_cluster::{admin, caught_up, eventually, CatalogNode as Node};
use zaqar_tests::{
    free_port, pool_node_args, wait_for_port, within, zaqar_bin, Client, Process, Redis,
};

/// The whole test finishes in this time or fails.
const TEST_TIMEOUT: Duration = Duration::from_secs(180);
/// How long the cluster may take to start, elect a leader or catch up.
const SETTLE: Duration = Duration::from_secs(30);
/// The project every client writes to.
const PROJECT: &str = "failover-project";
/// Weights of the two pools: the first should get about three queues in four.
const WEIGHTS: [u32; 2] = [300, 100];
/// Client tasks per api-node.
const WORKERS_PER_API: usize = 2;
/// How long the clients write before the leader is killed, and after.
const LOAD_BEFORE_KILL: Duration = Duration::from_secs(2);
const LOAD_AFTER_KILL: Duration = Duration::from_secs(8);
/// The longest pause in successful queue creations (each a catalog write) allowed after
/// the leader is killed. The promise is 5 s; the slack covers what a request may be
/// stuck in when the leader dies: api-node's connect timeout to the dead node (2 s by
/// default, though on loopback a dead port refuses at once) and one catalog write
/// attempt on a follower that still forwards to the dead leader before it learns of
/// the new one (the raft election itself takes 0.75-1.5 s).
const MAX_WRITE_GAP: Duration = Duration::from_secs(10);

/// The raft status of the node at `endpoint` once it knows a leader and three voters.
async fn settled_status(endpoint: &str) -> Result<Value> {
    let endpoints = [endpoint.to_string()];
    eventually("a leader and three voters", SETTLE, || async {
        let status = admin(&endpoints, &["status"]).await?;
        let members = status["members"].as_array().context("no members")?;
        let voting = members.iter().filter(|m| m["voter"] == true).count();
        ensure!(status["leader_id"].is_u64(), "no leader: {status}");
        ensure!(voting == 3, "{voting} voters: {status}");
        Ok(status)
    })
    .await
}

/// Every placement of [`PROJECT`] as the catalog node at `endpoint` lists it:
/// queue → pool.
async fn placements(endpoint: &str) -> Result<BTreeMap<String, String>> {
    let mut catalog = CatalogServiceClient::connect(endpoint.to_string()).await?;
    let mut all = BTreeMap::new();
    let mut marker = String::new();
    loop {
        let request = ListQueuesRequest {
            project: PROJECT.into(),
            marker: marker.clone(),
            limit: 1000,
            name_filter: String::new(),
            with_count: false,
        };
        let page = catalog.list_queues(request).await?.into_inner().queues;
        let Some(last) = page.last() else {
            return Ok(all);
        };
        marker = last
            .queue
            .as_ref()
            .context("placement without queue")?
            .queue
            .clone();
        for placement in page {
            let queue = placement.queue.context("placement without queue")?.queue;
            all.insert(queue, placement.pool);
        }
    }
}

/// The pools the catalog node at `endpoint` lists: name → weight.
async fn pools(endpoint: &str) -> Result<BTreeMap<String, u32>> {
    let mut catalog = CatalogServiceClient::connect(endpoint.to_string()).await?;
    let pools = catalog.list_pools(Empty {}).await?.into_inner().pools;
    Ok(pools.into_iter().map(|p| (p.name, p.weight)).collect())
}

/// What the clients got acknowledged, and when.
#[derive(Default)]
struct Acked {
    /// Queue → ids of the messages posted to it (201).
    queues: BTreeMap<String, Vec<String>>,
    /// When each queue creation (a catalog write) was acknowledged.
    created_at: Vec<Instant>,
    /// When each message post was acknowledged.
    posted_at: Vec<Instant>,
    /// Requests that failed (an error status or no answer).
    failures: usize,
}

/// The ids of the messages of a 201 answer to a post.
fn posted_ids(body: &Value) -> Vec<String> {
    body["resources"]
        .as_array()
        .map(|hrefs| {
            hrefs
                .iter()
                .filter_map(|href| href.as_str()?.rsplit('/').next().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// One client: creates a queue, posts a message to it and one to a queue it created
/// before, over and over until `stop`.
async fn worker(client: Client, name: String, stop: Arc<AtomicBool>) -> Acked {
    let mut acked = Acked::default();
    let mut created: Vec<String> = Vec::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let queue = format!("{name}-{n:05}");
        n += 1;
        let put = client.put(&format!("/v2/queues/{queue}"), json!({})).await;
        match put {
            Ok(reply) if reply.status == 201 || reply.status == 204 => {
                acked.created_at.push(Instant::now());
                acked.queues.insert(queue.clone(), Vec::new());
                created.push(queue.clone());
            }
            _ => {
                acked.failures += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        }
        let earlier = created[(n * 7919) % created.len()].clone();
        for target in [queue, earlier] {
            let body = json!({"messages": [{"body": {"n": n}, "ttl": 3600}]});
            let post = client
                .post(&format!("/v2/queues/{target}/messages"), body)
                .await;
            match post {
                Ok(reply) if reply.status == 201 => {
                    acked.posted_at.push(Instant::now());
                    let ids = posted_ids(&reply.body);
                    acked.queues.entry(target).or_default().extend(ids);
                }
                _ => acked.failures += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    acked
}

/// The longest time without an acknowledgement in `[from, until]`.
fn longest_gap(times: &[Instant], from: Instant, until: Instant) -> Duration {
    let mut after: Vec<Instant> = times.iter().copied().filter(|t| *t >= from).collect();
    after.sort();
    let mut previous = from;
    let mut longest = Duration::ZERO;
    for t in after.into_iter().chain([until]) {
        longest = longest.max(t.saturating_duration_since(previous));
        previous = t;
    }
    longest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_acknowledged_write_is_lost_when_the_catalog_leader_dies_under_load() -> Result<()> {
    within(TEST_TIMEOUT, scenario()).await
}

async fn scenario() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bin = zaqar_bin();

    // Three catalog nodes.
    let mut nodes: Vec<Node> = (1..=3).map(|id| Node::new(id, dir.path())).collect();
    let members: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}={}", n.id, n.raft_addr()))
        .collect();
    for node in &mut nodes {
        node.args.extend(["--members".into(), members.join(",")]);
        node.start(dir.path())?;
    }
    let all: Vec<String> = nodes.iter().map(Node::endpoint).collect();
    let catalogs = all.join(",");
    settled_status(&all[0]).await?;

    // Two pools, each a pool-node on its own Redis, registering through every node.
    let redis = [Redis::start()?, Redis::start()?];
    let mut roles: Vec<Process> = Vec::new();
    for (index, redis) in redis.iter().enumerate() {
        let port = free_port();
        let name = format!("pool-{index}");
        let args = pool_node_args(&name, port, &redis.uri(0), WEIGHTS[index], &catalogs);
        roles.push(Process::spawn(&name, &bin, &args, dir.path())?);
        wait_for_port(port, SETTLE)?;
    }
    let expected_pools: BTreeMap<String, u32> = WEIGHTS
        .iter()
        .enumerate()
        .map(|(index, weight)| (format!("pool-{index}"), *weight))
        .collect();
    eventually("both pools registered", SETTLE, || async {
        let registered = pools(&all[0]).await?;
        ensure!(registered == expected_pools, "{registered:?}");
        Ok(())
    })
    .await?;

    // Two api-nodes, each given all three catalog endpoints.
    let mut api_ports = Vec::new();
    for index in 0..2 {
        let port = free_port();
        roles.push(Process::spawn(
            &format!("api-node-{index}"),
            &bin,
            &[
                "api-node",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--ws-listen",
                &format!("127.0.0.1:{}", free_port()),
                "--catalog",
                &catalogs,
            ],
            dir.path(),
        )?);
        Client::new(port, PROJECT).wait_ready(SETTLE).await?;
        api_ports.push(port);
    }

    // Clients write through both api-nodes; the leader dies under them.
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for (api, port) in api_ports.iter().enumerate() {
        for index in 0..WORKERS_PER_API {
            let client = Client::new(*port, PROJECT);
            let name = format!("a{api}w{index}");
            workers.push(tokio::spawn(worker(client, name, stop.clone())));
        }
    }
    tokio::time::sleep(LOAD_BEFORE_KILL).await;
    let status = settled_status(&all[0]).await?;
    let leader = status["leader_id"].as_u64().context("leader id")?;
    let leader_index = nodes
        .iter()
        .position(|n| n.id == leader)
        .context("the leader is one of the nodes")?;
    nodes[leader_index].kill();
    let killed_at = Instant::now();
    tokio::time::sleep(LOAD_AFTER_KILL).await;
    stop.store(true, Ordering::Relaxed);
    let stopped_at = Instant::now();
    let mut acked = Acked::default();
    for worker in workers {
        let done = worker.await?;
        acked.queues.extend(done.queues);
        acked.created_at.extend(done.created_at);
        acked.posted_at.extend(done.posted_at);
        acked.failures += done.failures;
    }
    let created_before = acked.created_at.iter().filter(|t| **t < killed_at).count();
    let created_after = acked.created_at.len() - created_before;
    let creation_gap = longest_gap(&acked.created_at, killed_at, stopped_at);
    let post_gap = longest_gap(&acked.posted_at, killed_at, stopped_at);
    let messages: usize = acked.queues.values().map(Vec::len).sum();
    println!(
        "killed leader {leader}: {created_before} queues created before, {created_after} after, \
         {messages} messages, {} failed requests; longest gap after the kill: \
         queue creation {creation_gap:?}, message post {post_gap:?}",
        acked.failures
    );
    ensure!(created_before > 0, "no queue was created before the kill");
    ensure!(created_after > 0, "no queue was created after the kill");
    ensure!(
        creation_gap < MAX_WRITE_GAP,
        "queue creation stopped for {creation_gap:?} after the leader was killed"
    );
    ensure!(
        post_gap < MAX_WRITE_GAP,
        "message posts stopped for {post_gap:?} after the leader was killed"
    );

    // No acknowledged queue or message is lost: the catalog places every queue and
    // every message is there, read through the other api-node than most were written to.
    let survivors: Vec<String> = nodes
        .iter()
        .filter(|n| n.id != leader)
        .map(Node::endpoint)
        .collect();
    let placed = placements(&survivors[0]).await?;
    let missing: Vec<&String> = acked
        .queues
        .keys()
        .filter(|q| !placed.contains_key(*q))
        .collect();
    ensure!(missing.is_empty(), "queues lost: {missing:?}");
    let reader = Client::new(api_ports[1], PROJECT);
    for (queue, ids) in &acked.queues {
        // Every queue answers (it exists on its pool), and so does each message, by id.
        let stats = reader.get(&format!("/v2/queues/{queue}/stats")).await?;
        ensure!(stats.status == 200, "{queue}: {:?}", stats.body);
        for chunk in ids.chunks(20) {
            let listed = reader
                .get(&format!(
                    "/v2/queues/{queue}/messages?ids={}",
                    chunk.join(",")
                ))
                .await?;
            ensure!(listed.status == 200, "{queue}: {:?}", listed.body);
            let found: BTreeSet<&str> = listed.body["messages"]
                .as_array()
                .map(|m| m.iter().filter_map(|m| m["id"].as_str()).collect())
                .unwrap_or_default();
            let lost: Vec<&String> = chunk
                .iter()
                .filter(|id| !found.contains(id.as_str()))
                .collect();
            ensure!(lost.is_empty(), "{queue}: messages lost: {lost:?}");
        }
    }

    // Queues spread over both pools by weight (3:1).
    let per_pool = |pool: &str| placed.values().filter(|p| *p == pool).count();
    let (heavy, light) = (per_pool("pool-0"), per_pool("pool-1"));
    println!("placements: pool-0 (weight 300) {heavy}, pool-1 (weight 100) {light}");
    ensure!(heavy + light == placed.len(), "unknown pools: {placed:?}");
    ensure!(
        light * 20 >= placed.len() && heavy > light,
        "not spread by weight: {heavy} on pool-0, {light} on pool-1"
    );
    ensure!(redis[0].queue_key_count(0)? > 0 && redis[1].queue_key_count(0)? > 0);

    // The killed node restarts and catches up.
    let status = settled_status(&survivors[0]).await?;
    ensure!(status["leader_id"].as_u64() != Some(leader), "{status}");
    let target = status["last_applied_index"].as_u64().context("applied")?;
    nodes[leader_index].start(dir.path())?;
    let restarted = [nodes[leader_index].endpoint()];
    caught_up(&restarted[0], target, SETTLE).await?;
    ensure!(placements(&restarted[0]).await? == placed);
    ensure!(pools(&restarted[0]).await? == expected_pools);

    // A full restart of every catalog node keeps pools and placements.
    for node in &mut nodes {
        node.kill();
    }
    for node in &mut nodes {
        node.start(dir.path())?;
    }
    settled_status(&all[0]).await?;
    for endpoint in &all {
        let (listed_pools, listed_placements) = eventually(
            "the catalog serving after a full restart",
            SETTLE,
            || async { Ok((pools(endpoint).await?, placements(endpoint).await?)) },
        )
        .await?;
        ensure!(
            listed_pools == expected_pools,
            "{endpoint}: {listed_pools:?}"
        );
        ensure!(listed_placements == placed, "{endpoint}: placements differ");
    }
    // And the api-nodes keep serving on it: a new queue and a new message.
    let client = Client::new(api_ports[0], PROJECT);
    eventually("a write after the full restart", SETTLE, || async {
        let put = client.put("/v2/queues/after-restart", json!({})).await?;
        ensure!(put.status == 201 || put.status == 204, "{put:?}");
        let body = json!({"messages": [{"body": "after restart"}]});
        let post = client
            .post("/v2/queues/after-restart/messages", body)
            .await?;
        ensure!(post.status == 201, "{post:?}");
        Ok(())
    })
    .await?;
    drop(roles);
    drop(nodes);
    Ok(())
}
