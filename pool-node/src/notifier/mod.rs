//! The notifier: delivers posted messages to a queue's subscriptions (webhook and
//! email), off the post's critical path, at least once, across restarts.

mod cache;
mod config;
mod deliver;
mod dispatch;
mod lane;
mod mailto;
pub mod network;
pub mod retry;
pub mod target;
pub mod trustee;
mod webhook;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::{mpsc, oneshot};
use zaqar_proto::pb::{NewMessage, QueueRef, Subscription};
use zaqar_proto::ZaqarError;

use crate::encryption::MessageCipher;
use crate::store::MessageStore;

use cache::DocumentCache;
pub use config::NotifierConfig;
use deliver::Deliverer;
pub use dispatch::LaneLag;
use dispatch::{Dispatcher, Event, Listings};
use lane::CipherSlot;

/// The longest a subscription change waits for the lanes of its queue to follow it:
/// well within the api-node's request timeout (5 s by default), so that a dispatcher
/// busy resuming many queues delays the change's answer, never fails it.
const CHANGE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Delivers the messages posted to a queue to its subscriptions.
///
/// What is delivered, and how:
/// - Every subscription that is live (not expired) and confirmed gets one
///   notification per message posted to its queue after it was created (or, for
///   a subscription confirmed later, after it was confirmed), in posting order: an
///   HTTP POST for `http://` and `https://` subscribers (for `trust+http(s)://` ones
///   with a token of the subscription's Keystone trust, see `trustee.rs`), an email
///   for `mailto:` subscribers.
/// - Payload, headers, email subject and sender follow Zaqar 23 (see `target.rs`).
/// - A failed attempt (connection error, timeout, HTTP 408/429/5xx, SMTP 4xx) is
///   retried following Zaqar's `_retry_policy` of the subscription or queue, with
///   Zaqar's defaults (see `retry.rs`); a refusal (other HTTP 4xx, SMTP 5xx, bad
///   address) is not. After the last retry the notification is given up (logged).
/// - Per subscription, notifications are sent one at a time in posting order, so
///   one message is retried before the next is sent. Subscriptions do not wait for
///   each other: at most `max_in_flight` attempts run at once, each within
///   `delivery_timeout_ms`, so a dead endpoint holds at most one slot at a time.
///   A post never waits for delivery, and a slow subscriber costs posting nothing:
///   its backlog is the queue itself, read from its cursor.
///
/// The promise is *at least once, in order, for messages still in the queue*:
/// - Each subscription has a delivery cursor in the message store: the position in
///   the queue after the last message it is done with (delivered, refused, or out
///   of retries). Its lane reads the queue from there and moves the cursor on, so
///   whatever is not done yet is found again after a crash or restart of the
///   pool-node (resumed at start-up, then every `resume_interval_ms`).
/// - Duplicates: the cursor is stored every `cursor_flush_ms` while a subscription
///   is busy (at once when it catches up), so a crash repeats the notifications
///   sent since its last store; and an attempt that timed out may have arrived.
///   Receivers that must not act twice should deduplicate on the body.
/// - A message that expires, or is deleted, popped or moved to a dead letter queue,
///   before its subscription's lane reads it is not notified: the queue is the
///   backlog. Claimed and delayed messages are notified like the others.
/// - A notification is sent as posted while it is in the in-memory document cache
///   (`document_cache_capacity`); one read back from the store (after a restart, or
///   for a long backlog) has the message's current `ttl` and no `delay` key.
/// - A subscription deleted, unconfirmed or expired stops getting notifications
///   (within its current attempt).
/// - Several pool-nodes on one store: a lane delivers only while it holds its
///   subscription's delivery lease in the store (taken when it has something to
///   read, renewed every third of `lease_ttl_ms`, given up when caught up), so one
///   notifier at a time delivers a subscription, whichever pool-node a post went
///   to. A lane that gives the lease up looks at the queue once more, so a post
///   whose own pool-node found the lease held is not left behind. When a
///   pool-node dies holding leases, the others take them over once they run out
///   (within `lease_ttl_ms`, at the next post or resume); one that stalls longer
///   than that loses them (it stops at its next renewal), and what it was sending
///   may then be sent twice.
#[derive(Clone)]
pub struct Notifier {
    deliverer: Arc<Deliverer>,
    events: mpsc::Sender<Event>,
    listings: Arc<Listings>,
    cache: Arc<DocumentCache>,
    cipher: CipherSlot,
    missed_wakes: Arc<AtomicU64>,
    /// The dispatcher's task, for [`Notifier::stopped`].
    dispatcher: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Notifier {
    /// Drops this handle and, when it is the last one (the pool server's dropped
    /// first), waits until the notifier has stopped: every lane has flushed its
    /// cursor and ended (10 s at most).
    pub async fn stopped(self) {
        let task = self
            .dispatcher
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        drop(self);
        if let Some(task) = task {
            // Other handles keep it running: the wait is bounded all the same.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
        }
    }

    /// Starts the notifier's task on the current tokio runtime (resuming every
    /// subscribed queue at once); it stops, with its lanes, when every handle is dropped.
    /// `holder` names this notifier in the store's delivery leases: it must differ
    /// between the pool-nodes sharing the store, and should stay the same when one
    /// restarts (which then takes its leases back at once instead of waiting for
    /// them to run out).
    pub fn spawn(
        store: Arc<dyn MessageStore>,
        config: &NotifierConfig,
        holder: &str,
    ) -> Result<Self, ZaqarError> {
        let deliverer = Arc::new(Deliverer::new(store.clone(), config)?);
        let cache = Arc::new(DocumentCache::new(config.document_cache_capacity));
        let cipher: CipherSlot = Arc::new(RwLock::new(None));
        let (events, receiver) = mpsc::channel(config.queue_capacity.max(1));
        let listings = Arc::new(Listings::default());
        let dispatcher = Dispatcher::new(
            store,
            deliverer.clone(),
            cache.clone(),
            cipher.clone(),
            config,
            holder.into(),
            listings.clone(),
        );
        let task = tokio::spawn(dispatcher.run(receiver));
        Ok(Notifier {
            deliverer,
            events,
            listings,
            cache,
            cipher,
            missed_wakes: Arc::new(AtomicU64::new(0)),
            dispatcher: Arc::new(std::sync::Mutex::new(Some(task))),
        })
    }

    /// How far notifications run behind: the age of the oldest message a lane of
    /// this notifier is still delivering (zero when all are caught up).
    pub fn lag(&self) -> std::time::Duration {
        self.listings.lag(lane::now_ms())
    }

    /// The gauges of this notifier: the leases it holds, and how far behind the
    /// subscriptions furthest behind are (registered by the role that runs it).
    pub fn metrics(&self) -> crate::metrics::NotifierMetrics {
        let listings = self.listings.clone();
        crate::metrics::NotifierMetrics::new(move || {
            listings.lanes_report(lane::now_ms(), crate::metrics::MOST_LAGGING)
        })
    }

    /// Where webhooks may go (`allowed_networks`).
    pub fn network_policy(&self) -> &network::NetworkPolicy {
        self.deliverer.policy()
    }

    /// Decrypts the encrypted bodies read back from the store with `cipher`.
    pub fn use_cipher(&self, cipher: Option<MessageCipher>) {
        *self.cipher.write().expect("never poisoned") = cipher;
    }

    /// Tells the notifier that `messages` (with their new `ids`, in the same order)
    /// were posted to `queue`; never waits.
    pub fn notify(&self, queue: QueueRef, ids: &[String], messages: Vec<NewMessage>) {
        if messages.is_empty() || self.listings.has_no_subscriptions(&queue) {
            return;
        }
        let trace = zaqar_proto::trace::outgoing().into();
        self.cache.insert(ids.iter().cloned().zip(messages), trace);
        if !self.listings.wake(&queue) {
            self.send(Event::Posted(queue));
        }
    }

    /// Tells the notifier that the subscriptions of `queue` changed (created,
    /// confirmed, unconfirmed, updated, deleted), and waits (at most
    /// `CHANGE_WAIT`) until their lanes follow: a lane of a subscription no longer
    /// notified is stopped by then, so it delivers nothing posted after this returns.
    pub async fn queue_changed(&self, queue: QueueRef) {
        // Posts from now on must not wake the lanes listed before the change (an
        // unconfirmed subscription's among them): they wait for the new listing.
        self.listings.forget(&queue);
        let (followed, following) = oneshot::channel();
        if self.send(Event::SubscriptionsChanged(queue, Some(followed))) {
            // A lane listed before the change may still be reading: the dispatcher
            // serves events in order, so once it has served this one, that lane has
            // been stopped or given the new subscription.
            let _ = tokio::time::timeout(CHANGE_WAIT, following).await;
        }
    }

    /// Queues `event` for the dispatcher; false when its backlog is full (the queue is
    /// then served at the next resume) or it has stopped.
    fn send(&self, event: Event) -> bool {
        let Err(err) = self.events.try_send(event) else {
            return true;
        };
        let event = match err {
            mpsc::error::TrySendError::Full(event) | mpsc::error::TrySendError::Closed(event) => {
                event
            }
        };
        let (Event::Posted(queue) | Event::SubscriptionsChanged(queue, _)) = event;
        self.missed_wakes.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(project = %queue.project, queue = %queue.queue,
            "notifier backlog full: the queue's subscriptions are served at the next resume");
        false
    }

    /// Sends `notice` (a JSON object: a confirmation request) to the subscriber of
    /// `subscription` if it is a webhook, with its `post_headers` and `post_data`,
    /// retried per its retry policy, in the background. Best effort: not stored,
    /// so a restart loses a notice not yet delivered.
    pub fn send_notice(&self, queue: QueueRef, subscription: Subscription, notice: String) {
        let options = target::options_of(&subscription);
        let target = match target::Target::of(&subscription.subscriber, &options) {
            Ok(target @ target::Target::Webhook { .. }) => target,
            _ => {
                tracing::debug!(project = %queue.project, queue = %queue.queue,
                    subscription = %subscription.id, "no confirmation notice for this subscriber");
                return;
            }
        };
        let own_policy = options
            .get("_retry_policy")
            .and_then(serde_json::Value::as_object)
            .cloned()
            .unwrap_or_default();
        let schedule = retry::RetryPolicy::effective(&own_policy, &Default::default()).schedule();
        let deliverer = self.deliverer.clone();
        tokio::spawn(async move {
            let never_stopped = AtomicBool::new(false);
            deliverer
                .deliver(
                    &queue,
                    &subscription.id,
                    &target,
                    &notice,
                    &schedule,
                    &never_stopped,
                )
                .await;
        });
    }

    /// Wake-ups not handed over because the backlog was full (their messages are
    /// delivered at the next resume, not lost).
    pub fn missed_wakes(&self) -> u64 {
        self.missed_wakes.load(Ordering::Relaxed)
    }
}
