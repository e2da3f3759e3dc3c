//! The messages of recent posts, by id, so delivery sends a message exactly as
//! posted (its `delay` included, never decrypted again). A document is built on
//! its first delivery, not on the post's path.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use zaqar_proto::pb::NewMessage;

use super::target;

/// A bounded map of message id to document; the oldest entries go first.
pub struct DocumentCache {
    capacity: usize,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    documents: HashMap<String, Cached>,
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

    /// Keeps the messages of one post, by their new ids.
    pub fn insert(&self, posted: impl IntoIterator<Item = (String, NewMessage)>) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self
            .entries
            .lock()
            .expect("the cache lock is never poisoned");
        for (id, message) in posted {
            let cached = Cached::Posted(message);
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
        let cached = entries.documents.get_mut(id)?;
        let built: Arc<str> = match cached {
            Cached::Built(document) => return Some(document.clone()),
            Cached::Posted(message) => target::document_of(queue_name, message).into(),
        };
        *cached = Cached::Built(built.clone());
        Some(built)
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
        cache.insert([("a".into(), message(0)), ("b".into(), message(2))]);
        cache.insert([("c".into(), message(3))]);
        assert_eq!(cache.document("a", "q"), None);
        let b = r#"{"ttl":60,"body":2,"delay":2,"Message_Type":"Notification","queue_name":"q"}"#;
        assert_eq!(cache.document("b", "q").as_deref(), Some(b));
        assert_eq!(cache.document("b", "q").as_deref(), Some(b));
        assert!(cache.document("c", "q").is_some());
        let empty = DocumentCache::new(0);
        empty.insert([("a".into(), message(0))]);
        assert_eq!(empty.document("a", "q"), None);
    }
}
