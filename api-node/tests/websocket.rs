//! Every WebSocket action through a real websocket client, compared with the
//! REST answer of the same operation, and Zaqar's error replies.

mod support;

use serde_json::{json, Value};
use support::ws::{ids, Ws};
use support::{Harness, CLIENT_ID};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn queue_actions_match_rest() {
    let h = Harness::start().await;
    let mut ws = Ws::connect(&h).await;
    let created = ws
        .ok(
            "queue_create",
            json!({"queue_name": "wq", "metadata": {"a": 1}}),
            201,
        )
        .await;
    assert_eq!(created, "Queue wq created.");
    assert_eq!(h.get("/v2/queues/wq").await.body["a"], 1);
    let again = ws
        .ok("queue_create", json!({"queue_name": "wq"}), 204)
        .await;
    assert_eq!(again, "Queue wq created.");

    let listed = ws.ok("queue_list", json!({"detailed": true}), 200).await;
    let rest = h.get("/v2/queues?detailed=true").await.body;
    assert_eq!(listed["queues"][0]["name"], rest["queues"][0]["name"]);
    assert_eq!(listed["queues"][0]["metadata"], json!({"a": 1}));
    assert_eq!(
        ws.ok("queue_list", json!({}), 200).await,
        json!({"queues": [{"name": "wq"}]})
    );

    let got = ws.ok("queue_get", json!({"queue_name": "wq"}), 200).await;
    assert_eq!(got, json!({"a": 1}));
    assert_eq!(h.get("/v2/queues/wq").await.body["a"], got["a"]);
    assert_eq!(
        ws.ok("queue_get", json!({"queue_name": "none"}), 200).await,
        json!({})
    );

    h.post_messages("wq", json!([{"body": 1}, {"body": 2}]))
        .await;
    let stats = ws
        .ok("queue_get_stats", json!({"queue_name": "wq"}), 200)
        .await;
    let rest = h.get("/v2/queues/wq/stats").await.body;
    for key in ["claimed", "free", "total"] {
        assert_eq!(stats["messages"][key], rest["messages"][key], "{key}");
    }
    assert_eq!(stats["messages"]["oldest"]["body"], 1);
    let missing = ws
        .ok("queue_get_stats", json!({"queue_name": "none"}), 404)
        .await;
    assert_eq!(
        missing,
        json!({"messages": {"claimed": 0, "free": 0, "total": 0}})
    );

    ws.ok(
        "queue_purge",
        json!({"queue_name": "wq", "resource_types": ["messages"]}),
        204,
    )
    .await;
    assert_eq!(
        h.get("/v2/queues/wq/stats").await.body["messages"]["total"],
        0
    );
    let removed = ws
        .ok("queue_delete", json!({"queue_name": "wq"}), 204)
        .await;
    assert_eq!(removed, "Queue wq removed.");
    assert_eq!(h.get("/v2/queues").await.body["queues"], json!([]));
}

#[tokio::test]
async fn message_actions_match_rest() {
    let h = Harness::start().await;
    let mut ws = Ws::connect(&h).await;
    let messages = json!([{"body": {"x": 1}, "ttl": 120}, {"body": "y"}, {"body": 3}]);
    let posted = ws
        .ok(
            "message_post",
            json!({"queue_name": "mq", "messages": messages}),
            201,
        )
        .await;
    let posted: Vec<String> = serde_json::from_value(posted["message_ids"].clone()).unwrap();
    assert_eq!(posted.len(), 3);

    let rest = h.get("/v2/queues/mq/messages?echo=true").await.body;
    let listed = ws
        .ok(
            "message_list",
            json!({"queue_name": "mq", "echo": true}),
            200,
        )
        .await;
    assert_eq!(ids(&listed["messages"]), posted);
    assert_eq!(ids(&rest["messages"]), posted);
    assert_eq!(listed["messages"][0]["body"], rest["messages"][0]["body"]);
    assert_eq!(listed["messages"][0]["ttl"], 120);
    assert_eq!(listed["messages"][0]["claim_id"], Value::Null);
    // Without echo, a client does not see its own messages.
    let own = ws
        .ok("message_list", json!({"queue_name": "mq"}), 200)
        .await;
    assert_eq!(own["messages"], json!([]));
    let (status, body) = ws.call("message_list", json!({"queue_name": "none"})).await;
    assert_eq!(status, 404, "{body}");

    let one = ws
        .ok(
            "message_get",
            json!({"queue_name": "mq", "message_id": posted[1]}),
            200,
        )
        .await;
    let rest = h
        .get(&format!("/v2/queues/mq/messages/{}", posted[1]))
        .await
        .body;
    assert_eq!(one["messages"]["body"], rest["body"]);
    assert_eq!(one["messages"]["id"], rest["id"]);
    let many = ws
        .ok(
            "message_get_many",
            json!({"queue_name": "mq", "message_ids": posted[..2]}),
            200,
        )
        .await;
    assert_eq!(ids(&many["messages"]), posted[..2].to_vec());

    ws.ok(
        "message_delete",
        json!({"queue_name": "mq", "message_id": posted[0]}),
        204,
    )
    .await;
    let gone = h
        .get(&format!("/v2/queues/mq/messages/{}", posted[0]))
        .await;
    assert_eq!(gone.status, 404);
    let popped = ws
        .ok(
            "message_delete_many",
            json!({"queue_name": "mq", "pop": 1}),
            200,
        )
        .await;
    assert_eq!(ids(&popped["messages"]), vec![posted[1].clone()]);
    ws.ok(
        "message_delete_many",
        json!({"queue_name": "mq", "message_ids": [posted[2]]}),
        204,
    )
    .await;
    assert_eq!(
        h.get("/v2/queues/mq/stats").await.body["messages"]["total"],
        0
    );
}

