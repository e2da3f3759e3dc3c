//! Queue activity: which queues of this pool-node may have new messages, streamed to
//! the api-nodes that hold long-polling requests (`PoolService::WatchQueues`).
//!
//! A post (or a released claim) marks its queue in every subscriber's pending set and
//! wakes the subscriber's stream, which sends the set as one event. Events are
//! coalesced: after sending one, a stream waits [`COALESCE`] before the next, so a busy
//! pool sends each api-node at most a few hundred small events a second whatever its
//! post rate, and a queue posted to a thousand times in between is named once. An idle
//! stream sends the first event at once. A pending set holds at most [`MAX_PENDING`]
//! queues; beyond, the event says `everything` (every waiter looks again).
//!
//! Several pool-nodes may serve one store (replicas of a pool): a [`Relay`] takes this
//! pool-node's changes, coalesced the same way, for the store to pass to the others
//! (`redis_store::relay`, `mongo_store::relay`), and hands what the others changed to
//! this pool-node's streams.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use zaqar_proto::pb::{QueueActivity, QueueRef};
use zaqar_proto::stopping::Stopping;
use zaqar_proto::QueueActivityStream;

/// Pause between two events of one stream.
pub const COALESCE: Duration = Duration::from_millis(5);
/// Queues one subscriber's pending set names before it says `everything` instead.
pub const MAX_PENDING: usize = 10_000;

/// The subscribers of one pool-node (cheap to clone, shared by its `PoolServer`s).
#[derive(Clone, Default)]
pub struct Activity {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    subscribers: Mutex<HashMap<u64, Arc<Subscriber>>>,
    /// How many entries `subscribers` has, read without the lock on every post.
    count: AtomicUsize,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Subscriber {
    pending: Mutex<Pending>,
    wake: Notify,
    /// A relay's: changes heard from other pool-nodes are not passed back to it.
    relays: bool,
}

#[derive(Default)]
struct Pending {
    queues: HashSet<(String, String)>,
    everything: bool,
}

impl Activity {
    /// Notes that `queue` may have messages now. Costs one atomic read while
    /// nothing follows the activity: no api-node's stream, and no relay to other
    /// pool-nodes (a store that has replicas keeps one for as long as it runs).
    pub fn changed(&self, queue: &QueueRef) {
        if self.inner.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        for subscriber in lock(&self.inner.subscribers).values() {
            subscriber.mark(queue);
        }
    }

    /// How many streams are open (relays are not streams).
    #[cfg(test)]
    fn watchers(&self) -> usize {
        let subscribers = lock(&self.inner.subscribers);
        subscribers.values().filter(|s| !s.relays).count()
    }

    /// Adds `subscriber` and the registration that removes it when dropped.
    fn register(&self, subscriber: Arc<Subscriber>) -> Registration {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let mut subscribers = lock(&self.inner.subscribers);
        subscribers.insert(id, subscriber);
        self.inner.count.store(subscribers.len(), Ordering::Relaxed);
        Registration {
            inner: Arc::downgrade(&self.inner),
            id,
        }
    }

    /// This pool-node's changes for the other pool-nodes of its store, from now on.
    pub fn relay(&self) -> Relay {
        let subscriber = Arc::new(Subscriber {
            relays: true,
            ..Subscriber::default()
        });
        Relay {
            registration: self.register(subscriber.clone()),
            subscriber,
        }
    }

    /// A new stream of events: an empty one first (the stream is live), then one per
    /// batch of changes, until the client hangs up or the server stops.
    pub fn subscribe(&self, mut stopping: Stopping) -> QueueActivityStream {
        let subscriber = Arc::new(Subscriber::default());
        let registration = self.register(subscriber.clone());
        let (sink, stream) = mpsc::channel(1);
        tokio::spawn(async move {
            let _registration = registration;
            let mut event = QueueActivity::default();
            loop {
                if sink.send(Ok(event)).await.is_err() {
                    return;
                }
                tokio::select! {
                    () = subscriber.wake.notified() => {}
                    () = sink.closed() => return,
                    () = stopping.stopped() => {
                        let _ = sink.send(Err(Status::unavailable("the pool-node is stopping"))).await;
                        return;
                    }
                }
                tokio::time::sleep(COALESCE).await;
                event = subscriber.take();
            }
        });
        Box::pin(ReceiverStream::new(stream))
    }
}

impl Subscriber {
    fn mark(&self, queue: &QueueRef) {
        {
            let mut pending = lock(&self.pending);
            if !pending.everything {
                if pending.queues.len() < MAX_PENDING {
                    pending
                        .queues
                        .insert((queue.project.clone(), queue.queue.clone()));
                } else {
                    pending.queues.clear();
                    pending.everything = true;
                }
            }
        }
        self.wake.notify_one();
    }

