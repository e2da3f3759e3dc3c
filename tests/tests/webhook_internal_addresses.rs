//! Webhooks to the internal network, driven as a client would over REST against
//! `zaqar standalone`: by default a subscriber on loopback or at the cloud metadata
//! address is refused with Zaqar's 400 body; with `[notifier] allowed_networks`
//! the loopback webhook is accepted and notified.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use zaqar_tests::webhook::{loopback_allowed_config, Webhook};
use zaqar_tests::{Client, Standalone};

#[tokio::test]
async fn internal_webhooks_are_refused_unless_the_operator_allows_them() -> Result<()> {
    let mut hook = Webhook::start().await?;
    let dir = tempfile::tempdir()?;
    let standalone = Standalone::start(dir.path())?;
    let client = Client::new(standalone.port, "ssrf-project");
    client.wait_ready(Duration::from_secs(30)).await?;
    for subscriber in [
        hook.url.as_str(),
        "http://169.254.169.254/latest/meta-data/",
    ] {
        let body = json!({"subscriber": subscriber, "ttl": 3600});
        let refused = client.post("/v2/queues/q/subscriptions", body).await?;
        assert_eq!(refused.status, 400, "{subscriber}: {refused:?}");
        assert_eq!(refused.body["title"], "Invalid API request", "{refused:?}");
        let description = refused.body["description"].as_str().unwrap_or_default();
        assert!(description.contains("internal address"), "{refused:?}");
    }
    drop(standalone);

    let dir = tempfile::tempdir()?;
    let config = loopback_allowed_config(dir.path())?;
    let standalone = Standalone::start_with(dir.path(), &["--config", &config])?;
    let client = Client::new(standalone.port, "ssrf-project");
    client.wait_ready(Duration::from_secs(30)).await?;
    let body = json!({"subscriber": hook.url, "ttl": 3600});
    let created = client.post("/v2/queues/q/subscriptions", body).await?;
    assert_eq!(created.status, 201, "{created:?}");
    let posted = json!({"messages": [{"body": "allowed", "ttl": 300}]});
    let posted = client.post("/v2/queues/q/messages", posted).await?;
    assert_eq!(posted.status, 201, "{posted:?}");
    assert_eq!(hook.next().await?["body"], "allowed");
    Ok(())
}