#[tokio::test]
async fn claim_actions_match_rest() {
    let h = Harness::start().await;
    let mut ws = Ws::connect(&h).await;
    let posted = h
        .post_messages("cq", json!([{"body": 1}, {"body": 2}]))
        .await;
    let claim = ws
        .ok(
            "claim_create",
            json!({"queue_name": "cq", "ttl": 100, "grace": 60, "limit": 1}),
            201,
        )
        .await;
    let claim_id = claim["claim_id"].as_str().unwrap().to_string();
    assert_eq!(ids(&claim["messages"]), vec![posted[0].clone()]);
    assert_eq!(claim["messages"][0]["claim_id"], claim_id);

    let path = format!("/v2/queues/cq/claims/{claim_id}");
    let rest = h.get(&path).await.body;
    let got = ws
        .ok(
            "claim_get",
            json!({"queue_name": "cq", "claim_id": claim_id}),
            200,
        )
        .await;
    assert_eq!(got["ttl"], rest["ttl"]);
    assert_eq!(ids(&got["messages"]), ids(&rest["messages"]));

    let updated = ws
        .ok(
            "claim_update",
            json!({"queue_name": "cq", "claim_id": claim_id, "ttl": 200}),
            204,
        )
        .await;
    assert_eq!(updated, format!("Claim {claim_id} updated."));
    assert_eq!(h.get(&path).await.body["ttl"], 200);

    // A claimed message needs its claim id.
    let (status, body) = ws
        .call(
            "message_delete",
            json!({"queue_name": "cq", "message_id": posted[0]}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].is_string());

    let deleted = ws
        .ok(
            "claim_delete",
            json!({"queue_name": "cq", "claim_id": claim_id}),
            204,
        )
        .await;
    assert_eq!(deleted, format!("Claim {claim_id} deleted."));
    assert_eq!(h.get(&path).await.status, 404);
    let (status, body) = ws
        .call(
            "claim_get",
            json!({"queue_name": "cq", "claim_id": claim_id}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], format!("Claim {claim_id} does not exist."));

    ws.ok(
        "message_delete_many",
        json!({"queue_name": "cq", "pop": 2}),
        200,
    )
    .await;
    assert_eq!(
        ws.ok("claim_create", json!({"queue_name": "cq"}), 204)
            .await,
        json!({})
    );
}

