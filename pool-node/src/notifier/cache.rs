//! The messages of recent posts, by id, so delivery sends a message exactly as
//! posted (its `delay` included, never decrypted again). A document is built on
//! its first delivery, not on the post's path. With tracing on, each message keeps
//! the trace context of its post, so that its deliveries join the post's trace.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use zaqar_proto::pb::NewMessage;

use super::target;

/// A bounded map of message id to document; the oldest entries go first.
pub struct DocumentCache {
    capacity: usize,
    entries: Mutex<Entries>,
}

/// The headers that carry a post's trace context (`zaqar_proto::trace`), shared
/// by the messages of the post.
pub type TraceHeaders = Arc<[(&'static str, String)]>;

#[derive(Default)]
struct Entries {
    documents: HashMap<String, (Cached, TraceHeaders)>,
    order: VecDeque<String>,
}

enum Cached {
    Posted(NewMessage),
    Built(Arc<str>),
}

impl DocumentCache {
    pub fn new(capacity: usize) -> Self {
        DocumentCache {
            capacity,
            entries: Mutex::new(Entries::default()),
        }
    }

    /// Keeps the messages of one post, by their new ids, with the post's `trace`.
    pub fn insert(
        &self,
        posted: impl IntoIterator<Item = (String, NewMessage)>,
        trace: TraceHeaders,
    ) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self
            .entries
            .lock()
            .expect("the cache lock is never poisoned");
        for (id, message) in posted {
            let cached = (Cached::Posted(message), trace.clone());
            if entries.documents.insert(id.clone(), cached).is_none() {
                entries.order.push_back(id);
            }
            while entries.order.len() > self.capacity {
                if let Some(oldest) = entries.order.pop_front() {
                    entries.documents.remove(&oldest);
                }
            }
        }
    }

    /// The document of message `id` of queue `queue_name`, if it is cached.
    pub fn document(&self, id: &str, queue_name: &str) -> Option<Arc<str>> {
        let mut entries = self
            .entries
            .lock()
            .expect("the cache lock is never poisoned");
        let (cached, _) = entries.documents.get_mut(id)?;
        let built: Arc<str> = match cached {
            Cached::Built(document) => return Some(document.clone()),
            Cached::Posted(message) => target::document_of(queue_name, message).into(),
        };
        *cached = Cached::Built(built.clone());
        Some(built)
    }

    /// The trace context of the post of message `id`, if it is cached (empty when
    /// tracing was off).
    pub fn trace(&self, id: &str) -> Option<TraceHeaders> {
        let entries = self
            .entries
            .lock()
            .expect("the cache lock is never poisoned");
        entries.documents.get(id).map(|(_, trace)| trace.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_messages_are_evicted_first() {
        let message = |n: u32| NewMessage {
            ttl: 60,
            delay: n,
            body_json: n.to_string(),
        };
        let cache = DocumentCache::new(2);
        let trace: TraceHeaders = Arc::new([("traceparent", "00-1-2-01".to_string())]);
        cache.insert(
            [("a".into(), message(0)), ("b".into(), message(2))],
            Arc::new([]),
        );
        cache.insert([("c".into(), message(3))], trace.clone());
        assert_eq!(cache.document("a", "q"), None);
        let b = r#"{"ttl":60,"body":2,"delay":2,"Message_Type":"Notification","queue_name":"q"}"#;
        assert_eq!(cache.document("b", "q").as_deref(), Some(b));
        assert_eq!(cache.document("b", "q").as_deref(), Some(b));
        assert!(cache.document("c", "q").is_some());
        assert_eq!(cache.trace("c").as_deref(), Some(&trace[..]));
        assert_eq!(cache.trace("b").map(|t| t.len()), Some(0));
        let empty = DocumentCache::new(0);
        empty.insert([("a".into(), message(0))], Arc::new([]));
        assert_eq!(empty.document("a", "q"), None);
    }
}
