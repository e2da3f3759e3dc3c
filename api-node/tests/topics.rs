//! End-to-end behaviour of `/v2/topics...` (Zaqar v2.1) against an in-memory
//! pool and catalog: topics, their messages and subscriptions, kept apart from
//! queues of the same name.

mod support;

use serde_json::{json, Value};
use support::ws::Ws;
use support::Harness;
use zaqar_api_node::rate_limit::ProjectOverride;
use zaqar_proto::limits::topic_namespace;

const PATCH: &str = "application/openstack-messaging-v2.0-json-patch";

async fn patch(h: &Harness, path: &str, body: &str) -> support::Answer {
    h.call("PATCH", path, Some(body), &[("Content-Type", PATCH)])
        .await
}

#[tokio::test]
async fn topics_are_created_read_patched_listed_and_deleted() {
    let h = Harness::start().await;
    let created = h
        .send("PUT", "/v2/topics/news", r#"{"color": "red"}"#)
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("location"), Some("/v2/topics/news"));
    assert_eq!(h.send("PUT", "/v2/topics/news", "{}").await.status, 204);

    let metadata = h.get("/v2/topics/news").await;
    assert_eq!(metadata.status, 200);
    assert_eq!(
        metadata.body,
        json!({"color": "red", "_max_messages_post_size": 262144,
               "_default_message_ttl": 3600, "_default_message_delay": 0})
    );
    let ghost = h.get("/v2/topics/ghost").await;
    assert_eq!(ghost.status, 200);
    assert_eq!(ghost.body.as_object().unwrap().len(), 3, "{}", ghost.body);

    let patched = patch(
        &h,
        "/v2/topics/news",
        r#"[{"op": "replace", "path": "/metadata/color", "value": "blue"},
            {"op": "add", "path": "/metadata/_default_message_ttl", "value": 120}]"#,
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["color"], "blue");
    assert_eq!(patched.body["_default_message_ttl"], 120);
    assert_eq!(h.get("/v2/topics/news").await.body["color"], "blue");
    patch(
        &h,
        "/v2/topics/news",
        r#"[{"op": "remove", "path": "/metadata/nothing"}]"#,
    )
    .await
    .assert_error(409, "Resource conflict");
    let missing = patch(
        &h,
        "/v2/topics/ghost",
        r#"[{"op": "add", "path": "/metadata/a", "value": 1}]"#,
    )
    .await;
    missing.assert_error(404, "Not found");
    assert_eq!(
        missing.body["description"],
        format!("Topic ghost does not exist for project {}", h.project)
    );
    h.send("PATCH", "/v2/topics/news", "[]")
        .await
        .assert_error(415, "415 Unsupported Media Type");

    assert_eq!(h.send("PUT", "/v2/topics/alerts", "").await.status, 201);
    let listed = h.get("/v2/topics?limit=1").await;
    assert_eq!(listed.status, 200);
    assert_eq!(
        listed.body["topics"],
        json!([{"name": "alerts", "href": "/v2/topics/alerts"}])
    );
    assert_eq!(
        listed.body["links"],
        json!([{"rel": "next", "href": "/v2/topics?limit=1&marker=alerts"}])
    );
    let next = h
        .get("/v2/topics?limit=1&marker=alerts&detailed=true")
        .await;
    assert_eq!(next.body["topics"][0]["name"], "news");
    assert_eq!(next.body["topics"][0]["metadata"]["color"], "blue");
    assert_eq!(
        next.body["topics"][0]["metadata"]["_default_message_delay"],
        0
    );
    let filtered = h.get("/v2/topics?name=ert").await;
    assert_eq!(filtered.body["topics"].as_array().unwrap().len(), 1);

    assert_eq!(h.delete("/v2/topics/news").await.status, 204);
    assert_eq!(h.delete("/v2/topics/never").await.status, 204);
    let names: Vec<Value> = h.get("/v2/topics").await.body["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("alerts")]);
}

