//! Tenant isolation: for every REST route and every WebSocket action, another
//! project that replays or guesses the ids of project A's queue, messages,
//! claim and subscription learns nothing and changes nothing of A's.
//!
//! Each row of the tables runs twice, each time as a brand-new project: once
//! with A's real names and ids, once with names and ids that never existed.
//! The two answers must be the same (after the ids are replaced by
//! placeholders), no answer may contain A's secret, and A's state must be
//! unchanged after every row.

mod support;

use serde_json::{json, Value};
use support::ws::{Ws, WS_ACTIONS};
use support::{Harness, CLIENT_ID};
use tokio_tungstenite::tungstenite::Message;

/// Appears in everything project A stores; no answer to another project may
/// contain it.
const SECRET: &str = "SECRETA";

const PATCH: &str = "application/openstack-messaging-v2.0-json-patch";

type Route = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);

/// Every REST route: method, path template, body template, content type.
/// Placeholders: `{q}` queue, `{m0}`..`{m2}` messages (`{m0}`, `{m1}` are
/// claimed), `{c}` claim, `{s}` subscription.
const ROUTES: &[Route] = &[
    ("GET", "/", None, None),
    ("GET", "/v2/", None, None),
    ("GET", "/v2/ping", None, None),
    ("HEAD", "/v2/ping", None, None),
    ("GET", "/v2/health", None, None),
    ("GET", "/v2/queues", None, None),
    ("GET", "/v2/queues?detailed=true", None, None),
    ("GET", "/v2/queues?marker={q}&limit=1", None, None),
    ("OPTIONS", "/v2/queues/{q}", None, None),
    ("GET", "/v2/queues/{q}", None, None),
    ("PUT", "/v2/queues/{q}", Some(r#"{"x": 1}"#), None),
    (
        "PATCH",
        "/v2/queues/{q}",
        Some(r#"[{"op": "replace", "path": "/metadata/secret", "value": "b"}]"#),
        Some(PATCH),
    ),
    (
        "PATCH",
        "/v2/queues/{q}",
        Some(r#"[{"op": "add", "path": "/metadata/y", "value": "b"}]"#),
        Some(PATCH),
    ),
    ("DELETE", "/v2/queues/{q}", None, None),
    ("GET", "/v2/queues/{q}/stats", None, None),
    (
        "POST",
        "/v2/queues/{q}/purge",
        Some(r#"{"resource_types": ["messages", "subscriptions"]}"#),
        None,
    ),
    ("POST", "/v2/queues/{q}/purge", Some("{}"), None),
    (
        "POST",
        "/v2/queues/{q}/share",
        Some(r#"{"paths": ["messages"], "methods": ["GET"]}"#),
        None,
    ),
    (
        "GET",
        "/v2/queues/{q}/messages?echo=true&include_claimed=true",
        None,
        None,
    ),
    ("GET", "/v2/queues/{q}/messages", None, None),
    (
        "GET",
        "/v2/queues/{q}/messages?ids={m0},{m1},{m2}",
        None,
        None,
    ),
    (
        "POST",
        "/v2/queues/{q}/messages",
        Some(r#"{"messages": [{"body": 1}]}"#),
        None,
    ),
    (
        "DELETE",
        "/v2/queues/{q}/messages?ids={m0},{m1},{m2}",
        None,
        None,
    ),
    (
        "DELETE",
        "/v2/queues/{q}/messages?ids={m0}&claim_ids={c}",
        None,
        None,
    ),
    ("DELETE", "/v2/queues/{q}/messages?pop=3", None, None),
    ("GET", "/v2/queues/{q}/messages/{m0}", None, None),
    ("GET", "/v2/queues/{q}/messages/{m2}", None, None),
    ("DELETE", "/v2/queues/{q}/messages/{m0}", None, None),
    (
        "DELETE",
        "/v2/queues/{q}/messages/{m0}?claim_id={c}",
        None,
        None,
    ),
    ("DELETE", "/v2/queues/{q}/messages/{m2}", None, None),
    (
        "POST",
        "/v2/queues/{q}/claims",
        Some(r#"{"ttl": 100, "grace": 60}"#),
        None,
    ),
    ("POST", "/v2/queues/{q}/claims?limit=5", Some("{}"), None),
    ("GET", "/v2/queues/{q}/claims/{c}", None, None),
    (
        "PATCH",
        "/v2/queues/{q}/claims/{c}",
        Some(r#"{"ttl": 200}"#),
        None,
    ),
    ("DELETE", "/v2/queues/{q}/claims/{c}", None, None),
    ("GET", "/v2/queues/{q}/subscriptions", None, None),
    (
        "POST",
        "/v2/queues/{q}/subscriptions",
        Some(r#"{"subscriber": "http://b.example/SECRETA", "ttl": 3600}"#),
        None,
    ),
    ("GET", "/v2/queues/{q}/subscriptions/{s}", None, None),
    (
        "PATCH",
        "/v2/queues/{q}/subscriptions/{s}",
        Some(r#"{"ttl": 500, "subscriber": "http://b.example/y"}"#),
        None,
    ),
    ("DELETE", "/v2/queues/{q}/subscriptions/{s}", None, None),
    (
        "PUT",
        "/v2/queues/{q}/subscriptions/{s}/confirm",
        Some(r#"{"confirmed": true}"#),
        None,
    ),
    ("GET", "/v2/pools", None, None),
    ("GET", "/v2/pools/pool-1", None, None),
    ("PATCH", "/v2/pools/pool-1", Some(r#"{"weight": 1}"#), None),
    ("DELETE", "/v2/pools/pool-1", None, None),
    (
        "PUT",
        "/v2/pools/pool-1",
        Some(r#"{"weight": 1, "uri": "http://127.0.0.1:1"}"#),
        None,
    ),
    ("GET", "/v2/flavors", None, None),
    ("GET", "/v2/flavors/f", None, None),
    ("PUT", "/v2/flavors/f", Some(r#"{"pool_list": []}"#), None),
    ("PATCH", "/v2/flavors/f", Some(r#"{"pool_list": []}"#), None),
    ("DELETE", "/v2/flavors/f", None, None),
];

/// Every WebSocket action, with a body template (same placeholders).
const ACTIONS: &[(&str, &str)] = &[
    ("get_home_doc", "{}"),
    ("authenticate", "{}"),
    ("ping_node", "{}"),
    ("check_node_health", "{}"),
    ("queue_list", "{}"),
    ("queue_list", r#"{"detailed": true}"#),
    ("queue_list", r#"{"marker": "{q}", "limit": 1}"#),
    (
        "queue_create",
        r#"{"queue_name": "{q}", "metadata": {"x": 1}}"#,
    ),
    ("queue_get", r#"{"queue_name": "{q}"}"#),
    ("queue_get_stats", r#"{"queue_name": "{q}"}"#),
    (
        "queue_purge",
        r#"{"queue_name": "{q}", "resource_types": ["messages", "subscriptions"]}"#,
    ),
    ("queue_delete", r#"{"queue_name": "{q}"}"#),
    (
        "message_list",
        r#"{"queue_name": "{q}", "echo": true, "include_claimed": true}"#,
    ),
    (
        "message_get",
        r#"{"queue_name": "{q}", "message_id": "{m0}"}"#,
    ),
    (
        "message_get",
        r#"{"queue_name": "{q}", "message_id": "{m2}"}"#,
    ),
    (
        "message_get_many",
        r#"{"queue_name": "{q}", "message_ids": ["{m0}", "{m1}", "{m2}"]}"#,
    ),
    (
        "message_post",
        r#"{"queue_name": "{q}", "messages": [{"body": 1}]}"#,
    ),
    (
        "message_delete",
        r#"{"queue_name": "{q}", "message_id": "{m2}"}"#,
    ),
    (
        "message_delete",
        r#"{"queue_name": "{q}", "message_id": "{m0}", "claim_id": "{c}"}"#,
    ),
    (
        "message_delete_many",
        r#"{"queue_name": "{q}", "message_ids": ["{m0}", "{m1}", "{m2}"]}"#,
    ),
    (
        "message_delete_many",
        r#"{"queue_name": "{q}", "message_ids": ["{m0}"], "claim_ids": ["{c}"]}"#,
    ),
    ("message_delete_many", r#"{"queue_name": "{q}", "pop": 3}"#),
    (
        "claim_create",
        r#"{"queue_name": "{q}", "limit": 5, "ttl": 100, "grace": 60}"#,
    ),
    ("claim_get", r#"{"queue_name": "{q}", "claim_id": "{c}"}"#),
    (
        "claim_update",
        r#"{"queue_name": "{q}", "claim_id": "{c}", "ttl": 200}"#,
    ),
    (
        "claim_delete",
        r#"{"queue_name": "{q}", "claim_id": "{c}"}"#,
    ),
    ("subscription_list", r#"{"queue_name": "{q}"}"#),
    (
        "subscription_create",
        r#"{"queue_name": "{q}", "subscriber": "http://b.example/SECRETA", "ttl": 3600}"#,
    ),
    (
        "subscription_get",
        r#"{"queue_name": "{q}", "subscription_id": "{s}"}"#,
    ),
    (
        "subscription_delete",
        r#"{"queue_name": "{q}", "subscription_id": "{s}"}"#,
    ),
    ("pool_list", r#"{"pool_name": "pool-1"}"#),
    ("pool_get", r#"{"pool_name": "pool-1"}"#),
    (
        "pool_create",
        r#"{"pool_name": "p2", "weight": 1, "uri": "http://127.0.0.1:1"}"#,
    ),
    ("pool_update", r#"{"pool_name": "pool-1", "weight": 1}"#),
    ("pool_delete", r#"{"pool_name": "pool-1"}"#),
    ("flavor_list", "{}"),
    ("flavor_get", r#"{"flavor_name": "f"}"#),
    ("flavor_create", r#"{"flavor_name": "f", "pool_list": []}"#),
    ("flavor_update", r#"{"flavor_name": "f", "pool_list": []}"#),
    ("flavor_delete", r#"{"flavor_name": "f"}"#),
];

/// The names and ids a template can refer to.
struct Ids {
    queue: String,
    messages: Vec<String>,
    claim: String,
    subscription: String,
}

impl Ids {
    /// Names and ids that exist nowhere.
    fn fresh() -> Ids {
        let uuid = || uuid::Uuid::new_v4().to_string();
        Ids {
            queue: format!("aq-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            messages: vec![uuid(), uuid(), uuid()],
            claim: uuid(),
            subscription: uuid(),
        }
    }

    fn pairs(&self) -> Vec<(String, &str)> {
        let mut pairs = vec![
            ("{q}".to_string(), self.queue.as_str()),
            ("{c}".to_string(), self.claim.as_str()),
            ("{s}".to_string(), self.subscription.as_str()),
        ];
        for (i, id) in self.messages.iter().enumerate() {
            pairs.push((format!("{{m{i}}}"), id.as_str()));
        }
        pairs
    }

    fn fill(&self, template: &str) -> String {
        self.pairs()
            .into_iter()
            .fold(template.to_string(), |text, (from, to)| {
                text.replace(&from, to)
            })
    }

    /// The opposite of [`Ids::fill`], for comparing answers.
    fn unfill(&self, text: &str) -> String {
        self.pairs()
            .into_iter()
            .fold(text.to_string(), |text, (to, from)| text.replace(from, &to))
    }
}

/// Project A's world: a queue with metadata, three messages of which two are
/// claimed, and a subscription.
async fn populate(a: &Harness) -> Ids {
    let queue = Ids::fresh().queue;
    let put = a
        .send(
            "PUT",
            &format!("/v2/queues/{queue}"),
            &json!({"secret": SECRET}).to_string(),
        )
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    let messages = a
        .post_messages(
            &queue,
            json!([
                {"body": format!("{SECRET}-0"), "ttl": 3600},
                {"body": format!("{SECRET}-1"), "ttl": 3600},
                {"body": {"k": format!("{SECRET}-2")}, "ttl": 3600}
            ]),
        )
        .await;
    let claim = a
        .send(
            "POST",
            &format!("/v2/queues/{queue}/claims?limit=2"),
            r#"{"ttl": 3000, "grace": 300}"#,
        )
        .await;
    assert_eq!(claim.status, 201, "{}", claim.body);
    let claimed: Vec<&str> = claim.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(claimed, &messages[..2], "{}", claim.body);
    let claim = claim
        .header("location")
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap();
    let subscription = a
        .send(
            "POST",
            &format!("/v2/queues/{queue}/subscriptions"),
            &json!({"subscriber": format!("http://{SECRET}.example/x"), "ttl": 3600, "options": {"s": SECRET}})
                .to_string(),
        )
        .await;
    assert_eq!(subscription.status, 201, "{}", subscription.body);
    Ids {
        queue,
        messages,
        claim: claim.to_string(),
        subscription: subscription.body["subscription_id"]
            .as_str()
            .unwrap()
            .to_string(),
    }
}

/// What project A sees of its world, without ages and expiry times.
async fn snapshot(a: &Harness, ids: &Ids) -> Value {
    let q = &ids.queue;
    let queues = a.get("/v2/queues?detailed=true").await;
    let metadata = a.get(&format!("/v2/queues/{q}")).await;
    let stats = a.get(&format!("/v2/queues/{q}/stats")).await;
    let messages = a
        .get(&format!(
            "/v2/queues/{q}/messages?echo=true&include_claimed=true"
        ))
        .await;
    let claim = a.get(&format!("/v2/queues/{q}/claims/{}", ids.claim)).await;
    let subscription = a
        .get(&format!(
            "/v2/queues/{q}/subscriptions/{}",
            ids.subscription
        ))
        .await;
    let subscriptions = a.get(&format!("/v2/queues/{q}/subscriptions")).await;
    let pick = |v: &Value, keys: &[&str]| -> Value {
        keys.iter().map(|k| (k.to_string(), v[k].clone())).collect()
    };
    let message_view = |list: &Value| -> Value {
        list.as_array()
            .map(|l| {
                l.iter()
                    .map(|m| pick(m, &["id", "body", "ttl", "claim_id"]))
                    .collect()
            })
            .unwrap_or_default()
    };
    json!({
        "queues": [queues.status.as_u16(), queues.body["queues"]],
        "metadata": [metadata.status.as_u16(), metadata.body],
        "stats": [stats.status.as_u16(), pick(&stats.body["messages"], &["claimed", "free", "total"])],
        "messages": [messages.status.as_u16(), message_view(&messages.body["messages"])],
        "claim": [claim.status.as_u16(), claim.body["ttl"], message_view(&claim.body["messages"])],
        "subscription": [subscription.status.as_u16(), pick(&subscription.body, &["id", "subscriber", "source", "ttl", "options"])],
        "subscriptions": [subscriptions.status.as_u16(), subscriptions.body["subscriptions"].as_array().map(|l| l.len())],
    })
}

/// An answer made comparable across projects: ids and the project replaced
/// by placeholders, generated values (anything with a digit left) masked.
fn normalize(ids: &Ids, project: &str, value: &Value) -> Value {
    match value {
        Value::String(s) => {
            let s = ids.unfill(s).replace(project, "{p}");
            if s.chars().any(|c| c.is_ascii_digit()) {
                Value::String("*".into())
            } else {
                Value::String(s)
            }
        }
        Value::Array(list) => list.iter().map(|v| normalize(ids, project, v)).collect(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (ids.unfill(k), normalize(ids, project, v)))
            .collect(),
        other => other.clone(),
    }
}

fn new_project() -> String {
    format!("project-{}", uuid::Uuid::new_v4().simple())
}

/// A REST row as a fresh project, normalized.
async fn rest_as_stranger(h: &Harness, ids: &Ids, row: Route, roles: &str) -> Value {
    let (method, path, body, content_type) = row;
    let project = new_project();
    let client = uuid::Uuid::new_v4().to_string();
    let mut headers = vec![
        ("X-Project-ID", project.as_str()),
        ("Client-ID", client.as_str()),
        ("X-Roles", roles),
    ];
    if let Some(content_type) = content_type {
        headers.push(("Content-Type", content_type));
    }
    let body = body.map(|b| ids.fill(b));
    let answer = h
        .call(method, &ids.fill(path), body.as_deref(), &headers)
        .await;
    assert!(
        !answer.body.to_string().contains(SECRET),
        "{method} {path} leaks A's data: {}",
        answer.body
    );
    let location = answer
        .header("location")
        .map(|l| normalize(ids, &project, &json!(l)));
    json!({
        "status": answer.status.as_u16(),
        "body": normalize(ids, &project, &answer.body),
        "location": location,
    })
}

/// A WebSocket row as a fresh project, normalized.
async fn ws_as_stranger(h: &Harness, ids: &Ids, row: (&str, &str), roles: &str) -> Value {
    let (action, body) = row;
    let project = new_project();
    let mut ws = Ws::with_headers(
        h,
        json!({"Client-ID": uuid::Uuid::new_v4().to_string(), "X-Project-ID": project, "X-Roles": roles}),
    )
    .await;
    let body: Value = serde_json::from_str(&ids.fill(body)).unwrap();
    let (status, reply) = ws.call(action, body).await;
    let text = reply.to_string();
    assert!(!text.contains(SECRET), "{action} leaks A's data: {reply}");
    json!({"status": status, "body": normalize(ids, &project, &reply)})
}

#[tokio::test]
async fn other_projects_cannot_see_or_touch_a_projects_resources_over_rest() {
    let a = Harness::start().await;
    let ids = populate(&a).await;
    let before = snapshot(&a, &ids).await;
    assert_eq!(before["messages"][1].as_array().unwrap().len(), 3);
    assert_eq!(before["claim"][0], 200);
    for &row in ROUTES {
        let replayed = rest_as_stranger(&a, &ids, row, "member").await;
        let guessed = rest_as_stranger(&a, &Ids::fresh(), row, "member").await;
        let (method, path, ..) = row;
        assert_eq!(
            replayed, guessed,
            "{method} {path}: A's ids get another answer than ids that never existed"
        );
        assert!(
            replayed["status"].as_u64().unwrap() < 500,
            "{method} {path}: {replayed}"
        );
        assert_eq!(
            snapshot(&a, &ids).await,
            before,
            "{method} {path} changed project A's state"
        );
    }
    println!("rest isolation: {} routes", ROUTES.len());
    // The claim still works for A.
    let renewed = a
        .send(
            "PATCH",
            &format!("/v2/queues/{}/claims/{}", ids.queue, ids.claim),
            r#"{"ttl": 600}"#,
        )
        .await;
    assert_eq!(renewed.status, 204, "{}", renewed.body);
}

#[tokio::test]
async fn other_projects_cannot_see_or_touch_a_projects_resources_over_websocket() {
    let a = Harness::start().await;
    let ids = populate(&a).await;
    let before = snapshot(&a, &ids).await;
    for &row in ACTIONS {
        let replayed = ws_as_stranger(&a, &ids, row, "member").await;
        let guessed = ws_as_stranger(&a, &Ids::fresh(), row, "member").await;
        let (action, body) = row;
        assert_eq!(
            replayed, guessed,
            "{action} {body}: A's ids get another answer than ids that never existed"
        );
        assert!(
            replayed["status"].as_u64().unwrap() < 500,
            "{action}: {replayed}"
        );
        assert_eq!(
            snapshot(&a, &ids).await,
            before,
            "{action} {body} changed project A's state"
        );
    }
    println!("websocket isolation: {} actions", ACTIONS.len());
    // A itself still sees everything over the websocket.
    let mut ws = Ws::connect(&a).await;
    let claim = ws
        .ok(
            "claim_get",
            json!({"queue_name": ids.queue, "claim_id": ids.claim}),
            200,
        )
        .await;
    assert_eq!(claim["messages"].as_array().unwrap().len(), 2);
    let reply = ws
        .raw(Message::text(
            json!({"action": "subscription_get", "headers": {"Client-ID": CLIENT_ID, "X-Project-ID": a.project},
                   "body": {"queue_name": ids.queue, "subscription_id": ids.subscription}})
            .to_string(),
        ))
        .await;
    assert_eq!(reply["headers"]["status"], 200, "{reply}");
}

/// The REST table has a row for every method of every resource the home
/// document advertises (methods as the server's `Allow` answers list them).
#[tokio::test]
async fn the_route_table_covers_every_advertised_route_and_method() {
    let a = Harness::start().await;
    let ids = populate(&a).await;
    let home = a.get("/v2/").await;
    let mut templates: Vec<String> = home.body["resources"]
        .as_object()
        .unwrap()
        .values()
        .map(|r| {
            let href = r["href-template"].as_str().or(r["href"].as_str()).unwrap();
            href.split("{?").next().unwrap().to_string()
        })
        .collect();
    templates.push("/v2/queues/{q}/subscriptions/{s}/confirm".into());
    templates.sort();
    templates.dedup();
    assert!(templates.len() > 15, "{templates:?}");
    let mut checked = 0;
    for template in templates {
        let template = template
            .replace("{queue_name}", "{q}")
            .replace("{message_id}", "{m0}")
            .replace("{claim_id}", "{c}")
            .replace("{subscriptions_id}", "{s}")
            .replace("{pool_name}", "pool-1")
            .replace("{flavor_name}", "f");
        let options = a.call("OPTIONS", &ids.fill(&template), None, &[]).await;
        let allow = options.header("allow").unwrap_or_default().to_string();
        assert!(!allow.is_empty(), "{template}: no Allow header");
        for method in allow.split(", ").filter(|m| *m != "OPTIONS") {
            assert!(
                ROUTES
                    .iter()
                    .any(|r| r.0 == method && r.1.split('?').next() == Some(template.as_str())),
                "no row for {method} {template}"
            );
            checked += 1;
        }
    }
    println!("route table checked against {checked} advertised methods");
}

/// The WebSocket table names every action (an unknown one is refused).
#[tokio::test]
async fn the_action_table_covers_every_action() {
    let a = Harness::start().await;
    let mut ws = Ws::connect(&a).await;
    let (status, body) = ws.call("no_such_action", json!({})).await;
    assert_eq!(status, 400, "{body}");
    for action in WS_ACTIONS {
        assert!(ACTIONS.iter().any(|(a, _)| a == action), "{action}");
    }
    // And the table names nothing the server does not know.
    for (action, _) in ACTIONS {
        assert!(WS_ACTIONS.contains(action), "{action}");
    }
}

/// Projects whose ids differ from A's by case, a prefix or a suffix are other
/// projects: they see none of A's queues, over REST or the websocket.
#[tokio::test]
async fn near_miss_project_ids_are_other_projects() {
    let a = Harness::start().await;
    let ids = populate(&a).await;
    let before = snapshot(&a, &ids).await;
    let p = a.project.clone();
    let near = [
        p.to_uppercase(),
        p[..p.len() - 1].to_string(),
        format!("{p}0"),
        format!("0{p}"),
        format!("{p}/"),
        format!("{p}*"),
        format!("{p}{}", ids.queue),
    ];
    let q = &ids.queue;
    for project in &near {
        let as_near = [("X-Project-ID", project.as_str())];
        let listed = a.call("GET", "/v2/queues", None, &as_near).await;
        assert_eq!(listed.status, 200, "{project}: {}", listed.body);
        assert_eq!(listed.body["queues"], json!([]), "{project}");
        let stats = a
            .call("GET", &format!("/v2/queues/{q}/stats"), None, &as_near)
            .await;
        assert_eq!(
            stats.body["messages"]["total"], 0,
            "{project}: {}",
            stats.body
        );
        let message = a
            .call(
                "GET",
                &format!("/v2/queues/{q}/messages/{}", ids.messages[2]),
                None,
                &as_near,
            )
            .await;
        assert_eq!(message.status, 404, "{project}: {}", message.body);
        let mut ws =
            Ws::with_headers(&a, json!({"Client-ID": CLIENT_ID, "X-Project-ID": project})).await;
        let (status, claim) = ws
            .call("claim_get", json!({"queue_name": q, "claim_id": ids.claim}))
            .await;
        assert_eq!(status, 404, "{project}: {claim}");
        let (_, subscriptions) = ws.call("subscription_list", json!({"queue_name": q})).await;
        assert!(
            !subscriptions.to_string().contains(SECRET),
            "{project}: {subscriptions}"
        );
        let queues = ws.ok("queue_list", json!({}), 200).await;
        assert_eq!(queues["queues"], json!([]), "{project}");
    }
    assert_eq!(snapshot(&a, &ids).await, before);
}

/// The admin role is about pools and flavors: it opens no other project's
/// queues (every queue-scoped route and action, as an admin of another project).
#[tokio::test]
async fn an_admin_of_another_project_sees_nothing_either() {
    let a = Harness::start().await;
    let ids = populate(&a).await;
    let before = snapshot(&a, &ids).await;
    let queue_scoped = |path: &str| path.starts_with("/v2/queues");
    let mut cases = 0;
    for &row in ROUTES.iter().filter(|r| queue_scoped(r.1)) {
        let replayed = rest_as_stranger(&a, &ids, row, "admin").await;
        let guessed = rest_as_stranger(&a, &Ids::fresh(), row, "admin").await;
        assert_eq!(replayed, guessed, "{} {} as admin", row.0, row.1);
        assert_eq!(
            snapshot(&a, &ids).await,
            before,
            "{} {} as admin",
            row.0,
            row.1
        );
        cases += 1;
    }
    for &row in ACTIONS.iter().filter(|r| {
        r.0.starts_with("queue_")
            || r.0.starts_with("message_")
            || r.0.starts_with("claim_")
            || r.0.starts_with("subscription_")
    }) {
        let replayed = ws_as_stranger(&a, &ids, row, "admin").await;
        let guessed = ws_as_stranger(&a, &Ids::fresh(), row, "admin").await;
        assert_eq!(replayed, guessed, "{} as admin", row.0);
        assert_eq!(snapshot(&a, &ids).await, before, "{} as admin", row.0);
        cases += 1;
    }
    println!("admin isolation: {cases} routes and actions");
    assert!(cases > 60);
}
