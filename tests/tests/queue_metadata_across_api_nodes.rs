//! Two api-nodes on one catalog and one pool-node (on a real Redis), as separate
//! processes: a post through one api-node follows queue metadata changed through the
//! other at once, although each api-node remembers the metadata its posts were
//! checked against (the pool-node refuses a post checked against stale metadata).

use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use zaqar_tests::{free_port, wait_for_port, zaqar_bin, Client, Process, Redis};

#[tokio::test]
async fn posts_follow_metadata_changed_through_another_api_node() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bin = zaqar_bin();
    let redis = Redis::start()?;
    let catalog_port = free_port();
    let catalog = format!("http://127.0.0.1:{catalog_port}");
    let catalog_db = format!("sqlite://{}/catalog.db", dir.path().display());
    let listen = |port: u16| format!("127.0.0.1:{port}");
    let mut processes = vec![Process::spawn(
        "catalog",
        &bin,
        &[
            "catalog",
            "--listen",
            &listen(catalog_port),
            "--uri",
            &catalog_db,
        ],
        dir.path(),
    )?];
    wait_for_port(catalog_port, Duration::from_secs(30))?;
    let pool_port = free_port();
    processes.push(Process::spawn(
        "pool-node",
        &bin,
        &[
            "pool-node",
            "--listen",
            &listen(pool_port),
            "--uri",
            &redis.uri(0),
            "--name",
            "pool-0",
            "--weight",
            "100",
            "--catalog",
            &catalog,
        ],
        dir.path(),
    )?);
    wait_for_port(pool_port, Duration::from_secs(30))?;
    let mut clients = Vec::new();
    for name in ["api-a", "api-b"] {
        let port = free_port();
        let ws = listen(free_port());
        processes.push(Process::spawn(
            name,
            &bin,
            &[
                "api-node",
                "--listen",
                &listen(port),
                "--ws-listen",
                &ws,
                "--catalog",
                &catalog,
            ],
            dir.path(),
        )?);
        let client = Client::new(port, "metadata-project");
        client.wait_ready(Duration::from_secs(30)).await?;
        clients.push(client);
    }
    let (a, b) = (&clients[0], &clients[1]);
    let post = |ttl: Option<u32>| {
        let message = match ttl {
            Some(ttl) => json!({"body": "x", "ttl": ttl}),
            None => json!({"body": "x"}),
        };
        b.call(
            "POST",
            "/v2/queues/q/messages",
            Some(json!({"messages": [message]})),
        )
    };
    let ttl_of = |reply: zaqar_tests::Reply| async move {
        assert_eq!(reply.status, 201, "{}", reply.body);
        let href = reply.body["resources"][0].as_str().unwrap().to_string();
        let shown = b.call("GET", &href, None).await?;
        anyhow::Ok(shown.body["ttl"].clone())
    };

    // b posts twice, so it remembers the queue's (empty) metadata.
    assert_eq!(ttl_of(post(Some(120)).await?).await?, json!(120));
    assert_eq!(ttl_of(post(None).await?).await?, json!(3600));

    // a re-creates the queue with other defaults and a small post size limit.
    assert_eq!(a.call("DELETE", "/v2/queues/q", None).await?.status, 204);
    let metadata = json!({"_default_message_ttl": 77, "_max_messages_post_size": 100});
    assert_eq!(
        a.call("PUT", "/v2/queues/q", Some(metadata)).await?.status,
        201
    );
    assert_eq!(ttl_of(post(None).await?).await?, json!(77));
    let large = json!({"messages": [{"body": "y".repeat(200)}]});
    let refused = b.call("POST", "/v2/queues/q/messages", Some(large)).await?;
    assert_eq!(refused.status, 400, "{}", refused.body);

    for process in &mut processes {
        process.kill();
    }
    Ok(())
}
