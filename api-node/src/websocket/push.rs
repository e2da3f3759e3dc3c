//! Websocket push subscriptions, as Zaqar 23 makes them: a `subscription_create`
//! without `subscriber` subscribes the URL `<notification url><connection id>`,
//! an HTTP endpoint of this api-node (`notification`). The pool-node's webhook
//! notifier POSTs each notification there, and it is sent down the connection
//! as a frame: the POSTed document as is in a text frame, or packed as
//! MessagePack in a binary frame when the subscription was made in a binary one
//! (the format of the last push subscription made on the connection wins).
//!
//! A push subscription lives while its connection is open and its ttl lasts
//! (default 3600 s; it is not renewed): when the connection closes, its push
//! subscriptions are deleted. When the api-node dies they are left to their
//! ttl, and the listener answers 404 for connections it does not know, which
//! the notifier takes as final. Notifications share the connection's bounded
//! reply queue: a connection that does not read them fast enough is dropped,
//! as for replies, and the listener answers 410.
//!
//! Where this differs from Zaqar 23, on purpose: the listener answers 404 / 410
//! for unknown or closed connections (Zaqar answers 200 and drops the data);
//! with `require_subscription_confirmation` a push subscription is confirmed at
//! once (Zaqar leaves it unconfirmed, so it is never notified); the number of
//! connections with push subscriptions and of push subscriptions per
//! connection is bounded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Message;
use zaqar_proto::ZaqarError;

use super::protocol::{Encoding, Reply, Request};
use super::Replies;
use crate::operations::{subscriptions, Context, Payload};

/// Whether `request` asks for a push subscription (no subscriber, as Zaqar's
/// `if not subscriber`).
pub fn is_push_create(request: &Request) -> bool {
    request.known == Some(super::Action::SubscriptionCreate)
        && request
            .field("subscriber")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .is_empty()
}

/// The live connections that hold push subscriptions, by connection id.
pub struct Registry {
    /// `http://host:port/`: a connection's subscriber URL is this and its id.
    base_url: String,
    max_connections: usize,
    max_subscriptions: usize,
    connections: Mutex<HashMap<String, Arc<Endpoint>>>,
}

/// Where one connection's notifications go.
struct Endpoint {
    /// The connection's bounded reply queue.
    replies: Replies,
    /// Notifications are packed as MessagePack in binary frames.
    binary: AtomicBool,
    /// Signalled when the queue is full: the connection drops itself.
    too_slow: Notify,
}

/// What became of one notification POSTed to the listener.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Queued on the connection.
    Sent,
    /// No such connection (never was, or closed and forgotten).
    Unknown,
    /// The connection is closing, or was too slow and is being dropped.
    Closed,
    /// The document cannot be sent as the connection wants it.
    Unreadable(String),
}

impl Registry {
    pub fn new(base_url: String, max_connections: usize, max_subscriptions: usize) -> Registry {
        let base_url = if base_url.ends_with('/') {
            base_url
        } else {
            format!("{base_url}/")
        };
        Registry {
            base_url,
            max_connections,
            max_subscriptions: max_subscriptions.max(1),
            connections: Mutex::new(HashMap::new()),
        }
    }

