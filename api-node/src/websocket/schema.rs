//! The request schema of every WebSocket action, as Zaqar's
//! `api/v2/request.py` declares it (JSON-schema draft 4, reduced to what those
//! schemas use): the required headers and body, and the types of known fields.

use serde_json::{Map, Value};

use super::action::Action;

/// A JSON-schema type.
#[derive(Debug, Clone, Copy)]
enum Kind {
    String,
    Integer,
    Boolean,
    Array,
    Object,
}

impl Kind {
    fn accepts(self, value: &Value) -> bool {
        match self {
            Kind::String => value.is_string(),
            // Draft 4: 1.0 is a number, not an integer; booleans are neither.
            Kind::Integer => value.is_i64() || value.is_u64(),
            Kind::Boolean => value.is_boolean(),
            Kind::Array => value.is_array(),
            Kind::Object => value.is_object(),
        }
    }
}

/// The schema of one action.
struct Schema {
    /// Headers that must be present.
    headers: &'static [&'static str],
    /// Whether the request must have a body.
    body: bool,
    /// Known body fields: name, type, required.
    fields: &'static [(&'static str, Kind, bool)],
}

const IDENTITY: &[&str] = &["Client-ID", "X-Project-ID"];

const fn plain(fields: &'static [(&'static str, Kind, bool)]) -> Schema {
    Schema {
        headers: IDENTITY,
        body: true,
        fields,
    }
}

const QUEUE: (&str, Kind, bool) = ("queue_name", Kind::String, true);

/// The schema of each action, as Zaqar's v2 WebSocket API declares it.
fn schema(action: Action) -> Schema {
    use Action::*;
    use Kind::{Array, Boolean, Integer, Object, String};
    let no_body = |headers| Schema {
        headers,
        body: false,
        fields: &[],
    };
    match action {
        GetHomeDoc | CheckNodeHealth | PingNode => no_body(&[]),
        Authenticate => no_body(&["X-Project-ID", "X-Auth-Token"]),
        QueueList => Schema {
            body: false,
            ..plain(&[
                ("marker", String, false),
                ("limit", Integer, false),
                ("detailed", Boolean, false),
            ])
        },
        QueueCreate | QueueDelete | QueueGet | QueueGetStats => plain(&[QUEUE]),
        QueuePurge => plain(&[QUEUE, ("resource_types", Array, false)]),
        QueueRedrive => plain(&[
            QUEUE,
            ("destination", String, false),
            ("limit", Integer, false),
        ]),
        MessageList => plain(&[
            QUEUE,
            ("marker", String, false),
            ("limit", Integer, false),
            ("echo", Boolean, false),
            ("include_claimed", Boolean, false),
            ("wait", Integer, false),
        ]),
        MessageGet => plain(&[QUEUE, ("message_id", String, true)]),
        MessageGetMany => plain(&[QUEUE, ("message_ids", Array, true)]),
        MessagePost => plain(&[QUEUE, ("messages", Array, true)]),
        MessageDelete => plain(&[
            QUEUE,
            ("message_id", String, true),
            ("claim_id", String, false),
        ]),
        MessageDeleteMany => plain(&[
            QUEUE,
            ("message_ids", Array, false),
            ("claim_ids", Array, false),
            ("pop", Integer, false),
        ]),
        ClaimCreate => plain(&[
            QUEUE,
            ("limit", Integer, false),
            ("ttl", Integer, false),
            ("grace", Integer, false),
            ("wait", Integer, false),
        ]),
        ClaimGet | ClaimDelete => plain(&[QUEUE, ("claim_id", String, true)]),
        ClaimUpdate => plain(&[QUEUE, ("claim_id", String, true), ("ttl", Integer, false)]),
        SubscriptionList => plain(&[QUEUE]),
        SubscriptionCreate => plain(&[
            QUEUE,
            ("subscriber", String, false),
            ("ttl", Integer, false),
            ("options", Object, false),
        ]),
        SubscriptionGet | SubscriptionDelete => plain(&[QUEUE, ("subscription_id", String, true)]),
        PoolList => plain(&[
            ("pool_name", String, true),
            ("limit", Integer, false),
            ("marker", String, false),
        ]),
        PoolCreate | PoolUpdate => plain(&[
            ("pool_name", String, true),
            ("weight", Integer, false),
            ("uri", String, false),
            ("options", Object, false),
        ]),
        PoolGet => plain(&[("pool_name", String, true), ("detailed", Boolean, false)]),
        PoolDelete => plain(&[("pool_name", String, true)]),
        FlavorList => plain(&[
            ("flavor_name", String, true),
            ("limit", Integer, false),
            ("marker", String, false),
        ]),
        FlavorCreate => plain(&[
            ("flavor_name", String, true),
            ("pool_name", String, true),
            ("capabilities", Object, false),
        ]),
        FlavorUpdate => plain(&[
            ("flavor_name", String, true),
            ("pool_name", String, false),
            ("capabilities", Object, false),
        ]),
        FlavorGet => plain(&[("flavor_name", String, true), ("detailed", Boolean, false)]),
        FlavorDelete => plain(&[("flavor_name", String, true)]),
    }
}

