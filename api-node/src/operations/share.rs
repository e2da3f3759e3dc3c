//! Queue sharing: pre-signed URLs for a queue's messages, claims or subscriptions.

use serde_json::Value;
use zaqar_proto::ZaqarError;

use super::json::{invalid_body_type, parse_document};
use super::{invalid_api, Context, Payload};
use crate::signed_url::{sign, SignedUrl};

const KNOWN_KEYS: [&str; 3] = ["expires", "methods", "paths"];
const SHAREABLE: [&str; 3] = ["claims", "messages", "subscriptions"];

/// Signs a URL granting `methods` (default GET) on the queue's `paths`
/// (default `messages`) until `expires` (default in a day).
pub async fn share(ctx: &Context, queue: &str, payload: &Payload) -> Result<SignedUrl, ZaqarError> {
    ctx.check_queue(queue)?;
    let Value::Object(document) = parse_document(payload)? else {
        return Err(invalid_body_type());
    };
    let mut unknown: Vec<&String> = document
        .keys()
        .filter(|k| !KNOWN_KEYS.contains(&k.as_str()))
        .collect();
    if !unknown.is_empty() {
        unknown.sort();
        return Err(invalid_api(format!(
            "Unknown keys: {}",
            python_set(&unknown)
        )));
    }
    let base = format!("/v2/queues/{queue}");
    let paths = match document.get("paths") {
        None | Some(Value::Null) => vec![format!("{base}/messages")],
        Some(Value::Array(items)) if items.is_empty() => vec![format!("{base}/messages")],
        Some(Value::Array(items)) => {
            let names: Vec<String> = items
                .iter()
                .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
                .collect();
            let mut invalid: Vec<&String> = names
                .iter()
                .filter(|p| !SHAREABLE.contains(&p.as_str()))
                .collect();
            if !invalid.is_empty() {
                invalid.sort();
                invalid.dedup();
                return Err(invalid_api(format!(
                    "Invalid paths: {}",
                    python_set(&invalid)
                )));
            }
            names.iter().map(|p| format!("{base}/{p}")).collect()
        }
        Some(_) => return Err(invalid_api("`paths` must be a non-empty list")),
    };
    let methods = match document.get("methods") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|m| m.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid_api("`methods` should be a list"))?,
        Some(_) => return Err(invalid_api("`methods` should be a list")),
    };
    let expires = match document.get("expires") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(other) => Some(other.to_string()),
    };
    let Some(key) = ctx.services.signing_key.as_deref() else {
        return Err(invalid_api("The `key` can't be None"));
    };
    sign(key, &paths, &methods, ctx.project(), expires.as_deref()).map_err(invalid_api)
}

/// Strings as a Python set prints them: `{'a', 'b'}`.
fn python_set(items: &[&String]) -> String {
    let quoted: Vec<String> = items.iter().map(|item| format!("'{item}'")).collect();
    format!("{{{}}}", quoted.join(", "))
}
