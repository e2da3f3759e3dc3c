//! Websocket push subscriptions on `zaqar standalone`, the whole path: a
//! connection subscribes a queue (`subscription_create` without subscriber),
//! messages posted over REST are notified by the pool-node's webhook notifier
//! to the api-node's notification listener and come down that connection as
//! frames, in order; other connections and projects get nothing of them; once
//! the connection closes its subscription is gone and posting goes on.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use zaqar_tests::{
    free_port, spawn_api_node_with_ws, spawn_pool_node, spawn_sqlite_catalog, Client, Standalone,
};

/// Bound of every wait for a frame.
const FRAME_WAIT: Duration = Duration::from_secs(20);

/// A websocket client for one project.
struct Ws {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    headers: Value,
}

impl Ws {
    async fn connect(port: u16, project: &str) -> Result<Ws> {
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/"))
            .await
            .context("websocket connect")?;
        let headers =
            json!({"Client-ID": uuid::Uuid::new_v4().to_string(), "X-Project-ID": project});
        Ok(Ws { socket, headers })
    }

    /// The next text frame as JSON.
    async fn next(&mut self) -> Result<Value> {
        let wait = async {
            while let Some(frame) = self.socket.next().await {
                match frame? {
                    Message::Text(text) => return Ok(serde_json::from_str(&text)?),
                    Message::Binary(_) => bail!("unexpected binary frame"),
                    _ => continue,
                }
            }
            bail!("connection closed")
        };
        tokio::time::timeout(FRAME_WAIT, wait)
            .await
            .context("no frame in time")?
    }

    /// Sends a request; the next frame must be its reply: (status, body).
    async fn call(&mut self, action: &str, body: Value) -> Result<(u64, Value)> {
        let request = json!({"action": action, "headers": self.headers, "body": body});
        self.socket.send(Message::text(request.to_string())).await?;
        let reply = self.next().await?;
        anyhow::ensure!(
            reply["request"]["action"] == action,
            "expected the reply to {action}, got {reply}"
        );
        Ok((
            reply["headers"]["status"].as_u64().unwrap_or(0),
            reply["body"].clone(),
        ))
    }

