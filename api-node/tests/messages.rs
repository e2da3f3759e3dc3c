//! End-to-end behaviour of `/v2/queues/{q}/messages...`.

mod support;

use serde_json::json;
use support::{Harness, CLIENT_ID, OMIT};

const OTHER_CLIENT: &str = "6f3a4b2e-2b9e-11e3-b191-71861300734c";

#[tokio::test]
async fn post_answers_resources_and_location_and_creates_the_queue() {
    let h = Harness::start().await;
    let answer = h
        .send(
            "POST",
            "/v2/queues/m/messages",
            r#"{"messages": [{"body": {"a": 1}}, {"body": "x", "ttl": 120}]}"#,
        )
        .await;
    assert_eq!(answer.status, 201);
    let resources = answer.body["resources"].as_array().unwrap();
    assert_eq!(resources.len(), 2);
    let ids: Vec<&str> = resources
        .iter()
        .map(|r| r.as_str().unwrap().rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        answer.header("location").unwrap(),
        format!("/v2/queues/m/messages?ids={}", ids.join(","))
    );
    assert_eq!(h.get("/v2/queues").await.body["queues"][0]["name"], "m");

    let got = h.get(&format!("/v2/queues/m/messages/{}", ids[1])).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["ttl"], 120);
    assert_eq!(got.body["body"], "x");
    assert_eq!(
        got.body["href"],
        format!("/v2/queues/m/messages/{}", ids[1])
    );
    let first = h.get(&format!("/v2/queues/m/messages/{}", ids[0])).await;
    assert_eq!(first.body["ttl"], 3600);
}

#[tokio::test]
async fn listing_hides_own_messages_unless_echo_and_pages_with_links() {
    let h = Harness::start().await;
    h.post_messages("l", json!([{"body": 1}, {"body": 2}, {"body": 3}]))
        .await;
    let own = h.get("/v2/queues/l/messages").await;
    assert_eq!(own.body, json!({"messages": [], "links": []}));
    let other = h
        .call(
            "GET",
            "/v2/queues/l/messages",
            None,
            &[("Client-ID", OTHER_CLIENT)],
        )
        .await;
    assert_eq!(other.body["messages"].as_array().unwrap().len(), 3);

    let page = h.get("/v2/queues/l/messages?echo=true&limit=2").await;
    assert_eq!(number_bodies(&page), [1, 2]);
    let next = page.body["links"][0]["href"].as_str().unwrap();
    assert!(next.starts_with("/v2/queues/l/messages?"), "{next}");
    assert!(next.contains("echo=true") && next.contains("limit=2") && next.contains("marker="));
    let rest = h.get(next).await;
    assert_eq!(rest.body["messages"][0]["body"], 3);

    h.get("/v2/queues/l/messages?limit=50")
        .await
        .assert_error(400, "Invalid API request");
    h.get("/v2/queues/l/messages?echo=maybe")
        .await
        .assert_error(400, "Invalid parameter");
    let missing = h.get("/v2/queues/nothing/messages?echo=true").await;
    assert_eq!(missing.body, json!({"messages": [], "links": []}));
}

#[tokio::test]
async fn messages_are_got_and_deleted_by_id() {
    let h = Harness::start().await;
    let ids = h
        .post_messages("g", json!([{"body": 1}, {"body": 2}]))
        .await;
    let many = h
        .get(&format!("/v2/queues/g/messages?ids={},{}", ids[0], ids[1]))
        .await;
    assert_eq!(many.body["messages"].as_array().unwrap().len(), 2);
    assert!(many.body.get("links").is_none());
    let none = h.get("/v2/queues/g/messages?ids=nope").await;
    none.assert_error(404, "Not found");
    assert!(none.body["description"]
        .as_str()
        .unwrap()
        .starts_with("No messages with IDs: ['nope'] found in the queue g"));
    h.get("/v2/queues/g/messages/nope")
        .await
        .assert_error(404, "Not found");
    let too_many = (0..21).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    h.get(&format!("/v2/queues/g/messages?ids={too_many}"))
        .await
        .assert_error(400, "Invalid API request");

    assert_eq!(
        h.delete(&format!("/v2/queues/g/messages/{}", ids[0]))
            .await
            .status,
        204
    );
    assert_eq!(
        h.delete(&format!("/v2/queues/g/messages?ids={}", ids[1]))
            .await
            .status,
        204
    );
    assert_eq!(
        h.get("/v2/queues/g/stats").await.body["messages"]["total"],
        0
    );
    assert_eq!(h.delete("/v2/queues/g/messages/nope").await.status, 204);
}

