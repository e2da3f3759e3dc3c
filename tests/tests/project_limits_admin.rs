//! Per-project limits set by an operator with `zaqar admin project-limits`, as tenants
//! meet them on a cluster (catalog, pool-node, api-node with `refresh_seconds = 1`):
//! the api-node applies them over its `[project_limits]` within the refresh, only to
//! that project; `set` changes only the limits it names; removing them brings the
//! file's back; bad input is refused; the example of docs/quotas.md runs as written;
//! and when the catalog dies, the limits last known stay in force without requests
//! waiting for it.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use zaqar_tests::catalog_cluster::{admin, eventually};
use zaqar_tests::docs::run_sh_block_with_env;
use zaqar_tests::ws::WsClient;
use zaqar_tests::{
    spawn_api_node_with_ws, spawn_pool_node, spawn_sqlite_catalog, zaqar_bin, Client,
};

/// How long a change may take to reach the api-node (its refresh is 1 s).
const APPLIED_WITHIN: Duration = Duration::from_secs(10);

fn one_message() -> Value {
    json!({"messages": [{"ttl": 300, "body": "x"}]})
}

/// `zaqar admin ARGS` expected to fail: what it printed on stderr.
fn admin_refused(catalog: &str, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(zaqar_bin())
        .args(["admin", "--catalog", catalog])
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("ZAQAR_CLUSTER_TOKEN")
        .output()?;
    ensure!(!out.status.success(), "zaqar admin {args:?} succeeded");
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

fn write_config(dir: &Path) -> Result<String> {
    let config = dir.join("api.toml");
    std::fs::write(
        &config,
        "[project_limits]\nrefresh_seconds = 1\nmax_messages_per_queue = 100\n",
    )?;
    Ok(config.to_string_lossy().into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operators_project_limits_reach_the_api_nodes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut catalog_process, catalog) = spawn_sqlite_catalog(dir.path())?;
    let pool_uri = format!("sqlite://{}/pool.db", dir.path().display());
    let _pool = spawn_pool_node(dir.path(), "pool-0", &pool_uri, &catalog, &[])?;
    let config = write_config(dir.path())?;
    let (_api, port, ws_port) =
        spawn_api_node_with_ws(dir.path(), "api", &catalog, &["--config", &config]).await?;
    let tenant = Client::new(port, "tenant");
    let other = Client::new(port, "other");
    for queue in ["q1", "q2"] {
        let created = tenant
            .call("PUT", &format!("/v2/queues/{queue}"), None)
            .await?;
        ensure!(created.status == 201, "{queue}: {created:?}");
    }

    // The operator limits the tenant to 2 queues of 3 messages.
    let set = admin(
        std::slice::from_ref(&catalog),
        &[
            "project-limits",
            "set",
            "tenant",
            "--max-queues",
            "2",
            "--max-messages-per-queue",
            "3",
        ],
    )
    .await?;
    ensure!(
        set == json!({"project": "tenant", "requests_per_second": null, "burst": null,
                      "max_queues": 2, "max_messages_per_queue": 3,
                      "max_bytes_per_queue": null}),
        "{set}"
    );
    eventually("the message quota", APPLIED_WITHIN, || async {
        let posted = tenant.post("/v2/queues/q1/messages", one_message()).await?;
        ensure!(posted.status == 403, "still accepted: {posted:?}");
        ensure!(
            posted.body["description"]
                .as_str()
                .is_some_and(|d| d.starts_with("Queue q1 may hold at most 3 messages")),
            "{posted:?}"
        );
        Ok(())
    })
    .await?;
    let third = tenant.call("PUT", "/v2/queues/q3", None).await?;
    ensure!(
        third.status == 403
            && third.body["description"] == "Project tenant may have at most 2 queues.",
        "{third:?}"
    );
    let stats = tenant.get("/v2/queues/q1/stats").await?;
    ensure!(stats.body["messages"]["max"] == 3, "{stats:?}");
    // Over WebSocket the same.
    let mut ws = WsClient::connect(ws_port, "tenant", &tenant.client_id).await?;
    let reply = ws
        .call("queue_create", json!({"queue_name": "ws-q"}))
        .await?;
    ensure!(reply["headers"]["status"] == 403, "{reply}");
    let body = json!({"queue_name": "q1", "messages": [{"ttl": 300, "body": "w"}]});
    let reply = ws.call("message_post", body).await?;
    ensure!(
        reply["headers"]["status"] == 403
            && reply["body"]["exception"]
                .as_str()
                .is_some_and(|e| e.starts_with("Queue q1 may hold at most 3 messages")),
        "{reply}"
    );
    // Another project keeps the file's limits.
    for queue in ["a", "b", "c"] {
        let created = other
            .call("PUT", &format!("/v2/queues/{queue}"), None)
            .await?;
        ensure!(created.status == 201, "{queue}: {created:?}");
    }
    let stats = other.get("/v2/queues/a/stats").await?;
    ensure!(stats.body["messages"]["max"] == 100, "{stats:?}");

    // `set` changes only what it names: the queue quota is lifted, the message one stays.
    admin(
        std::slice::from_ref(&catalog),
        &["project-limits", "set", "tenant", "--max-queues", "0"],
    )
    .await?;
    eventually("the lifted queue quota", APPLIED_WITHIN, || async {
        let created = tenant.call("PUT", "/v2/queues/q3", None).await?;
        ensure!(created.status == 201, "{created:?}");
        Ok(())
    })
    .await?;
    let posted = tenant.post("/v2/queues/q1/messages", one_message()).await?;
    ensure!(posted.status == 403, "{posted:?}");
    let listed = admin(std::slice::from_ref(&catalog), &["project-limits", "list"]).await?;
    ensure!(
        listed
            == json!([{"project": "tenant", "requests_per_second": null, "burst": null,
                       "max_queues": 0, "max_messages_per_queue": 3,
                       "max_bytes_per_queue": null}]),
        "{listed}"
    );

    // A rate of its own: one request, then 429 with the wait.
    admin(
        std::slice::from_ref(&catalog),
        &[
            "project-limits",
            "set",
            "other",
            "--requests-per-second",
            "0.01",
            "--burst",
            "1",
        ],
    )
    .await?;
    eventually("the rate", APPLIED_WITHIN, || async {
        let listed = other.get("/v2/queues").await?;
        ensure!(
            listed.status == 429 && listed.body["title"] == "Too Many Requests",
            "{listed:?}"
        );
        Ok(())
    })
    .await?;

    // Bad input changes nothing.
    let refused = admin_refused(&catalog, &["project-limits", "set", "tenant"])?;
    ensure!(refused.contains("give at least one limit"), "{refused}");
    let refused = admin_refused(
        &catalog,
        &[
            "project-limits",
            "set",
            "tenant",
            "--requests-per-second",
            "NaN",
        ],
    )?;
    ensure!(refused.contains("requests_per_second"), "{refused}");
    let refused = admin_refused(&catalog, &["project-limits", "remove", "nobody"])?;
    ensure!(refused.contains("has no limits of its own"), "{refused}");
    let shown = admin(
        std::slice::from_ref(&catalog),
        &["project-limits", "get", "tenant"],
    )
    .await?;
    ensure!(shown["max_messages_per_queue"] == 3, "{shown}");

    // Removed: the file's limits again.
    admin(
        std::slice::from_ref(&catalog),
        &["project-limits", "remove", "tenant"],
    )
    .await?;
    eventually("the file's limits", APPLIED_WITHIN, || async {
        let posted = tenant.post("/v2/queues/q1/messages", one_message()).await?;
        ensure!(posted.status == 201, "{posted:?}");
        Ok(())
    })
    .await?;

    // The example of docs/quotas.md, as written.
    let stdout = run_sh_block_with_env(
        "quotas.md",
        "## Set by operators at run time",
        port,
        &[("ZAQAR_CATALOG", catalog.as_str())],
    )?;
    ensure!(
        stdout.contains("201\n201\n403\n201\n201\n403\n"),
        "{stdout}"
    );
    let stats = stdout.lines().find(|line| line.starts_with('{'));
    let stats: Value = serde_json::from_str(stats.unwrap_or("{}"))?;
    ensure!(
        stats["messages"]["bytes"] == 12 && stats["messages"]["max_bytes"] == 12,
        "{stdout}"
    );
    let table_row = stdout.lines().find(|line| line.starts_with("acme"));
    ensure!(
        table_row.is_some_and(|row| row.split_whitespace().collect::<Vec<_>>()
            == ["acme", "-", "-", "2", "1000", "12"]),
        "{stdout}"
    );
    let listed = admin(std::slice::from_ref(&catalog), &["project-limits", "list"]).await?;
    ensure!(
        listed
            .as_array()
            .is_some_and(|all| all.iter().all(|p| p["project"] != "acme")),
        "{listed}"
    );

    // With the catalog dead, the limits last known stay, and nothing waits for it.
    admin(
        std::slice::from_ref(&catalog),
        &[
            "project-limits",
            "set",
            "tenant",
            "--max-messages-per-queue",
            "1",
        ],
    )
    .await?;
    eventually("the new message quota", APPLIED_WITHIN, || async {
        let posted = tenant.post("/v2/queues/q2/messages", one_message()).await?;
        ensure!(posted.status == 403, "{posted:?}");
        Ok(())
    })
    .await?;
    catalog_process.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for _ in 0..5 {
        let posted = tokio::time::timeout(
            Duration::from_secs(5),
            tenant.post("/v2/queues/q2/messages", one_message()),
        )
        .await
        .context("a post waited for the dead catalog")??;
        ensure!(posted.status == 403, "{posted:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}
