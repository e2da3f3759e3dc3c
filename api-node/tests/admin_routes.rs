//! `/v2/pools` and `/v2/flavors` (REST and the `pool_*` / `flavor_*` WebSocket
//! actions) against the catalog's AdminService: Zaqar's bodies, the
//! admin role, and bad input that changes nothing.

mod support;

use serde_json::{json, Value};
use support::ws::Ws;
use support::{Answer, Harness};

const ADMIN: &[(&str, &str)] = &[("X-Roles", "admin")];

async fn admin(h: &Harness, method: &str, path: &str, body: Option<Value>) -> Answer {
    let body = body.map(|b| b.to_string());
    h.call(method, path, body.as_deref(), ADMIN).await
}

/// A second pool-node registered as pool `name`, as its own process would.
async fn register(h: &mut Harness, name: &str) -> String {
    let mut pool = h.extra_pool(name).await;
    pool.uri = format!("redis://127.0.0.1:6379/{}", name.len());
    let endpoint = pool.endpoint.clone();
    h.catalog.register(&pool).await;
    endpoint
}

#[tokio::test]
async fn pools_are_created_shown_listed_patched_and_deleted() {
    let mut h = Harness::start().await;
    let endpoint = register(&mut h, "p2").await;
    let put = json!({"uri": "redis://127.0.0.1:16379/5", "weight": 10, "flavor": "f1"});
    let created = admin(&h, "PUT", "/v2/pools/p2", Some(put)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("location"), Some("/v2/pools/p2"));
    let shown = admin(&h, "GET", "/v2/pools/p2", None).await;
    assert_eq!(
        shown.body,
        json!({"name": "p2", "uri": "redis://127.0.0.1:16379/5", "weight": 10,
               "flavor": "f1", "href": "/v2/pools/p2"})
    );
    let detailed = admin(&h, "GET", "/v2/pools/p2?detailed=true", None).await;
    assert_eq!(detailed.body["options"], json!({}));
    // The pool-node's endpoint is kept across Zaqar's PUT.
    let stored = h.catalog.pools().await;
    assert!(stored
        .iter()
        .any(|p| p.name == "p2" && p.endpoint == endpoint));

    let page = admin(&h, "GET", "/v2/pools?limit=1", None).await;
    assert_eq!(page.body["pools"].as_array().unwrap().len(), 1);
    assert_eq!(page.body["pools"][0]["name"], "p2");
    assert_eq!(page.body["pools"][0]["flavor"], "f1");
    assert_eq!(
        page.body["links"],
        json!([{"rel": "next", "href": "/v2/pools?limit=1&marker=p2"}])
    );
    let next = admin(&h, "GET", "/v2/pools?limit=1&marker=p2&detailed=true", None).await;
    assert_eq!(next.body["pools"][0]["name"], "pool-1");
    assert_eq!(next.body["pools"][0]["flavor"], Value::Null);
    assert!(next.body["pools"][0]["options"].is_object());
    let end = admin(&h, "GET", "/v2/pools?marker=pool-1", None).await;
    assert_eq!(end.body, json!({"links": [], "pools": []}));

    let patched = admin(&h, "PATCH", "/v2/pools/p2", Some(json!({"weight": 7}))).await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(
        (
            patched.body["weight"].clone(),
            patched.body["flavor"].clone()
        ),
        (json!(7), json!("f1"))
    );

    let deleted = admin(&h, "DELETE", "/v2/pools/p2", None).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(admin(&h, "GET", "/v2/pools/p2", None).await.status, 404);
    // Deleting what is not there is done, as in Zaqar.
    assert_eq!(admin(&h, "DELETE", "/v2/pools/p2", None).await.status, 204);
}

