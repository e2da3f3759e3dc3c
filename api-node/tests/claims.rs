//! End-to-end behaviour of `/v2/queues/{q}/claims...` and claimed messages.

mod support;

use serde_json::json;
use support::Harness;

#[tokio::test]
async fn claims_take_messages_and_can_be_read_renewed_and_released() {
    let h = Harness::start().await;
    let ids = h
        .post_messages("c", json!([{"body": 1}, {"body": 2}, {"body": 3}]))
        .await;
    let claim = h
        .send(
            "POST",
            "/v2/queues/c/claims?limit=2",
            r#"{"ttl": 100, "grace": 60}"#,
        )
        .await;
    assert_eq!(claim.status, 201, "{}", claim.body);
    let location = claim.header("location").unwrap().to_string();
    let claim_id = location.rsplit('/').next().unwrap().to_string();
    assert_eq!(location, format!("/v2/queues/c/claims/{claim_id}"));
    let messages = claim.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[0]["href"],
        format!("/v2/queues/c/messages/{}?claim_id={claim_id}", ids[0])
    );

    let got = h.get(&location).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["ttl"], 100);
    assert_eq!(got.body["href"], location);
    assert_eq!(got.body["messages"].as_array().unwrap().len(), 2);
    assert!(got.body["age"].is_u64());

    assert_eq!(
        h.send("PATCH", &location, r#"{"ttl": 200, "grace": 60}"#)
            .await
            .status,
        204
    );
    assert_eq!(h.get(&location).await.body["ttl"], 200);
    assert_eq!(h.send("PATCH", &location, "{}").await.status, 204);

    let listed = h.get("/v2/queues/c/messages?echo=true").await;
    assert_eq!(listed.body["messages"].as_array().unwrap().len(), 1);
    let with_claimed = h
        .get("/v2/queues/c/messages?echo=true&include_claimed=true")
        .await;
    assert_eq!(with_claimed.body["messages"].as_array().unwrap().len(), 3);

    let rest = h.send("POST", "/v2/queues/c/claims", "{}").await;
    assert_eq!(rest.body["messages"].as_array().unwrap().len(), 1);
    assert_eq!(
        h.call("POST", "/v2/queues/c/claims", None, &[])
            .await
            .status,
        204
    );

    assert_eq!(h.delete(&location).await.status, 204);
    h.get(&location).await.assert_error(404, "Not found");
    assert_eq!(
        h.send("POST", "/v2/queues/c/claims", "{}").await.body["messages"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn claiming_from_a_missing_queue_answers_no_content() {
    let h = Harness::start().await;
    assert_eq!(
        h.send("POST", "/v2/queues/nothing/claims", "{}")
            .await
            .status,
        204
    );
    let missing = h.get("/v2/queues/nothing/claims/abc").await;
    missing.assert_error(404, "Not found");
    assert!(missing.body["description"]
        .as_str()
        .unwrap()
        .starts_with("Claim abc does not exist in queue nothing"));
}

#[tokio::test]
async fn claim_input_is_checked() {
    let h = Harness::start().await;
    h.post_messages("v", json!([{"body": 1}])).await;
    let post = |path: &'static str, body: &'static str| {
        let h = &h;
        async move { h.send("POST", path, body).await }
    };
    let ttl = post("/v2/queues/v/claims", r#"{"ttl": 30}"#).await;
    ttl.assert_error(400, "Invalid API request");
    assert_eq!(
        ttl.body["description"],
        "The TTL for a claim may not exceed 43200 seconds, and must be at least 60 seconds long."
    );
    let grace = post("/v2/queues/v/claims", r#"{"grace": 30}"#).await;
    assert_eq!(
        grace.body["description"],
        "The grace for a claim may not exceed 43200 seconds, and must be at least 60 seconds long."
    );
    let limit = post("/v2/queues/v/claims?limit=30", "{}").await;
    assert_eq!(
        limit.body["description"],
        "Limit must be at least 1 and may not be greater than 20."
    );
    post("/v2/queues/v/claims?limit=x", "{}")
        .await
        .assert_error(400, "Invalid parameter");
    post("/v2/queues/v/claims", r#"{"ttl": "a"}"#)
        .await
        .assert_error(400, "Invalid request body");
    post("/v2/queues/v/claims", "[]")
        .await
        .assert_error(400, "Invalid request body");
    post("/v2/queues/v/claims", "x")
        .await
        .assert_error(400, "Invalid request body");

    let unknown = h
        .send("PATCH", "/v2/queues/v/claims/nope", r#"{"ttl": 100}"#)
        .await;
    unknown.assert_error(404, "Not found");
    h.send("PATCH", "/v2/queues/v/claims/nope", r#"{"ttl": 10}"#)
        .await
        .assert_error(400, "Invalid API request");
    let empty = h.call("PATCH", "/v2/queues/v/claims/nope", None, &[]).await;
    assert_eq!(empty.body["description"], "Request body can not be empty");
    assert_eq!(h.delete("/v2/queues/v/claims/nope").await.status, 204);
    let wrong_method = h.get("/v2/queues/v/claims").await;
    wrong_method.assert_error_free_405();
}

#[tokio::test]
async fn claimed_messages_need_their_claim_to_be_deleted() {
    let h = Harness::start().await;
    let ids = h
        .post_messages("d", json!([{"body": 1}, {"body": 2}]))
        .await;
    let claim = h.send("POST", "/v2/queues/d/claims?limit=1", "{}").await;
    let claim_id = claim
        .header("location")
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let path = format!("/v2/queues/d/messages/{}", ids[0]);

    let without = h.delete(&path).await;
    without.assert_error(403, "Unable to delete");
    assert_eq!(
        without.body["description"],
        "This message is claimed; it cannot be deleted without a valid claim ID."
    );
    let wrong = h
        .delete(&format!("{path}?claim_id=5c6939a8ca4f8c7e8b3ea5cd"))
        .await;
    wrong.assert_error(400, "Unable to delete");
    let unclaimed = h
        .delete(&format!(
            "/v2/queues/d/messages/{}?claim_id={claim_id}",
            ids[1]
        ))
        .await;
    unclaimed.assert_error(400, "Unable to delete");
    assert_eq!(
        h.delete(&format!("{path}?claim_id={claim_id}"))
            .await
            .status,
        204
    );
    h.get(&path).await.assert_error(404, "Not found");
}

trait MethodNotAllowed {
    fn assert_error_free_405(&self);
}

impl MethodNotAllowed for support::Answer {
    fn assert_error_free_405(&self) {
        assert_eq!(self.status, 405);
        assert_eq!(self.body, json!({"title": "405 Method Not Allowed"}));
        assert_eq!(self.header("allow"), Some("POST, OPTIONS"));
    }
}