#[tokio::test]
async fn pop_takes_the_oldest_messages() {
    let h = Harness::start().await;
    h.post_messages("p", json!([{"body": 1}, {"body": 2}, {"body": 3}]))
        .await;
    let popped = h.delete("/v2/queues/p/messages?pop=2").await;
    assert_eq!(popped.status, 200);
    assert_eq!(number_bodies(&popped), [1, 2]);
    assert!(popped.body["messages"][0]["id"].is_string());
    let empty = h.delete("/v2/queues/empty/messages?pop=5").await;
    assert_eq!(empty.body, json!({"messages": []}));

    let bad = |query: &'static str| {
        let h = &h;
        async move { h.delete(&format!("/v2/queues/p/messages{query}")).await }
    };
    let neither = bad("").await;
    neither.assert_error(400, "Invalid API request");
    assert!(neither.body["description"]
        .as_str()
        .unwrap()
        .contains("either \"ids\" or \"pop\""));
    assert!(bad("?ids=a&pop=1").await.body["description"]
        .as_str()
        .unwrap()
        .starts_with("pop and id params"));
    bad("?pop=0").await.assert_error(400, "Invalid API request");
    bad("?pop=21")
        .await
        .assert_error(400, "Invalid API request");
    bad("?pop=x").await.assert_error(400, "Invalid parameter");
    let too_many = (0..21).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
    bad(Box::leak(format!("?ids={too_many}").into_boxed_str()))
        .await
        .assert_error(400, "Invalid API request");
}