#[tokio::test]
async fn bad_pool_input_gets_zaqar_errors_and_changes_nothing() {
    let h = Harness::start().await;
    let before = h.catalog.pools().await;
    let good = json!({"uri": "redis://127.0.0.1:6379/1", "weight": 1});

    let denied = h.send("GET", "/v2/pools", "").await;
    denied.assert_error(403, "Not authorized");
    let body = good.to_string();
    h.call(
        "PUT",
        "/v2/pools/pool-1",
        Some(&body),
        &[("X-Roles", "member")],
    )
    .await
    .assert_error(403, "Not authorized");

    let cases = [
        json!({"uri": "redis://127.0.0.1:6379/1", "weight": -1}),
        json!({"uri": "redis://127.0.0.1:6379/1", "weight": 4294967296u64}),
        json!({"uri": "redis://127.0.0.1:6379/1", "weight": "1"}),
        json!({"uri": "foo", "weight": 1}),
        json!({"uri": "redis://127.0.0.1:6379/1"}),
        json!({"uri": "redis://127.0.0.1:6379/1", "weight": 1, "x": 1}),
    ];
    for case in cases {
        let answer = admin(&h, "PUT", "/v2/pools/pool-1", Some(case.clone())).await;
        answer.assert_error(400, "Invalid request body");
    }
    let unparsable = h
        .call("PUT", "/v2/pools/pool-1", Some("nojson"), ADMIN)
        .await;
    assert_eq!(
        unparsable.body,
        json!({"title": "Invalid request body", "description": "JSON could not be parsed."})
    );
    let no_node = admin(&h, "PUT", "/v2/pools/unknown", Some(good)).await;
    no_node.assert_error(400, "Invalid request body");
    assert!(no_node.body["description"]
        .as_str()
        .unwrap()
        .starts_with("cannot connect to"));
    admin(&h, "PATCH", "/v2/pools/pool-1", Some(json!({})))
        .await
        .assert_error(400, "Invalid request body");
    let missing = admin(&h, "PATCH", "/v2/pools/nope", Some(json!({"weight": 3}))).await;
    assert_eq!(
        missing.body,
        json!({"title": "Not found", "description": "Pool nope does not exist"})
    );
    admin(&h, "GET", "/v2/pools?limit=0", None)
        .await
        .assert_error(400, "Invalid API request");
    admin(&h, "GET", "/v2/pools?detailed=abc", None)
        .await
        .assert_error(400, "Invalid parameter");

    // A pool holding a queue is not deleted.
    assert_eq!(h.send("PUT", "/v2/queues/held", "{}").await.status, 201);
    let refused = admin(&h, "DELETE", "/v2/pools/pool-1", None).await;
    refused.assert_error(403, "Unable to delete");
    assert_eq!(h.catalog.pools().await, before, "nothing changed");
}