#[tokio::test]
async fn a_topic_and_a_queue_of_the_same_name_are_apart() {
    let h = Harness::start().await;
    h.send("PUT", "/v2/queues/same", r#"{"kind": "queue"}"#)
        .await;
    h.send("PUT", "/v2/topics/same", r#"{"kind": "topic"}"#)
        .await;
    assert_eq!(h.get("/v2/queues/same").await.body["kind"], "queue");
    assert_eq!(h.get("/v2/topics/same").await.body["kind"], "topic");
    assert_eq!(
        h.get("/v2/queues?with_count=true").await.body["count"],
        json!(1)
    );
    assert_eq!(
        h.get("/v2/topics").await.body["topics"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The topic is stored as a queue of the project's topic namespace.
    assert!(h.pool.has_queue(&topic_namespace(&h.project), "same").await);
    assert!(h.pool.has_queue(&h.project, "same").await);

    let posted = h
        .send(
            "POST",
            "/v2/topics/same/messages",
            r#"{"messages": [{"body": "to the topic"}]}"#,
        )
        .await;
    assert_eq!(posted.status, 201, "{}", posted.body);
    let queue_messages = h.get("/v2/queues/same/messages?echo=true").await;
    assert_eq!(queue_messages.body["messages"], json!([]));
    h.send(
        "POST",
        "/v2/queues/same/subscriptions",
        r#"{"subscriber": "http://queue.example/", "ttl": 3600}"#,
    )
    .await;
    let topic_subscriptions = h.get("/v2/topics/same/subscriptions").await;
    assert_eq!(topic_subscriptions.body["subscriptions"], json!([]));

    h.delete("/v2/topics/same").await;
    assert_eq!(h.get("/v2/queues/same").await.body["kind"], "queue");
    let queue_subscriptions = h.get("/v2/queues/same/subscriptions").await;
    assert_eq!(
        queue_subscriptions.body["subscriptions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn messages_of_a_topic_are_posted_listed_read_and_deleted() {
    let h = Harness::start().await;
    let posted = h
        .send(
            "POST",
            "/v2/topics/feed/messages",
            r#"{"messages": [{"body": {"n": 1}, "ttl": 300}, {"body": {"n": 2}}, {"body": 3}]}"#,
        )
        .await;
    assert_eq!(posted.status, 201, "{}", posted.body);
    let hrefs: Vec<&str> = posted.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(hrefs.len(), 3);
    assert!(hrefs
        .iter()
        .all(|href| href.starts_with("/v2/topics/feed/messages/")));
    let ids: Vec<&str> = hrefs
        .iter()
        .map(|h| h.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(
        posted.header("location").unwrap(),
        format!("/v2/topics/feed/messages?ids={}", ids.join(","))
    );

    let listed = h.get("/v2/topics/feed/messages?echo=true&limit=2").await;
    assert_eq!(listed.status, 200);
    let first = &listed.body["messages"][0];
    assert_eq!(first["body"], json!({"n": 1}));
    assert_eq!(first["ttl"], 300);
    assert_eq!(first["href"], hrefs[0]);
    assert_eq!(
        listed.body["links"][0]["href"],
        format!(
            "/v2/topics/feed/messages?limit=2&echo=true&marker={}",
            listed.body["links"][0]["href"]
                .as_str()
                .unwrap()
                .rsplit("marker=")
                .next()
                .unwrap()
        )
    );
    let one = h.get(hrefs[1]).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["id"], ids[1]);
    assert_eq!(one.body["href"], hrefs[1]);
    let many = h
        .get(&format!(
            "/v2/topics/feed/messages?ids={},{}",
            ids[0], ids[2]
        ))
        .await;
    assert_eq!(many.body["messages"].as_array().unwrap().len(), 2);

    let stats = h.get("/v2/topics/feed/stats").await;
    assert_eq!(stats.status, 200);
    assert_eq!(stats.body["messages"]["total"], 3);
    assert_eq!(stats.body["messages"]["free"], 3);
    assert_eq!(stats.body["messages"]["oldest"]["href"], hrefs[0]);
    assert_eq!(stats.body["messages"]["newest"]["href"], hrefs[2]);

    assert_eq!(h.delete(hrefs[0]).await.status, 204);
    h.get(hrefs[0]).await.assert_error(404, "Not found");
    let popped = h.delete("/v2/topics/feed/messages?pop=1").await;
    assert_eq!(popped.status, 200, "{}", popped.body);
    assert_eq!(popped.body["messages"][0]["id"], ids[1]);
    assert_eq!(
        h.delete(&format!("/v2/topics/feed/messages?ids={}", ids[2]))
            .await
            .status,
        204
    );
    assert_eq!(
        h.get("/v2/topics/feed/stats").await.body,
        json!({"messages": {"claimed": 0, "free": 0, "total": 0}})
    );
}

#[tokio::test]
async fn subscriptions_of_a_topic_are_its_own() {
    let h = Harness::start().await;
    let created = h
        .send(
            "POST",
            "/v2/topics/alerts/subscriptions",
            r#"{"subscriber": "http://hooks.example/alerts", "ttl": 3600, "options": {"a": 1}}"#,
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.header("location"),
        Some("/v2/topics/alerts/subscriptions")
    );
    let id = created.body["subscription_id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v2/topics/alerts/subscriptions/{id}");
    let shown = h.get(&path).await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.body["source"], "alerts");
    assert_eq!(shown.body["subscriber"], "http://hooks.example/alerts");
    assert_eq!(shown.body["options"], json!({"a": 1}));

    let updated = h.send("PATCH", &path, r#"{"ttl": 7200}"#).await;
    assert_eq!(updated.status, 204, "{}", updated.body);
    assert_eq!(h.get(&path).await.body["ttl"], 7200);
    let listed = h.get("/v2/topics/alerts/subscriptions").await;
    assert_eq!(listed.body["subscriptions"][0]["id"], id.as_str());
    assert_eq!(
        h.get("/v2/queues/alerts/subscriptions").await.body["subscriptions"],
        json!([])
    );
    h.get(&format!("/v2/queues/alerts/subscriptions/{id}"))
        .await
        .assert_error(404, "Not found");

    let purge = h
        .send(
            "POST",
            "/v2/topics/alerts/purge",
            r#"{"resource_types": ["subscriptions"]}"#,
        )
        .await;
    assert_eq!(purge.status, 204);
    h.get(&path).await.assert_error(404, "Not found");
    let again = h
        .send(
            "POST",
            "/v2/topics/alerts/subscriptions",
            r#"{"subscriber": "http://hooks.example/alerts"}"#,
        )
        .await;
    let id = again.body["subscription_id"].as_str().unwrap().to_string();
    let path = format!("/v2/topics/alerts/subscriptions/{id}");
    assert_eq!(h.delete(&path).await.status, 204);
    h.get(&path).await.assert_error(404, "Not found");
}

#[tokio::test]
async fn bad_topic_requests_get_zaqar_errors() {
    let h = Harness::start().await;
    for path in [
        "/v2/topics/bad@name".to_string(),
        format!("/v2/topics/{}", "a".repeat(65)),
        "/v2/topics/bad@name/stats".to_string(),
        "/v2/topics/bad@name/messages".to_string(),
        "/v2/topics/bad@name/subscriptions".to_string(),
    ] {
        let answer = h.get(&path).await;
        answer.assert_error(400, "Invalid topic identification");
        assert_eq!(
            answer.body["description"],
            "The format of the submitted topic name or project id is not valid."
        );
    }
    let long_project = "p".repeat(256);
    h.call(
        "PUT",
        "/v2/topics/t",
        None,
        &[("X-Project-ID", long_project.as_str())],
    )
    .await
    .assert_error(400, "Invalid topic identification");
    let listed = h
        .call(
            "GET",
            "/v2/topics",
            None,
            &[("X-Project-ID", long_project.as_str())],
        )
        .await;
    assert_eq!(listed.body, json!({"topics": [], "links": []}));

    // Topics have no claims and no signed URLs (Zaqar 23: 404).
    for path in ["/v2/topics/t/claims", "/v2/topics/t/share"] {
        let answer = h.send("POST", path, "{}").await;
        assert_eq!(answer.status, 404);
        assert_eq!(answer.body, json!({"title": "404 Not Found"}));
    }
    let not_allowed = h.send("POST", "/v2/topics", "{}").await;
    assert_eq!(not_allowed.status, 405);
    assert_eq!(not_allowed.body, json!({"title": "405 Method Not Allowed"}));
    assert_eq!(not_allowed.header("allow"), Some("GET, OPTIONS"));
    let purge = h.send("POST", "/v2/topics/t/purge", "{}").await;
    purge.assert_error(400, "Invalid API request");
    assert_eq!(
        purge.body["description"],
        "Post body must contain key \"resource_types\"."
    );
    h.send("PUT", "/v2/topics/t", "[1]")
        .await
        .assert_error(400, "Invalid request body");
    h.send("POST", "/v2/topics/t/messages", r#"{"messages": []}"#)
        .await
        .assert_error(400, "Invalid API request");
    h.get("/v2/topics?limit=0")
        .await
        .assert_error(400, "Invalid API request");
}

#[tokio::test]
async fn a_client_project_may_not_name_a_topic_namespace() {
    let h = Harness::start().await;
    h.send("PUT", "/v2/topics/secret", r#"{"s": 1}"#).await;
    let mut ws = Ws::with_headers(
        &h,
        json!({"X-Project-ID": topic_namespace(&h.project), "Client-ID": support::CLIENT_ID}),
    )
    .await;
    let (status, body) = ws.call("queue_list", json!({})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("reserved for internal use"),
        "{body}"
    );
}

#[tokio::test]
async fn a_topic_has_the_limits_of_its_project() {
    let h = Harness::start_with(|config| {
        config.project_limits.overrides.insert(
            "roomy".into(),
            ProjectOverride {
                max_messages_post_size: Some(512 * 1024),
                ..ProjectOverride::default()
            },
        );
    })
    .await;
    let big = json!({"messages": [{"body": "x".repeat(300 * 1024)}]}).to_string();
    let post = |project: &'static str| {
        let (h, big) = (&h, big.clone());
        async move {
            h.call(
                "POST",
                "/v2/topics/sized/messages",
                Some(&big),
                &[("X-Project-ID", project)],
            )
            .await
        }
    };
    post("small").await.assert_error(400, "Invalid API request");
    assert_eq!(post("roomy").await.status, 201);
}
