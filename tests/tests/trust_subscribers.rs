//! `trust+http` subscribers against the real Keystone of the test setup
//! (`ZAQAR_TEST_KEYSTONE_URL`, users from scripts/keystone-users.py), driven as
//! zaqar-tempest-plugin's `test_trust_subscription` drives Zaqar: `zaqar standalone`
//! with `auth = "keystone"`, a member of project `zaqar-a` subscribes
//! `trust+http://<zaqar>/v2/queues/<sub queue>/messages` with `post_data` and
//! `post_headers`, posts a message, and the notification lands in the sub queue,
//! posted by the notifier with a token of the trust created at subscription time
//! (shown as `options.trust_id`). The same through the WebSocket API
//! (`authenticate`, `subscription_create`), and the commands of docs/webhooks.md's
//! "Trusted webhooks" as written. Without a token the subscriber is
//! refused by zaqar itself (401), so a message in the sub queue proves the token.
//! Skipped with a note when Keystone is not there (fails instead when `CI` is set).

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};
use zaqar_tests::docs::run_sh_block_with_env;
use zaqar_tests::keystone::{keystone_env, KeystoneEnv};
use zaqar_tests::ws::WsClient;
use zaqar_tests::{Client, Standalone};

/// `zaqar standalone` with Keystone auth (api-node's service user `zaqar`, also the
/// trustee) and webhooks allowed on loopback (the subscriber is zaqar itself).
fn start(dir: &std::path::Path, keystone: &KeystoneEnv) -> Result<Standalone> {
    let config = dir.join("zaqar.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nauth = \"keystone\"\n[api.keystone]\nauth_url = \"{}\"\nusername = \"zaqar\"\n\
             password = \"{}\"\nproject_name = \"service\"\n\
             [notifier]\nallowed_networks = [\"127.0.0.0/8\", \"::1\"]\n",
            keystone.url, keystone.password
        ),
    )?;
    Standalone::start_with(dir, &["--config", &config.to_string_lossy()])
}

/// The subscription document of zaqar-tempest-plugin's trust test.
fn trust_subscription(port: u16, sub_queue: &str, project: &str) -> Value {
    let post_body = json!({"messages": [{"body": "$zaqar_message$", "ttl": 60}]});
    json!({
        "subscriber": format!("trust+http://127.0.0.1:{port}/v2/queues/{sub_queue}/messages"),
        "ttl": 1200,
        "options": {
            "post_data": post_body.to_string(),
            "post_headers": {"X-Project-ID": project, "Client-ID": uuid::Uuid::new_v4().to_string()},
        },
    })
}

/// Subscribes `subscription` to `trust-src` over REST with `token`; the `trust_id`
/// option the subscription shows then.
async fn subscribed_trust(client: &Client, token: &str, subscription: Value) -> Result<Value> {
    let auth = [("X-Auth-Token", token)];
    let path = "/v2/queues/trust-src/subscriptions";
    let created = client
        .call_with_headers("POST", path, Some(subscription), &auth)
        .await?;
    ensure!(created.status == 201, "{created:?}");
    let id = created.body["subscription_id"].as_str().context("no id")?;
    let path = format!("{path}/{id}");
    let shown = client.call_with_headers("GET", &path, None, &auth).await?;
    ensure!(shown.status == 200, "{shown:?}");
    Ok(shown.body["options"]["trust_id"].clone())
}