#[tokio::test]
async fn flavors_group_pools_and_place_flavored_queues() {
    let mut h = Harness::start().await;
    let gold = register(&mut h, "gold").await;

    let unknown = admin(
        &h,
        "PUT",
        "/v2/flavors/f1",
        Some(json!({"pool_list": ["nope"]})),
    )
    .await;
    assert_eq!(
        unknown.body,
        json!({"title": "Unable to create",
               "description": "Flavor f1 could not be created, error:Pool nope does not exist"})
    );
    let empty = admin(&h, "PUT", "/v2/flavors/f1", Some(json!({"pool_list": []}))).await;
    assert_eq!(
        empty.body,
        json!({"title": "Unable to create", "description": "Bad Request"})
    );
    admin(&h, "PUT", "/v2/flavors/f1", Some(json!({})))
        .await
        .assert_error(400, "Invalid request body");
    assert_eq!(admin(&h, "GET", "/v2/flavors/f1", None).await.status, 404);
    let no_flavor = h.send("PUT", "/v2/queues/qf", r#"{"_flavor": "f1"}"#).await;
    assert_eq!(
        no_flavor.body,
        json!({"title": "Invalid API request", "description": "Flavor f1 does not exist"})
    );

    let created = admin(
        &h,
        "PUT",
        "/v2/flavors/f1",
        Some(json!({"pool_list": ["gold"]})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("location"), Some("/v2/flavors/f1"));
    let shown = admin(&h, "GET", "/v2/flavors/f1", None).await;
    assert_eq!(
        shown.body,
        json!({"name": "f1", "capabilities": ["FIFO", "CLAIMS", "AOD", "HIGH_THROUGHPUT"],
               "pool_list": ["gold"], "href": "/v2/flavors/f1"})
    );
    let listed = admin(&h, "GET", "/v2/flavors?detailed=true", None).await;
    assert_eq!(
        listed.body,
        json!({"links": [{"rel": "next", "href": "/v2/flavors?marker=f1&detailed=true"}],
               "flavors": [{"name": "f1", "href": "/v2/flavors/f1", "pool_list": ["gold"],
                            "capabilities": ["FIFO", "CLAIMS", "AOD", "HIGH_THROUGHPUT"]}]})
    );
    admin(&h, "DELETE", "/v2/pools/gold", None)
        .await
        .assert_error(403, "Unable to delete");

    // A queue of the flavor lands on the flavor's pool, and keeps `_flavor`.
    let queue = h.send("PUT", "/v2/queues/qf", r#"{"_flavor": "f1"}"#).await;
    assert_eq!(queue.status, 201, "{}", queue.body);
    let placed = h.catalog.lookup(&h.project, "qf").await.unwrap();
    assert_eq!(
        (placed.pool.as_str(), placed.endpoint.as_str()),
        ("gold", gold.as_str())
    );
    assert_eq!(h.get("/v2/queues/qf").await.body["_flavor"], "f1");

    let patched = admin(
        &h,
        "PATCH",
        "/v2/flavors/f1",
        Some(json!({"pool_list": ["pool-1"]})),
    )
    .await;
    assert_eq!(
        patched.body["pool_list"],
        json!(["pool-1"]),
        "{}",
        patched.body
    );
    admin(
        &h,
        "PATCH",
        "/v2/flavors/f1",
        Some(json!({"capabilities": {}})),
    )
    .await
    .assert_error(400, "Invalid request body");
    let missing = admin(
        &h,
        "PATCH",
        "/v2/flavors/nope",
        Some(json!({"pool_list": ["gold"]})),
    )
    .await;
    missing.assert_error(404, "Not found");
    assert_eq!(
        admin(&h, "DELETE", "/v2/flavors/f1", None).await.status,
        204
    );
    assert_eq!(
        admin(&h, "DELETE", "/v2/flavors/f1", None).await.status,
        204
    );
    let pools = admin(&h, "GET", "/v2/pools", None).await;
    assert!(pools.body["pools"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["flavor"].is_null()));
    h.send("GET", "/v2/flavors", "")
        .await
        .assert_error(403, "Not authorized");
}

#[tokio::test]
async fn websocket_admin_actions_match_rest() {
    let mut h = Harness::start().await;
    register(&mut h, "p2").await;
    let mut ws = Ws::connect(&h).await;
    let (status, body) = ws.call("pool_get", json!({"pool_name": "pool-1"})).await;
    assert_eq!(
        (status, body["exception"].clone()),
        (
            403,
            json!("You are not authorized to complete this action.")
        )
    );
    ws.headers["X-Roles"] = json!("admin");

    let create = json!({"pool_name": "p2", "uri": "redis://127.0.0.1:6379/2", "weight": 5});
    assert_eq!(
        ws.ok("pool_create", create, 201).await,
        json!("Pool p2 created.")
    );
    let got = ws.ok("pool_get", json!({"pool_name": "p2"}), 200).await;
    assert_eq!(got, admin(&h, "GET", "/v2/pools/p2", None).await.body);
    let listed = ws
        .ok("pool_list", json!({"pool_name": "", "limit": 1}), 200)
        .await;
    assert_eq!(
        listed,
        admin(&h, "GET", "/v2/pools?limit=1", None).await.body
    );
    let updated = ws
        .ok("pool_update", json!({"pool_name": "p2", "weight": 9}), 200)
        .await;
    assert_eq!(updated["weight"], 9);
    let (status, body) = ws
        .call("pool_update", json!({"pool_name": "p2", "weight": -1}))
        .await;
    assert_eq!(status, 400, "{body}");

    let flavor = json!({"flavor_name": "f", "pool_name": "p2"});
    assert_eq!(
        ws.ok("flavor_create", flavor, 201).await,
        json!("Flavor f created.")
    );
    let got = ws.ok("flavor_get", json!({"flavor_name": "f"}), 200).await;
    assert_eq!(got, admin(&h, "GET", "/v2/flavors/f", None).await.body);
    let listed = ws.ok("flavor_list", json!({"flavor_name": ""}), 200).await;
    assert_eq!(listed, admin(&h, "GET", "/v2/flavors", None).await.body);
    let patched = json!({"flavor_name": "f", "pool_list": ["pool-1"]});
    assert_eq!(
        ws.ok("flavor_update", patched, 200).await["pool_list"],
        json!(["pool-1"])
    );
    let (status, body) = ws
        .call(
            "flavor_create",
            json!({"flavor_name": "g", "pool_name": "nope"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    ws.ok("flavor_delete", json!({"flavor_name": "f"}), 204)
        .await;
    ws.ok("pool_delete", json!({"pool_name": "p2"}), 204).await;
    let (status, _) = ws.call("pool_get", json!({"pool_name": "p2"})).await;
    assert_eq!(status, 404);
}
