//! Two api-nodes on one catalog and one pool-node (on a real Redis), as separate
//! processes: a post through one api-node follows queue metadata changed through the
//! other at once, although each api-node remembers the metadata its posts were
//! checked against (the pool-node refuses a post checked against stale metadata).

use anyhow::Result;
use serde_json::json;
use zaqar_tests::{spawn_api_node, spawn_pool_node, spawn_sqlite_catalog, Client, Redis};

#[tokio::test]
async fn posts_follow_metadata_changed_through_another_api_node() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let redis = Redis::start()?;
    let (catalog_process, catalog) = spawn_sqlite_catalog(dir.path())?;
    let pool = spawn_pool_node(dir.path(), "pool-0", &redis.uri(0), &catalog, &[])?;
    let mut processes = vec![catalog_process, pool];
    let mut clients = Vec::new();
    for name in ["api-a", "api-b"] {
        let (process, port) = spawn_api_node(dir.path(), name, &catalog, &[]).await?;
        processes.push(process);
        clients.push(Client::new(port, "metadata-project"));
    }
    let (a, b) = (&clients[0], &clients[1]);
    let post = |ttl: Option<u32>| {
        let message = match ttl {
            Some(ttl) => json!({"body": "x", "ttl": ttl}),
            None => json!({"body": "x"}),
        };
        b.post("/v2/queues/q/messages", json!({"messages": [message]}))
    };
    let ttl_of = |reply: zaqar_tests::Reply| async move {
        assert_eq!(reply.status, 201, "{}", reply.body);
        let href = reply.body["resources"][0].as_str().unwrap().to_string();
        let shown = b.get(&href).await?;
        anyhow::Ok(shown.body["ttl"].clone())
    };

    // b posts twice, so it remembers the queue's (empty) metadata.
    assert_eq!(ttl_of(post(Some(120)).await?).await?, json!(120));
    assert_eq!(ttl_of(post(None).await?).await?, json!(3600));

    // a re-creates the queue with other defaults and a small post size limit.
    assert_eq!(a.delete("/v2/queues/q").await?.status, 204);
    let metadata = json!({"_default_message_ttl": 77, "_max_messages_post_size": 100});
    assert_eq!(a.put("/v2/queues/q", metadata).await?.status, 201);
    assert_eq!(ttl_of(post(None).await?).await?, json!(77));
    let large = json!({"messages": [{"body": "y".repeat(200)}]});
    let refused = b.post("/v2/queues/q/messages", large).await?;
    assert_eq!(refused.status, 400, "{}", refused.body);

    for process in &mut processes {
        process.kill();
    }
    Ok(())
}