    fn mark_everything(&self) {
        {
            let mut pending = lock(&self.pending);
            pending.queues.clear();
            pending.everything = true;
        }
        self.wake.notify_one();
    }

    /// The pending changes as one event, leaving the set empty.
    fn take(&self) -> QueueActivity {
        let pending = std::mem::take(&mut *lock(&self.pending));
        QueueActivity {
            queues: pending
                .queues
                .into_iter()
                .map(|(project, queue)| QueueRef { project, queue })
                .collect(),
            everything: pending.everything,
        }
    }
}

/// The changes of one pool-node for the other pool-nodes of its store, and the way
/// back for theirs. It ends (`next` gives `None`) when the pool-node's [`Activity`] is
/// dropped.
pub struct Relay {
    subscriber: Arc<Subscriber>,
    registration: Registration,
}

impl Relay {
    /// The next batch of this pool-node's changes, coalesced as a stream's events are;
    /// `None` once the pool-node is gone.
    pub async fn next(&self) -> Option<QueueActivity> {
        loop {
            tokio::select! {
                () = self.subscriber.wake.notified() => break,
                () = tokio::time::sleep(RELAY_LIVENESS) => {
                    if self.is_gone() {
                        return None;
                    }
                }
            }
        }
        tokio::time::sleep(COALESCE).await;
        Some(self.subscriber.take())
    }

    /// Whether the pool-node whose changes this relays is gone.
    pub fn is_gone(&self) -> bool {
        self.registration.inner.strong_count() == 0
    }

    /// Passes changes another pool-node of the store made to this one's streams.
    pub fn heard(&self, event: &QueueActivity) {
        let Some(inner) = self.registration.inner.upgrade() else {
            return;
        };
        for subscriber in lock(&inner.subscribers).values() {
            if subscriber.relays {
                continue;
            }
            if event.everything {
                subscriber.mark_everything();
            }
            for queue in &event.queues {
                subscriber.mark(queue);
            }
        }
    }
}

/// How often a [`Relay`] with nothing to send checks that its pool-node still runs.
const RELAY_LIVENESS: Duration = Duration::from_secs(1);

/// Removes a subscriber when its stream's task (or its relay) ends.
struct Registration {
    inner: Weak<Inner>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let mut subscribers = lock(&inner.subscribers);
        subscribers.remove(&self.id);
        inner.count.store(subscribers.len(), Ordering::Relaxed);
    }
}

