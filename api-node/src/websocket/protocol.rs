//! Zaqar's WebSocket envelope: decoding a frame into a request
//! (`{"action", "headers", "body"}`, JSON in text frames, MessagePack in binary
//! ones), checking it against the action's schema, and encoding the reply
//! `{"request", "body", "headers": {"status"}}` in the frame type it came in.

use serde_json::{json, Map, Value};
use tokio_tungstenite::tungstenite::Message;

use super::action::Action;
use super::schema;

/// How a request came, and so how its reply is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// JSON in a text frame.
    Json,
    /// MessagePack in a binary frame.
    MessagePack,
}

/// A request as Zaqar's `Handler.create_request` keeps it: the action, the
/// body (`{}` when absent) and the headers (`{}` when absent or empty).
#[derive(Debug, Clone)]
pub struct Request {
    /// The `action` field as sent (echoed in replies).
    pub action: Value,
    /// That field as an action of the API, parsed once.
    pub known: Option<Action>,
    pub body: Value,
    pub headers: Value,
}

impl Request {
    fn from_payload(payload: &Map<String, Value>) -> Request {
        let headers = match payload.get("headers") {
            Some(headers) if is_truthy(headers) => headers.clone(),
            _ => json!({}),
        };
        let action = payload.get("action").cloned().unwrap_or(Value::Null);
        Request {
            known: action.as_str().and_then(Action::parse),
            action,
            body: payload.get("body").cloned().unwrap_or_else(|| json!({})),
            headers,
        }
    }

    /// The request of a reply that answers no request (a frame that could not be read).
    pub fn none() -> Request {
        Request {
            action: Value::Null,
            known: None,
            body: json!({}),
            headers: json!({}),
        }
    }

    /// The action name as sent (empty when it is not a string), for logs.
    pub fn action_name(&self) -> &str {
        self.action.as_str().unwrap_or("")
    }

    /// A header, by its exact name (as Zaqar's dict lookups).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(Value::as_str)
    }

    /// A field of the body.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.body.get(name).filter(|value| !value.is_null())
    }

    /// The named fields of the body that are set, as a document.
    pub fn fields(&self, names: &[&str]) -> Value {
        let mut document = serde_json::Map::new();
        for name in names {
            if let Some(value) = self.field(name) {
                document.insert((*name).to_string(), value.clone());
            }
        }
        Value::Object(document)
    }

    /// A string field of the body (the schema has checked its type).
    pub fn text(&self, name: &str) -> String {
        self.field(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// The request as replies echo it.
    fn echo(&self) -> Value {
        json!({
            "action": self.action,
            "body": self.body,
            "headers": self.headers,
            "api": "v2",
        })
    }
}

/// One reply: the status and body Zaqar would send for a request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn new(status: u16, body: Value) -> Reply {
        Reply { status, body }
    }

    /// A reply `{"error": message}`.
    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply::new(status, json!({"error": message.into()}))
    }

    /// The whole reply document, with the request id `id` among its headers.
    pub fn document(&self, request: &Request, id: &str) -> Value {
        json!({
            "request": request.echo(),
            "body": self.body,
            "headers": {"status": self.status, "X-Openstack-Request-Id": id},
        })
    }
}

/// Reads a data frame into a request, or the reply refusing it (see
/// [`schema::check`] for `admin_mode`).
pub fn decode(
    data: &[u8],
    encoding: Encoding,
    admin_mode: bool,
) -> Result<Request, (Request, Reply)> {
    let decoded: Result<Value, String> = match encoding {
        Encoding::Json => serde_json::from_slice(data)
            .map_err(|err| format!("Can't decode text (JSON) request. JSONDecodeError: {err}")),
        Encoding::MessagePack => rmp_serde::from_slice(data).map_err(|err| {
            format!("Can't decode binary (MessagePack) request. DecodeError: {err}")
        }),
    };
    let payload = match decoded {
        Ok(Value::Object(payload)) => payload,
        Ok(_) => {
            let reply = Reply::error(400, "Unexpected body type. Expected dict or dict like.");
            return Err((Request::none(), reply));
        }
        Err(message) => return Err((Request::none(), Reply::error(400, message))),
    };
    let request = Request::from_payload(&payload);
    match schema::check(&payload, request.known, admin_mode) {
        Ok(()) => Ok(request),
        Err(message) => Err((request, Reply::error(400, message))),
    }
}

/// Encodes a reply (to the request of id `id`) in the frame type of its request.
pub fn encode(request: &Request, reply: &Reply, encoding: Encoding, id: &str) -> Message {
    let document = reply.document(request, id);
    match encoding {
        Encoding::Json => Message::text(document.to_string()),
        Encoding::MessagePack => match rmp_serde::to_vec_named(&document) {
            Ok(bytes) => Message::binary(bytes),
            Err(err) => {
                tracing::warn!(error = %err, "websocket reply could not be packed");
                Message::text(document.to_string())
            }
        },
    }
}

/// Python's truthiness of a JSON value.
pub fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// oslo's `strutils.bool_from_string` (what Zaqar applies to flags).
pub fn flag(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => {
            let s = s.trim().to_ascii_lowercase();
            matches!(s.as_str(), "1" | "t" | "true" | "on" | "y" | "yes")
        }
        Some(other) => other.as_i64() == Some(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_echo_what_zaqar_keeps() {
        let request = decode(
            br#"{"action": "queue_list", "headers": {"Client-ID": "c", "X-Project-ID": "p"}}"#,
            Encoding::Json,
            true,
        )
        .unwrap();
        let document = Reply::new(200, json!({})).document(&request, "req-1");
        assert_eq!(document["request"]["body"], json!({}));
        assert_eq!(document["request"]["api"], "v2");
        assert_eq!(document["headers"]["status"], 200);
        assert_eq!(document["headers"]["X-Openstack-Request-Id"], "req-1");
    }

    #[test]
    fn unreadable_frames_are_refused() {
        let (request, reply) = decode(b"nope", Encoding::Json, true).unwrap_err();
        assert_eq!(reply.status, 400);
        assert!(request.action.is_null());
        assert!(reply.body["error"]
            .as_str()
            .unwrap()
            .starts_with("Can't decode text (JSON) request."));
        let (_, reply) = decode(b"[1]", Encoding::Json, true).unwrap_err();
        assert_eq!(
            reply.body["error"],
            "Unexpected body type. Expected dict or dict like."
        );
        let (_, reply) = decode(b"{}", Encoding::Json, true).unwrap_err();
        assert_eq!(reply.body["error"], "None is not a valid action");
    }

    #[test]
    fn message_pack_round_trips() {
        let packed = rmp_serde::to_vec_named(&json!({"action": "bogus"})).unwrap();
        let (request, reply) = decode(&packed, Encoding::MessagePack, true).unwrap_err();
        assert_eq!(reply.body["error"], "bogus is not a valid action");
        let Message::Binary(bytes) = encode(&request, &reply, Encoding::MessagePack, "req-1")
        else {
            panic!("binary expected");
        };
        let back: Value = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back["headers"]["status"], 400);
    }

    #[test]
    fn flags_read_as_oslo_does() {
        assert!(flag(Some(&json!("yes"))));
        assert!(flag(Some(&json!(true))));
        assert!(flag(Some(&json!(1))));
        assert!(!flag(Some(&json!("no"))));
        assert!(!flag(None));
    }
}
