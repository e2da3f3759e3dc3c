//! The machinery of the tenancy tests: project A's world (a queue, topic,
//! messages, a claim and subscriptions carrying a secret), a snapshot of what A
//! sees, and the checks that another project -- a fresh noauth project or a
//! Keystone-authenticated one -- learns nothing and changes nothing of A's
//! through any REST route or WebSocket action.

use serde_json::{json, Value};

use super::routes::{Ids, Route, SECRET};
use super::ws::Ws;
use super::{Answer, Harness};

/// Project A's world: a queue with metadata, three messages of which two are
/// claimed, and a subscription.
pub async fn populate(a: &Harness) -> Ids {
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
    populate_topic(a, &queue).await;
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

/// A topic of the queue's name, with A's secret in its metadata, a message
/// and a subscription.
pub async fn populate_topic(a: &Harness, topic: &str) {
    let path = format!("/v2/topics/{topic}");
    let put = a
        .send("PUT", &path, &json!({"secret": SECRET}).to_string())
        .await;
    assert_eq!(put.status, 201, "{}", put.body);
    let message = json!({"messages": [{"body": SECRET, "ttl": 3600}]}).to_string();
    let posted = a.send("POST", &format!("{path}/messages"), &message).await;
    assert_eq!(posted.status, 201, "{}", posted.body);
    let subscriber = json!({"subscriber": format!("http://{SECRET}.example/t"), "ttl": 3600});
    let subscribed = a
        .send(
            "POST",
            &format!("{path}/subscriptions"),
            &subscriber.to_string(),
        )
        .await;
    assert_eq!(subscribed.status, 201, "{}", subscribed.body);
}

/// What project A sees of its world, without ages and expiry times.
pub async fn snapshot(a: &Harness, ids: &Ids) -> Value {
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
    let topic = a.get(&format!("/v2/topics/{q}")).await;
    let topic_messages = a.get(&format!("/v2/topics/{q}/messages?echo=true")).await;
    let topic_subscriptions = a.get(&format!("/v2/topics/{q}/subscriptions")).await;
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
        "topic": [topic.status.as_u16(), topic.body],
        "topic_messages": [topic_messages.status.as_u16(), message_view(&topic_messages.body["messages"])],
        "topic_subscriptions": [topic_subscriptions.body["subscriptions"][0]["subscriber"].clone()],
    })
}

