//! Dead-letter redrive as an operator or a tenant uses it: messages a queue moved to
//! its dead letter queue (`_max_claim_count`) go back with
//! `POST /v2/queues/{dlq}/redrive`, `limit` at a time, oldest first, as new messages
//! (their claim count reset, so they are claimed again instead of being dead-lettered
//! at once), on every store; WebSocket `queue_redrive` does the same; bad requests
//! are 400 and a missing queue 404, with Zaqar's error body. A redrive that fails
//! half-way (the destination refuses a message) is finished by the next call without
//! a duplicate of what the first one moved. `zaqar redrive`, the operators' command,
//! moves batches at its rate, stops at `--max` and resumes. A dead letter queue nobody
//! created shows the messages moved there. Without a destination, each message goes
//! back to the queue it was dead-lettered from (one dead letter queue serving two
//! queues, on every store), and a batch holding a message with no source is refused
//! with nothing moved. The commands of docs/dead-letter-queues.md run as written.

use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use zaqar_tests::stores::standalone_on_each_store;
use zaqar_tests::ws::WsClient;
use zaqar_tests::{Client, Standalone};

/// Creates `jobs-dlq`, and `jobs` with it as its dead letter queue; posts `n`
/// messages to `jobs` and claims them past its `_max_claim_count` of 1, so that they
/// move to `jobs-dlq`.
async fn dead_letter(client: &Client, n: u64) -> Result<()> {
    let dlq = client.call("PUT", "/v2/queues/jobs-dlq", None).await?;
    ensure!(dlq.status == 201, "{dlq:?}");
    dead_letter_into(client, n).await
}

/// As [`dead_letter`], leaving the dead letter queue to be made by the move.
async fn dead_letter_into(client: &Client, n: u64) -> Result<()> {
    dead_letter_from(client, "jobs", "jobs-dlq", 0..n).await
}

/// Makes `queue` dead-letter into `dlq` after one claim, posts the messages `{"n": i}`
/// for each i of `ns` to it, and claims them twice, so that they move to `dlq`.
async fn dead_letter_from(
    client: &Client,
    queue: &str,
    dlq: &str,
    ns: std::ops::Range<u64>,
) -> Result<()> {
    let metadata = json!({"_max_claim_count": 1, "_dead_letter_queue": dlq});
    let created = client.put(&format!("/v2/queues/{queue}"), metadata).await?;
    ensure!(
        created.status == 201 || created.status == 204,
        "{created:?}"
    );
    let messages: Vec<Value> = ns.map(|i| json!({"ttl": 300, "body": {"n": i}})).collect();
    let posted = client
        .post(
            &format!("/v2/queues/{queue}/messages"),
            json!({ "messages": messages }),
        )
        .await?;
    ensure!(posted.status == 201, "{posted:?}");
    let claim = json!({"ttl": 60, "grace": 60});
    let claims = format!("/v2/queues/{queue}/claims?limit=20");
    let first = client.post(&claims, claim.clone()).await?;
    ensure!(first.status == 201, "{first:?}");
    let href = first.body["messages"][0]["href"].as_str().context("href")?;
    let claim_path = href
        .split_once("?claim_id=")
        .map(|(_, id)| format!("/v2/queues/{queue}/claims/{id}"))
        .context("claim id")?;
    ensure!(client.delete(&claim_path).await?.status == 204);
    // Claimed once already: this claim moves them all to the dead letter queue.
    let second = client.post(&claims, claim).await?;
    ensure!(second.status == 204, "{second:?}");
    Ok(())
}

/// The bodies' `n` of the messages of `queue`, oldest first.
async fn listed(client: &Client, queue: &str) -> Result<Vec<u64>> {
    let path = format!("/v2/queues/{queue}/messages?echo=true&include_claimed=true&limit=20");
    let reply = client.get(&path).await?;
    if reply.status == 204 {
        return Ok(Vec::new());
    }
    ensure!(reply.status == 200, "{reply:?}");
    Ok(reply.body["messages"]
        .as_array()
        .context("messages")?
        .iter()
        .filter_map(|m| m["body"]["n"].as_u64())
        .collect())
}