/// Two pool-nodes of one store (`watched` and `posting`, two handles on it): what is
/// posted to `q` through the second is named by an event of the first's stream (the
/// relay's subscription may take a moment to be made, so the post is made again each
/// second, for at most 10 s).
#[cfg(test)]
pub(crate) async fn assert_relayed(
    watched: Arc<dyn crate::store::MessageStore>,
    posting: Arc<dyn crate::store::MessageStore>,
    q: QueueRef,
) {
    use std::time::Instant;
    use tokio_stream::StreamExt;
    use tonic::Request;
    use zaqar_proto::pb::pool_service_server::PoolService;
    use zaqar_proto::pb::{NewMessage, PostMessagesRequest, WatchQueuesRequest};

    let watched = crate::server::PoolServer::new(watched);
    let posting = crate::server::PoolServer::new(posting);
    let mut stream = watched
        .watch_queues(Request::new(WatchQueuesRequest {}))
        .await
        .expect("a stream")
        .into_inner();
    let first = stream
        .next()
        .await
        .expect("an event")
        .expect("not an error");
    assert_eq!(first, QueueActivity::default(), "the stream starts live");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "no event named the queue posted to"
        );
        posting
            .post_messages(Request::new(PostMessagesRequest {
                queue: Some(q.clone()),
                client_id: "producer".into(),
                messages: vec![NewMessage {
                    ttl: 60,
                    delay: 0,
                    body_json: "{}".into(),
                }],
                ..PostMessagesRequest::default()
            }))
            .await
            .expect("the post");
        let heard = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(event) = stream.next().await {
                let event = event.expect("not an error");
                if event.queues.contains(&q) {
                    return true;
                }
            }
            false
        })
        .await;
        if heard == Ok(true) {
            return;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    fn queue(project: &str, name: &str) -> QueueRef {
        QueueRef {
            project: project.to_string(),
            queue: name.to_string(),
        }
    }

    async fn next(stream: &mut QueueActivityStream) -> QueueActivity {
        tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("an event within 5 s")
            .expect("the stream is open")
            .expect("an event, not an error")
    }

    fn names(event: &QueueActivity) -> Vec<String> {
        let mut names: Vec<String> = event
            .queues
            .iter()
            .map(|q| format!("{}/{}", q.project, q.queue))
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_stream_starts_live_and_names_each_changed_queue_once_per_event() {
        let activity = Activity::default();
        let mut stream = activity.subscribe(Stopping::never());
        assert_eq!(next(&mut stream).await, QueueActivity::default());
        assert_eq!(activity.watchers(), 1);
        for _ in 0..100 {
            activity.changed(&queue("p", "a"));
        }
        activity.changed(&queue("q", "b"));
        let event = next(&mut stream).await;
        // The first change is sent at once or after the coalescing pause; either way
        // no queue is named twice and none is lost.
        let mut seen = names(&event);
        if seen.len() < 2 {
            seen.extend(names(&next(&mut stream).await));
            seen.sort();
        }
        assert_eq!(seen, vec!["p/a", "q/b"]);
    }

    #[tokio::test]
    async fn a_relay_takes_local_changes_and_hands_on_the_others() {
        let activity = Activity::default();
        let relay = activity.relay();
        let mut stream = activity.subscribe(Stopping::never());
        next(&mut stream).await;
        assert_eq!(activity.watchers(), 1, "a relay is no watcher");
        activity.changed(&queue("p", "a"));
        let out = tokio::time::timeout(Duration::from_secs(5), relay.next())
            .await
            .expect("a batch within 5 s")
            .expect("the pool-node runs");
        assert_eq!(names(&out), vec!["p/a"]);
        assert_eq!(names(&next(&mut stream).await), vec!["p/a"]);
        relay.heard(&QueueActivity {
            queues: vec![queue("p", "b")],
            everything: false,
        });
        assert_eq!(names(&next(&mut stream).await), vec!["p/b"]);
        let passed_back = tokio::time::timeout(Duration::from_millis(200), relay.next()).await;
        assert!(passed_back.is_err(), "what was heard is not relayed again");
        assert!(!relay.is_gone());
        drop(stream);
        drop(activity);
        assert!(relay.is_gone());
        assert_eq!(relay.next().await, None);
    }

    #[tokio::test]
    async fn too_many_changed_queues_become_everything() {
        let activity = Activity::default();
        let mut stream = activity.subscribe(Stopping::never());
        next(&mut stream).await;
        for n in 0..=MAX_PENDING {
            activity.changed(&queue("p", &n.to_string()));
        }
        let event = next(&mut stream).await;
        assert!(event.everything);
        assert!(event.queues.is_empty());
    }

    #[tokio::test]
    async fn streams_end_when_the_node_stops_and_leave_no_subscriber() {
        let activity = Activity::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopping = Stopping::on(async move {
            let _ = stopped.await;
        });
        let mut stream = activity.subscribe(stopping);
        next(&mut stream).await;
        stop.send(()).unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap();
        assert!(matches!(ended, Some(Err(status)) if status.code() == tonic::Code::Unavailable));
        assert!(stream.next().await.is_none());
        assert_eq!(activity.watchers(), 0);
        let dropped = activity.subscribe(Stopping::never());
        drop(dropped);
        tokio::time::timeout(Duration::from_secs(5), async {
            while activity.watchers() > 0 {
                activity.changed(&queue("p", "a"));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("a stream dropped by its client is forgotten");
    }
}
