//! Zaqar's subscription confirmation on `zaqar standalone` with
//! `require_subscription_confirmation`: a new webhook subscription gets a signed
//! confirmation request and nothing else until the client confirms it with that
//! signature; unconfirming stops delivery and sends the unsubscribe notice.

use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};
use zaqar_tests::webhook::Webhook;
use zaqar_tests::{Client, Standalone};

const SECRET: &str = "confirmation-test-secret";

/// `PUT` the confirm URL of `notice` with its signature headers only (no project
/// header of the client's own), as a receiver acting on the request would.
async fn put_signed(port: u16, notice: &Value, confirmed: bool) -> Result<u16> {
    let header = |name: &str| notice[name].as_str().unwrap_or_default().to_string();
    let response = reqwest::Client::new()
        .put(format!("http://127.0.0.1:{port}{}", header("URL-Paths")))
        .header("URL-Signature", header("URL-Signature"))
        .header("URL-Expires", header("URL-Expires"))
        .header("URL-Methods", header("URL-Methods"))
        .header("URL-Paths", header("URL-Paths"))
        .header("X-Project-ID", header("X-Project-ID"))
        .header("Client-ID", uuid::Uuid::new_v4().to_string())
        .header("Content-Type", "application/json")
        .body(json!({"confirmed": confirmed}).to_string())
        .send()
        .await?;
    Ok(response.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_notified_only_once_confirmed_through_its_signed_url() -> Result<()> {
    confirmation_flow("queues").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_webhook_is_confirmed_through_a_topic_url() -> Result<()> {
    confirmation_flow("topics").await
}

/// Subscribes a webhook to `orders` under `/v2/{collection}` and walks it through
/// confirming and unconfirming with the signed URL it receives.
async fn confirmation_flow(collection: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("zaqar.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\nrequire_subscription_confirmation = true\nsigned_url_secret_key = \"{SECRET}\"\n\
             [notifier]\nallowed_networks = [\"127.0.0.0/8\"]\n"
        ),
    )?;
    let config = config.to_string_lossy();
    let standalone = Standalone::start_with(dir.path(), &["--config", &config])?;
    let port = standalone.port;
    let client = Client::new(port, "confirm-project");
    client.wait_ready(Duration::from_secs(30)).await?;

    let mut hook = Webhook::start().await?;
    let created = client
        .post(
            &format!("/v2/{collection}/orders/subscriptions"),
            json!({"subscriber": hook.url, "ttl": 3600}),
        )
        .await?;
    anyhow::ensure!(created.status == 201, "subscribe: {created:?}");
    let id = created.body["subscription_id"]
        .as_str()
        .unwrap()
        .to_string();

    let notice = hook.next().await?;
    let path = format!("/v2/{collection}/orders/subscriptions/{id}/confirm");
    assert_eq!(
        notice["Message_Type"], "SubscriptionConfirmation",
        "{notice}"
    );
    assert_eq!(
        notice["Message"],
        "You have chosen to subscribe to the queue: orders"
    );
    assert_eq!(notice["URL-Paths"], path.as_str());
    assert_eq!(notice["URL-Methods"], "PUT");
    assert_eq!(notice["X-Project-ID"], "confirm-project");
    assert_eq!(notice["SubscribeBody"], json!({"confirmed": true}));
    assert_eq!(notice["UnsubscribeBody"], json!({"confirmed": false}));
    assert_eq!(notice["queue_name"], "orders");
    assert_eq!(notice["URL-Signature"].as_str().map(str::len), Some(64));

    let post = |body: Value| {
        let client = &client;
        async move {
            let posted = client
                .post(
                    &format!("/v2/{collection}/orders/messages"),
                    json!({"messages": [{"body": body}]}),
                )
                .await?;
            anyhow::ensure!(posted.status == 201, "post: {posted:?}");
            Ok(())
        }
    };
    post(json!("while unconfirmed")).await?;
    hook.nothing(Duration::from_millis(500)).await;

    // A forged signature is refused; the one received is accepted.
    let mut forged = notice.clone();
    forged["URL-Signature"] = json!("0".repeat(64));
    assert_ne!(put_signed(port, &forged, true).await?, 204);
    assert_eq!(put_signed(port, &notice, true).await?, 204);
    post(json!("confirmed")).await?;
    let notification = hook.next().await?;
    assert_eq!(notification["Message_Type"], "Notification");
    assert_eq!(notification["body"], "confirmed", "{notification}");

    assert_eq!(put_signed(port, &notice, false).await?, 204);
    let goodbye = hook.next().await?;
    assert_eq!(
        goodbye["Message_Type"], "UnsubscribeConfirmation",
        "{goodbye}"
    );
    post(json!("unconfirmed")).await?;
    hook.nothing(Duration::from_millis(700)).await;
    Ok(())
}
