//! Queue metadata: the reserved keys Zaqar gives meaning to, their defaults and
//! checks, and the JSON-patch changes of `PATCH /v2/queues/{q}`.

use serde_json::{Map, Value};
use zaqar_proto::limits::Limits;
use zaqar_proto::ZaqarError;

use super::json::{as_python_int, is_truthy, parse_document};
use super::{conflict, invalid_body, Payload};

/// The longest window of an idempotency key a queue may set (a day), in seconds.
const MAX_IDEMPOTENCY_WINDOW: i64 = 86_400;

/// The reserved keys with their defaults, in the order Zaqar shows them.
pub fn reserved_defaults(limits: &Limits) -> Vec<(&'static str, Value)> {
    vec![
        (
            "_max_messages_post_size",
            Value::from(limits.max_messages_post_size),
        ),
        (
            "_default_message_ttl",
            Value::from(limits.default_message_ttl),
        ),
        (
            "_default_message_delay",
            Value::from(limits.default_message_delay),
        ),
        ("_dead_letter_queue", Value::Null),
        ("_dead_letter_queue_messages_ttl", Value::Null),
        ("_max_claim_count", Value::Null),
        ("_enable_encrypt_messages", Value::Bool(false)),
    ]
}

/// Shows reserved keys that are missing or falsy with their defaults, as Zaqar does.
pub fn with_defaults(mut metadata: Map<String, Value>, limits: &Limits) -> Map<String, Value> {
    for (key, default) in reserved_defaults(limits) {
        if !metadata.get(key).is_some_and(is_truthy) {
            metadata.insert(key.to_string(), default);
        }
    }
    metadata
}

/// An integer reserved value that is set and truthy (`queue_meta.get(key)`).
pub fn truthy_int(metadata: &Map<String, Value>, key: &str) -> Option<i64> {
    metadata
        .get(key)
        .filter(|v| is_truthy(v))
        .and_then(as_python_int)
}

/// Zaqar's `queue_metadata_putting`: the reserved keys must be well-formed.
/// Returns the description of the first problem.
pub fn check_reserved(metadata: &Map<String, Value>, limits: &Limits) -> Result<(), String> {
    let int_in = |key: &str, low: i64, high: i64, range_message: String| -> Result<(), String> {
        match metadata.get(key) {
            None | Some(Value::Null) => Ok(()),
            Some(value) => match as_python_int(value) {
                Some(n) if (low..=high).contains(&n) => Ok(()),
                Some(_) => Err(range_message),
                None => Err(format!("{key} must be integer.")),
            },
        }
    };
    let max_ttl = i64::from(limits.max_message_ttl);
    let min_ttl = i64::from(limits.min_message_ttl);
    int_in(
        "_default_message_ttl",
        min_ttl,
        max_ttl,
        format!(
            "_default_message_ttl can not exceed {max_ttl} seconds, and must be at least {min_ttl} seconds long."
        ),
    )?;
    let max_size = limits.max_messages_post_size as i64;
    int_in(
        "_max_messages_post_size",
        1,
        max_size,
        format!("_max_messages_post_size can not exceed {max_size},  and must be at least greater than 0."),
    )?;
    if let Some(value) = metadata.get("_max_claim_count") {
        if is_truthy(value) && as_python_int(value).is_none() {
            return Err("_max_claim_count must be integer.".to_string());
        }
    }
    int_in(
        "_dead_letter_queue_messages_ttl",
        min_ttl,
        max_ttl,
        format!(
            "The TTL for a message may not exceed {max_ttl} seconds, and must be at least {min_ttl} seconds long."
        ),
    )?;
    let max_delay = i64::from(limits.max_message_delay);
    int_in(
        "_default_message_delay",
        0,
        max_delay,
        format!("The TTL can not exceed {max_delay} seconds, and must be at least 0 seconds long."),
    )?;
    int_in(
        "_idempotency_window",
        1,
        MAX_IDEMPOTENCY_WINDOW,
        format!("_idempotency_window must be 1 to {MAX_IDEMPOTENCY_WINDOW} seconds."),
    )?;
    if let Some(value) = metadata.get("_enable_encrypt_messages") {
        if is_truthy(value) && !value.is_boolean() {
            return Err("_enable_encrypt_messages must be boolean.".to_string());
        }
    }
    match metadata.get("_overflow") {
        None | Some(Value::Null) => {}
        Some(Value::String(policy)) if policy == "reject" || policy == "drop_oldest" => {}
        Some(_) => return Err(r#"_overflow must be "reject" or "drop_oldest"."#.to_string()),
    }
    check_retry_policy(metadata.get("_retry_policy"))
}

/// Zaqar's `_validate_retry_policy`, for queue metadata and subscription options.
pub fn check_retry_policy(policy: Option<&Value>) -> Result<(), String> {
    let Some(policy) = policy.filter(|p| is_truthy(p)) else {
        return Ok(());
    };
    let Value::Object(policy) = policy else {
        return Err("retry_policy must be a dict.".to_string());
    };
    for key in [
        "retries_with_no_delay",
        "minimum_delay_retries",
        "minimum_delay",
        "maximum_delay",
        "maximum_delay_retries",
    ] {
        if let Some(value) = policy.get(key).filter(|v| is_truthy(v)) {
            if as_python_int(value).is_none() {
                return Err(format!("Retry policy: {key} must be a integer."));
            }
        }
    }
    if let Some(function) = policy
        .get("retry_backoff_function")
        .filter(|v| is_truthy(v))
    {
        let Some(name) = function.as_str() else {
            return Err("retry_backoff_function must be a string.".to_string());
        };
        if !["linear", "arithmetic", "exponential", "geometric"].contains(&name) {
            return Err("invalid retry_backoff_function.".to_string());
        }
    }
    if let Some(value) = policy
        .get("ignore_subscription_override")
        .filter(|v| is_truthy(v))
    {
        if !value.is_boolean() {
            return Err("ignore_subscription_override must be a boolean.".to_string());
        }
    }
    let delay =
        |key: &str, default: i64| policy.get(key).and_then(as_python_int).unwrap_or(default);
    let (min_delay, max_delay) = (delay("minimum_delay", 5), delay("maximum_delay", 30));
    if max_delay < min_delay {
        return Err("minimum_delay must less than maximum_delay.".to_string());
    }
    if max_delay - min_delay < 2 * 5 {
        return Err("invalid minimum_delay and maximum_delay.".to_string());
    }
    Ok(())
}

/// One JSON-patch change of queue metadata.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Add(String, Value),
    Replace(String, Value),
    Remove(String),
}

