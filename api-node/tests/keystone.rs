//! api-node with `auth = "keystone"` against the real Keystone of the test
//! setup (`ZAQAR_TEST_KEYSTONE_URL`, users from scripts/keystone-users.py) and
//! the real pool and catalog services (support/mod.rs): every REST route (the
//! table of support/routes.rs) with no token, bad tokens, a revoked token, a member
//! token and an admin token; project B (a Keystone member of another project) against project A's
//! resources on every route and websocket action; the websocket
//! `authenticate` action. Skipped with a note when Keystone is not there
//! (fails instead when `CI` is set).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::isolation::{check_rest, check_ws, normalize_answer, populate, send_row, Stranger};
use support::keystone::{keystone, Keystone, Token};
use support::routes::{Ids, ACTIONS, ROUTES};
use support::ws::{close_code, Ws};
use support::{Answer, Harness, CLIENT_ID};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn call(h: &Harness, method: &str, path: &str, body: Option<&str>, token: &str) -> Answer {
    let headers: &[(&str, &str)] = if token.is_empty() {
        &[]
    } else {
        &[("X-Auth-Token", token)]
    };
    h.call(method, path, body, headers).await
}

fn assert_unauthorized(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 401, "{what}: {}", answer.body);
    if answer.body.is_null() {
        // HEAD: no body to check.
        return;
    }
    assert_eq!(answer.body["title"], "Unauthorized", "{what}");
    assert!(answer
        .header("www-authenticate")
        .is_some_and(|uri| uri.starts_with("Keystone uri=")));
}

/// Every route with `token` (empty: none) is refused with 401; ids made up,
/// and the versions document left out (it needs no token).
async fn assert_every_route_refuses(h: &Harness, token: &str) -> usize {
    let ids = Ids::fresh();
    let mut checked = 0;
    for &row in ROUTES.iter().filter(|row| row.1 != "/") {
        let mut headers = vec![("X-Project-ID", h.project.as_str())];
        if !token.is_empty() {
            headers.push(("X-Auth-Token", token));
        }
        let answer = send_row(h, &ids, row, headers).await;
        let (method, path, ..) = row;
        assert_unauthorized(&answer, &format!("{method} {path} with {token:?}"));
        checked += 1;
    }
    checked
}

#[tokio::test]
async fn every_route_needs_a_valid_token() {
    let Some(ks) = keystone() else { return };
    let h = ks.harness(60_000).await;
    let mut checked = 0;
    for token in ["", "gAAAAABnot-a-token", "bad token"] {
        checked += assert_every_route_refuses(&h, token).await;
    }
    println!("{checked} refusals checked");
    // Admin routes: the role comes from the token (an X-Roles header counts for nothing).
    let member = ks.token("zaqar-member-a", "zaqar-a").await;
    for path in ["/v2/health", "/v2/pools", "/v2/flavors"] {
        let headers = [
            ("X-Auth-Token", member.token.as_str()),
            ("X-Roles", "admin"),
        ];
        let answer = h.call("GET", path, None, &headers).await;
        answer.assert_error(403, "Not authorized");
    }
    // The versions document needs no token.
    assert_eq!(call(&h, "GET", "/", None, "").await.status, 300);
    // What Keystone answered is counted, and so is its time.
    assert!(
        validations("invalid") >= 1.0,
        "bad tokens counted as invalid"
    );
    assert!(
        validations("valid") >= 1.0,
        "the member token counted as valid"
    );
    assert!(
        metric("zaqar_keystone_request_duration_seconds_count") >= 2.0,
        "Keystone's answers timed"
    );
}

