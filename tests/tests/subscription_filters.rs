//! Subscription filters, driven as a tenant would against `zaqar standalone`: a
//! webhook subscription with the option `filter` is notified only of the messages
//! whose body passes it, in order, and a long run of messages it skips does not hold
//! back the next one that passes; a subscription without a filter gets every
//! message; a malformed filter is refused with Zaqar's 400 body.

use std::time::Duration;

use anyhow::{ensure, Result};
use serde_json::{json, Value};
use zaqar_tests::webhook::{check_refused_options, standalone_notifying_loopback, Webhook};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_subscription_gets_only_the_messages_that_pass() -> Result<()> {
    let mut filtered = Webhook::start().await?;
    let mut everything = Webhook::start().await?;
    let dir = tempfile::tempdir()?;
    let (_server, client) = standalone_notifying_loopback(dir.path(), "filters").await?;
    let malformed = [
        json!([]),
        json!({"kind": "order"}),
        json!({"price": [{"numeric": ["about", 10]}]}),
    ]
    .map(|filter| json!({ "filter": filter }));
    check_refused_options(&client, "orders", &filtered.url, &malformed).await?;

    let filter = json!({"kind": ["order"], "total": [{"numeric": [">=", 100]}],
                        "customer": {"region": [{"prefix": "eu-"}]}});
    for (hook, options) in [
        (&filtered, json!({"filter": filter})),
        (&everything, json!({})),
    ] {
        let body = json!({"subscriber": hook.url, "ttl": 3600, "options": options});
        let created = client.post("/v2/queues/orders/subscriptions", body).await?;
        ensure!(created.status == 201, "{created:?}");
    }

    let order = |n: u32, kind: &str, total: u32, region: &str| json!({"n": n, "kind": kind, "total": total, "customer": {"region": region}});
    let mut bodies = vec![
        order(1, "order", 150, "eu-west"),
        order(2, "order", 50, "eu-west"),
        order(3, "refund", 150, "eu-west"),
        order(4, "order", 150, "us-east"),
    ];
    // A long run of messages the filter skips, then one it passes.
    bodies.extend((5..205).map(|n| order(n, "refund", 1, "us-east")));
    bodies.push(order(205, "order", 100, "eu-central"));
    for chunk in bodies.chunks(10) {
        let messages: Vec<Value> = chunk
            .iter()
            .map(|body| json!({"body": body, "ttl": 300}))
            .collect();
        client.post_messages("orders", messages).await?;
    }

    for wanted in [1, 205] {
        let got = filtered.next().await?;
        ensure!(
            got["body"]["n"] == wanted,
            "expected message {wanted}: {got}"
        );
    }
    for wanted in 1..=205 {
        let got = everything.next().await?;
        ensure!(
            got["body"]["n"] == wanted,
            "expected message {wanted}: {got}"
        );
    }
    filtered.nothing(Duration::from_secs(1)).await;
    Ok(())
}
