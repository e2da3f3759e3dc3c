//! Arbitrary requests against the whole REST API of an api-node (over its
//! in-memory pool and catalog): whatever the method, path, query, headers and
//! body, the answer is never a 500 (a panic in a handler would be one), and
//! every error carries Zaqar's `{"title", "description"}` body (Falcon's 404 and
//! 405 only a title, as Zaqar's). proptest's
//! default 256 cases run in CI; `PROPTEST_CASES` runs more.

mod support;

use proptest::prelude::*;
use serde_json::Value;
use support::Harness;

/// A path segment: names, ids and junk a client could put in a URL.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("q".to_string()),
        Just("5b4f5f0f4e6f6a1a2b3c4d5e".to_string()),
        "[a-zA-Z0-9_.~-]{0,70}",
        "(%[0-9A-Fa-f]{2}|%[g-z]{2}|[a-z]){0,12}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    const TEMPLATES: [&str; 20] = [
        "/v2/queues",
        "/v2/queues/{}",
        "/v2/queues/{}/messages",
        "/v2/queues/{}/messages/{}",
        "/v2/queues/{}/claims",
        "/v2/queues/{}/claims/{}",
        "/v2/queues/{}/subscriptions",
        "/v2/queues/{}/subscriptions/{}",
        "/v2/queues/{}/subscriptions/{}/confirm",
        "/v2/queues/{}/stats",
        "/v2/queues/{}/share",
        "/v2/queues/{}/purge",
        "/v2/topics/{}",
        "/v2/topics/{}/messages",
        "/v2/pools/{}",
        "/v2/flavors/{}",
        "/v2/health",
        "/v2/ping",
        "/v2/{}",
        "/{}",
    ];
    (prop::sample::select(&TEMPLATES[..]), segment(), segment())
        .prop_map(|(template, a, b)| template.replacen("{}", &a, 1).replacen("{}", &b, 1))
}

fn query() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        Just("limit".to_string()),
        Just("marker".to_string()),
        Just("echo".to_string()),
        Just("include_claimed".to_string()),
        Just("include_delayed".to_string()),
        Just("ids".to_string()),
        Just("pop".to_string()),
        Just("claim_id".to_string()),
        Just("detailed".to_string()),
        Just("with_count".to_string()),
        Just("name".to_string()),
        "[a-z_]{1,10}",
    ];
    let value = "[a-zA-Z0-9%,._-]{0,24}";
    prop::collection::vec((name, value), 0..4).prop_map(|pairs| {
        let joined: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
        if joined.is_empty() {
            String::new()
        } else {
            format!("?{}", joined.join("&"))
        }
    })
}

fn json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("messages".to_string()),
        Just("body".to_string()),
        Just("ttl".to_string()),
        Just("delay".to_string()),
        Just("grace".to_string()),
        Just("subscriber".to_string()),
        Just("options".to_string()),
        Just("op".to_string()),
        Just("path".to_string()),
        Just("value".to_string()),
        Just("paths".to_string()),
        Just("methods".to_string()),
        Just("expires".to_string()),
        Just("weight".to_string()),
        Just("uri".to_string()),
        Just("pool_list".to_string()),
        Just("_max_messages_post_size".to_string()),
        Just("_default_message_ttl".to_string()),
        Just("_dead_letter_queue".to_string()),
        Just("_max_claim_count".to_string()),
        "\\PC{0,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-10i64..100_000).prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::from)),
        prop_oneof![
            Just("http://example.com/hook".to_string()),
            Just("mailto:a@example.com".to_string()),
            Just("/metadata/x".to_string()),
            Just("add".to_string()),
            Just("replace".to_string()),
            Just("2030-01-01T00:00:00".to_string()),
            "\\PC{0,16}",
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn body() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        json().prop_map(|value| Some(value.to_string())),
        "\\PC{0,64}".prop_map(Some),
    ]
}

fn content_type() -> impl Strategy<Value = &'static str> {
    prop::sample::select(
        &[
            "application/json",
            "application/openstack-messaging-v2.0-json-patch",
            "application/x-www-form-urlencoded",
            "text/plain",
        ][..],
    )
}

#[test]
fn no_request_makes_the_api_node_fail() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let harness = runtime.block_on(Harness::start());
    const METHODS: [&str; 7] = ["GET", "PUT", "POST", "PATCH", "DELETE", "HEAD", "OPTIONS"];
    proptest!(|(
        method in prop::sample::select(&METHODS[..]),
        path in path(),
        query in query(),
        body in body(),
        content_type in content_type(),
    )| {
        let target = format!("{path}{query}");
        let headers = [("Content-Type", content_type)];
        let answer = runtime.block_on(harness.call(method, &target, body.as_deref(), &headers));
        let status = answer.status.as_u16();
        prop_assert_ne!(status, 500, "{} {} {:?}: {}", method, target, body, answer.body);
        if status >= 400 && method != "HEAD" {
            // Falcon's own 404 and 405 (unknown path, method) carry only a title, as in Zaqar.
            let titled_only = status == 404 || status == 405;
            let described = matches!(&answer.body, Value::Object(map)
                if map.get("title").is_some_and(Value::is_string)
                    && (titled_only || map.get("description").is_some_and(Value::is_string)));
            prop_assert!(described, "{} {} {:?}: {} {}", method, target, body, status, answer.body);
        }
    });
}