/// A metric of this process's api-nodes, as a scrape reads it (0 when absent).
fn metric(series: &str) -> f64 {
    let mut registry = prometheus_client::registry::Registry::default();
    zaqar_api_node::metrics::register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Token validations with `result` so far, in this process (tests share the count).
fn validations(result: &str) -> f64 {
    metric(&format!(
        "zaqar_keystone_validations_total{{result=\"{result}\"}}"
    ))
}

#[tokio::test]
async fn a_revoked_token_is_refused_on_every_route_once_its_cache_entry_ends() {
    let Some(ks) = keystone() else { return };
    let ttl = Duration::from_millis(1000);
    let h = ks.harness(ttl.as_millis() as u64).await;
    let member = ks.token("zaqar-member-a", "zaqar-a").await;
    let answer = call(&h, "GET", "/v2/queues", None, &member.token).await;
    assert_eq!(answer.status, 200);
    ks.revoke(&member.token).await;
    let answer = call(&h, "GET", "/v2/queues", None, &member.token).await;
    assert_eq!(answer.status, 200, "still cached");
    assert!(validations("cached") >= 1.0, "the cached answer counted");
    tokio::time::sleep(ttl + Duration::from_millis(200)).await;
    let checked = assert_every_route_refuses(&h, &member.token).await;
    println!("revoked token refused on {checked} routes");
}

/// Runs every row, in the table's order, as the owner of the world
/// `populate` made, with `extra` headers; the answers normalized.
async fn owner_answers(h: &Harness, extra: &[(&str, &str)]) -> Vec<Value> {
    let ids = populate(h).await;
    let mut answers = Vec::new();
    for &row in ROUTES {
        let answer = send_row(h, &ids, row, extra.to_vec()).await;
        answers.push(without_timings(normalize_answer(&ids, &h.project, &answer)));
    }
    answers
}

/// `value` with its fractional numbers (timings, as in health reports) masked.
fn without_timings(value: Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() => json!("*"),
        Value::Array(list) => list.into_iter().map(without_timings).collect(),
        Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| (k, without_timings(v)))
            .collect(),
        other => other,
    }
}

/// Every route as the owner with a Keystone token of `user`, and the same
/// with noauth headers naming `role`: the same answers.
async fn answers_as_noauth_does(user: &str, role: &'static str) -> Vec<Value> {
    let ks = keystone().unwrap();
    let mut h = ks.harness(60_000).await;
    let token = ks.token(user, "zaqar-a").await;
    h.project = token.project;
    h.token = Some(token.token);
    let keystone = owner_answers(&h, &[]).await;
    let noauth = owner_answers(&Harness::start().await, &[("X-Roles", role)]).await;
    for ((&(method, path, ..), keystone), noauth) in ROUTES.iter().zip(&keystone).zip(&noauth) {
        assert_eq!(keystone, noauth, "{method} {path} as {user}");
    }
    keystone
}

