//! Long polling (`wait`) as consumers use it, across processes: a catalog, one
//! pool-node on a real Redis and api-nodes in front of them. A claim or a listing
//! waiting on one api-node returns the message posted through another, woken by the
//! pool-node's activity stream (the store is not polled meanwhile: the api-node's
//! calls to the pool-node are counted), over REST and WebSocket; the bounds on
//! waiting requests answer 429; a stopping api-node answers its waiting requests at
//! once; `zaqar standalone` wakes its waiters in process, on every store, after a
//! post and after a released claim; a post through another pool-node of the same
//! Redis wakes them too (the pool-nodes' activity relay); a client that hangs up ends
//! its waiting request; consumers of a queue that start together ask the catalog for
//! its placement once; a post wakes one waiting claim, which wakes the next when it
//! took all it asked for, rather than every claim waiting on the queue.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use zaqar_tests::stores::standalone_on_each_store_with;
use zaqar_tests::ws::WsClient;
use zaqar_tests::{free_port, wait_for_port, zaqar_bin, Client, Process, Redis, Standalone};

/// The requests an api-node holds waiting for messages.
const WAITING: &str = "zaqar_long_polls_waiting";

/// A catalog and a pool-node on a Redis of its own, run in a temporary directory,
/// for api-nodes to be started in front of. Dropped in field order: the processes
/// stop before their Redis and their directory go.
struct Cluster {
    processes: Vec<Process>,
    redis: Redis,
    dir: tempfile::TempDir,
    /// The catalog's endpoint.
    catalog: String,
}

impl Cluster {
    fn start() -> Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let redis = Redis::start()?;
        let (processes, catalog) = start_catalog_and_pool(dir.path(), &redis)?;
        Ok(Cluster {
            processes,
            redis,
            dir,
            catalog,
        })
    }

    /// An api-node `name` of this cluster, with `extra` arguments.
    async fn api_node(&self, name: &str, extra: &[&str]) -> Result<ApiNode> {
        start_api_node(self.dir.path(), name, &self.catalog, extra).await
    }
}

/// A catalog and a pool-node on `redis`, both processes in `dir`; the catalog's endpoint.
fn start_catalog_and_pool(dir: &Path, redis: &Redis) -> Result<(Vec<Process>, String)> {
    let bin = zaqar_bin();
    let catalog_port = free_port();
    let catalog = format!("http://127.0.0.1:{catalog_port}");
    let catalog_db = format!("sqlite://{}/catalog.db", dir.display());
    let catalog_listen = format!("127.0.0.1:{catalog_port}");
    let mut processes = vec![Process::spawn(
        "catalog",
        &bin,
        &["catalog", "--listen", &catalog_listen, "--uri", &catalog_db],
        dir,
    )?];
    wait_for_port(catalog_port, Duration::from_secs(30))?;
    processes.push(zaqar_tests::spawn_pool_node(
        dir,
        "pool-0",
        &redis.uri(0),
        &catalog,
        &[],
    )?);
    Ok((processes, catalog))
}

/// An api-node of `catalog`: the process, its REST and WebSocket ports, and the port
/// of its `/metrics`.
struct ApiNode {
    process: Process,
    rest: u16,
    ws: u16,
    metrics: u16,
}

async fn start_api_node(dir: &Path, name: &str, catalog: &str, extra: &[&str]) -> Result<ApiNode> {
    let (rest, ws, metrics) = (free_port(), free_port(), free_port());
    let (rest_listen, ws_listen) = (format!("127.0.0.1:{rest}"), format!("127.0.0.1:{ws}"));
    let metrics_listen = format!("127.0.0.1:{metrics}");
    let mut args = vec![
        "--metrics-listen",
        &metrics_listen,
        "api-node",
        "--listen",
        &rest_listen,
        "--ws-listen",
        &ws_listen,
        "--catalog",
        catalog,
    ];
    args.extend_from_slice(extra);
    let process = Process::spawn(name, &zaqar_bin(), &args, dir)?;
    Client::new(rest, "probe")
        .wait_ready(Duration::from_secs(30))
        .await?;
    Ok(ApiNode {
        process,
        rest,
        ws,
        metrics,
    })
}