/// An answer made comparable across projects: ids and the project replaced
/// by placeholders, generated values (anything with a digit left) masked.
pub fn normalize(ids: &Ids, project: &str, value: &Value) -> Value {
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

/// Who plays "another project" in the checks.
pub enum Stranger {
    /// noauth: a brand-new project (`X-Project-ID`) for every request, with these roles.
    Noauth(&'static str),
    /// Keystone: a member token of `project`. Over REST it also claims the
    /// admin role and `claimed_project` (A's) in headers, which must count for
    /// nothing. Its project is emptied after every request, so that each
    /// starts as a new one.
    Keystone {
        token: String,
        project: String,
        claimed_project: String,
    },
}

impl Stranger {
    /// The project of the next request, and its identity headers (over REST
    /// or the websocket, which refuses a project other than the token's).
    fn identity(&self, rest: bool) -> (String, Vec<(&'static str, String)>) {
        let client = ("Client-ID", uuid::Uuid::new_v4().to_string());
        match self {
            Stranger::Noauth(roles) => {
                let project = new_project();
                let headers = vec![
                    ("X-Project-ID", project.clone()),
                    client,
                    ("X-Roles", roles.to_string()),
                ];
                (project, headers)
            }
            Stranger::Keystone {
                token,
                project,
                claimed_project,
            } => {
                let claimed = if rest { claimed_project } else { project };
                let headers = vec![
                    ("X-Project-ID", claimed.clone()),
                    client,
                    ("X-Auth-Token", token.clone()),
                    ("X-Roles", "admin".to_string()),
                ];
                (project.clone(), headers)
            }
        }
    }

    /// Deletes what a Keystone stranger created: the queues and topics it
    /// lists and those named by `ids`, with their messages and subscriptions.
    async fn clear(&self, h: &Harness, ids: &Ids) {
        let Stranger::Keystone { token, .. } = self else {
            return;
        };
        let auth = [("X-Auth-Token", token.as_str())];
        for kind in ["queues", "topics"] {
            let listed = h.call("GET", &format!("/v2/{kind}"), None, &auth).await;
            let mut names: Vec<String> = listed.body[kind]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|q| q["name"].as_str().map(str::to_string))
                .collect();
            names.push(ids.queue.clone());
            for name in names {
                let path = format!("/v2/{kind}/{name}");
                let purge = r#"{"resource_types": ["messages", "subscriptions"]}"#;
                let purged = h
                    .call("POST", &format!("{path}/purge"), Some(purge), &auth)
                    .await;
                assert!(purged.status.as_u16() < 500, "{path}: {}", purged.body);
                let deleted = h.call("DELETE", &path, None, &auth).await;
                assert!(deleted.status.as_u16() < 500, "{path}: {}", deleted.body);
            }
        }
    }
}

/// A REST row as the stranger, normalized.
pub async fn rest_as_stranger(h: &Harness, ids: &Ids, row: Route, stranger: &Stranger) -> Value {
    let (method, path, ..) = row;
    let (project, identity) = stranger.identity(true);
    let headers: Vec<(&str, &str)> = identity.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let answer = send_row(h, ids, row, headers).await;
    stranger.clear(h, ids).await;
    assert!(
        !answer.body.to_string().contains(SECRET),
        "{method} {path} leaks A's data: {}",
        answer.body
    );
    normalize_answer(ids, &project, &answer)
}

/// Sends a REST row filled with `ids`, with `headers` (and the row's content type).
pub async fn send_row(
    h: &Harness,
    ids: &Ids,
    row: Route,
    mut headers: Vec<(&str, &str)>,
) -> Answer {
    let (method, path, body, content_type) = row;
    if let Some(content_type) = content_type {
        headers.push(("Content-Type", content_type));
    }
    let body = body.map(|b| ids.fill(b));
    h.call(method, &ids.fill(path), body.as_deref(), &headers)
        .await
}

/// Status, body and location of `answer`, normalized for `project`.
pub fn normalize_answer(ids: &Ids, project: &str, answer: &Answer) -> Value {
    let location = answer
        .header("location")
        .map(|l| normalize(ids, project, &json!(l)));
    json!({
        "status": answer.status.as_u16(),
        "body": normalize(ids, project, &answer.body),
        "location": location,
    })
}

/// A WebSocket row as the stranger (after `authenticate` with its token when
/// it has one), normalized.
pub async fn ws_as_stranger(
    h: &Harness,
    ids: &Ids,
    row: (&str, &str),
    stranger: &Stranger,
) -> Value {
    let (action, body) = row;
    let (project, identity) = stranger.identity(false);
    let headers: serde_json::Map<String, Value> = identity
        .into_iter()
        .map(|(n, v)| (n.to_string(), json!(v)))
        .collect();
    let mut ws = Ws::with_headers(h, Value::Object(headers)).await;
    if let Stranger::Keystone { .. } = stranger {
        ws.ok("authenticate", json!({}), 200).await;
    }
    let body: Value = serde_json::from_str(&ids.fill(body)).unwrap();
    let (status, reply) = ws.call(action, body).await;
    stranger.clear(h, ids).await;
    let text = reply.to_string();
    assert!(!text.contains(SECRET), "{action} leaks A's data: {reply}");
    json!({"status": status, "body": normalize(ids, &project, &reply)})
}

/// A row of either table.
#[derive(Clone, Copy)]
enum Row {
    Rest(Route),
    Ws((&'static str, &'static str)),
}

impl Row {
    async fn as_stranger(self, h: &Harness, ids: &Ids, stranger: &Stranger) -> Value {
        match self {
            Row::Rest(row) => rest_as_stranger(h, ids, row, stranger).await,
            Row::Ws(row) => ws_as_stranger(h, ids, row, stranger).await,
        }
    }

    fn name(self) -> String {
        match self {
            Row::Rest((method, path, ..)) => format!("{method} {path}"),
            Row::Ws((action, body)) => format!("{action} {body}"),
        }
    }
}

/// Runs every row twice as the stranger, with A's ids and with ids that
/// never existed: the answers must be the same, below 500, and leave A's
/// state as it was. Returns the number of rows.
async fn check(
    a: &Harness,
    ids: &Ids,
    rows: impl Iterator<Item = Row>,
    stranger: &Stranger,
) -> usize {
    let before = snapshot(a, ids).await;
    let mut count = 0;
    for row in rows {
        let replayed = row.as_stranger(a, ids, stranger).await;
        let guessed = row.as_stranger(a, &Ids::fresh(), stranger).await;
        let name = row.name();
        assert_eq!(
            replayed, guessed,
            "{name}: A's ids get another answer than ids that never existed"
        );
        assert!(
            replayed["status"].as_u64().unwrap() < 500,
            "{name}: {replayed}"
        );
        assert_eq!(
            snapshot(a, ids).await,
            before,
            "{name} changed project A's state"
        );
        count += 1;
    }
    count
}

/// [`check`] over REST routes.
pub async fn check_rest(
    a: &Harness,
    ids: &Ids,
    rows: impl IntoIterator<Item = Route>,
    stranger: &Stranger,
) -> usize {
    check(a, ids, rows.into_iter().map(Row::Rest), stranger).await
}

/// [`check`] over WebSocket actions.
pub async fn check_ws(
    a: &Harness,
    ids: &Ids,
    rows: impl IntoIterator<Item = (&'static str, &'static str)>,
    stranger: &Stranger,
) -> usize {
    check(a, ids, rows.into_iter().map(Row::Ws), stranger).await
}