    /// Subscribes this connection to `queue`; returns the subscription id.
    async fn subscribe(&mut self, queue: &str) -> Result<String> {
        let (status, body) = self
            .call("subscription_create", json!({"queue_name": queue}))
            .await?;
        anyhow::ensure!(status == 201, "subscription_create: {status} {body}");
        assert_eq!(body["message"], format!("Subscription {queue} created."));
        Ok(body["subscription_id"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }
}

async fn post(client: &Client, queue: &str, messages: Value) -> Result<()> {
    let path = format!("/v2/queues/{queue}/messages");
    let reply = client.post(&path, json!({"messages": messages})).await?;
    anyhow::ensure!(reply.status == 201, "post: {reply:?}");
    Ok(())
}

async fn subscribers(client: &Client, queue: &str) -> Result<Vec<Value>> {
    let path = format!("/v2/queues/{queue}/subscriptions");
    let reply = client.get(&path).await?;
    Ok(reply.body["subscriptions"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_subscription_pushes_posted_messages_until_it_closes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let standalone = Standalone::start(dir.path())?;
    let (port, ws_port) = (standalone.port, standalone.ws_port);
    let rest = Client::new(port, "push-a");
    rest.wait_ready(Duration::from_secs(30)).await?;
    let other_rest = Client::new(port, "push-b");

    let mut subscriber = Ws::connect(ws_port, "push-a").await?;
    let id = subscriber.subscribe("pushq").await?;
    let mut same_project = Ws::connect(ws_port, "push-a").await?;
    same_project.subscribe("otherq").await?;
    let mut other_project = Ws::connect(ws_port, "push-b").await?;
    other_project.subscribe("pushq").await?;
    let listed = subscribers(&rest, "pushq").await?;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let url = listed[0]["subscriber"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let theirs = subscribers(&other_rest, "pushq").await?;
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert_ne!(theirs[0]["subscriber"], listed[0]["subscriber"]);

    post(
        &rest,
        "pushq",
        json!([{"body": {"n": 1}, "ttl": 300}, {"body": "two", "ttl": 120}, {"body": [3]}]),
    )
    .await?;
    post(&rest, "pushq", json!([{"body": {"n": 4}, "ttl": 60}])).await?;
    let expected = [
        json!({"ttl": 300, "body": {"n": 1}, "Message_Type": "Notification", "queue_name": "pushq"}),
        json!({"ttl": 120, "body": "two", "Message_Type": "Notification", "queue_name": "pushq"}),
        json!({"ttl": 3600, "body": [3], "Message_Type": "Notification", "queue_name": "pushq"}),
        json!({"ttl": 60, "body": {"n": 4}, "Message_Type": "Notification", "queue_name": "pushq"}),
    ];
    for want in &expected {
        assert_eq!(&subscriber.next().await?, want);
    }
    // The others' next frames are the replies to their requests: nothing was pushed.
    same_project.call("queue_list", json!({})).await?;
    other_project.call("queue_list", json!({})).await?;
    // The other project's subscription hears of its own queue only.
    post(&other_rest, "pushq", json!([{"body": "theirs"}])).await?;
    assert_eq!(other_project.next().await?["body"], "theirs");
    subscriber.call("queue_list", json!({})).await?;

    subscriber.socket.close(None).await?;
    drop(subscriber);
    wait_unsubscribed(&rest, "pushq")
        .await
        .with_context(|| format!("subscription {id}"))?;
    post(&rest, "pushq", json!([{"body": "after close"}])).await?;
    let after = reqwest::Client::new()
        .post(&url)
        .body(expected[0].to_string())
        .send()
        .await?;
    assert_eq!(after.status().as_u16(), 404);
    same_project.call("queue_list", json!({})).await?;
    Ok(())
}

/// Waits until the queue of `client`'s project has no subscription left.
async fn wait_unsubscribed(client: &Client, queue: &str) -> Result<()> {
    for _ in 0..100 {
        if subscribers(client, queue).await?.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("a subscription of {queue} outlived its connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_pool_node_pushes_through_the_advertised_url() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (_catalog, catalog) = spawn_sqlite_catalog(dir.path())?;
    let messages_db = format!("sqlite://{}", dir.path().join("messages.db").display());
    let _pool = spawn_pool_node(dir.path(), "pool-1", &messages_db, &catalog, &[])?;
    let notification_port = free_port();
    let notification_listen = format!("127.0.0.1:{notification_port}");
    // The URL the pool-node uses may differ from the listen address (a name here).
    let notification_url = format!("http://localhost:{notification_port}/");
    let push = [
        "--ws-notification-listen",
        notification_listen.as_str(),
        "--ws-notification-url",
        &notification_url,
    ];
    let (_api, port, ws_port) =
        spawn_api_node_with_ws(dir.path(), "api-node", &catalog, &push).await?;
    let rest = Client::new(port, "push-split");

    let mut ws = Ws::connect(ws_port, "push-split").await?;
    ws.subscribe("splitq").await?;
    let listed = subscribers(&rest, "splitq").await?;
    let subscriber = listed[0]["subscriber"].as_str().unwrap_or_default();
    assert!(subscriber.starts_with(&notification_url), "{subscriber}");
    post(
        &rest,
        "splitq",
        json!([{"body": "first"}, {"body": "second"}]),
    )
    .await?;
    assert_eq!(ws.next().await?["body"], "first");
    assert_eq!(ws.next().await?["body"], "second");
    ws.socket.close(None).await?;
    drop(ws);
    wait_unsubscribed(&rest, "splitq").await?;
    post(&rest, "splitq", json!([{"body": "after close"}])).await
}