    /// The base URL of subscriber URLs.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Sends `document` (a notification's body) down connection `id`.
    pub fn deliver(&self, id: &str, document: Bytes) -> Delivery {
        let Some(endpoint) = self.lock().get(id).cloned() else {
            return Delivery::Unknown;
        };
        let frame = if endpoint.binary.load(Ordering::Relaxed) {
            let packed = serde_json::from_slice::<Value>(&document)
                .map_err(|err| err.to_string())
                .and_then(|value| rmp_serde::to_vec_named(&value).map_err(|err| err.to_string()));
            match packed {
                Ok(bytes) => Message::binary(bytes),
                Err(err) => return Delivery::Unreadable(format!("not a JSON document: {err}")),
            }
        } else {
            match String::from_utf8(document.to_vec()) {
                Ok(text) => Message::text(text),
                Err(_) => return Delivery::Unreadable("not UTF-8 text".to_string()),
            }
        };
        match endpoint.replies.try_send(Box::new(frame)) {
            Ok(()) => Delivery::Sent,
            Err(mpsc::error::TrySendError::Full(_)) => {
                endpoint.too_slow.notify_one();
                Delivery::Closed
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Closed,
        }
    }

    fn register(&self, id: &str, endpoint: Arc<Endpoint>) -> bool {
        let mut connections = self.lock();
        if connections.len() >= self.max_connections {
            return false;
        }
        connections.insert(id.to_string(), endpoint);
        true
    }

    fn unregister(&self, id: &str) {
        self.lock().remove(id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Endpoint>>> {
        // A panic while holding the lock leaves the map consistent (single inserts/removes).
        self.connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A push subscription held by a connection, deleted when it closes.
struct Held {
    ctx: Context,
    queue: String,
    id: String,
}

/// The push side of one connection: registered with the registry at its first
/// push subscription.
pub struct ConnectionPush {
    registry: Option<Arc<Registry>>,
    endpoint: Option<(String, Arc<Endpoint>)>,
    held: Vec<Held>,
}

impl ConnectionPush {
    /// `registry` is `None` when push subscriptions are off.
    pub fn new(registry: Option<Arc<Registry>>) -> ConnectionPush {
        ConnectionPush {
            registry,
            endpoint: None,
            held: Vec::new(),
        }
    }

    /// Completes when the connection's notifications overflow its reply queue.
    pub async fn too_slow(&self) {
        match &self.endpoint {
            Some((_, endpoint)) => endpoint.too_slow.notified().await,
            None => std::future::pending().await,
        }
    }

    /// Creates a push subscription for this connection (`is_push_create`).
    pub async fn subscribe(
        &mut self,
        ctx: &Context,
        request: &Request,
        queue: &str,
        encoding: Encoding,
        replies: &Replies,
    ) -> Result<Reply, ZaqarError> {
        let Some(registry) = self.registry.clone() else {
            return Err(ZaqarError::titled(
                zaqar_proto::ErrorCode::BadRequest,
                "Invalid API request",
                "WebSocket subscriptions (without a subscriber) are turned off on this server.",
            ));
        };
        if self.held.len() >= registry.max_subscriptions {
            return Err(ZaqarError::bad_request(format!(
                "A connection may hold at most {} websocket subscriptions.",
                registry.max_subscriptions
            )));
        }
        let id = self.endpoint_id(&registry, replies)?;
        let url = format!("{}{id}", registry.base_url);
        let mut document = json!({"subscriber": zaqar_proto::uri::push_subscriber(&url)});
        for name in ["ttl", "options"] {
            if let Some(value) = request.field(name) {
                document[name] = value.clone();
            }
        }
        let created = subscriptions::create_push(ctx, queue, &payload(&document)).await?;
        if !created.created {
            // Zaqar's storage refuses the same subscriber twice on a queue.
            return Ok(Reply::new(
                409,
                json!(format!("Subscription {queue} not created.")),
            ));
        }
        if ctx.services.require_subscription_confirmation {
            let confirmed = payload(&json!({"confirmed": true}));
            subscriptions::confirm(ctx, queue, &created.id, &confirmed).await?;
        }
        if let Some((_, endpoint)) = &self.endpoint {
            let binary = encoding == Encoding::MessagePack;
            endpoint.binary.store(binary, Ordering::Relaxed);
        }
        tracing::debug!(project = %ctx.project(), queue, subscription = %created.id,
            connection = %id, "websocket push subscription created");
        self.held.push(Held {
            ctx: ctx.clone(),
            queue: queue.to_string(),
            id: created.id.clone(),
        });
        Ok(Reply::new(
            201,
            json!({"subscription_id": created.id, "message": format!("Subscription {queue} created.")}),
        ))
    }

    /// Forgets a push subscription that `request` (a `subscription_delete`
    /// that succeeded) deleted.
    pub fn forget(&mut self, ctx_project: &str, queue: &str, id: &str) {
        self.held.retain(|held| {
            !(held.id == id && held.queue == queue && held.ctx.project() == ctx_project)
        });
    }

    /// The connection is closing: no more notifications, and its push
    /// subscriptions are deleted (failures are logged; the ttl ends them).
    pub async fn close(&mut self) {
        if let (Some(registry), Some((id, _))) = (&self.registry, self.endpoint.take()) {
            registry.unregister(&id);
        }
        for held in self.held.drain(..) {
            if let Err(err) = subscriptions::delete(&held.ctx, &held.queue, &held.id).await {
                tracing::warn!(project = %held.ctx.project(), queue = %held.queue,
                    subscription = %held.id, error = %err.description,
                    "websocket push subscription not deleted at close: it lasts until its ttl");
            }
        }
    }

    /// This connection's id, registering it at its first push subscription.
    fn endpoint_id(
        &mut self,
        registry: &Registry,
        replies: &Replies,
    ) -> Result<String, ZaqarError> {
        if let Some((id, _)) = &self.endpoint {
            return Ok(id.clone());
        }
        let id = uuid::Uuid::new_v4().to_string();
        let endpoint = Arc::new(Endpoint {
            replies: replies.clone(),
            binary: AtomicBool::new(false),
            too_slow: Notify::new(),
        });
        if !registry.register(&id, endpoint.clone()) {
            tracing::warn!(
                max = registry.max_connections,
                "websocket push subscription refused: too many connections hold one"
            );
            return Err(ZaqarError::unavailable(
                "Too many websocket connections hold subscriptions. Please try again later.",
            ));
        }
        self.endpoint = Some((id.clone(), endpoint));
        Ok(id)
    }
}

fn payload(document: &Value) -> Payload {
    Payload::Read(Bytes::from(document.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(queue: usize, binary: bool) -> (Arc<Endpoint>, mpsc::Receiver<Box<Message>>) {
        let (replies, queued) = mpsc::channel(queue);
        let endpoint = Endpoint {
            replies,
            binary: AtomicBool::new(binary),
            too_slow: Notify::new(),
        };
        (Arc::new(endpoint), queued)
    }

    #[test]
    fn is_push_create_when_the_subscriber_is_missing_or_empty() {
        let request = |body: Value| Request {
            action: json!("subscription_create"),
            known: Some(super::super::Action::SubscriptionCreate),
            body,
            headers: json!({}),
        };
        assert!(is_push_create(&request(json!({"queue_name": "q"}))));
        assert!(is_push_create(&request(json!({"subscriber": ""}))));
        assert!(is_push_create(&request(json!({"subscriber": null}))));
        assert!(!is_push_create(&request(
            json!({"subscriber": "http://x/"})
        )));
    }

    #[tokio::test]
    async fn documents_go_to_their_connection_as_text_or_message_pack() {
        let registry = Registry::new("http://127.0.0.1:1".into(), 10, 10);
        assert_eq!(registry.base_url(), "http://127.0.0.1:1/");
        let (text, mut text_frames) = endpoint(4, false);
        let (packed, mut packed_frames) = endpoint(4, true);
        assert!(registry.register("a", text));
        assert!(registry.register("b", packed));
        let document = Bytes::from_static(br#"{"body":{"n":1},"queue_name":"q"}"#);
        assert_eq!(registry.deliver("a", document.clone()), Delivery::Sent);
        assert_eq!(registry.deliver("b", document.clone()), Delivery::Sent);
        assert_eq!(registry.deliver("c", document), Delivery::Unknown);
        assert_eq!(
            *text_frames.recv().await.unwrap(),
            Message::text(r#"{"body":{"n":1},"queue_name":"q"}"#)
        );
        let Message::Binary(bytes) = *packed_frames.recv().await.unwrap() else {
            panic!("a binary frame expected");
        };
        let unpacked: Value = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(unpacked, json!({"body": {"n": 1}, "queue_name": "q"}));
        assert!(matches!(
            registry.deliver("b", Bytes::from_static(b"not json")),
            Delivery::Unreadable(_)
        ));
        registry.unregister("a");
        assert_eq!(
            registry.deliver("a", Bytes::from_static(b"{}")),
            Delivery::Unknown
        );
    }

    #[tokio::test]
    async fn a_full_queue_marks_the_connection_too_slow() {
        let registry = Registry::new("http://h/".into(), 10, 10);
        let (slow, _frames) = endpoint(1, false);
        registry.register("slow", slow.clone());
        assert_eq!(
            registry.deliver("slow", Bytes::from_static(b"{}")),
            Delivery::Sent
        );
        assert_eq!(
            registry.deliver("slow", Bytes::from_static(b"{}")),
            Delivery::Closed
        );
        // The permit is kept until the connection waits for it.
        tokio::time::timeout(std::time::Duration::from_secs(5), slow.too_slow.notified())
            .await
            .unwrap();
    }

    #[test]
    fn the_registry_is_bounded() {
        let registry = Registry::new("http://h/".into(), 1, 10);
        let (first, _a) = endpoint(1, false);
        let (second, _b) = endpoint(1, false);
        assert!(registry.register("1", first));
        assert!(!registry.register("2", second));
        assert_eq!(registry.deliver("2", Bytes::new()), Delivery::Unknown);
    }
}
