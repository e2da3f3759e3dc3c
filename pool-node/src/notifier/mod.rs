//! The notifier: delivers posted messages to a queue's subscriptions (webhook and
//! email), off the post's critical path.

mod config;
mod deliver;
mod dispatch;
mod mailto;
pub mod retry;
pub mod target;
mod webhook;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;
use zaqar_proto::pb::{NewMessage, QueueRef};
use zaqar_proto::ZaqarError;

use crate::store::MessageStore;

pub use config::NotifierConfig;
use deliver::Deliverer;
use dispatch::{Dispatcher, Post};

/// Hands successful posts to a background task that notifies the queue's subscribers.
///
/// What is delivered, and how:
/// - For every post acknowledged by the store, each subscription of the queue that
///   is live (not expired) and confirmed when the post is fanned out gets one
///   notification per message, in posting order: an HTTP POST for `http://` and
///   `https://` subscribers, an email for `mailto:` subscribers. Other schemes
///   (websocket, `trust+http`) are not delivered by this notifier yet.
/// - Payload, headers, email subject and sender follow Zaqar 23 (see `target.rs`).
/// - A failed attempt (connection error, timeout, HTTP 408/429/5xx, SMTP 4xx) is
///   retried following Zaqar's `_retry_policy` of the subscription or queue, with
///   Zaqar's defaults (see `retry.rs`); a refusal (other HTTP 4xx, SMTP 5xx, bad
///   address) is not. After the last retry the notification is dropped and logged.
///   A subscription deleted or unconfirmed while waiting for a retry gets nothing more.
/// - Per subscription, notifications are sent one at a time in posting order, so
///   one message is retried before the next is sent. Subscriptions do not wait for
///   each other: at most `max_in_flight` attempts run at once, each within
///   `delivery_timeout_ms`, so a dead endpoint holds at most one slot at a time
///   for at most the timeout.
/// - [`Notifier::notify`] never waits: when `queue_capacity` posts are already
///   waiting to be fanned out, the post is not notified; when one subscription
///   has `subscriber_queue_capacity` posts waiting, that subscription misses the
///   new one. Both are logged as warnings and counted in [`Notifier::dropped`].
///
/// The promise is *best effort, in memory*: a notification is attempted until it
/// is delivered, refused or out of retries, and a retry after a timeout may
/// deliver it twice. Everything waiting lives in memory only: a crash or restart
/// of the pool-node loses the notifications not yet delivered, and a post whose
/// fan-out finds the store unreachable is not notified. Durable at-least-once
/// delivery is the next step.
#[derive(Clone)]
pub struct Notifier {
    posts: mpsc::Sender<Post>,
    dropped: Arc<AtomicU64>,
}

impl Notifier {
    /// Starts the notifier's task on the current tokio runtime; it stops when every
    /// handle is dropped, after fanning out what was already handed over.
    pub fn spawn(
        store: Arc<dyn MessageStore>,
        config: &NotifierConfig,
    ) -> Result<Self, ZaqarError> {
        let deliverer = Deliverer::new(store.clone(), config)?;
        let dropped = Arc::new(AtomicU64::new(0));
        let (posts, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let dispatcher = Dispatcher::new(
            store,
            deliverer,
            config.subscriber_queue_capacity,
            dropped.clone(),
        );
        tokio::spawn(dispatcher.run(receiver));
        Ok(Notifier { posts, dropped })
    }

    /// Hands the messages of one successful post over, without waiting.
    pub fn notify(&self, queue: QueueRef, messages: Vec<NewMessage>) {
        if messages.is_empty() {
            return;
        }
        let count = messages.len();
        if let Err(err) = self.posts.try_send(Post { queue, messages }) {
            let post = match err {
                mpsc::error::TrySendError::Full(post) | mpsc::error::TrySendError::Closed(post) => {
                    post
                }
            };
            self.dropped.fetch_add(count as u64, Ordering::Relaxed);
            tracing::warn!(project = %post.queue.project, queue = %post.queue.queue, messages = count,
                "notifier backlog full, post not notified");
        }
    }

    /// Notifications dropped so far (per message and subscription when a lane was
    /// full, per message when a whole post was).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}