fn admin_only(path: &str) -> bool {
    ["/v2/health", "/v2/pools", "/v2/flavors"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

#[tokio::test]
async fn a_member_token_works_on_every_route_but_the_admin_ones() {
    if keystone().is_none() {
        return;
    }
    let answers = answers_as_noauth_does("zaqar-member-a", "member").await;
    for (&(method, path, ..), answer) in ROUTES.iter().zip(&answers) {
        let status = &answer["status"];
        assert_ne!(status, 401, "{method} {path}: {answer}");
        if admin_only(path) {
            assert_eq!(status, 403, "{method} {path}: {answer}");
            assert_eq!(answer["body"]["title"], "Not authorized", "{method} {path}");
        } else {
            assert_ne!(status, 403, "{method} {path}: {answer}");
        }
    }
    println!("member token: {} routes", answers.len());
}

#[tokio::test]
async fn an_admin_token_works_on_every_route() {
    if keystone().is_none() {
        return;
    }
    let answers = answers_as_noauth_does("zaqar-admin", "admin").await;
    for (&(method, path, ..), answer) in ROUTES.iter().zip(&answers) {
        let status = &answer["status"];
        assert_ne!(status, 401, "{method} {path}: {answer}");
        // The one 403 an admin gets is Zaqar's refusal to delete a pool in use.
        let refused = status == 403 && answer["body"]["title"] != "Unable to delete";
        assert!(!refused, "{method} {path}: {answer}");
    }
    println!("admin token: {} routes", answers.len());
}

/// A websocket speaking for `token`'s project; `authenticate`d if `bind`.
async fn ws_of(h: &Harness, token: &Token, bind: bool) -> Ws {
    let headers = json!({"Client-ID": CLIENT_ID, "X-Project-ID": token.project,
        "X-Auth-Token": token.token});
    let mut ws = Ws::with_headers(h, headers).await;
    if bind {
        ws.ok("authenticate", json!({}), 200).await;
    }
    ws
}

/// Every websocket action on A's world, in the table's order, as `user`:
/// statuses and bodies before `authenticate` (but for itself) and after it.
async fn ws_answers(ks: &Keystone, user: &str) -> (Vec<(u64, Value)>, Vec<(u64, Value)>) {
    let mut h = ks.harness(60_000).await;
    let token = ks.token(user, "zaqar-a").await;
    h.project = token.project.clone();
    h.token = Some(token.token.clone());
    let ids = populate(&h).await;
    let mut unbound = ws_of(&h, &token, false).await;
    let mut bound = ws_of(&h, &token, true).await;
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for &(action, body) in ACTIONS {
        let body: Value = serde_json::from_str(&ids.fill(body)).unwrap();
        if action != "authenticate" {
            before.push(unbound.call(action, body.clone()).await);
        }
        after.push(bound.call(action, body).await);
    }
    (before, after)
}

fn admin_action(action: &str) -> bool {
    action == "check_node_health" || action.starts_with("pool_") || action.starts_with("flavor_")
}

#[tokio::test]
async fn every_websocket_action_needs_authenticate_and_the_right_role() {
    let Some(ks) = keystone() else { return };
    let (member_before, member) = ws_answers(&ks, "zaqar-member-a").await;
    let (admin_before, admin) = ws_answers(&ks, "zaqar-admin").await;
    let unbound = ACTIONS.iter().filter(|(a, _)| *a != "authenticate");
    for ((&(action, _), member), admin) in unbound.zip(&member_before).zip(&admin_before) {
        // Zaqar validates the request's shape first, then asks for authenticate.
        if member.0 != 400 {
            assert_eq!(
                member,
                &(403, json!({"error": "Not authentified."})),
                "{action} before authenticate"
            );
        }
        assert_eq!(member, admin, "{action} before authenticate");
    }
    for ((&(action, _), member), admin) in ACTIONS.iter().zip(&member).zip(&admin) {
        assert_ne!(admin.0, 401, "{action} as admin: {}", admin.1);
        assert_ne!(member.0, 401, "{action} as member: {}", member.1);
        if admin_action(action) {
            assert_eq!(member.0, 403, "{action} as member: {}", member.1);
            assert_ne!(admin.1, member.1, "{action}: admin refused as a member is");
        } else {
            assert_ne!(member.0, 403, "{action} as member: {}", member.1);
            assert_ne!(admin.0, 403, "{action} as admin: {}", admin.1);
        }
    }
    println!("websocket: {} actions as member and admin", ACTIONS.len());
}

/// An api-node with project A's world, made with a member token of A, and a
/// member of project B as the stranger.
async fn two_projects(ks: &Keystone) -> (Harness, Ids, Stranger) {
    let mut h = ks.harness(60_000).await;
    let a = ks.token("zaqar-member-a", "zaqar-a").await;
    let b = ks.token("zaqar-member-b", "zaqar-b").await;
    assert_ne!(a.project, b.project);
    h.project = a.project;
    h.token = Some(a.token);
    let ids = populate(&h).await;
    let stranger = Stranger::Keystone {
        token: b.token,
        project: b.project,
        claimed_project: h.project.clone(),
    };
    (h, ids, stranger)
}

#[tokio::test]
async fn project_b_cannot_see_or_touch_project_a_over_rest() {
    let Some(ks) = keystone() else { return };
    let (h, ids, b) = two_projects(&ks).await;
    let count = check_rest(&h, &ids, ROUTES.iter().copied(), &b).await;
    println!("keystone rest isolation: {count} routes");
}

#[tokio::test]
async fn project_b_cannot_see_or_touch_project_a_over_websocket() {
    let Some(ks) = keystone() else { return };
    let (h, ids, b) = two_projects(&ks).await;
    let count = check_ws(&h, &ids, ACTIONS.iter().copied(), &b).await;
    println!("keystone websocket isolation: {count} actions");
}

#[tokio::test]
async fn a_project_sees_only_its_own_queues() {
    let Some(ks) = keystone() else { return };
    let h = ks.harness(60_000).await;
    let a = ks.token("zaqar-member-a", "zaqar-a").await;
    let b = ks.token("zaqar-member-b", "zaqar-b").await;
    assert_ne!(a.project, b.project);
    let queue = format!("iso-{}", uuid::Uuid::new_v4().simple());
    let path = format!("/v2/queues/{queue}");
    assert_eq!(call(&h, "PUT", &path, None, &a.token).await.status, 201);
    let posted = call(
        &h,
        "POST",
        &format!("{path}/messages"),
        Some(r#"{"messages": [{"body": "secret"}]}"#),
        &a.token,
    )
    .await;
    let href = posted.body["resources"][0].as_str().unwrap().to_string();

    // B, even naming A's project in X-Project-ID, acts in its own project.
    for headers in [
        vec![("X-Auth-Token", b.token.as_str())],
        vec![("X-Auth-Token", &b.token), ("X-Project-ID", &a.project)],
    ] {
        let listed = h.call("GET", "/v2/queues", None, &headers).await;
        assert!(!listed.body.to_string().contains(&queue), "{}", listed.body);
        assert_eq!(h.call("GET", &href, None, &headers).await.status, 404);
        let messages = format!("{path}/messages?echo=true");
        let answer = h.call("GET", &messages, None, &headers).await;
        assert!(
            !answer.body.to_string().contains("secret"),
            "{}",
            answer.body
        );
    }
    assert_eq!(call(&h, "GET", &href, None, &a.token).await.status, 200);
    // The queue is A's: it was placed under A's project id, not a header's.
    assert!(h.catalog.lookup(&a.project, &queue).await.is_some());
    assert!(h.catalog.lookup(&b.project, &queue).await.is_none());
}

#[tokio::test]
async fn websocket_authenticate_binds_a_token_to_the_connection() {
    let Some(ks) = keystone() else { return };
    let h = ks.harness(1_000).await;
    let a = ks.token("zaqar-member-a", "zaqar-a").await;
    let headers = json!({"Client-ID": CLIENT_ID, "X-Project-ID": a.project});
    let mut ws = Ws::with_headers(&h, headers.clone()).await;
    let (status, body) = ws.call("queue_list", json!({})).await;
    assert_eq!((status, body), (403, json!({"error": "Not authentified."})));

    ws.headers["X-Auth-Token"] = json!("gAAAAABnot-a-token");
    let (status, body) = ws.call("authenticate", json!({})).await;
    assert_eq!(
        (status, body),
        (401, json!({"error": "Authentication failed."}))
    );

    ws.headers["X-Auth-Token"] = json!(a.token);
    let body = ws.ok("authenticate", json!({}), 200).await;
    assert_eq!(body, json!({"message": "Authentified."}));
    ws.headers = headers;
    ws.ok("queue_create", json!({"queue_name": "wsq"}), 201)
        .await;
    ws.ok("queue_list", json!({}), 200).await;
    ws.ok("check_node_health", json!({}), 403).await;
    ws.headers["X-Project-ID"] = json!("someone-else");
    let (status, body) = ws.call("queue_list", json!({})).await;
    assert_eq!(
        (status, body),
        (403, json!({"error": "Not authenticated."}))
    );

    // Revoked: once the cache entry (1 s) ends, the connection is closed.
    ws.headers["X-Project-ID"] = json!(a.project);
    ks.revoke(&a.token).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (status, _) = ws.call("queue_list", json!({})).await;
    assert_eq!(status, 401);
    assert_eq!(
        close_code(&mut ws.socket).await,
        Some(CloseCode::Library(4003))
    );
}

#[tokio::test]
async fn websocket_admin_actions_need_the_admin_role() {
    let Some(ks) = keystone() else { return };
    let h = ks.harness(60_000).await;
    let admin = ks.token("zaqar-admin", "zaqar-a").await;
    let headers = json!({"Client-ID": CLIENT_ID, "X-Project-ID": admin.project,
        "X-Auth-Token": admin.token});
    let mut ws = Ws::with_headers(&h, headers).await;
    ws.ok("authenticate", json!({}), 200).await;
    let report = ws.ok("check_node_health", json!({}), 200).await;
    assert_eq!(report["catalog_reachable"], true);
}