/// The headers every schema types (as strings) when present.
const TYPED_HEADERS: &[&str] = &[
    "User-Agent",
    "Date",
    "Accept",
    "Client-ID",
    "X-Project-ID",
    "X-Auth-Token",
];

/// Checks a decoded request whose `action` field parsed to `action`; the error is
/// Zaqar's reply text. Without `admin_mode`, the privileged actions are not valid
/// actions.
pub fn check(
    payload: &Map<String, Value>,
    action: Option<Action>,
    admin_mode: bool,
) -> Result<(), String> {
    let known = action.filter(|action| admin_mode || !action.is_privileged());
    let Some(action) = known else {
        let name = match payload.get("action").unwrap_or(&Value::Null) {
            Value::String(name) => name.clone(),
            Value::Null => "None".to_string(),
            other => other.to_string(),
        };
        return Err(format!("{name} is not a valid action"));
    };
    if valid(payload, &schema(action)) {
        Ok(())
    } else {
        Err("Schema validation failed.".to_string())
    }
}

fn valid(payload: &Map<String, Value>, schema: &Schema) -> bool {
    let Some(headers) = payload.get("headers") else {
        return false;
    };
    let Some(headers) = headers.as_object() else {
        return false;
    };
    let typed = TYPED_HEADERS
        .iter()
        .all(|name| headers.get(*name).is_none_or(Value::is_string));
    if !typed || !schema.headers.iter().all(|h| headers.contains_key(*h)) {
        return false;
    }
    let body = match payload.get("body") {
        None => return !schema.body,
        Some(body) => body,
    };
    // The schemas without fields say nothing about the body.
    if schema.fields.is_empty() {
        return true;
    }
    let Some(body) = body.as_object() else {
        return false;
    };
    schema
        .fields
        .iter()
        .all(|(name, kind, required)| match body.get(*name) {
            Some(value) => kind.accepts(value),
            None => !required,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    fn check_value(value: Value) -> Result<(), String> {
        let payload = value.as_object().unwrap();
        let action = payload
            .get("action")
            .and_then(Value::as_str)
            .and_then(Action::parse);
        check(payload, action, true)
    }

    #[test]
    fn actions_and_their_requirements() {
        let headers = json!({"Client-ID": "c", "X-Project-ID": "p"});
        assert_eq!(
            check_value(json!({"action": "bogus"})),
            Err("bogus is not a valid action".into())
        );
        assert_eq!(
            check_value(json!({"action": 5})),
            Err("5 is not a valid action".into())
        );
        assert!(check_value(json!({"action": "queue_list", "headers": headers})).is_ok());
        assert!(
            check_value(json!({"action": "queue_list", "headers": {"Client-ID": "c"}})).is_err()
        );
        assert!(check_value(json!({"action": "queue_create", "headers": headers})).is_err());
        assert!(check_value(
            json!({"action": "queue_create", "headers": headers, "body": {"queue_name": 5}})
        )
        .is_err());
        assert!(check_value(
            json!({"action": "queue_list", "headers": headers, "body": {"limit": 1.0}})
        )
        .is_err());
        assert!(check_value(json!({"action": "ping_node", "headers": {}})).is_ok());
        assert!(
            check_value(json!({"action": "pool_list", "headers": headers, "body": {}})).is_err()
        );
    }
}
