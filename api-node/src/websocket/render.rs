//! How WebSocket replies show operation results and failures: the shapes of
//! Zaqar's v2 WebSocket endpoints (storage documents, no hrefs), which differ
//! from the REST ones.

use serde_json::{json, Value};
use zaqar_proto::ZaqarError;

use super::protocol::Reply;
use crate::operations::types::{Message, QueueStats};

/// A message as Zaqar's `format_message` shows it.
pub fn message(message: &Message, claim_id: Option<&str>) -> Value {
    json!({
        "id": message.id,
        "claim_id": claim_id,
        "ttl": message.ttl,
        "age": message.age,
        "body": message.body_value(),
    })
}

pub fn messages(list: &[Message], claim_id: Option<&str>) -> Value {
    Value::Array(list.iter().map(|m| message(m, claim_id)).collect())
}

/// Queue stats: counts, and the oldest and newest message when there are any.
pub fn stats(stats: &QueueStats) -> Value {
    json!({"messages": stats.counts(stats_message)})
}

fn stats_message(message: &Message) -> Value {
    let mut shown = message.popped();
    shown["created"] = message.created_utc().into();
    shown
}

/// A failed operation as Zaqar's `error_response`: `exception` is what went
/// wrong, `error` the endpoint's own summary (often `null`).
pub fn failure(err: &ZaqarError, error: Option<String>) -> Reply {
    let status = err.code.http_status();
    if status >= 500 {
        tracing::warn!(status, title = %err.title, description = %err.description, "websocket request failed");
    }
    let exception = if err.description.is_empty() {
        &err.title
    } else {
        &err.description
    };
    Reply::new(status, json!({"exception": exception, "error": error}))
}
