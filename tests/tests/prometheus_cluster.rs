//! A real Prometheus scrapes a whole cluster on loopback, every role with
//! `--metrics-listen`: three raft catalog nodes, two pool-nodes (each on its own
//! Redis) and two api-nodes. After a bounded load, its query API shows posts on both
//! pools, a queue's free and claimed depth equal to what `GET /stats` says, exactly
//! one raft leader, and the health report age of a killed pool-node growing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use zaqar_tests::catalog_cluster::{admin, eventually, CatalogNode as Node};
use zaqar_tests::{free_port, wait_for_port, zaqar_bin, Client, Process, Redis};

const TEST_TIMEOUT: Duration = Duration::from_secs(180);
const SETTLE: Duration = Duration::from_secs(30);
const PROJECT: &str = "metrics-cluster";

/// The first value of PromQL `query`, or `None` when it has no result.
async fn query(prometheus: &str, query: &str) -> Result<Option<f64>> {
    let answer: Value = reqwest::Client::new()
        .get(format!("{prometheus}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await?
        .json()
        .await?;
    Ok(answer["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok()))
}

/// Waits (60 s at most) until `query` answers `want`.
async fn eventually_equals(prometheus: &str, promql: &str, want: f64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        last = query(prometheus, promql).await.ok().flatten();
        if last == Some(want) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("{promql} did not become {want} (last {last:?})")
}

/// Starts `zaqar ARGS --metrics-listen` as `name`; returns it and its metrics port.
fn role(name: &str, args: &[&str], dir: &Path) -> Result<(Process, u16)> {
    let metrics = free_port();
    let listen = format!("127.0.0.1:{metrics}");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--metrics-listen", &listen]);
    let process = Process::spawn(name, &zaqar_bin(), &all, dir)?;
    Ok((process, metrics))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_the_whole_cluster() {
    tokio::time::timeout(TEST_TIMEOUT, scenario())
        .await
        .expect("the test did not finish in time")
        .unwrap();
}

async fn scenario() -> Result<()> {
    let tempdir = tempfile::tempdir()?;
    let dir = tempdir.path();
    let mut targets: Vec<(String, u16, Option<String>)> = Vec::new();
    let mut processes = Vec::new();

    let mut nodes: Vec<Node> = (1..=3).map(|id| Node::new(id, dir)).collect();
    let members: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}={}", n.id, n.raft_addr()))
        .collect();
    for node in &mut nodes {
        let metrics = free_port();
        node.args.extend([
            "--members".into(),
            members.join(","),
            "--metrics-listen".into(),
            format!("127.0.0.1:{metrics}"),
        ]);
        node.start(dir)?;
        targets.push(("catalog".into(), metrics, None));
    }
    let all: Vec<String> = nodes.iter().map(Node::endpoint).collect();
    let catalogs = all.join(",");
    eventually("a raft leader", SETTLE, || async {
        let status = admin(&all, &["status"]).await?;
        ensure!(status["leader_id"].is_u64(), "no leader: {status}");
        Ok(())
    })
    .await?;

    let redis = [Redis::start()?, Redis::start()?];
    let mut pool_nodes = Vec::new();
    for (index, redis) in redis.iter().enumerate() {
        let name = format!("pool-{}", index + 1);
        let port = free_port();
        let (process, metrics) = role(
            &name,
            &[
                "pool-node",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--uri",
                &redis.uri(0),
                "--name",
                &name,
                "--weight",
                "100",
                "--catalog",
                &catalogs,
            ],
            dir,
        )?;
        wait_for_port(port, SETTLE)?;
        pool_nodes.push(Some(process));
        targets.push(("pool-node".into(), metrics, Some(name)));
    }
    let mut api_ports = Vec::new();
    for index in 0..2 {
        let port = free_port();
        let (process, metrics) = role(
            &format!("api-node-{index}"),
            &[
                "api-node",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--ws-listen",
                &format!("127.0.0.1:{}", free_port()),
                "--catalog",
                &catalogs,
            ],
            dir,
        )?;
        Client::new(port, PROJECT).wait_ready(SETTLE).await?;
        processes.push(process);
        api_ports.push(port);
        targets.push(("api-node".into(), metrics, None));
    }

    // A bounded load: 16 queues (spread over both pools), through both api-nodes.
    let clients: Vec<Client> = api_ports.iter().map(|p| Client::new(*p, PROJECT)).collect();
    eventually("both pools registered", SETTLE, || async {
        let created = clients[0]
            .call("PUT", "/v2/queues/first", Some(json!({})))
            .await?;
        ensure!(created.status == 201, "{created:?}");
        Ok(())
    })
    .await?;
    for n in 0..16 {
        let client = &clients[n % 2];
        let path = format!("/v2/queues/q{n}/messages");
        let posted = client
            .call("POST", &path, Some(json!({"messages": [{"body": n}]})))
            .await?;
        ensure!(posted.status == 201, "{posted:?}");
    }
    // One queue with a known depth: 5 posted, 2 of them claimed.
    let watched = &clients[0];
    let messages: Vec<Value> = (0..5).map(|n| json!({"ttl": 600, "body": n})).collect();
    let posted = watched
        .call(
            "POST",
            "/v2/queues/watched/messages",
            Some(json!({"messages": messages})),
        )
        .await?;
    ensure!(posted.status == 201, "{posted:?}");
    let claimed = watched
        .call(
            "POST",
            "/v2/queues/watched/claims?limit=2",
            Some(json!({"ttl": 300, "grace": 60})),
        )
        .await?;
    ensure!(claimed.status == 201, "{claimed:?}");
    let stats = watched
        .call("GET", "/v2/queues/watched/stats", None)
        .await?;
    let free = stats.body["messages"]["free"].as_f64().context("free")?;
    let held = stats.body["messages"]["claimed"]
        .as_f64()
        .context("claimed")?;
    ensure!((free, held) == (3.0, 2.0), "{stats:?}");

    // Prometheus, scraping every role every second.
    let mut config = String::from("global:\n  scrape_interval: 1s\nscrape_configs:\n");
    for (index, (job, port, pool)) in targets.iter().enumerate() {
        config.push_str(&format!(
            "  - job_name: {job}-{index}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n        labels: {{role: {job}, pool: '{}'}}\n",
            pool.clone().unwrap_or_default()
        ));
    }
    let config_file = dir.join("prometheus.yml");
    std::fs::write(&config_file, config)?;
    let prometheus_port = free_port();
    let _prometheus = Process::spawn(
        "prometheus",
        &PathBuf::from("prometheus"),
        &[
            &format!("--config.file={}", config_file.display()),
            &format!("--storage.tsdb.path={}", dir.join("tsdb").display()),
            &format!("--web.listen-address=127.0.0.1:{prometheus_port}"),
        ],
        dir,
    )?;
    wait_for_port(prometheus_port, SETTLE)?;
    let prometheus = format!("http://127.0.0.1:{prometheus_port}");

    let pools_posting =
        r#"count(sum by (pool) (zaqar_messages_total{role="pool-node",event="posted"}) > 0)"#;
    eventually_equals(&prometheus, pools_posting, 2.0).await?;
    let free_depth = r#"sum(zaqar_queue_messages{queue="watched",state="free"})"#;
    eventually_equals(&prometheus, free_depth, free).await?;
    let claimed_depth = r#"sum(zaqar_queue_messages{queue="watched",state="claimed"})"#;
    eventually_equals(&prometheus, claimed_depth, held).await?;
    eventually_equals(&prometheus, "sum(zaqar_raft_is_leader)", 1.0).await?;
    eventually_equals(&prometheus, r#"count(up{role="api-node"} == 1)"#, 2.0).await?;

    // A killed pool-node stops reporting: its report's age grows on the catalogs.
    pool_nodes[1] = None;
    let age = r#"min(zaqar_pool_report_age_seconds{pool="pool-2"})"#;
    let first = query(&prometheus, age)
        .await?
        .context("an age for pool-2")?;
    let grown = r#"min(zaqar_pool_report_age_seconds{pool="pool-2"}) > bool 8"#;
    eventually_equals(&prometheus, grown, 1.0).await?;
    let fresh = r#"max(zaqar_pool_report_age_seconds{pool="pool-1"}) < bool 8"#;
    eventually_equals(&prometheus, fresh, 1.0).await?;
    ensure!(first < 8.0, "pool-2's report was already old: {first}");
    drop(processes);
    Ok(())
}
