//! The typed results of operations, and the documents both transports show alike;
//! each transport renders the rest (REST adds hrefs).

use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use zaqar_proto::pb;
use zaqar_proto::timefmt::format_utc;
use zaqar_proto::ZaqarError;

/// A message as a client sees it.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub ttl: u32,
    pub age: u64,
    /// The body exactly as posted (JSON text).
    pub body: Box<RawValue>,
    /// The claim holding the message, if any.
    pub claim_id: Option<String>,
    pub claim_count: u32,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: i64,
    pub checksum: Option<String>,
    /// The queue a dead-lettered message came from (never shown: where a
    /// redrive without a destination returns it).
    pub dead_letter_source: Option<String>,
}

impl TryFrom<pb::Message> for Message {
    type Error = ZaqarError;

    fn try_from(message: pb::Message) -> Result<Message, ZaqarError> {
        Ok(Message {
            body: raw_json(message.body_json, "message body", "null")?,
            id: message.id,
            ttl: message.ttl,
            age: message.age,
            claim_id: non_empty(message.claim_id),
            claim_count: message.claim_count,
            created_ms: message.created_ms,
            checksum: non_empty(message.checksum),
            dead_letter_source: non_empty(message.dead_letter_source),
        })
    }
}

impl Message {
    /// The body as a JSON value (null if what was stored does not parse).
    pub fn body_value(&self) -> Value {
        serde_json::from_str(self.body.get()).unwrap_or(Value::Null)
    }

    /// Its creation time in UTC, as stats show it: `2026-11-25T16:24:55Z`.
    pub fn created_utc(&self) -> String {
        format!("{}Z", format_utc(self.created_ms.div_euclid(1000)))
    }

    /// The message as Zaqar's pop shows it over REST and WebSocket: the storage
    /// fields, no href.
    pub fn popped(&self) -> Value {
        json!({
            "id": self.id,
            "age": self.age,
            "ttl": self.ttl,
            "body": self.body_value(),
            "claim_id": self.claim_id,
            "claim_count": self.claim_count,
        })
    }
}

/// A page of messages and the marker continuing the listing.
#[derive(Debug, Clone)]
pub struct MessageList {
    pub messages: Vec<Message>,
    pub next_marker: String,
}

/// A live claim with the messages it holds.
#[derive(Debug, Clone)]
pub struct Claim {
    pub id: String,
    pub ttl: u32,
    pub age: u64,
    pub messages: Vec<Message>,
}

/// Message counts of a queue, with its oldest and newest live message.
#[derive(Debug, Clone, Default)]
pub struct QueueStats {
    pub claimed: u64,
    pub free: u64,
    pub delayed: u64,
    pub total: u64,
    pub oldest: Option<Message>,
    pub newest: Option<Message>,
    /// The most messages the queue may hold (the project's `max_messages_per_queue`),
    /// when it is limited: shown as `max` beside the counts.
    pub max: Option<u64>,
    /// The bytes of the queue's message bodies and the most it may hold (the
    /// project's `max_bytes_per_queue`), when that is limited: shown as `bytes` and
    /// `max_bytes` beside the counts.
    pub bytes: Option<(u64, u64)>,
}

impl QueueStats {
    /// Zaqar's stats: the counts, and the oldest and newest message when there are
    /// any, each as `show` shows it (REST with an href, WebSocket without).
    pub fn counts(&self, show: impl Fn(&Message) -> Value) -> Value {
        let mut counts = Map::new();
        counts.insert("claimed".into(), self.claimed.into());
        counts.insert("free".into(), self.free.into());
        counts.insert("total".into(), self.total.into());
        if let Some(max) = self.max {
            counts.insert("max".into(), max.into());
        }
        if let Some((bytes, most)) = self.bytes {
            counts.insert("bytes".into(), bytes.into());
            counts.insert("max_bytes".into(), most.into());
        }
        if self.total != 0 {
            for (name, message) in [("oldest", &self.oldest), ("newest", &self.newest)] {
                if let Some(message) = message {
                    counts.insert(name.into(), show(message));
                }
            }
        }
        Value::Object(counts)
    }
}

/// A queue of a listing; `metadata` (with reserved defaults) when detailed.
#[derive(Debug, Clone)]
pub struct QueueSummary {
    pub name: String,
    pub metadata: Option<Map<String, Value>>,
}

/// A page of queues.
#[derive(Debug, Clone)]
pub struct QueueList {
    pub queues: Vec<QueueSummary>,
    /// The marker continuing the listing (the last name, else the given marker).
    pub next_marker: String,
    /// The number of queues of the project, when asked for.
    pub count: Option<u64>,
}

/// A subscription as a client sees it.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    /// The queue the subscription listens to.
    pub source: String,
    pub subscriber: String,
    pub ttl: u32,
    pub age: u64,
    pub options: Box<RawValue>,
    pub confirmed: bool,
}

impl TryFrom<pb::Subscription> for Subscription {
    type Error = ZaqarError;

    fn try_from(sub: pb::Subscription) -> Result<Subscription, ZaqarError> {
        Ok(Subscription {
            options: raw_json(sub.options_json, "subscription options", "{}")?,
            id: sub.id,
            source: sub.source,
            subscriber: zaqar_proto::uri::shown_subscriber(&sub.subscriber).to_string(),
            ttl: sub.ttl,
            age: sub.age,
            confirmed: sub.confirmed,
        })
    }
}

impl Subscription {
    /// The subscription as Zaqar shows it over REST and WebSocket (`source` is its
    /// queue's or topic's name).
    pub fn shown(&self) -> Value {
        json!({
            "id": self.id,
            "source": self.source,
            "subscriber": self.subscriber,
            "ttl": self.ttl,
            "age": self.age,
            "options": self.options,
            "confirmed": self.confirmed,
        })
    }
}

/// A page of subscriptions.
#[derive(Debug, Clone)]
pub struct SubscriptionList {
    pub subscriptions: Vec<Subscription>,
    pub next_marker: String,
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn raw_json(text: String, what: &str, empty: &str) -> Result<Box<RawValue>, ZaqarError> {
    let text = if text.is_empty() {
        empty.to_string()
    } else {
        text
    };
    RawValue::from_string(text).map_err(|err| {
        ZaqarError::internal(format!("a pool-node returned an invalid {what}: {err}"))
    })
}
