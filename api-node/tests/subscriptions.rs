//! End-to-end behaviour of `/v2/queues/{q}/subscriptions...`.

mod support;

use serde_json::json;
use support::Harness;

#[tokio::test]
async fn subscriptions_are_created_listed_read_changed_and_deleted() {
    let h = Harness::start().await;
    let path = "/v2/queues/s/subscriptions";
    let created = h
        .send(
            "POST",
            path,
            r#"{"subscriber": "http://a.example/x", "ttl": 3600, "options": {"k": 1}}"#,
        )
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.header("location"), Some(path));
    let id = created.body["subscription_id"]
        .as_str()
        .unwrap()
        .to_string();
    let again = h
        .send("POST", path, r#"{"subscriber": "http://a.example/x"}"#)
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body["subscription_id"], id.as_str());
    let mail = h
        .send("POST", path, r#"{"subscriber": "mailto:a@b.example"}"#)
        .await;
    assert_eq!(mail.status, 201);

    let listed = h.get(path).await;
    let subscriptions = listed.body["subscriptions"].as_array().unwrap();
    assert_eq!(subscriptions.len(), 2);
    assert_eq!(subscriptions[0]["source"], "s");
    assert_eq!(subscriptions[1]["options"], json!({}));
    assert_eq!(subscriptions[1]["ttl"], 3600);
    let next = listed.body["links"][0]["href"].as_str().unwrap();
    assert_eq!(
        h.get(next).await.body,
        json!({"subscriptions": [], "links": []})
    );

    let item = format!("{path}/{id}");
    let got = h.get(&item).await;
    assert_eq!(got.body["subscriber"], "http://a.example/x");
    assert_eq!(got.body["options"], json!({"k": 1}));
    assert_eq!(got.body["confirmed"], true);

    let patched = h
        .send("PATCH", &item, r#"{"ttl": 7200, "options": {"z": 2}}"#)
        .await;
    assert_eq!(patched.status, 204);
    assert_eq!(h.get(&item).await.body["ttl"], 7200);
    let duplicate = h
        .send("PATCH", &item, r#"{"subscriber": "mailto:a@b.example"}"#)
        .await;
    duplicate.assert_error(409, "Resource conflict");
    h.send("PATCH", &item, "{}")
        .await
        .assert_error(400, "Invalid API request");
    h.send("PATCH", &item, r#"{"foo": 1}"#)
        .await
        .assert_error(400, "Unable to update subscription");
    h.send("PATCH", &format!("{path}/nope"), r#"{"ttl": 7200}"#)
        .await
        .assert_error(404, "Not found");

    let confirm = format!("{item}/confirm");
    assert_eq!(
        h.send("PUT", &confirm, r#"{"confirmed": false}"#)
            .await
            .status,
        204
    );
    assert_eq!(h.get(&item).await.body["confirmed"], false);
    h.send("PUT", &confirm, r#"{"confirmed": "yes"}"#)
        .await
        .assert_error(400, "Invalid API request");
    h.send(
        "PUT",
        &format!("{path}/nope/confirm"),
        r#"{"confirmed": true}"#,
    )
    .await
    .assert_error(404, "Not found");

    assert_eq!(h.delete(&item).await.status, 204);
    let gone = h.get(&item).await;
    gone.assert_error(404, "Not found");
    assert_eq!(
        gone.body["description"],
        format!("Subscription {id} does not exist")
    );
    assert_eq!(h.delete(&item).await.status, 204);
}

#[tokio::test]
async fn subscription_input_is_checked() {
    let h = Harness::start().await;
    let post = |body: &'static str| {
        let h = &h;
        async move { h.send("POST", "/v2/queues/v/subscriptions", body).await }
    };
    let check = |answer: support::Answer, description: &str| {
        answer.assert_error(400, "Invalid API request");
        assert_eq!(answer.body["description"], description);
    };
    check(post(r#"{"subscriber": "ftp://x"}"#).await,
        "The subscriber type of subscription must be supported in the list ['http', 'https', 'mailto', 'trust+http', 'trust+https'].");
    check(
        post(r#"{"ttl": 100}"#).await,
        "Missing parameter subscriber in body.",
    );
    check(post("{}").await, "Missing parameter subscriber in body.");
    check(
        post(r#"{"subscriber": "http://b", "ttl": 10}"#).await,
        "The TTL for a subscription must be at least 60 seconds long.",
    );
    check(
        post(r#"{"subscriber": "http://b", "ttl": "x"}"#).await,
        "TTL must be an integer.",
    );
    check(
        post(r#"{"subscriber": "http://b", "options": [1]}"#).await,
        "Options must be a dict.",
    );
    check(
        h.call("POST", "/v2/queues/v/subscriptions", None, &[])
            .await,
        "Missing parameter subscriber in body.",
    );
    h.get("/v2/queues/v/subscriptions?limit=0")
        .await
        .assert_error(400, "Invalid API request");
    assert_eq!(
        h.get("/v2/queues/none/subscriptions").await.body,
        json!({"subscriptions": [], "links": []})
    );
}

#[tokio::test]
async fn with_required_confirmation_a_confirmed_duplicate_conflicts() {
    let h = Harness::start_with(|config| config.require_subscription_confirmation = true).await;
    let path = "/v2/queues/rc/subscriptions";
    let created = h
        .send("POST", path, r#"{"subscriber": "http://a.example/x"}"#)
        .await;
    let id = created.body["subscription_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        h.get(&format!("{path}/{id}")).await.body["confirmed"],
        false
    );
    assert_eq!(
        h.send("POST", path, r#"{"subscriber": "http://a.example/x"}"#)
            .await
            .status,
        201
    );
    h.send(
        "PUT",
        &format!("{path}/{id}/confirm"),
        r#"{"confirmed": true}"#,
    )
    .await;
    let duplicate = h
        .send("POST", path, r#"{"subscriber": "http://a.example/x"}"#)
        .await;
    duplicate.assert_error(409, "Resource conflict");
}