#[tokio::test]
async fn subscription_and_node_actions_match_rest() {
    let h = Harness::start().await;
    let mut ws = Ws::connect(&h).await;
    let created = ws
        .ok(
            "subscription_create",
            json!({"queue_name": "sq", "subscriber": "http://example.com/hook", "ttl": 3600}),
            201,
        )
        .await;
    let id = created["subscription_id"].as_str().unwrap().to_string();
    assert_eq!(created["message"], "Subscription sq created.");
    let rest = h
        .get(&format!("/v2/queues/sq/subscriptions/{id}"))
        .await
        .body;
    let got = ws
        .ok(
            "subscription_get",
            json!({"queue_name": "sq", "subscription_id": id}),
            200,
        )
        .await;
    for key in ["id", "subscriber", "ttl", "source", "options", "confirmed"] {
        assert_eq!(got[key], rest[key], "{key}");
    }
    let listed = ws
        .ok("subscription_list", json!({"queue_name": "sq"}), 200)
        .await;
    assert_eq!(ids(&listed["subscriptions"]), vec![id.clone()]);
    ws.ok(
        "subscription_delete",
        json!({"queue_name": "sq", "subscription_id": id}),
        204,
    )
    .await;
    let rest = h.get("/v2/queues/sq/subscriptions").await.body;
    assert_eq!(rest["subscriptions"], json!([]));
    // The same subscriber twice on a queue: Zaqar's storage refuses it.
    let again = json!({"queue_name": "sq", "subscriber": "http://example.com/hook"});
    ws.ok("subscription_create", again.clone(), 201).await;
    let refused = ws.ok("subscription_create", again, 409).await;
    assert_eq!(refused, json!("Subscription sq not created."));

    let home = ws.ok("get_home_doc", json!({}), 200).await;
    assert_eq!(home, h.get("/v2/").await.body);
    ws.ok("ping_node", json!({}), 204).await;
    assert_eq!(ws.call("check_node_health", json!({})).await.0, 403);
    ws.headers["X-Roles"] = json!("admin");
    let health = ws.ok("check_node_health", json!({}), 200).await;
    let rest = h
        .call("GET", "/v2/health", None, &[("X-Roles", "admin")])
        .await;
    assert_eq!(health["catalog_reachable"], rest.body["catalog_reachable"]);
    ws.headers["X-Auth-Token"] = json!("any");
    let auth = ws.ok("authenticate", json!({}), 200).await;
    assert_eq!(auth, json!({"message": "Authentified."}));
    let (status, body) = ws.call("pool_list", json!({"pool_name": "p"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["pools"][0]["name"], "pool-1");
    let (status, body) = ws.call("pool_list", json!({})).await;
    assert_eq!(
        (status, body),
        (400, json!({"error": "Schema validation failed."}))
    );
}

#[tokio::test]
async fn bad_requests_get_zaqar_error_replies() {
    let h = Harness::start().await;
    let mut ws = Ws::connect(&h).await;
    let (status, body) = ws.call("bogus_action", json!({})).await;
    assert_eq!(
        (status, body),
        (400, json!({"error": "bogus_action is not a valid action"}))
    );
    let (status, body) = ws.call("queue_create", json!({"queue_name": 5})).await;
    assert_eq!(
        (status, body),
        (400, json!({"error": "Schema validation failed."}))
    );
    let (status, body) = ws
        .call("queue_create", json!({"queue_name": "bad name!"}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["exception"],
        "Queue names may only contain ASCII letters, digits, underscores, and dashes."
    );
    let (status, body) = ws.call("queue_list", json!({"limit": 0})).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["exception"],
        "Limit must be at least 1 and no greater than 20."
    );

    for headers in [
        json!({"Client-ID": CLIENT_ID}),
        json!({"X-Project-ID": "p"}),
    ] {
        let mut other = Ws::with_headers(&h, headers).await;
        let (status, body) = other.call("queue_list", json!({})).await;
        assert_eq!(
            (status, body),
            (400, json!({"error": "Schema validation failed."}))
        );
    }

    let reply = ws.raw(Message::text("not json")).await;
    assert_eq!(reply["headers"]["status"], 400);
    assert_eq!(
        reply["request"],
        json!({"action": null, "body": {}, "headers": {}, "api": "v2"})
    );
    assert!(reply["body"]["error"]
        .as_str()
        .unwrap()
        .starts_with("Can't decode text (JSON) request."));
    let reply = ws.raw(Message::text("[1, 2]")).await;
    assert_eq!(
        reply["body"]["error"],
        "Unexpected body type. Expected dict or dict like."
    );
    let reply = ws.raw(Message::text("{}")).await;
    assert_eq!(reply["body"]["error"], "None is not a valid action");

    // Binary frames are MessagePack, answered in MessagePack.
    let request = json!({"action": "queue_list", "headers": ws.headers, "body": {}});
    let reply = ws
        .raw(Message::binary(rmp_serde::to_vec_named(&request).unwrap()))
        .await;
    assert_eq!(reply["headers"]["status"], 200);
    let reply = ws.raw(Message::binary(vec![0xc1, 0x00])).await;
    assert!(reply["body"]["error"]
        .as_str()
        .unwrap()
        .starts_with("Can't decode binary (MessagePack) request."));
}
