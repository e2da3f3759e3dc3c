//! The fault suite on the network between raft catalog nodes: three nodes whose peers
//! reach each other only through a proxy in front of each node's raft port (its
//! advertised address), each node dialing from its own loopback address
//! (`--raft-source-ip`) so that a proxy can tell its peers apart; a pool-node on Redis
//! (AOF, `appendfsync always`) and two api-nodes carry a steady load with a ledger
//! (`zaqar_tests::faults`). Either every raft link is cut, or only the link between the
//! leader and one follower (the third node still reaching both). Each time: no
//! acknowledged message lost, none held by two live claims, and the catalog places
//! queues again. Each row goes to docs/reliability.md (scripts/faults-report.sh).

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use zaqar_tests::catalog_cluster::{admin, eventually, CatalogNode};
use zaqar_tests::faults::{create_ledger_queue, Load};
use zaqar_tests::proxy::{Link, TcpProxy};
use zaqar_tests::{spawn_api_node, spawn_pool_node, Client, Process, Redis};

const BEFORE: Duration = Duration::from_secs(2);
const AFTER: Duration = Duration::from_secs(5);
const RECOVERY: Duration = Duration::from_secs(5);
/// How long a fault lasts.
const FAULT: Duration = Duration::from_secs(5);
const PROJECT: &str = "faults";

/// The loopback address raft node `id` dials its peers from.
fn source_ip(id: u64) -> IpAddr {
    IpAddr::from([127, 0, 0, 10 + u8::try_from(id).expect("a small node id")])
}

/// Three raft catalog nodes behind their proxies, a pool-node and two api-nodes.
struct CatalogBehindProxies {
    nodes: Vec<CatalogNode>,
    proxies: Vec<TcpProxy>,
    endpoints: Vec<String>,
    api_ports: Vec<u16>,
    _redis: Redis,
    _processes: Vec<Process>,
}

impl CatalogBehindProxies {
    async fn start(dir: &Path) -> Result<CatalogBehindProxies> {
        let mut nodes: Vec<CatalogNode> = (1..=3).map(|id| CatalogNode::new(id, dir)).collect();
        let mut proxies = Vec::new();
        for node in &nodes {
            proxies.push(TcpProxy::start(node.raft_port).await?);
        }
        let members: Vec<String> = nodes
            .iter()
            .zip(&proxies)
            .map(|(node, proxy)| format!("{}=127.0.0.1:{}", node.id, proxy.port))
            .collect();
        for (node, proxy) in nodes.iter_mut().zip(&proxies) {
            node.args.extend([
                "--members".to_string(),
                members.join(","),
                "--raft-advertise".to_string(),
                format!("127.0.0.1:{}", proxy.port),
                "--raft-source-ip".to_string(),
                source_ip(node.id).to_string(),
            ]);
            node.start(dir)?;
        }
        let endpoints: Vec<String> = nodes.iter().map(CatalogNode::endpoint).collect();
        eventually("a raft leader", Duration::from_secs(30), || async {
            leader(&endpoints).await
        })
        .await?;
        let catalogs = endpoints.join(",");
        let redis = Redis::start_with(&["--appendfsync", "always"])?;
        let mut processes = vec![spawn_pool_node(
            dir,
            "pool-1",
            &redis.uri(0),
            &catalogs,
            &[],
        )?];
        let mut api_ports = Vec::new();
        for index in 0..2 {
            let name = format!("api-node-{index}");
            let (process, port) = spawn_api_node(dir, &name, &catalogs, &[]).await?;
            processes.push(process);
            api_ports.push(port);
        }
        create_ledger_queue(&Client::new(api_ports[0], PROJECT)).await?;
        Ok(CatalogBehindProxies {
            nodes,
            proxies,
            endpoints,
            api_ports,
            _redis: redis,
            _processes: processes,
        })
    }

    fn client(&self) -> Client {
        Client::new(self.api_ports[0], PROJECT)
    }

    /// The raft status of node `index`, asked of that node alone.
    async fn status_of(&self, index: usize) -> Result<Value> {
        admin(&self.endpoints[index..=index], &["status"]).await
    }

    /// Cuts (or, with `false`, heals) the raft links between the nodes at `a` and `b`:
    /// each one's proxy closes and refuses what the other dials.
    fn partition(&self, a: usize, b: usize, cut: bool) {
        let (id_a, id_b) = (self.nodes[a].id, self.nodes[b].id);
        let from = |id: u64| if cut { vec![source_ip(id)] } else { Vec::new() };
        self.proxies[a].cut_from(&from(id_b));
        self.proxies[b].cut_from(&from(id_a));
    }
}

/// The id of the leader the catalog reports.
async fn leader(endpoints: &[String]) -> Result<u64> {
    let status = admin(endpoints, &["status"]).await?;
    status["leader_id"]
        .as_u64()
        .with_context(|| format!("no leader: {status}"))
}

/// Creates queue `name` through `client` (a new placement), trying until `timeout`;
/// returns how long after `since` it was created.
async fn placed_within(
    client: &Client,
    name: &str,
    timeout: Duration,
    since: Instant,
) -> Result<Duration> {
    let what = format!("queue {name} placed");
    eventually(&what, timeout, || async {
        let created = client
            .call("PUT", &format!("/v2/queues/{name}"), None)
            .await?;
        ensure!(created.status == 201, "{created:?}");
        Ok(since.elapsed())
    })
    .await
}

