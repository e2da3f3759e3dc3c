//! Idempotent posts (`Idempotency-Key`), as a producer uses them: every post's answer
//! is lost on the way back (a proxy forwards the request and throws the answer away),
//! the producer posts again with the same key, and each message is stored once, on
//! every store (embedded, Redis, MongoDB). Without a key the same producer stores each
//! message twice, which shows that the lost answers were of posts that were stored.
//! Over WebSocket, `idempotency_key` does the same; a malformed key is 400. The
//! commands of docs/idempotent-posts.md run as written.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use zaqar_tests::proxy::{Link, TcpProxy};
use zaqar_tests::stores::standalone_on_each_store;
use zaqar_tests::ws::WsClient;
use zaqar_tests::{Client, Standalone};

const POSTS: usize = 10;

/// A producer of project `project` posting through `proxy` to `server`.
struct Producer {
    http: reqwest::Client,
    url: String,
    project: String,
    client_id: String,
}

impl Producer {
    fn new(proxy: &TcpProxy, project: &str) -> Result<Producer> {
        Ok(Producer {
            // A new connection for every request, so that each goes through the
            // proxy as it is set when the request starts.
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .timeout(Duration::from_secs(10))
                .build()?,
            url: format!("http://127.0.0.1:{}", proxy.port),
            project: project.to_string(),
            client_id: uuid::Uuid::new_v4().to_string(),
        })
    }

    /// Posts one message to `queue`; its ids, or an error when no answer came.
    async fn post(&self, queue: &str, n: usize, key: Option<&str>) -> Result<Vec<String>> {
        let mut request = self
            .http
            .post(format!("{}/v2/queues/{queue}/messages", self.url))
            .header("X-Project-ID", &self.project)
            .header("Client-ID", &self.client_id)
            .header("Content-Type", "application/json")
            .body(json!({"messages": [{"ttl": 300, "body": {"n": n}}]}).to_string());
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await?;
        ensure!(response.status() == 201, "{}", response.status());
        let body: Value = response.json().await?;
        let hrefs = body["resources"].as_array().context("resources")?;
        Ok(hrefs
            .iter()
            .filter_map(|href| href.as_str()?.rsplit('/').next().map(str::to_string))
            .collect())
    }
}

/// Every message of `queue` (claimed ones included), read directly.
async fn stored(client: &Client, queue: &str) -> Result<Vec<String>> {
    let path = format!("/v2/queues/{queue}/messages?echo=true&include_claimed=true&limit=20");
    let listed = client.get(&path).await?;
    ensure!(listed.status == 200, "{listed:?}");
    Ok(listed.body["messages"]
        .as_array()
        .context("messages")?
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect())
}

/// Posts [`POSTS`] messages through a proxy that loses the first answer of each.
async fn retried_posts(server: &Standalone, project: &str, keyed: bool) -> Result<usize> {
    let proxy = TcpProxy::start(server.port).await?;
    let producer = Producer::new(&proxy, project)?;
    let queue = if keyed { "keyed" } else { "unkeyed" };
    let mut answered = Vec::new();
    for n in 0..POSTS {
        let key = format!("post-{n}-{}", uuid::Uuid::new_v4());
        let key = keyed.then_some(key.as_str());
        proxy.set(Link::AnswersLost);
        let lost = producer.post(queue, n, key).await;
        ensure!(lost.is_err(), "an answer came through: {lost:?}");
        proxy.set(Link::Up);
        answered.extend(producer.post(queue, n, key).await?);
    }
    let direct = Client::new(server.port, project);
    let all = stored(&direct, queue).await?;
    ensure!(
        answered.iter().all(|id| all.contains(id)),
        "answered ids {answered:?} not all stored: {all:?}"
    );
    Ok(all.len())
}

async fn check_store(server: &Standalone, project: &str) -> Result<()> {
    let keyed = retried_posts(server, project, true).await?;
    ensure!(
        keyed == POSTS,
        "with a key: {keyed} stored for {POSTS} posts"
    );
    let unkeyed = retried_posts(server, project, false).await?;
    ensure!(
        unkeyed == 2 * POSTS,
        "without a key: {unkeyed} stored for {POSTS} posts sent twice"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retried_posts_with_a_key_are_stored_once() -> Result<()> {
    for on in standalone_on_each_store(&[])? {
        check_store(&on.server, &format!("once-{}", on.store))
            .await
            .with_context(|| on.store)?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_posts_take_a_key_and_bad_keys_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Standalone::start(dir.path())?;
    let client = Client::new(server.port, "once-ws");

    let too_long = "k".repeat(256);
    for bad in [too_long.as_str(), "tab\there", "é"] {
        let refused = client
            .call_with_headers(
                "POST",
                "/v2/queues/ws/messages",
                Some(json!({"messages": [{"body": 1}]})),
                &[("Idempotency-Key", bad)],
            )
            .await;
        // A header that is not visible ASCII may not even leave the client.
        if let Ok(refused) = refused {
            ensure!(refused.status == 400, "{bad:?}: {refused:?}");
            ensure!(
                refused.body["title"] == "Invalid API request",
                "{refused:?}"
            );
        }
    }

    let mut ws = WsClient::connect(server.ws_port, "once-ws", &client.client_id).await?;
    let mut answers = Vec::new();
    for key in [json!("ws-key"), json!("ws-key"), json!("")] {
        let body = json!({"queue_name": "ws", "idempotency_key": key,
                          "messages": [{"ttl": 300, "body": {"k": 1}}]});
        answers.push(ws.call("message_post", body).await?);
    }
    let status = |reply: &Value| reply["headers"]["status"].as_u64();
    ensure!(status(&answers[0]) == Some(201), "{:?}", answers[0]);
    ensure!(status(&answers[1]) == Some(201), "{:?}", answers[1]);
    ensure!(
        answers[0]["body"]["message_ids"] == answers[1]["body"]["message_ids"],
        "{answers:?}"
    );
    ensure!(
        status(&answers[2]) == Some(400),
        "an empty key: {:?}",
        answers[2]
    );
    ensure!(stored(&client, "ws").await?.len() == 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_example_stores_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Standalone::start(dir.path())?;
    let client = Client::new(server.port, "demo");
    client.wait_ready(Duration::from_secs(20)).await?;
    let stdout = zaqar_tests::docs::run_sh_block("idempotent-posts.md", server.port)?;
    let answers: Vec<Value> = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()?;
    ensure!(answers.len() == 3, "{stdout}");
    ensure!(
        answers[0]["resources"]
            .as_array()
            .is_some_and(|r| r.len() == 1),
        "{stdout}"
    );
    ensure!(
        answers[0]["resources"] == answers[1]["resources"],
        "{stdout}"
    );
    let listed = answers[2]["messages"].as_array().context("messages")?;
    ensure!(listed.len() == 1, "{stdout}");
    Ok(())
}