#[tokio::test]
async fn bad_posts_are_refused_with_zaqar_bodies() {
    let h = Harness::start().await;
    let post = |body: &'static str| {
        let h = &h;
        async move { h.send("POST", "/v2/queues/b/messages", body).await }
    };
    let check = |answer: support::Answer, title: &str, description: &str| {
        answer.assert_error(400, title);
        assert_eq!(answer.body["description"], description);
    };
    check(post(r#"{"messages": [{"body": 1, "ttl": 5}]}"#).await, "Invalid API request",
        "The TTL for a message may not exceed 1209600 seconds, and must be at least 60 seconds long.");
    check(post(r#"{"messages": [{"body": 1, "delay": 5000}]}"#).await, "Invalid API request",
        "The Delay TTL for a message may not exceed 900 seconds,and must be at least 0 seconds long.");
    check(
        post(r#"{"messages": [{"ttl": 120}]}"#).await,
        "Invalid request body",
        "Missing \"body\" field.",
    );
    check(
        post(r#"{"messages": [{"body": 1, "ttl": "a"}]}"#).await,
        "Invalid request body",
        "The value of the \"ttl\" field must be a int.",
    );
    check(
        post(r#"{"messages": []}"#).await,
        "Invalid API request",
        "No messages to enqueu.",
    );
    check(
        post(r#"{"messages": {}}"#).await,
        "Invalid request body",
        "Document type not supported.",
    );
    check(
        post(r#"{"messages": [1]}"#).await,
        "Invalid request body",
        "Document type not supported.",
    );
    check(
        post("{}").await,
        "Invalid API request",
        "No messages were found in the request body.",
    );
    check(
        post("[]").await,
        "Invalid API request",
        "No messages were found in the request body.",
    );
    check(
        post("xx").await,
        "Invalid request body",
        "Request body could not be parsed.",
    );
    let zero = h
        .call(
            "POST",
            "/v2/queues/b/messages",
            Some(""),
            &[("Content-Length", "0")],
        )
        .await;
    check(
        zero,
        "Invalid request body",
        "Request body could not be parsed.",
    );
    check(
        h.call("POST", "/v2/queues/b/messages", None, &[]).await,
        "Invalid request body",
        "Request body can not be empty",
    );
    let big = json!({"messages": [{"body": "x".repeat(300_000)}]}).to_string();
    check(
        h.send("POST", "/v2/queues/b/messages", &big).await,
        "Invalid API request",
        "Message collection size is too large. Max size 262144",
    );

    h.send(
        "PUT",
        "/v2/queues/small",
        r#"{"_max_messages_post_size": 100}"#,
    )
    .await;
    let medium = json!({"messages": [{"body": "x".repeat(200)}]}).to_string();
    let answer = h.send("POST", "/v2/queues/small/messages", &medium).await;
    answer.assert_error(400, "Invalid API request");
    assert!(answer.body["description"]
        .as_str()
        .unwrap()
        .contains("The max size for current queue is 100."));
    assert_eq!(
        h.get("/v2/queues/b/stats").await.body["messages"]["total"],
        0
    );
}

#[tokio::test]
async fn queue_defaults_apply_to_posted_messages() {
    let h = Harness::start().await;
    h.send(
        "PUT",
        "/v2/queues/d",
        r#"{"_default_message_ttl": 120, "_default_message_delay": 60}"#,
    )
    .await;
    let ids = h
        .post_messages("d", json!([{"body": 1}, {"body": 2, "delay": 0}]))
        .await;
    let listed = h.get("/v2/queues/d/messages?echo=true").await;
    let shown: Vec<&str> = listed.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(shown, [ids[1].as_str()]);
    let with_delayed = h
        .get("/v2/queues/d/messages?echo=true&include_delayed=true")
        .await;
    assert_eq!(with_delayed.body["messages"].as_array().unwrap().len(), 2);
    assert_eq!(with_delayed.body["messages"][0]["ttl"], 120);
}

#[tokio::test]
async fn identity_headers_are_required() {
    let h = Harness::start().await;
    let body = Some(r#"{"messages": [{"body": 1}]}"#);
    let path = "/v2/queues/i/messages";
    let no_client = h.call("POST", path, body, &[("Client-ID", OMIT)]).await;
    no_client.assert_error(400, "Missing header value");
    assert_eq!(
        no_client.body["description"],
        "The \"Client-Id\" header is required."
    );
    h.call("POST", path, body, &[("Client-ID", "not-a-uuid")])
        .await
        .assert_error(400, "Wrong UUID value");
    h.call("POST", path, body, &[("Client-ID", "")])
        .await
        .assert_error(400, "Wrong UUID value");
    h.call("POST", path, body, &[("X-Project-ID", OMIT)])
        .await
        .assert_error(400, "Project-Id Missing");
    h.call("POST", path, body, &[("X-Project-ID", "")])
        .await
        .assert_error(400, "Empty project header not allowed");
    let long_project = "p".repeat(257);
    h.call("GET", path, None, &[("X-Project-ID", &long_project)])
        .await
        .assert_error(400, "Invalid queue identification");
    let ok = h
        .call(
            "POST",
            path,
            body,
            &[("Client-ID", &CLIENT_ID.replace('-', ""))],
        )
        .await;
    assert_eq!(ok.status, 201);
}

#[tokio::test]
async fn projects_do_not_see_each_other() {
    let h = Harness::start().await;
    h.post_messages("shared-name", json!([{"body": "mine"}]))
        .await;
    let other = h
        .call(
            "GET",
            "/v2/queues/shared-name/messages?echo=true",
            None,
            &[("X-Project-ID", "someone-else")],
        )
        .await;
    assert_eq!(other.body["messages"], json!([]));
    let queues = h
        .call(
            "GET",
            "/v2/queues",
            None,
            &[("X-Project-ID", "someone-else")],
        )
        .await;
    assert_eq!(queues.body["queues"], json!([]));
}

/// The bodies, numbers all, of the messages of a listing or a pop.
fn number_bodies(reply: &support::Answer) -> Vec<i64> {
    let messages = reply.body["messages"].as_array().unwrap();
    messages
        .iter()
        .map(|m| m["body"].as_i64().unwrap())
        .collect()
}