const OPS: &str = "add, remove, replace";

/// The changes of a PATCH of queue or topic metadata (the caller checked its media
/// type): a body within `max_queue_metadata`, not empty, a JSON array of changes.
pub fn parse_patch(payload: &Payload, limits: &Limits) -> Result<Vec<Change>, ZaqarError> {
    let max = limits.max_queue_metadata;
    if payload.size().unwrap_or(0) > max as u64 {
        return Err(invalid_body(format!(
            "Queue metadata is too large. Max size: {max}"
        )));
    }
    if payload.is_empty() {
        return Err(invalid_body("PATCH body could not be empty for update."));
    }
    let document = parse_document(payload)?;
    if !document.is_array() {
        return Err(invalid_body("Document type not supported."));
    }
    parse_changes(&document).map_err(invalid_body)
}

/// Zaqar's `queue_patching`: a JSON array of `{op, path, value}` objects whose
/// paths are `/metadata/<key>`. Returns the description of the first problem.
pub fn parse_changes(document: &Value) -> Result<Vec<Change>, String> {
    let Value::Array(raw_changes) = document else {
        return Err("Request body must be a JSON array of operation objects.".to_string());
    };
    let mut changes = Vec::with_capacity(raw_changes.len());
    for raw in raw_changes {
        let Value::Object(raw) = raw else {
            return Err("Operations must be JSON objects.".to_string());
        };
        let op = match raw.get("op") {
            None | Some(Value::Null) => {
                return Err(format!(
                    "Unable to find `op` in JSON Schema change. It must be one of the following: {OPS}."
                ))
            }
            Some(Value::String(op)) if ["add", "remove", "replace"].contains(&op.as_str()) => op.as_str(),
            Some(other) => {
                let shown = other.as_str().map(str::to_string).unwrap_or_else(|| other.to_string());
                return Err(format!(
                    "Invalid operation: `{shown}`. It must be one of the following: {OPS}."
                ));
            }
        };
        let pointer = match raw.get("path") {
            None => return Err("Unable to find 'path' in JSON Schema change".to_string()),
            Some(Value::String(path)) => path.clone(),
            Some(other) => other.to_string(),
        };
        let path = decode_pointer(&pointer)?;
        if path.len() != 2 {
            return Err(format!(
                "Invalid JSON pointer for this resource: '/{}, e.g /metadata/key'",
                path.join("/")
            ));
        }
        let key = path[1].clone();
        if op == "remove" {
            changes.push(Change::Remove(key));
            continue;
        }
        let Some(value) = raw.get("value") else {
            return Err(format!(
                "Operation \"{op}\" requires a member named \"value\"."
            ));
        };
        if !path[0].eq_ignore_ascii_case("metadata") {
            return Err("The root of path must be metadata, e.g /metadata/key.".to_string());
        }
        changes.push(match op {
            "add" => Change::Add(key, value.clone()),
            _ => Change::Replace(key, value.clone()),
        });
    }
    Ok(changes)
}

