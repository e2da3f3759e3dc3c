//! End-to-end behaviour of `/v2/queues...` against an in-memory pool and catalog.

mod support;

use serde_json::json;
use support::Harness;

#[tokio::test]
async fn put_creates_then_reports_existing_queue() {
    let h = Harness::start().await;
    let created = h
        .send("PUT", "/v2/queues/fizbit", r#"{"color": "red"}"#)
        .await;
    assert_eq!(created.status, 201);
    assert_eq!(created.header("location"), Some("/v2/queues/fizbit"));
    let again = h
        .send("PUT", "/v2/queues/fizbit", r#"{"color": "blue"}"#)
        .await;
    assert_eq!(again.status, 204);
    let metadata = h.get("/v2/queues/fizbit").await;
    assert_eq!(metadata.status, 200);
    assert_eq!(metadata.body["color"], "red");
    assert_eq!(metadata.body["_default_message_ttl"], 3600);
    assert_eq!(metadata.body["_max_messages_post_size"], 262144);
    assert_eq!(metadata.body["_dead_letter_queue"], json!(null));
    assert_eq!(metadata.body["_enable_encrypt_messages"], false);
    let empty_body = h.call("PUT", "/v2/queues/plain", None, &[]).await;
    assert_eq!(empty_body.status, 201);
}

#[tokio::test]
async fn never_created_queue_shows_default_metadata_and_zero_stats() {
    let h = Harness::start().await;
    let metadata = h.get("/v2/queues/ghost").await;
    assert_eq!(metadata.status, 200);
    assert_eq!(metadata.body.as_object().unwrap().len(), 7);
    let stats = h.get("/v2/queues/ghost/stats").await;
    assert_eq!(
        stats.body,
        json!({"messages": {"claimed": 0, "free": 0, "total": 0}})
    );
    assert_eq!(h.delete("/v2/queues/ghost").await.status, 204);
    assert_eq!(
        h.call("POST", "/v2/queues/ghost/purge", None, &[])
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn bad_queue_input_is_refused_with_zaqar_bodies() {
    let h = Harness::start().await;
    h.send("PUT", "/v2/queues/bad@name", "{}")
        .await
        .assert_error(400, "Invalid queue identification");
    let long = format!("/v2/queues/{}", "a".repeat(65));
    h.get(&long)
        .await
        .assert_error(400, "Invalid queue identification");
    let not_json = h.send("PUT", "/v2/queues/q1", "{not json").await;
    not_json.assert_error(400, "Invalid request body");
    assert_eq!(
        not_json.body["description"],
        "Request body could not be parsed."
    );
    let array = h.send("PUT", "/v2/queues/q1", "[1]").await;
    assert_eq!(array.body["description"], "Document type not supported.");
    let huge = h
        .send(
            "PUT",
            "/v2/queues/q1",
            &json!({"a": "x".repeat(70_000)}).to_string(),
        )
        .await;
    huge.assert_error(400, "Invalid API request");
    assert_eq!(
        huge.body["description"],
        "Queue metadata is too large. Max size: 65536"
    );
    let ttl = h
        .send("PUT", "/v2/queues/q1", r#"{"_default_message_ttl": 10}"#)
        .await;
    ttl.assert_error(400, "Invalid API request");
    let overflow = h
        .send(
            "PUT",
            "/v2/queues/q1",
            r#"{"x": 123456789012345678901234567890}"#,
        )
        .await;
    assert_eq!(
        overflow.body["description"],
        "JSON contains integer that is too large."
    );
}

#[tokio::test]
async fn listing_is_sorted_paged_and_detailed() {
    let h = Harness::start().await;
    for name in ["c", "a", "b"] {
        assert_eq!(
            h.send("PUT", &format!("/v2/queues/{name}"), r#"{"n": 1}"#)
                .await
                .status,
            201
        );
    }
    let page = h.get("/v2/queues?limit=2").await;
    let names: Vec<&str> = page.body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(page.body["queues"][0]["href"], "/v2/queues/a");
    let next = page.body["links"][0]["href"].as_str().unwrap().to_string();
    assert_eq!(page.body["links"][0]["rel"], "next");
    let rest = h.get(&next).await;
    assert_eq!(rest.body["queues"][0]["name"], "c");
    let end = h.get(rest.body["links"][0]["href"].as_str().unwrap()).await;
    assert_eq!(end.body, json!({"queues": [], "links": []}));

    let detailed = h.get("/v2/queues?detailed=true&with_count=true").await;
    assert_eq!(detailed.body["count"], 3);
    assert_eq!(detailed.body["queues"][0]["metadata"]["n"], 1);
    assert_eq!(
        detailed.body["queues"][0]["metadata"]["_default_message_delay"],
        0
    );
    let filtered = h.get("/v2/queues?name=b").await;
    assert_eq!(filtered.body["queues"].as_array().unwrap().len(), 1);

    let zero = h.get("/v2/queues?limit=0").await;
    zero.assert_error(400, "Invalid API request");
    assert_eq!(
        zero.body["description"],
        "Limit must be at least 1 and no greater than 20."
    );
    h.get("/v2/queues?limit=abc")
        .await
        .assert_error(400, "Invalid parameter");
    h.get("/v2/queues?detailed=maybe")
        .await
        .assert_error(400, "Invalid parameter");
}

#[tokio::test]
async fn patch_applies_json_patch_changes() {
    let h = Harness::start().await;
    h.send("PUT", "/v2/queues/p", r#"{"a": 1, "b": 2}"#).await;
    let patch = |body: &'static str| {
        let h = &h;
        async move {
            h.call(
                "PATCH",
                "/v2/queues/p",
                Some(body),
                &[(
                    "Content-Type",
                    "application/openstack-messaging-v2.0-json-patch",
                )],
            )
            .await
        }
    };
    let wrong_type = h.send("PATCH", "/v2/queues/p", "[]").await;
    wrong_type.assert_error(415, "415 Unsupported Media Type");
    let changed = patch(
        r#"[{"op": "add", "path": "/metadata/c", "value": 3},
            {"op": "replace", "path": "/metadata/a", "value": 10},
            {"op": "remove", "path": "/metadata/b"}]"#,
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(changed.body["a"], 10);
    assert_eq!(changed.body["c"], 3);
    assert!(changed.body.get("b").is_none());
    assert_eq!(changed.body["_default_message_ttl"], 3600);
    assert_eq!(h.get("/v2/queues/p").await.body["a"], 10);

    let conflict = patch(r#"[{"op": "replace", "path": "/metadata/zz", "value": 1}]"#).await;
    conflict.assert_error(409, "Resource conflict");
    patch(r#"[{"op": "move", "path": "/metadata/a"}]"#)
        .await
        .assert_error(400, "Invalid request body");
    patch(r#"[{"op": "add", "path": "/metadata/_default_message_ttl", "value": 1}]"#)
        .await
        .assert_error(400, "Invalid request body");
    let empty = h
        .call(
            "PATCH",
            "/v2/queues/p",
            None,
            &[(
                "Content-Type",
                "application/openstack-messaging-v2.0-json-patch",
            )],
        )
        .await;
    assert_eq!(
        empty.body["description"],
        "PATCH body could not be empty for update."
    );
    let missing = h
        .call(
            "PATCH",
            "/v2/queues/nope",
            Some(r#"[{"op": "add", "path": "/metadata/a", "value": 1}]"#),
            &[(
                "Content-Type",
                "application/openstack-messaging-v2.0-json-patch",
            )],
        )
        .await;
    missing.assert_error(404, "Not found");
}

#[tokio::test]
async fn delete_removes_queue_and_its_placement() {
    let h = Harness::start().await;
    h.send("PUT", "/v2/queues/gone", r#"{"a": 1}"#).await;
    h.post_messages("gone", json!([{"body": 1}])).await;
    assert_eq!(h.delete("/v2/queues/gone").await.status, 204);
    assert_eq!(h.get("/v2/queues").await.body["queues"], json!([]));
    assert!(h.get("/v2/queues/gone").await.body.get("a").is_none());
    let listed = h.get("/v2/queues/gone/messages?echo=true").await;
    assert_eq!(listed.body, json!({"messages": [], "links": []}));
}

#[tokio::test]
async fn subscriptions_go_with_their_queue() {
    let h = Harness::start().await;
    let sub = r#"{"subscriber": "http://x.example/hook"}"#;
    assert_eq!(
        h.send("POST", "/v2/queues/gone/subscriptions", sub)
            .await
            .status,
        201
    );
    assert_eq!(h.delete("/v2/queues/gone").await.status, 204);
    assert_eq!(h.send("PUT", "/v2/queues/gone", "{}").await.status, 201);
    let subscriptions = h.get("/v2/queues/gone/subscriptions").await;
    assert_eq!(subscriptions.body["subscriptions"], json!([]));
}

#[tokio::test]
async fn stats_count_messages_and_show_oldest_and_newest() {
    let h = Harness::start().await;
    let ids = h
        .post_messages("s", json!([{"body": 1}, {"body": {"x": 2}}]))
        .await;
    let claim = h.send("POST", "/v2/queues/s/claims?limit=1", "{}").await;
    assert_eq!(claim.status, 201);
    let stats = h.get("/v2/queues/s/stats").await.body;
    let messages = &stats["messages"];
    assert_eq!(
        (
            messages["claimed"].as_u64(),
            messages["free"].as_u64(),
            messages["total"].as_u64()
        ),
        (Some(1), Some(1), Some(2))
    );
    assert_eq!(
        messages["oldest"]["href"],
        format!("/v2/queues/s/messages/{}", ids[0])
    );
    assert_eq!(messages["newest"]["body"]["x"], 2);
    assert!(messages["oldest"]["created"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert!(messages["oldest"]["claim_id"].is_string());
    assert!(messages["newest"]["claim_id"].is_null());
}

#[tokio::test]
async fn purge_deletes_the_chosen_resources() {
    let h = Harness::start().await;
    h.post_messages("pq", json!([{"body": 1}])).await;
    h.send(
        "POST",
        "/v2/queues/pq/subscriptions",
        r#"{"subscriber": "http://x.example/hook"}"#,
    )
    .await;
    assert_eq!(
        h.send(
            "POST",
            "/v2/queues/pq/purge",
            r#"{"resource_types": ["messages"]}"#
        )
        .await
        .status,
        204
    );
    assert_eq!(
        h.get("/v2/queues/pq/stats").await.body["messages"]["total"],
        0
    );
    assert_eq!(
        h.get("/v2/queues/pq/subscriptions").await.body["subscriptions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let bad = h
        .send(
            "POST",
            "/v2/queues/pq/purge",
            r#"{"resource_types": ["foo"]}"#,
        )
        .await;
    bad.assert_error(400, "Invalid API request");
    let missing = h.send("POST", "/v2/queues/pq/purge", "{}").await;
    assert_eq!(
        missing.body["description"],
        "Post body must contain key \"resource_types\"."
    );
    assert_eq!(
        h.call("POST", "/v2/queues/pq/purge", None, &[])
            .await
            .status,
        204
    );
    assert_eq!(
        h.get("/v2/queues/pq/subscriptions").await.body["subscriptions"],
        json!([])
    );
}
