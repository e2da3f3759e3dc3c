//! The catalog's change feed: placement and pool events, fanned out to watchers
//! through a bounded broadcast channel, with lag reported as [`CatalogEvent::Reset`].
//!
//! Each backend publishes the changes it sees into its [`EventHub`]: the raft state
//! machine every entry it applies (so every node's feed holds every write), the etcd
//! backend what etcd's own watch reports, the SQL backend the writes made through its
//! process. A watcher is never silently behind: when it lags, or the feed restarts, it
//! gets a `Reset` and must forget what earlier events taught it.

use tokio::sync::broadcast;

use crate::model::PoolSpec;

/// Events a watcher may fall behind by before it is told to reset.
pub const FEED_CAPACITY: usize = 4096;

/// A change seen by the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogEvent {
    /// Earlier events may have been missed: forget what they taught.
    Reset,
    /// The queue was placed on `pool`.
    Placed {
        project: String,
        queue: String,
        pool: String,
    },
    /// The queue's placement was removed.
    Unplaced { project: String, queue: String },
    /// The pool was added or changed.
    PoolChanged(PoolSpec),
    /// The pool was removed.
    PoolRemoved(String),
}

/// Where a backend publishes its events; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventHub {
    sender: broadcast::Sender<CatalogEvent>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub::new(FEED_CAPACITY)
    }
}

impl EventHub {
    /// A hub whose watchers may lag by `capacity` events before they reset.
    pub fn new(capacity: usize) -> Self {
        EventHub {
            sender: broadcast::channel(capacity).0,
        }
    }

    /// Sends `event` to every current watcher (none is fine).
    pub fn publish(&self, event: CatalogEvent) {
        let _ = self.sender.send(event);
    }

    /// A watcher of the events published from now on; its first event is `Reset`.
    pub fn subscribe(&self) -> Watch {
        Watch {
            receiver: self.sender.subscribe(),
            started: false,
        }
    }
}

/// One watcher of an [`EventHub`].
#[derive(Debug)]
pub struct Watch {
    receiver: broadcast::Receiver<CatalogEvent>,
    started: bool,
}

impl Watch {
    /// The next event: `Reset` first, then the events in the order they were published,
    /// with `Reset` in place of any run of events this watcher lagged behind on. `None`
    /// once the hub is gone (the backend was dropped).
    pub async fn next(&mut self) -> Option<CatalogEvent> {
        if !self.started {
            self.started = true;
            return Some(CatalogEvent::Reset);
        }
        match self.receiver.recv().await {
            Ok(event) => Some(event),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "a catalog watcher lagged; it is told to reset");
                Some(CatalogEvent::Reset)
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn removed(name: &str) -> CatalogEvent {
        CatalogEvent::PoolRemoved(name.into())
    }

    #[tokio::test]
    async fn a_watcher_starts_with_a_reset_then_sees_events_in_order() {
        let hub = EventHub::default();
        hub.publish(removed("before"));
        let mut watch = hub.subscribe();
        hub.publish(removed("a"));
        hub.publish(removed("b"));
        assert_eq!(watch.next().await, Some(CatalogEvent::Reset));
        assert_eq!(watch.next().await, Some(removed("a")));
        assert_eq!(watch.next().await, Some(removed("b")));
    }

    #[tokio::test]
    async fn a_lagging_watcher_is_told_to_reset() {
        let hub = EventHub::new(2);
        let mut watch = hub.subscribe();
        assert_eq!(watch.next().await, Some(CatalogEvent::Reset));
        for name in ["a", "b", "c", "d"] {
            hub.publish(removed(name));
        }
        assert_eq!(watch.next().await, Some(CatalogEvent::Reset));
        assert_eq!(watch.next().await, Some(removed("c")));
        assert_eq!(watch.next().await, Some(removed("d")));
        drop(hub);
        assert_eq!(watch.next().await, None);
    }
}