/// Every raft link is cut for 5 s under load. The data path goes on (the api-nodes hold
/// the queue's placement), a new queue is refused quickly (503) rather than held, and
/// once the links are back the catalog elects a leader and places a new queue again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_cut_between_the_catalog_nodes_loses_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = CatalogBehindProxies::start(dir.path()).await?;
    let client = cluster.client();
    let load = Load::start(&cluster.api_ports, PROJECT, 2, 2, 1);
    tokio::time::sleep(BEFORE).await;
    let cut_at = Instant::now();
    for proxy in &cluster.proxies {
        proxy.set(Link::Cut);
    }
    // The cut is real: without its links the catalog places nothing new, and says so
    // (503) within the api-node's request timeout (5 s) instead of holding the client.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = Instant::now();
    let during = client
        .call("PUT", "/v2/queues/during-the-cut", None)
        .await?;
    ensure!(
        during.status == 503,
        "placing a queue during the cut: {during:?}"
    );
    ensure!(
        asked.elapsed() < Duration::from_secs(8),
        "the 503 took {:?}",
        asked.elapsed()
    );
    tokio::time::sleep(FAULT.saturating_sub(cut_at.elapsed())).await;
    for proxy in &cluster.proxies {
        proxy.set(Link::Up);
    }
    let ended = Instant::now();
    let placed = placed_within(&client, "after-the-cut", RECOVERY * 2, ended).await?;
    tokio::time::sleep(AFTER).await;
    let outcome = load.finish(ended).await?;
    outcome.report(&format!(
        "network cut between the 3 raft catalog nodes (every raft link), 5 s; 2 api-nodes (a new queue placed {:.1} s after)",
        placed.as_secs_f64()
    ));
    outcome.check(RECOVERY)
}

/// Only the link between the leader and one follower is cut, for 5 s under load; the
/// third node still reaches both. The leader and the third node are a majority: the
/// catalog keeps placing queues during the partition (the cut follower's elections may
/// move the leadership once). Once healed, the cut follower catches up with what was
/// placed without it, and every node names the same leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_between_the_leader_and_one_follower_loses_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = CatalogBehindProxies::start(dir.path()).await?;
    let client = cluster.client();
    let leader_id = leader(&cluster.endpoints).await?;
    let position = |id: u64| cluster.nodes.iter().position(|node| node.id == id);
    let leader_at = position(leader_id).context("the leader is one of the nodes")?;
    let follower_at = (leader_at + 1) % cluster.nodes.len();
    let load = Load::start(&cluster.api_ports, PROJECT, 2, 2, 1);
    tokio::time::sleep(BEFORE).await;
    let cut_at = Instant::now();
    cluster.partition(leader_at, follower_at, true);
    // Long enough for the cut follower to miss its heartbeats and call elections.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let asked = Instant::now();
    let placed_during = placed_within(&client, "during-the-partition", FAULT, asked).await?;
    // What the majority has applied by now, the cut follower must catch up with.
    let majority_at = (0..cluster.nodes.len())
        .find(|at| *at != follower_at && *at != leader_at)
        .context("a third node")?;
    let applied_without_it = cluster.status_of(majority_at).await?["last_applied_index"]
        .as_u64()
        .context("the third node's applied index")?;
    tokio::time::sleep(FAULT.saturating_sub(cut_at.elapsed())).await;
    // The partition is real: the cut follower has not applied what the majority placed.
    let follower_applied = cluster.status_of(follower_at).await?["last_applied_index"]
        .as_u64()
        .unwrap_or(0);
    ensure!(
        follower_applied < applied_without_it,
        "the cut follower applied {follower_applied}, the majority {applied_without_it}"
    );
    cluster.partition(leader_at, follower_at, false);
    let ended = Instant::now();
    let caught_up = eventually("the cut follower caught up", RECOVERY * 2, || async {
        let mut leaders = Vec::new();
        for at in 0..cluster.nodes.len() {
            let status = cluster.status_of(at).await?;
            leaders.push(status["leader_id"].as_u64());
            if at == follower_at {
                let applied = status["last_applied_index"].as_u64().unwrap_or(0);
                ensure!(
                    applied >= applied_without_it,
                    "the cut follower applied {applied} of {applied_without_it}"
                );
            }
        }
        ensure!(
            leaders[0].is_some() && leaders.iter().all(|id| *id == leaders[0]),
            "the nodes name the leaders {leaders:?}"
        );
        Ok(ended.elapsed())
    })
    .await?;
    let placed_after = placed_within(&client, "after-the-partition", RECOVERY * 2, ended).await?;
    tokio::time::sleep(AFTER).await;
    let outcome = load.finish(ended).await?;
    outcome.report(&format!(
        "partition between the raft leader and one follower (the third catalog node reaching both), 5 s; \
         2 api-nodes (a queue placed {:.1} s into the partition; after it, the follower caught up in {:.1} s, a new queue placed {:.1} s)",
        (asked - cut_at + placed_during).as_secs_f64(),
        caught_up.as_secs_f64(),
        placed_after.as_secs_f64()
    ));
    outcome.check(RECOVERY)
}
