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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
}

#[derive(Default)]
struct Pending {
    queues: HashSet<(String, String)>,
    everything: bool,
}

impl Activity {
    /// Notes that `queue` may have messages now. Costs one atomic read while no
    /// api-node watches.
    pub fn changed(&self, queue: &QueueRef) {
        if self.inner.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        for subscriber in lock(&self.inner.subscribers).values() {
            subscriber.mark(queue);
        }
    }

    /// How many streams are open.
    pub fn watchers(&self) -> usize {
        self.inner.count.load(Ordering::Relaxed)
    }

    /// A new stream of events: an empty one first (the stream is live), then one per
    /// batch of changes, until the client hangs up or the server stops.
    pub fn subscribe(&self, mut stopping: Stopping) -> QueueActivityStream {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let subscriber = Arc::new(Subscriber::default());
        {
            let mut subscribers = lock(&self.inner.subscribers);
            subscribers.insert(id, subscriber.clone());
            self.inner.count.store(subscribers.len(), Ordering::Relaxed);
        }
        let registration = Registration {
            inner: self.inner.clone(),
            id,
        };
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

/// Removes a subscriber when its stream's task ends.
struct Registration {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut subscribers = lock(&self.inner.subscribers);
        subscribers.remove(&self.id);
        self.inner.count.store(subscribers.len(), Ordering::Relaxed);
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