/// The notifications in `sub_queue`, polled until there is one (20 s at most).
async fn notifications(client: &Client, token: &str, sub_queue: &str) -> Result<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let auth = [("X-Auth-Token", token)];
    loop {
        let path = format!("/v2/queues/{sub_queue}/messages?echo=true");
        let listed = client.call_with_headers("GET", &path, None, &auth).await?;
        if listed.status == 200 {
            let messages = listed.body["messages"].as_array().cloned();
            let bodies: Vec<Value> = messages
                .unwrap_or_default()
                .into_iter()
                .map(|message| message["body"].clone())
                .collect();
            if !bodies.is_empty() {
                return Ok(bodies);
            }
        }
        if Instant::now() > deadline {
            bail!("no notification in {sub_queue}: last answer {listed:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_subscribers_are_notified_with_a_token_of_their_trust() -> Result<()> {
    let Some(keystone) = keystone_env() else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let server = start(dir.path(), &keystone)?;
    let (token, project) = keystone.token("zaqar-member-a", "zaqar-a").await?;
    let client = Client::new(server.port, &project);
    let auth = [("X-Auth-Token", token.as_str())];

    // REST, as the tempest test.
    let subscribe = trust_subscription(server.port, "trust-sub-rest", &project);
    let trust = subscribed_trust(&client, &token, subscribe).await?;
    ensure!(
        trust.as_str().is_some_and(|trust| !trust.is_empty()),
        "no trust_id: {trust}"
    );
    let message = json!({"body": {"event": "BackupStarted", "backup_id": "c378813c"}, "ttl": 300});
    let posted = client
        .call_with_headers(
            "POST",
            "/v2/queues/trust-src/messages",
            Some(json!({ "messages": [message] })),
            &auth,
        )
        .await?;
    ensure!(posted.status == 201, "{posted:?}");
    let expected = json!({"body": message["body"], "ttl": 300,
                          "queue_name": "trust-src", "Message_Type": "Notification"});
    let received = notifications(&client, &token, "trust-sub-rest").await?;
    ensure!(received == [expected.clone()], "{received:?}");

    // The same through the WebSocket API.
    let mut ws = WsClient::connect(server.ws_port, &project, &client.client_id).await?;
    ws.set_header("X-Auth-Token", &token);
    let authenticated = ws.call("authenticate", json!({})).await?;
    ensure!(authenticated["headers"]["status"] == 200, "{authenticated}");
    let mut subscribe = trust_subscription(server.port, "trust-sub-ws", &project);
    subscribe["queue_name"] = json!("trust-src-ws");
    let created = ws.call("subscription_create", subscribe).await?;
    ensure!(created["headers"]["status"] == 201, "{created}");
    let id = created["body"]["subscription_id"]
        .as_str()
        .context("no id")?;
    let shown = ws
        .call(
            "subscription_get",
            json!({"queue_name": "trust-src-ws", "subscription_id": id}),
        )
        .await?;
    ensure!(
        shown["body"]["options"]["trust_id"].is_string(),
        "no trust_id: {shown}"
    );
    let posted = ws
        .call(
            "message_post",
            json!({"queue_name": "trust-src-ws", "messages": [message]}),
        )
        .await?;
    ensure!(posted["headers"]["status"] == 201, "{posted}");
    let received = notifications(&client, &token, "trust-sub-ws").await?;
    let expected = json!({"body": message["body"], "ttl": 300,
                          "queue_name": "trust-src-ws", "Message_Type": "Notification"});
    ensure!(received == [expected], "{received:?}");

    // A trust_id given by the client is kept as given (Zaqar's rule).
    let mut given = trust_subscription(server.port, "trust-sub-given", &project);
    given["options"]["trust_id"] = json!("0123456789abcdef0123456789abcdef");
    let trust = subscribed_trust(&client, &token, given).await?;
    ensure!(trust == "0123456789abcdef0123456789abcdef", "{trust}");

    // The commands of docs/webhooks.md, as written.
    let heading = "## Trusted webhooks (`trust+http`)";
    let env = [("OS_TOKEN", token.as_str())];
    run_sh_block_with_env("webhooks.md", heading, server.port, &env)?;
    let received = notifications(&client, &token, "backups-done").await?;
    let expected = json!({"body": {"backup": "done"}, "ttl": 300,
                          "queue_name": "backups", "Message_Type": "Notification"});
    ensure!(received == [expected], "{received:?}");
    Ok(())
}
