//! The route and action tables of the tenancy tests: every REST route and
//! every WebSocket action, as templates over the names and ids of project A's
//! resources (shared by tests/isolation.rs and tests/keystone.rs).

/// Appears in everything project A stores; no answer to another project may
/// contain it.
pub const SECRET: &str = "SECRETA";

pub const PATCH: &str = "application/openstack-messaging-v2.0-json-patch";

pub type Route = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
);

/// Every REST route: method, path template, body template, content type.
/// Placeholders: `{q}` queue, `{m0}`..`{m2}` messages (`{m0}`, `{m1}` are
/// claimed), `{c}` claim, `{s}` subscription.
pub const ROUTES: &[Route] = &[
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
    ("GET", "/v2/topics", None, None),
    ("GET", "/v2/topics?detailed=true", None, None),
    ("GET", "/v2/topics/{q}", None, None),
    ("PUT", "/v2/topics/{q}", Some(r#"{"x": 1}"#), None),
    (
        "PATCH",
        "/v2/topics/{q}",
        Some(r#"[{"op": "replace", "path": "/metadata/secret", "value": "b"}]"#),
        Some(PATCH),
    ),
    ("DELETE", "/v2/topics/{q}", None, None),
    ("GET", "/v2/topics/{q}/stats", None, None),
    ("POST", "/v2/topics/{q}/purge", None, None),
    ("GET", "/v2/topics/{q}/messages?echo=true", None, None),
    (
        "GET",
        "/v2/topics/{q}/messages?ids={m0},{m1},{m2}",
        None,
        None,
    ),
    (
        "POST",
        "/v2/topics/{q}/messages",
        Some(r#"{"messages": [{"body": 1}]}"#),
        None,
    ),
    ("DELETE", "/v2/topics/{q}/messages?pop=3", None, None),
    ("GET", "/v2/topics/{q}/messages/{m2}", None, None),
    ("DELETE", "/v2/topics/{q}/messages/{m2}", None, None),
    ("GET", "/v2/topics/{q}/subscriptions", None, None),
    ("GET", "/v2/topics/{q}/subscriptions/{s}", None, None),
    (
        "PATCH",
        "/v2/topics/{q}/subscriptions/{s}",
        Some(r#"{"ttl": 500}"#),
        None,
    ),
    ("DELETE", "/v2/topics/{q}/subscriptions/{s}", None, None),
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
pub const ACTIONS: &[(&str, &str)] = &[
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
    ("flavor_list", r#"{"flavor_name": "f"}"#),
    ("flavor_get", r#"{"flavor_name": "f"}"#),
    (
        "flavor_create",
        r#"{"flavor_name": "f", "pool_name": "pool-1"}"#,
    ),
    ("flavor_update", r#"{"flavor_name": "f", "pool_list": []}"#),
    ("flavor_delete", r#"{"flavor_name": "f"}"#),
];

/// The names and ids a template can refer to.
pub struct Ids {
    pub queue: String,
    pub messages: Vec<String>,
    pub claim: String,
    pub subscription: String,
}

impl Ids {
    /// Names and ids that exist nowhere.
    pub fn fresh() -> Ids {
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

    pub fn fill(&self, template: &str) -> String {
        self.pairs()
            .into_iter()
            .fold(template.to_string(), |text, (from, to)| {
                text.replace(&from, to)
            })
    }

    /// The opposite of [`Ids::fill`], for comparing answers.
    pub fn unfill(&self, text: &str) -> String {
        self.pairs()
            .into_iter()
            .fold(text.to_string(), |text, (to, from)| text.replace(from, &to))
    }
}
