//! The queue metadata that posts are checked against, remembered per pool-node,
//! project and queue, so that a post is one pool-node call rather than two.
//!
//! A remembered value is never trusted blindly: the post carries the metadata JSON it
//! was checked against (`expected_metadata_json`) and the pool-node stores nothing
//! if the queue's metadata is another by then; the post is then checked again
//! against fresh metadata. So a change made through any api-node is seen by the
//! next post, and the cache needs no expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

/// Most queues remembered; the cache starts over when it is full.
const CAPACITY: usize = 10_000;

/// A queue's metadata as stored: its JSON ("" when the queue does not exist) and
/// the object it holds.
#[derive(Clone)]
pub struct KnownMetadata {
    pub json: String,
    pub parsed: Arc<Map<String, Value>>,
}

/// Known metadata by pool-node endpoint, project and queue.
#[derive(Default)]
pub struct QueueMetadataCache {
    entries: Mutex<HashMap<String, KnownMetadata>>,
}

fn key(endpoint: &str, project: &str, queue: &str) -> String {
    format!("{endpoint}\n{project}\n{queue}")
}

impl QueueMetadataCache {
    /// The remembered metadata of `queue` on the pool-node at `endpoint`.
    pub fn get(&self, endpoint: &str, project: &str, queue: &str) -> Option<KnownMetadata> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(&key(endpoint, project, queue)).cloned()
    }

    /// Remembers the metadata of `queue` on the pool-node at `endpoint`.
    pub fn put(&self, endpoint: &str, project: &str, queue: &str, metadata: KnownMetadata) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(key(endpoint, project, queue), metadata);
    }

    /// Forgets the metadata of `queue` on the pool-node at `endpoint`.
    pub fn forget(&self, endpoint: &str, project: &str, queue: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(&key(endpoint, project, queue));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(json: &str) -> KnownMetadata {
        KnownMetadata {
            json: json.to_string(),
            parsed: Arc::new(serde_json::from_str(json).unwrap_or_default()),
        }
    }

    #[test]
    fn metadata_is_remembered_per_endpoint_project_and_queue() {
        let cache = QueueMetadataCache::default();
        cache.put("http://a", "p", "q", known(r#"{"x":1}"#));
        assert_eq!(cache.get("http://a", "p", "q").unwrap().json, r#"{"x":1}"#);
        assert_eq!(cache.get("http://a", "p", "q").unwrap().parsed["x"], 1);
        assert!(cache.get("http://b", "p", "q").is_none());
        assert!(cache.get("http://a", "p2", "q").is_none());
        assert!(cache.get("http://a", "p", "q2").is_none());
        cache.forget("http://a", "p", "q");
        assert!(cache.get("http://a", "p", "q").is_none());
    }

    #[test]
    fn a_full_cache_starts_over() {
        let cache = QueueMetadataCache::default();
        for n in 0..CAPACITY {
            cache.put("e", "p", &n.to_string(), known("{}"));
        }
        assert!(cache.get("e", "p", "0").is_some());
        cache.put("e", "p", "new", known("{}"));
        assert!(cache.get("e", "p", "0").is_none());
        assert!(cache.get("e", "p", "new").is_some());
    }
}
