//! The request schema of every WebSocket action, as Zaqar's
//! `api/v2/request.py` declares it (JSON-schema draft 4, reduced to what those
//! schemas use): the required headers and body, and the types of known fields.

use serde_json::{Map, Value};

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

/// Every action Zaqar's v2 WebSocket API knows, with its schema.
fn schema(action: &str) -> Option<Schema> {
    use Kind::*;
    let no_body = |headers| Schema {
        headers,
        body: false,
        fields: &[],
    };
    Some(match action {
        "get_home_doc" | "check_node_health" | "ping_node" => no_body(&[]),
        "authenticate" => no_body(&["X-Project-ID", "X-Auth-Token"]),
        "queue_list" => Schema {
            body: false,
            ..plain(&[
                ("marker", String, false),
                ("limit", Integer, false),
                ("detailed", Boolean, false),
            ])
        },
        "queue_create" | "queue_delete" | "queue_get" | "queue_get_stats" => plain(&[QUEUE]),
        "queue_purge" => plain(&[QUEUE, ("resource_types", Array, false)]),
        "message_list" => plain(&[
            QUEUE,
            ("marker", String, false),
            ("limit", Integer, false),
            ("echo", Boolean, false),
            ("include_claimed", Boolean, false),
        ]),
        "message_get" => plain(&[QUEUE, ("message_id", String, true)]),
        "message_get_many" => plain(&[QUEUE, ("message_ids", Array, true)]),
        "message_post" => plain(&[QUEUE, ("messages", Array, true)]),
        "message_delete" => plain(&[
            QUEUE,
            ("message_id", String, true),
            ("claim_id", String, false),
        ]),
        "message_delete_many" => plain(&[
            QUEUE,
            ("message_ids", Array, false),
            ("claim_ids", Array, false),
            ("pop", Integer, false),
        ]),
        "claim_create" => plain(&[
            QUEUE,
            ("limit", Integer, false),
            ("ttl", Integer, false),
            ("grace", Integer, false),
        ]),
        "claim_get" | "claim_delete" => plain(&[QUEUE, ("claim_id", String, true)]),
        "claim_update" => plain(&[QUEUE, ("claim_id", String, true), ("ttl", Integer, false)]),
        "subscription_list" => plain(&[QUEUE]),
        "subscription_create" => plain(&[
            QUEUE,
            ("subscriber", String, false),
            ("ttl", Integer, false),
            ("options", Object, false),
        ]),
        "subscription_get" | "subscription_delete" => {
            plain(&[QUEUE, ("subscription_id", String, true)])
        }
        "pool_list" => plain(&[
            ("pool_name", String, true),
            ("limit", Integer, false),
            ("marker", String, false),
        ]),
        "pool_create" | "pool_update" => plain(&[
            ("pool_name", String, true),
            ("weight", Integer, false),
            ("uri", String, false),
            ("options", Object, false),
        ]),
        "pool_get" => plain(&[("pool_name", String, true), ("detailed", Boolean, false)]),
        "pool_delete" => plain(&[("pool_name", String, true)]),
        "flavor_list" => plain(&[
            ("flavor_name", String, true),
            ("limit", Integer, false),
            ("marker", String, false),
        ]),
        "flavor_create" => plain(&[
            ("flavor_name", String, true),
            ("pool_name", String, true),
            ("capabilities", Object, false),
        ]),
        "flavor_update" => plain(&[
            ("flavor_name", String, true),
            ("pool_name", String, false),
            ("capabilities", Object, false),
        ]),
        "flavor_get" => plain(&[("flavor_name", String, true), ("detailed", Boolean, false)]),
        "flavor_delete" => plain(&[("flavor_name", String, true)]),
        _ => return None,
    })
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

/// Every action of the API, each with a schema above (a metric label takes its
/// value from here, so that a client's made-up action names do not become series).
pub const ACTIONS: [&str; 34] = [
    "get_home_doc",
    "check_node_health",
    "ping_node",
    "authenticate",
    "queue_list",
    "queue_create",
    "queue_get",
    "queue_delete",
    "queue_get_stats",
    "queue_purge",
    "message_list",
    "message_get",
    "message_get_many",
    "message_post",
    "message_delete",
    "message_delete_many",
    "claim_create",
    "claim_get",
    "claim_update",
    "claim_delete",
    "subscription_create",
    "subscription_list",
    "subscription_get",
    "subscription_delete",
    "pool_create",
    "pool_list",
    "pool_get",
    "pool_update",
    "pool_delete",
    "flavor_create",
    "flavor_list",
    "flavor_get",
    "flavor_update",
    "flavor_delete",
];

/// Whether `action` is one of the privileged actions, which exist only in admin mode.
pub fn is_privileged(action: &str) -> bool {
    action.starts_with("pool_") || action.starts_with("flavor_") || action == "check_node_health"
}

/// Checks a decoded request; the error is Zaqar's reply text. Without
/// `admin_mode`, the privileged actions are not valid actions.
pub fn check(payload: &Map<String, Value>, admin_mode: bool) -> Result<(), String> {
    let action = payload.get("action").unwrap_or(&Value::Null);
    let name = match action {
        Value::String(name) => name.clone(),
        Value::Null => "None".to_string(),
        other => other.to_string(),
    };
    let known = action
        .as_str()
        .filter(|name| admin_mode || !is_privileged(name));
    let Some(schema) = known.and_then(schema) else {
        return Err(format!("{name} is not a valid action"));
    };
    if valid(payload, &schema) {
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

    #[test]
    fn every_listed_action_has_a_schema() {
        for action in ACTIONS {
            assert!(schema(action).is_some(), "{action}");
        }
    }
    use serde_json::json;

    fn check_value(value: Value) -> Result<(), String> {
        check(value.as_object().unwrap(), true)
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