/// Zaqar's limited JSON pointers (`_decode_json_pointer`).
fn decode_pointer(pointer: &str) -> Result<Vec<String>, String> {
    if !pointer.starts_with('/') {
        return Err(format!("Pointer `{pointer}` does not start with \"/\"."));
    }
    let rest = &pointer[1..];
    let adjacent = rest.match_indices('/').any(|(i, _)| {
        rest[i + 1..]
            .trim_start_matches(char::is_whitespace)
            .starts_with('/')
    });
    if adjacent {
        return Err(format!("Pointer `{pointer}` contains adjacent \"/\"."));
    }
    if pointer.len() > 1 && pointer.ends_with('/') {
        return Err(format!("Pointer `{pointer}` end with \"/\"."));
    }
    let bad_escape = pointer
        .match_indices('~')
        .any(|(i, _)| !matches!(pointer.as_bytes().get(i + 1), Some(b'0' | b'1')));
    if bad_escape {
        return Err(format!(
            "Pointer `{pointer}` contains \"~\" not part of a recognized escape sequence."
        ));
    }
    Ok(pointer
        .trim_start_matches('/')
        .split('/')
        .map(|part| {
            part.replace("~1", "/")
                .replace("~0", "~")
                .trim()
                .to_string()
        })
        .collect())
}

/// The reserved keys of a queue's metadata (those of [`reserved_defaults`]).
pub fn reserved_keys(limits: &Limits) -> Vec<&'static str> {
    reserved_defaults(limits)
        .into_iter()
        .map(|(key, _)| key)
        .collect()
}

