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

use serde_json::json;
use support::isolation::{check_rest, check_ws, populate, snapshot, Stranger};
use support::routes::{ACTIONS, ROUTES, SECRET};
use support::ws::{Ws, WS_ACTIONS};
use support::{Harness, CLIENT_ID};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn other_projects_cannot_see_or_touch_a_projects_resources_over_rest() {
    let a = Harness::start().await;
    let ids = populate(&a).await;
    let before = snapshot(&a, &ids).await;
    assert_eq!(before["messages"][1].as_array().unwrap().len(), 3);
    assert_eq!(before["claim"][0], 200);
    let count = check_rest(
        &a,
        &ids,
        ROUTES.iter().copied(),
        &Stranger::Noauth("member"),
    )
    .await;
    assert_eq!(count, ROUTES.len());
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
    let count = check_ws(
        &a,
        &ids,
        ACTIONS.iter().copied(),
        &Stranger::Noauth("member"),
    )
    .await;
    assert_eq!(count, ACTIONS.len());
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
    let admin = Stranger::Noauth("admin");
    let tenant_scoped = |r: &&_| {
        let (_, path, ..): &support::routes::Route = r;
        path.starts_with("/v2/queues") || path.starts_with("/v2/topics")
    };
    let rows = ROUTES.iter().filter(tenant_scoped).copied();
    let mut cases = check_rest(&a, &ids, rows, &admin).await;
    let actions = ACTIONS.iter().copied().filter(|(action, _)| {
        ["queue_", "message_", "claim_", "subscription_"]
            .iter()
            .any(|prefix| action.starts_with(prefix))
    });
    cases += check_ws(&a, &ids, actions, &admin).await;
    println!("admin isolation: {cases} routes and actions");
    assert!(cases > 60);
}