/// The sum of the samples of the metric `name` whose labels contain `label` ("" for
/// every one), on the api-node whose `/metrics` are on port `metrics`.
async fn metric(metrics: u16, name: &str, label: &str) -> Result<u64> {
    let text = reqwest::get(format!("http://127.0.0.1:{metrics}/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|line| {
            let named = line
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with([' ', '{']));
            named && line.contains(label)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64)
}

/// Waits until `metric(metrics, name, "")` is `value`, for 10 s at most.
async fn until_metric(metrics: u16, name: &str, value: u64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = metric(metrics, name, "").await?;
        if now == value {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "{name} is {now}, not {value}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many calls of `method` the api-node whose `/metrics` are on port `metrics` made
/// to pool-nodes.
async fn pool_calls(metrics: u16, method: &str) -> Result<u64> {
    metric(
        metrics,
        "zaqar_pool_calls_total",
        &format!("method=\"{method}\""),
    )
    .await
}

/// A client of `project` (its 15-second timeout outlasts every wait these tests see end).
fn consumer(port: u16, project: &str) -> Client {
    Client::new(port, project)
}

/// A claim of `project` on `queue` waiting up to `wait` seconds, sent now: its answer
/// and when it came.
fn waiting_claim(
    port: u16,
    project: &str,
    queue: &str,
    wait: u32,
) -> tokio::task::JoinHandle<(Result<zaqar_tests::Reply>, Instant)> {
    let waiting = consumer(port, project);
    let path = format!("/v2/queues/{queue}/claims?wait={wait}");
    tokio::spawn(async move {
        let reply = waiting.post(&path, json!({"ttl": 60})).await;
        (reply, Instant::now())
    })
}

async fn post(client: &Client, queue: &str, body: Value) -> Result<()> {
    let reply = client
        .post(
            &format!("/v2/queues/{queue}/messages"),
            json!({"messages": [{"ttl": 300, "body": body}]}),
        )
        .await?;
    ensure!(reply.status == 201, "post: {reply:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_claim_takes_the_message_posted_through_another_api_node() -> Result<()> {
    let cluster = Cluster::start()?;
    let a = cluster.api_node("api-a", &[]).await?;
    let b = cluster.api_node("api-b", &[]).await?;
    // Its catalog watch connected first: connecting later would make it doubt its cache.
    until_metric(b.metrics, "zaqar_catalog_watch_connected", 1).await?;
    let (waiting, producer) = (consumer(a.rest, "lp"), consumer(b.rest, "lp"));
    post(&producer, "jobs", json!("warm-up")).await?;
    let drained = waiting
        .post("/v2/queues/jobs/claims?limit=10", json!({}))
        .await?;
    ensure!(drained.status == 201, "{drained:?}");

    let mut after_post = Vec::new();
    for round in 0..4 {
        let calls_before = pool_calls(a.metrics, "create_claim").await?;
        let claim = waiting_claim(a.rest, "lp", "jobs", 10);
        // Longer than the 1-second look of a request whose pool is not followed: such
        // a request would make at least four calls before the post.
        tokio::time::sleep(Duration::from_secs(3)).await;
        post(&producer, "jobs", json!({"round": round})).await?;
        let posted = Instant::now();
        let (reply, answered) = claim.await?;
        let reply = reply?;
        ensure!(reply.status == 201, "round {round}: {reply:?}");
        ensure!(
            reply.body["messages"][0]["body"] == json!({"round": round}),
            "{reply:?}"
        );
        after_post.push(answered.saturating_duration_since(posted));
        // The first try, the try woken by the post, and in the first round the try
        // when the pool's stream went live: never one per second.
        let calls = pool_calls(a.metrics, "create_claim").await? - calls_before;
        ensure!(
            calls <= 3,
            "round {round}: {calls} claim calls to the pool-node while waiting"
        );
    }
    eprintln!("claim answered after the post answered: {after_post:?}");

    // A listing waits the same way, and so do the WebSocket actions below.
    for queue in ["news", "ws-jobs", "ws-news"] {
        let created = producer
            .call("PUT", &format!("/v2/queues/{queue}"), None)
            .await?;
        ensure!(created.status == 201, "{created:?}");
    }
    let listing = tokio::spawn({
        let waiting = consumer(a.rest, "lp");
        async move { waiting.get("/v2/queues/news/messages?wait=10").await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    post(&producer, "news", json!("extra")).await?;
    let listed = listing.await??;
    ensure!(listed.status == 200, "{listed:?}");
    ensure!(
        listed.body["messages"][0]["body"] == json!("extra"),
        "{listed:?}"
    );

    // Over WebSocket: claim_create and message_list with a `wait` body field.
    let mut ws = WsClient::connect(a.ws, "lp", &uuid::Uuid::new_v4().to_string()).await?;
    for (action, queue, body) in [
        (
            "claim_create",
            "ws-jobs",
            json!({"queue_name": "ws-jobs", "wait": 10, "ttl": 60}),
        ),
        (
            "message_list",
            "ws-news",
            json!({"queue_name": "ws-news", "wait": 10}),
        ),
    ] {
        ws.send(action, body).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        post(&producer, queue, json!({"over": action})).await?;
        let reply = ws.reply(Duration::from_secs(15)).await?;
        let want = if action == "claim_create" { 201 } else { 200 };
        ensure!(reply["headers"]["status"] == want, "{action}: {reply}");
        ensure!(
            reply["body"]["messages"][0]["body"] == json!({"over": action}),
            "{action}: {reply}"
        );
    }
    let body = json!({"queue_name": "ws-jobs", "wait": "soon"});
    let reply = ws.call("claim_create", body).await?;
    ensure!(reply["headers"]["status"] == 400, "{reply}");
    drop(a);
    drop(b);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_through_another_pool_node_of_the_store_wakes_the_waiting_claim() -> Result<()> {
    use zaqar_proto::pb::pool_service_client::PoolServiceClient;
    use zaqar_proto::pb::{NewMessage, PostMessagesRequest, QueueRef};
    let mut cluster = Cluster::start()?;
    let api = cluster.api_node("api", &[]).await?;
    let waiting = consumer(api.rest, "relayed");
    post(&waiting, "jobs", json!("warm-up")).await?;
    let drained = waiting
        .post("/v2/queues/jobs/claims?limit=10", json!({}))
        .await?;
    ensure!(drained.status == 201, "{drained:?}");
    // A second pool-node on the same Redis (registered as a pool of its own that takes
    // no queues): the queue stays with the first, whose stream the api-node follows.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "pool-node",
        "--listen",
        &listen,
        "--uri",
        &cluster.redis.uri(0),
        "--name",
        "pool-replica",
        "--weight",
        "0",
        "--catalog",
        &cluster.catalog,
    ];
    let replica = Process::spawn("pool-replica", &zaqar_bin(), &args, cluster.dir.path())?;
    cluster.processes.push(replica);
    wait_for_port(port, Duration::from_secs(30))?;
    let mut replica = PoolServiceClient::connect(format!("http://{listen}")).await?;

    for round in 0..3 {
        let claim = waiting_claim(api.rest, "relayed", "jobs", 20);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let body = json!({"round": round}).to_string();
        replica
            .post_messages(PostMessagesRequest {
                queue: Some(QueueRef {
                    project: "relayed".into(),
                    queue: "jobs".into(),
                }),
                client_id: uuid::Uuid::new_v4().to_string(),
                messages: vec![NewMessage {
                    ttl: 300,
                    delay: 0,
                    body_json: body,
                }],
                ..PostMessagesRequest::default()
            })
            .await?;
        let posted = Instant::now();
        let (reply, answered) = claim.await?;
        let reply = reply?;
        ensure!(reply.status == 201, "round {round}: {reply:?}");
        ensure!(
            reply.body["messages"][0]["body"] == json!({"round": round}),
            "{reply:?}"
        );
        // Woken by the post (relayed from the other pool-node), not by the end of the wait.
        let after = answered.saturating_duration_since(posted);
        ensure!(
            after < Duration::from_secs(10),
            "round {round}: answered {after:?} after the post"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_ends_its_waiting_request() -> Result<()> {
    let cluster = Cluster::start()?;
    let config = cluster.dir.path().join("api.toml");
    std::fs::write(&config, "[long_poll]\nmax_waiting_per_project = 1\n")?;
    let config = config.to_string_lossy().to_string();
    let node = cluster.api_node("api", &["--config", &config]).await?;

    for project in ["rest", "ws"] {
        let created = consumer(node.rest, project)
            .put("/v2/queues/q", json!({}))
            .await?;
        ensure!(created.status == 201, "{created:?}");
    }

    // Over REST: the client goes away with its request.
    let waiting = waiting_claim(node.rest, "rest", "q", 15);
    until_metric(node.metrics, WAITING, 1).await?;
    waiting.abort();
    until_metric(node.metrics, WAITING, 0).await?;

    // Over WebSocket: a request sent while a claim waits is answered after it.
    let mut ws = WsClient::connect(node.ws, "ws", &uuid::Uuid::new_v4().to_string()).await?;
    ws.send("claim_create", json!({"queue_name": "q", "wait": 15}))
        .await?;
    until_metric(node.metrics, WAITING, 1).await?;
    ws.send("queue_get_stats", json!({"queue_name": "q"}))
        .await?;
    post(&consumer(node.rest, "ws"), "q", json!("x")).await?;
    for (action, status) in [("claim_create", 201), ("queue_get_stats", 200)] {
        let reply = ws.reply(Duration::from_secs(10)).await?;
        ensure!(
            reply["request"]["action"] == action && reply["headers"]["status"] == status,
            "expected the reply to {action}: {reply}"
        );
    }

    // The connection closes while its claim waits (after a ping, which is no
    // request): the api-node ends the claim then, not after its 15 s.
    ws.send("claim_create", json!({"queue_name": "q", "wait": 15}))
        .await?;
    until_metric(node.metrics, WAITING, 1).await?;
    ws.ping().await?;
    drop(ws);
    until_metric(node.metrics, WAITING, 0).await?;

    // The place it held is free: another claim of the project waits (204 after its
    // second, where a place still taken would answer 429 at once).
    let after = consumer(node.rest, "ws")
        .post("/v2/queues/q/claims?wait=1", json!({}))
        .await?;
    ensure!(after.status == 204, "{after:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_that_start_together_ask_the_catalog_once() -> Result<()> {
    let cluster = Cluster::start()?;
    let a = cluster.api_node("api-a", &[]).await?;
    let created = consumer(a.rest, "herd")
        .put("/v2/queues/q", json!({}))
        .await?;
    ensure!(created.status == 201, "{created:?}");

    // A second api-node has never looked the queue up. Its consumers, connected
    // first, all claim at once.
    let b = cluster.api_node("api-b", &[]).await?;
    // Its catalog watch connected first: connecting later would make it doubt its cache.
    until_metric(b.metrics, "zaqar_catalog_watch_connected", 1).await?;
    let consumers: Vec<Client> = (0..50).map(|_| consumer(b.rest, "herd")).collect();
    for consumer in &consumers {
        consumer.wait_ready(Duration::from_secs(10)).await?;
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(consumers.len()));
    let claims = consumers.into_iter().map(|consumer| {
        let start = start.clone();
        tokio::spawn(async move {
            start.wait().await;
            consumer.post("/v2/queues/q/claims?wait=1", json!({})).await
        })
    });
    for claim in futures::future::join_all(claims).await {
        let reply = claim??;
        ensure!(reply.status == 204, "{reply:?}");
    }
    let asked = metric(
        b.metrics,
        "zaqar_placement_lookups_total",
        "result=\"catalog\"",
    )
    .await?;
    ensure!(asked == 1, "the catalog was asked {asked} times");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_wakes_one_waiting_claim_and_a_claim_that_took_all_it_asked_wakes_the_next(
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let metrics = free_port();
    let listen = format!("127.0.0.1:{metrics}");
    let server = Standalone::start_with(dir.path(), &["--metrics-listen", &listen])?;
    let producer = consumer(server.port, "baton");
    let created = producer.call("PUT", "/v2/queues/q", None).await?;
    ensure!(created.status == 201, "{created:?}");
    // A first wait opens the pool's activity stream: when a stream goes live, every
    // waiting request looks once, which would count below.
    let opened = producer
        .post("/v2/queues/q/claims?wait=1", json!({}))
        .await?;
    ensure!(opened.status == 204, "{opened:?}");
    until_metric(metrics, "zaqar_pool_activity_streams", 1).await?;
    let before = pool_calls(metrics, "create_claim").await?;
    let mut claims: Vec<_> = (0..20)
        .map(|_| {
            let waiting = consumer(server.port, "baton");
            tokio::spawn(async move {
                let path = "/v2/queues/q/claims?wait=20&limit=1";
                waiting.post(path, json!({"ttl": 60})).await
            })
        })
        .collect();
    until_metric(metrics, WAITING, 20).await?;
    // Each claim looked once before it waited.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pool_calls(metrics, "create_claim").await? < before + 20 {
        ensure!(Instant::now() < deadline, "the claims did not all look");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = pool_calls(metrics, "create_claim").await?;

    // One message: the claim woken takes it and wakes one more, which finds nothing;
    // the other eighteen are not asked to look.
    post(&producer, "q", json!(0)).await?;
    let (first, _, waiting) = futures::future::select_all(claims).await;
    let reply = first??;
    ensure!(reply.status == 201, "{reply:?}");
    claims = waiting;
    until_metric(metrics, WAITING, 19).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let calls = pool_calls(metrics, "create_claim").await? - before;
    ensure!(
        calls <= 3,
        "{calls} claim calls for one message and 20 waiting claims"
    );

    // Nineteen messages in one post (one wake-up): each waiting claim takes the one
    // message it asks for and wakes the next, so every one of them takes a message.
    let reply = producer
        .post("/v2/queues/q/messages", json!({"messages": (1..20).map(|n| json!({"ttl": 300, "body": n})).collect::<Vec<_>>()}))
        .await?;
    ensure!(reply.status == 201, "post: {reply:?}");
    let mut taken = Vec::new();
    for claim in futures::future::join_all(claims).await {
        let reply = claim??;
        ensure!(reply.status == 201, "a claim took nothing: {reply:?}");
        taken.push(reply.body["messages"][0]["body"].as_i64().context("body")?);
    }
    taken.sort_unstable();
    ensure!(taken == (1..20).collect::<Vec<_>>(), "taken: {taken:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_is_bounded_and_ends_when_the_api_node_stops() -> Result<()> {
    let cluster = Cluster::start()?;
    let config = cluster.dir.path().join("api.toml");
    std::fs::write(
        &config,
        "[long_poll]\nmax_wait_seconds = 15\nmax_waiting = 3\nmax_waiting_per_project = 2\n",
    )?;
    let config = config.to_string_lossy().to_string();
    let mut node = cluster.api_node("api", &["--config", &config]).await?;
    let first = consumer(node.rest, "bounded");
    post(&first, "q", json!("x")).await?;
    let drained = first.post("/v2/queues/q/claims", json!({})).await?;
    ensure!(drained.status == 201, "{drained:?}");

    let too_long = first.post("/v2/queues/q/claims?wait=16", json!({})).await?;
    ensure!(too_long.status == 400, "{too_long:?}");
    ensure!(
        too_long.body["description"]
            == "The wait may not exceed 15 seconds, and must be at least 0.",
        "{too_long:?}"
    );

    let wait = |project: &str| {
        let client = consumer(node.rest, project);
        tokio::spawn(async move {
            let started = Instant::now();
            let reply = client.post("/v2/queues/q/claims?wait=15", json!({})).await;
            (reply, started.elapsed())
        })
    };
    let held = [wait("bounded"), wait("bounded")];
    tokio::time::sleep(Duration::from_secs(1)).await;
    let third = first.post("/v2/queues/q/claims?wait=15", json!({})).await?;
    ensure!(
        third.status == 429,
        "a third waiting request of the project: {third:?}"
    );
    ensure!(
        third.body["title"] == "Too many waiting requests",
        "{third:?}"
    );
    // Another project still has room, until the api-node's bound.
    let other = wait("other");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let over = consumer(node.rest, "third")
        .post("/v2/queues/q/claims?wait=15", json!({}))
        .await?;
    ensure!(over.status == 429, "over the api-node's bound: {over:?}");

    // Stopping answers the waiting requests with what there is (nothing: 204) at once,
    // not after their 15 seconds.
    node.process.signal("TERM")?;
    for waiting in held.into_iter().chain([other]) {
        let (reply, took) = waiting.await?;
        let reply = reply?;
        ensure!(reply.status == 204, "{reply:?}");
        ensure!(took < Duration::from_secs(10), "answered after {took:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.process.exited()?.is_none() {
        ensure!(Instant::now() < deadline, "the api-node did not stop");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_wakes_waiting_requests_in_process_on_every_store() -> Result<()> {
    let metrics: HashMap<&str, u16> = ["embedded", "redis", "mongodb"]
        .into_iter()
        .map(|store| (store, free_port()))
        .collect();
    let servers = standalone_on_each_store_with(|store| {
        vec![
            "--metrics-listen".into(),
            format!("127.0.0.1:{}", metrics[store]),
        ]
    })?;
    for on in servers {
        woken_in_process(&on.server, metrics[on.store])
            .await
            .with_context(|| on.store)?;
        if on.store == "embedded" {
            docs_run_as_written(&on.server).await?;
        }
    }
    Ok(())
}

/// A claim waiting on `server` is woken by a post, and another by a released claim,
/// each with at most three claim calls to the pool-node (counted on `metrics`).
async fn woken_in_process(server: &Standalone, metrics: u16) -> Result<()> {
    let producer = consumer(server.port, "lp-standalone");
    let created = producer.call("PUT", "/v2/queues/q", None).await?;
    ensure!(created.status == 201, "{created:?}");
    let claim_calls = || pool_calls(metrics, "create_claim");
    let wait_for_claim = || {
        let waiting = consumer(server.port, "lp-standalone");
        tokio::spawn(async move {
            waiting
                .post("/v2/queues/q/claims?wait=10&limit=5", json!({"ttl": 60}))
                .await
        })
    };

    let before = claim_calls().await?;
    let claim = wait_for_claim();
    tokio::time::sleep(Duration::from_secs(3)).await;
    post(&producer, "q", json!("in process")).await?;
    let reply = claim.await??;
    ensure!(reply.status == 201, "{reply:?}");
    ensure!(
        reply.body["messages"][0]["body"] == json!("in process"),
        "{reply:?}"
    );
    let calls = claim_calls().await? - before;
    ensure!(calls <= 3, "{calls} claim calls while waiting for a post");

    // The claim above is released: a claim waiting meanwhile takes its message.
    let claim_href = reply.body["messages"][0]["href"].as_str().context("href")?;
    let claim_id = claim_href.rsplit("claim_id=").next().context("claim id")?;
    let before = claim_calls().await?;
    let claim = wait_for_claim();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let released = producer
        .delete(&format!("/v2/queues/q/claims/{claim_id}"))
        .await?;
    ensure!(released.status == 204, "{released:?}");
    let reply = claim.await??;
    ensure!(reply.status == 201, "after the release: {reply:?}");
    ensure!(
        reply.body["messages"][0]["body"] == json!("in process"),
        "{reply:?}"
    );
    let calls = claim_calls().await? - before;
    ensure!(
        calls <= 3,
        "{calls} claim calls while waiting for a release"
    );
    Ok(())
}

/// The commands of docs/long-polling.md and the `[long_poll]` example of
/// docs/configuration.md, as written.
async fn docs_run_as_written(server: &Standalone) -> Result<()> {
    // The claim sent first answers with the job posted a second later.
    let stdout = zaqar_tests::docs::run_sh_block("long-polling.md", server.port)?;
    let claimed: Value = serde_json::from_str(stdout.trim()).context(stdout.clone())?;
    ensure!(
        claimed["messages"][0]["body"] == json!({"job": 7}),
        "{stdout}"
    );
    // On a queue that has a message, the configuration example answers at once.
    post(&consumer(server.port, "demo"), "jobs", json!({"job": 8})).await?;
    let stdout = zaqar_tests::docs::run_sh_block_under(
        "configuration.md",
        "### `[long_poll]`",
        server.port,
    )?;
    let claimed: Value = serde_json::from_str(stdout.trim()).context(stdout.clone())?;
    ensure!(
        claimed["messages"][0]["body"] == json!({"job": 8}),
        "{stdout}"
    );
    Ok(())
}