/// Applies changes to the stored metadata of a queue or a topic (Zaqar's
/// `_do_add/_do_replace/_do_remove`): its `reserved` keys count as present.
pub fn apply_changes(
    metadata: &mut Map<String, Value>,
    changes: Vec<Change>,
    reserved: &[&str],
) -> Result<(), ZaqarError> {
    for change in changes {
        match change {
            Change::Add(key, value) => {
                metadata.insert(key, value);
            }
            Change::Replace(key, value) => {
                if !metadata.contains_key(&key) && !reserved.contains(&key.as_str()) {
                    return Err(conflict(format!(
                        "Can't replace non-existent object {key}."
                    )));
                }
                metadata.insert(key, value);
            }
            Change::Remove(key) => {
                if metadata.remove(&key).is_none() && !reserved.contains(&key.as_str()) {
                    return Err(conflict(format!("Can't remove non-existent object {key}.")));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn defaults_fill_missing_and_falsy_reserved_keys() {
        let limits = Limits::default();
        let shown = with_defaults(object(json!({"a": 1, "_max_claim_count": 0})), &limits);
        assert_eq!(shown["a"], 1);
        assert_eq!(shown["_max_claim_count"], Value::Null);
        assert_eq!(shown["_default_message_ttl"], 3600);
        assert_eq!(shown["_max_messages_post_size"], 262144);
        assert_eq!(shown["_enable_encrypt_messages"], false);
        assert_eq!(shown.len(), 8);
    }

    #[test]
    fn reserved_values_are_checked() {
        let limits = Limits::default();
        let check = |v: Value| check_reserved(&object(v), &limits);
        assert!(check(json!({"_default_message_ttl": 60, "_default_message_delay": 0})).is_ok());
        assert_eq!(
            check(json!({"_default_message_ttl": 10})).unwrap_err(),
            "_default_message_ttl can not exceed 1209600 seconds, and must be at least 60 seconds long."
        );
        assert_eq!(
            check(json!({"_default_message_ttl": "x"})).unwrap_err(),
            "_default_message_ttl must be integer."
        );
        assert!(check(json!({"_max_messages_post_size": 0})).is_err());
        assert!(check(json!({"_default_message_delay": 1000})).is_err());
        assert!(check(json!({"_idempotency_window": 60})).is_ok());
        assert!(check(json!({"_idempotency_window": 0})).is_err());
        assert!(check(json!({"_idempotency_window": 86_401})).is_err());
        assert!(check(json!({"_overflow": "drop_oldest"})).is_ok());
        assert!(check(json!({"_overflow": "reject"})).is_ok());
        assert!(check(json!({"_overflow": "drop_newest"})).is_err());
        assert!(check(json!({"_overflow": true})).is_err());
        assert!(check(json!({"_idempotency_window": "60"})).is_err());
        assert!(check(json!({"_enable_encrypt_messages": 1})).is_err());
        assert!(check(json!({"_max_claim_count": "a"})).is_err());
        assert!(check(json!({"_dead_letter_queue_messages_ttl": 5})).is_err());
        assert!(check(json!({"_retry_policy": {"minimum_delay": 40}})).is_err());
        assert!(check(json!({"_retry_policy": {"retry_backoff_function": "linear"}})).is_ok());
    }

    #[test]
    fn patches_parse_like_zaqar() {
        let changes = parse_changes(&json!([
            {"op": "add", "path": "/metadata/c", "value": 3},
            {"op": "replace", "path": "/METADATA/x~1y", "value": 1},
            {"op": "remove", "path": "/foo/b"}
        ]))
        .unwrap();
        assert_eq!(
            changes,
            vec![
                Change::Add("c".into(), json!(3)),
                Change::Replace("x/y".into(), json!(1)),
                Change::Remove("b".into()),
            ]
        );
        let err = |v: Value| parse_changes(&v).unwrap_err();
        assert!(err(json!([{"op": "move", "path": "/metadata/a"}]))
            .starts_with("Invalid operation: `move`"));
        assert!(err(json!([{"path": "/metadata/a"}])).starts_with("Unable to find `op`"));
        assert_eq!(
            err(json!([{"op": "add"}])),
            "Unable to find 'path' in JSON Schema change"
        );
        assert_eq!(
            err(json!([{"op": "add", "path": "/foo/a", "value": 1}])),
            "The root of path must be metadata, e.g /metadata/key."
        );
        assert!(
            err(json!([{"op": "add", "path": "/metadata/a/b", "value": 1}]))
                .starts_with("Invalid JSON pointer")
        );
        assert!(
            err(json!([{"op": "add", "path": "metadata/a", "value": 1}]))
                .contains("does not start")
        );
        assert!(
            err(json!([{"op": "add", "path": "/metadata//a", "value": 1}])).contains("adjacent")
        );
        assert!(err(json!([{"op": "add", "path": "/metadata/", "value": 1}])).contains("end with"));
        assert!(
            err(json!([{"op": "add", "path": "/metadata/a~2", "value": 1}])).contains("escape")
        );
        assert!(err(json!([{"op": "add", "path": "/metadata/a"}])).contains("requires a member"));
        assert_eq!(err(json!([1])), "Operations must be JSON objects.");
    }

    #[test]
    fn changes_conflict_on_missing_keys() {
        let reserved = reserved_keys(&Limits::default());
        let mut metadata = object(json!({"a": 1}));
        apply_changes(
            &mut metadata,
            vec![Change::Remove("_max_claim_count".into())],
            &reserved,
        )
        .unwrap();
        let err = apply_changes(
            &mut metadata,
            vec![Change::Replace("zz".into(), json!(1))],
            &reserved,
        )
        .unwrap_err();
        assert_eq!(err.description, "Can't replace non-existent object zz.");
        assert_eq!(err.code.http_status(), 409);
        apply_changes(
            &mut metadata,
            vec![Change::Replace("_max_claim_count".into(), json!(5))],
            &reserved,
        )
        .unwrap();
        assert_eq!(metadata["_max_claim_count"], 5);
    }
}
