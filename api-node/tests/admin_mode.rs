//! Without admin mode (the default) the privileged routes and actions do not
//! exist, as in Zaqar: `/v2/health`, `/v2/pools` and `/v2/flavors` answer the
//! 404 of an unknown path and their WebSocket actions are not valid actions,
//! whatever roles the caller shows; the home document does not list them.

mod support;

use serde_json::json;
use support::ws::Ws;
use support::{Harness, CLIENT_ID};

async fn without_admin_mode() -> Harness {
    Harness::start_with(|config| config.admin_mode = false).await
}

#[tokio::test]
async fn privileged_routes_are_unknown_paths_whatever_the_roles() {
    let h = without_admin_mode().await;
    let unknown = h.get("/v2/no-such-route").await;
    assert_eq!(unknown.status, 404);
    for path in [
        "/v2/health",
        "/v2/pools",
        "/v2/pools/pool-1",
        "/v2/flavors",
        "/v2/flavors/f",
    ] {
        for method in ["GET", "PUT", "PATCH", "DELETE"] {
            let answer = h
                .call(method, path, Some("{}"), &[("X-Roles", "admin")])
                .await;
            assert_eq!(answer.status, 404, "{method} {path}: {}", answer.body);
            assert_eq!(answer.body, unknown.body, "{method} {path}");
        }
    }
    let home = h.call("GET", "/v2/", None, &[("X-Roles", "admin")]).await;
    assert_eq!(home.status, 200);
    let resources = home.body["resources"].as_object().unwrap();
    assert!(resources.contains_key("rel/queues"));
    assert!(!resources.contains_key("rel/pools") && !resources.contains_key("rel/health"));
}

#[tokio::test]
async fn privileged_websocket_actions_are_not_valid_actions() {
    let h = without_admin_mode().await;
    let headers = json!({"Client-ID": CLIENT_ID, "X-Project-ID": "p", "X-Roles": "admin"});
    let mut ws = Ws::with_headers(&h, headers).await;
    for action in ["pool_list", "flavor_list", "check_node_health"] {
        let (status, body) = ws.call(action, json!({})).await;
        assert_eq!(status, 400, "{action}: {body}");
        assert_eq!(body["error"], format!("{action} is not a valid action"));
    }
    let (status, home) = ws.call("get_home_doc", json!({})).await;
    assert_eq!(status, 200);
    assert!(home["resources"].get("rel/pools").is_none(), "{home}");
}

#[tokio::test]
async fn in_admin_mode_the_admin_role_reaches_them() {
    let h = Harness::start().await;
    let pools = h
        .call("GET", "/v2/pools", None, &[("X-Roles", "admin")])
        .await;
    assert_eq!(pools.status, 200, "{}", pools.body);
    let refused = h.get("/v2/pools").await;
    assert_eq!(refused.status, 403, "{}", refused.body);
}
