//! How WebSocket replies show operation results and failures: the shapes of
//! Zaqar's v2 WebSocket endpoints (storage documents, no hrefs), which differ
//! from the REST ones.

use serde_json::{json, Map, Value};
use zaqar_proto::ZaqarError;

use super::protocol::Reply;
use crate::operations::types::{Message, QueueStats, Subscription};
use zaqar_proto::timefmt::format_utc;

/// A message as Zaqar's `format_message` shows it.
pub fn message(message: &Message, claim_id: Option<&str>) -> Value {
    json!({
        "id": message.id,
        "claim_id": claim_id,
        "ttl": message.ttl,
        "age": message.age,
        "body": body(message),
    })
}

pub fn messages(list: &[Message], claim_id: Option<&str>) -> Value {
    Value::Array(list.iter().map(|m| message(m, claim_id)).collect())
}

/// A popped message (the storage document).
pub fn popped(message: &Message) -> Value {
    json!({
        "id": message.id,
        "age": message.age,
        "ttl": message.ttl,
        "body": body(message),
        "claim_id": message.claim_id,
        "claim_count": message.claim_count,
    })
}

/// Queue stats: counts, and the oldest and newest message when there are any.
pub fn stats(stats: &QueueStats) -> Value {
    let mut counts = Map::new();
    counts.insert("claimed".into(), stats.claimed.into());
    counts.insert("free".into(), stats.free.into());
    counts.insert("total".into(), stats.total.into());
    if let Some(max) = stats.max {
        counts.insert("max".into(), max.into());
    }
    if let Some((bytes, most)) = stats.bytes {
        counts.insert("bytes".into(), bytes.into());
        counts.insert("max_bytes".into(), most.into());
    }
    if stats.total != 0 {
        for (name, message) in [("oldest", &stats.oldest), ("newest", &stats.newest)] {
            if let Some(message) = message {
                counts.insert(name.into(), stats_message(message));
            }
        }
    }
    json!({"messages": counts})
}

fn stats_message(message: &Message) -> Value {
    json!({
        "id": message.id,
        "age": message.age,
        "ttl": message.ttl,
        "body": body(message),
        "claim_id": message.claim_id,
        "claim_count": message.claim_count,
        "created": format!("{}Z", format_utc(message.created_ms.div_euclid(1000))),
    })
}

pub fn subscription(subscription: &Subscription) -> Value {
    json!({
        "id": subscription.id,
        "source": subscription.source,
        "subscriber": subscription.subscriber,
        "ttl": subscription.ttl,
        "age": subscription.age,
        "options": subscription.options,
        "confirmed": subscription.confirmed,
    })
}

fn body(message: &Message) -> Value {
    serde_json::from_str(message.body.get()).unwrap_or(Value::Null)
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