async fn redrive(client: &Client, body: Value) -> Result<(u16, Value)> {
    let reply = client.post("/v2/queues/jobs-dlq/redrive", body).await?;
    Ok((reply.status, reply.body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_lettered_messages_are_redriven_oldest_first() -> Result<()> {
    for on in standalone_on_each_store(&[])? {
        redriven_oldest_first(&on.server)
            .await
            .with_context(|| on.store)?;
    }
    Ok(())
}

async fn redriven_oldest_first(server: &Standalone) -> Result<()> {
    let client = Client::new(server.port, "redrive");
    client.wait_ready(Duration::from_secs(20)).await?;
    dead_letter(&client, 5).await?;
    ensure!(listed(&client, "jobs").await?.is_empty());
    ensure!(listed(&client, "jobs-dlq").await? == [0, 1, 2, 3, 4]);

    let (status, body) = redrive(&client, json!({"destination": "jobs", "limit": 2})).await?;
    ensure!(status == 200, "{body}");
    ensure!(body == json!({"moved": 2, "remaining": 3}), "{body}");
    ensure!(listed(&client, "jobs").await? == [0, 1]);
    let (_, body) = redrive(&client, json!({"destination": "jobs", "limit": 20})).await?;
    ensure!(body == json!({"moved": 3, "remaining": 0}), "{body}");
    let (_, body) = redrive(&client, json!({"destination": "jobs"})).await?;
    ensure!(body == json!({"moved": 0, "remaining": 0}), "{body}");
    ensure!(listed(&client, "jobs").await? == [0, 1, 2, 3, 4]);
    ensure!(listed(&client, "jobs-dlq").await?.is_empty());

    // Their claim count starts again: a claim takes them (with the old count, past
    // `_max_claim_count`, they would have gone back to the dead letter queue).
    let claimed = client
        .post(
            "/v2/queues/jobs/claims?limit=20",
            json!({"ttl": 60, "grace": 60}),
        )
        .await?;
    ensure!(claimed.status == 201, "{claimed:?}");
    ensure!(claimed.body["messages"].as_array().map(Vec::len) == Some(5));

    for (bad, status) in [
        (json!({"destination": 7}), 400),
        (json!({"destination": "jobs-dlq"}), 400),
        (json!({"destination": "jobs", "limit": 0}), 400),
        (json!({"destination": "jobs", "limit": 21}), 400),
        (json!({"destination": "bad name!"}), 400),
    ] {
        let (got, body) = redrive(&client, bad.clone()).await?;
        ensure!(got == status, "{bad}: {got} {body}");
        ensure!(
            body["title"].is_string(),
            "{bad}: Zaqar's error body, not {body}"
        );
    }
    let missing = client
        .post("/v2/queues/nowhere/redrive", json!({"destination": "jobs"}))
        .await?;
    ensure!(missing.status == 404, "{missing:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_destination_each_message_goes_back_to_its_own_queue() -> Result<()> {
    for on in standalone_on_each_store(&[])? {
        back_to_their_sources(&on.server)
            .await
            .with_context(|| on.store)?;
    }
    Ok(())
}

async fn back_to_their_sources(server: &Standalone) -> Result<()> {
    let client = Client::new(server.port, "redrive-sources");
    client.wait_ready(Duration::from_secs(20)).await?;
    // One dead letter queue for two queues.
    dead_letter_from(&client, "jobs", "shared-dlq", 0..3).await?;
    dead_letter_from(&client, "mail", "shared-dlq", 10..12).await?;
    ensure!(listed(&client, "shared-dlq").await? == [0, 1, 2, 10, 11]);
    let redrive = |body: Value| {
        let client = &client;
        async move {
            let reply = client.post("/v2/queues/shared-dlq/redrive", body).await?;
            anyhow::Ok((reply.status, reply.body))
        }
    };
    let (status, body) = redrive(json!({"limit": 4})).await?;
    ensure!(status == 200, "{body}");
    ensure!(body == json!({"moved": 4, "remaining": 1}), "{body}");
    ensure!(listed(&client, "jobs").await? == [0, 1, 2]);
    ensure!(listed(&client, "mail").await? == [10]);

    // A message posted to the dead letter queue itself has no source: the batch
    // holding it is refused, nothing moves, and the messages are free again at once.
    let posted = client
        .post(
            "/v2/queues/shared-dlq/messages",
            json!({"messages": [{"ttl": 300, "body": {"n": 99}}]}),
        )
        .await?;
    ensure!(posted.status == 201, "{posted:?}");
    let (status, body) = redrive(json!({"limit": 20})).await?;
    ensure!(status == 400, "{body}");
    ensure!(body["title"] == "Invalid API request", "{body}");
    ensure!(listed(&client, "shared-dlq").await? == [11, 99]);
    ensure!(listed(&client, "mail").await? == [10]);
    let (status, body) = redrive(json!({"destination": "jobs", "limit": 20})).await?;
    ensure!(status == 200, "{body}");
    ensure!(body == json!({"moved": 2, "remaining": 0}), "{body}");
    ensure!(listed(&client, "jobs").await? == [0, 1, 2, 11, 99]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_queue_redrive_moves_them_too() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let metrics = format!("127.0.0.1:{}", zaqar_tests::free_port());
    let server = Standalone::start_with(dir.path(), &["--metrics-listen", &metrics])?;
    let client = Client::new(server.port, "redrive-ws");
    client.wait_ready(Duration::from_secs(20)).await?;
    dead_letter(&client, 3).await?;

    let mut ws = WsClient::connect(server.ws_port, "redrive-ws", &client.client_id).await?;
    // No destination: each goes back where it came from.
    let body = json!({"queue_name": "jobs-dlq", "limit": 20});
    let reply = ws.call("queue_redrive", body).await?;
    ensure!(reply["headers"]["status"] == 200, "{reply}");
    ensure!(
        reply["body"] == json!({"moved": 3, "remaining": 0}),
        "{reply}"
    );
    ensure!(listed(&client, "jobs").await? == [0, 1, 2]);
    // Operators see the progress of redrives in the metrics.
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await?
        .text()
        .await?;
    ensure!(
        text.lines()
            .any(|line| line == "zaqar_redriven_messages_total 3"),
        "{text}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_that_fails_half_way_is_finished_without_a_duplicate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Claims as short as a second, so that the failed call's claim ends quickly.
    let config = dir.path().join("zaqar.toml");
    std::fs::write(&config, "[api.limits]\nmin_claim_ttl = 1\n")?;
    let config = config.to_string_lossy().into_owned();
    let server = Standalone::start_with(dir.path(), &["--config", &config])?;
    let client = Client::new(server.port, "redrive-resume");
    client.wait_ready(Duration::from_secs(20)).await?;
    // Three messages wait in the dead letter queue; the destination takes small
    // posts only, so that the second, larger, is refused.
    let small_posts = json!({"_max_messages_post_size": 200});
    let created = client.put("/v2/queues/jobs", small_posts).await?;
    ensure!(created.status == 201, "{created:?}");
    let waiting = json!({"messages": [
        {"ttl": 300, "body": {"n": 0}},
        {"ttl": 300, "body": {"n": 1, "pad": "x".repeat(300)}},
        {"ttl": 300, "body": {"n": 2}},
    ]});
    let posted = client.post("/v2/queues/jobs-dlq/messages", waiting).await?;
    ensure!(posted.status == 201, "{posted:?}");

    let (status, body) = redrive(&client, json!({"destination": "jobs", "limit": 20})).await?;
    ensure!(
        status == 400,
        "the second message is too large for the destination: {body}"
    );
    ensure!(listed(&client, "jobs").await? == [0], "the first one moved");

    let large =
        json!([{"op": "replace", "path": "/metadata/_max_messages_post_size", "value": 262144}]);
    let patched = client
        .call_with_headers(
            "PATCH",
            "/v2/queues/jobs",
            Some(large),
            &[(
                "Content-Type",
                "application/openstack-messaging-v2.0-json-patch",
            )],
        )
        .await?;
    ensure!(patched.status == 200, "{patched:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = redrive(&client, json!({"destination": "jobs", "limit": 20})).await?;
    ensure!(status == 200, "{body}");
    ensure!(body == json!({"moved": 3, "remaining": 0}), "{body}");
    ensure!(
        listed(&client, "jobs").await? == [0, 1, 2],
        "each moved once"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_example_redrives_its_messages() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Standalone::start(dir.path())?;
    let client = Client::new(server.port, "demo");
    client.wait_ready(Duration::from_secs(20)).await?;
    let stdout = zaqar_tests::docs::run_sh_block("dead-letter-queues.md", server.port)?;
    let printed = "{\"moved\":1,\"remaining\":1}moved 1 (1 in all), 0 left\n";
    ensure!(stdout.ends_with(printed), "{stdout}");
    let jobs = client.get("/v2/queues/jobs/messages?echo=true").await?;
    let bodies: Vec<&Value> = jobs.body["messages"]
        .as_array()
        .context("messages")?
        .iter()
        .map(|m| &m["body"])
        .collect();
    ensure!(
        bodies == [&json!({"job": 7}), &json!({"job": 8})],
        "{jobs:?}"
    );
    Ok(())
}

/// Runs `zaqar redrive` with `args` against `server`; its output.
fn zaqar_redrive(server: &Standalone, args: &[&str]) -> Result<String> {
    let url = server.url();
    let out = Command::new(zaqar_tests::zaqar_bin())
        .args(["redrive", "--url", &url])
        .args(args)
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zaqar_redrive_moves_batches_stops_at_max_and_resumes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let server = Standalone::start(dir.path())?;
    let client = Client::new(server.port, "redrive-cli");
    client.wait_ready(Duration::from_secs(20)).await?;
    let messages: Vec<Value> = (0..45)
        .map(|n| json!({"ttl": 300, "body": {"n": n}}))
        .collect();
    client.post_messages("backlog", messages).await?;
    let common = ["backlog", "--to", "jobs", "--project", "redrive-cli"];

    let first = zaqar_redrive(
        &server,
        &[&common[..], &["--rate", "40", "--max", "30"]].concat(),
    )?;
    ensure!(
        first == "moved 20 (20 in all), 25 left\nmoved 10 (30 in all), 15 left\n",
        "{first}"
    );
    let rest = zaqar_redrive(&server, &common)?;
    ensure!(rest == "moved 15 (15 in all), 0 left\n", "{rest}");
    let mut moved = Vec::new();
    let mut path = "/v2/queues/jobs/messages?echo=true&limit=20".to_string();
    loop {
        let page = client.get(&path).await?;
        if page.status == 204 {
            break;
        }
        let messages = page.body["messages"].as_array().context("messages")?;
        if messages.is_empty() {
            break;
        }
        moved.extend(messages.iter().filter_map(|m| m["body"]["n"].as_u64()));
        let next = page.body["links"][0]["href"].as_str().context("next")?;
        path = next.to_string();
    }
    ensure!(moved == (0..45).collect::<Vec<u64>>(), "{moved:?}");
    let bad = Command::new(zaqar_tests::zaqar_bin())
        .args(["redrive", "--url", &server.url()])
        .args(["nowhere", "--to", "jobs", "--project", "redrive-cli"])
        .output()?;
    ensure!(!bad.status.success(), "a missing queue is an error");
    ensure!(
        String::from_utf8_lossy(&bad.stderr).contains("404"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_queue_nobody_created_shows_the_messages_moved_there() -> Result<()> {
    for on in standalone_on_each_store(&[])? {
        shown_once_moved(&on.server)
            .await
            .with_context(|| on.store)?;
    }
    Ok(())
}

async fn shown_once_moved(server: &Standalone) -> Result<()> {
    let client = Client::new(server.port, "uncreated-dlq");
    client.wait_ready(Duration::from_secs(20)).await?;
    dead_letter_into(&client, 3).await?;
    ensure!(listed(&client, "jobs-dlq").await? == vec![0, 1, 2]);
    let stats = client.get("/v2/queues/jobs-dlq/stats").await?;
    ensure!(stats.status == 200, "{stats:?}");
    ensure!(stats.body["messages"]["total"] == 3, "{stats:?}");
    let queues = client.get("/v2/queues").await?;
    let names: Vec<&str> = queues.body["queues"]
        .as_array()
        .context("queues")?
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    ensure!(names == ["jobs", "jobs-dlq"], "{names:?}");
    // And they go back as from a dead letter queue created first.
    let (status, body) = redrive(&client, json!({"destination": "jobs"})).await?;
    ensure!(status == 200 && body["moved"] == 3, "{status} {body}");
    ensure!(listed(&client, "jobs").await? == vec![0, 1, 2]);
    Ok(())
}
