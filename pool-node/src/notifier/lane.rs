//! One subscription's lane: reads the queue from the subscription's delivery
//! cursor, delivers each message in order, and moves the cursor on (in the store,
//! at most every `cursor_flush_ms` while busy, at once when idle). It delivers
//! only while it holds the subscription's delivery lease, so that pool-nodes
//! sharing a store deliver each subscription from one of them at a time.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tokio::sync::Notify;
use zaqar_proto::filter::Filter;
use zaqar_proto::pb::{Message, QueueRef, Subscription};

use super::cache::DocumentCache;
use super::deliver::{Deliverer, Outcome};
use super::retry::RetryPolicy;
use super::target::{options_of, stored_document, Target, FILTER_OPTION};
use crate::encryption::{self, MessageCipher};
use crate::store::{ListParams, MessageStore};

/// Messages read per listing: from the smallest after a wake (so that many lanes
/// woken at once read little), doubling while listings come back full.
const FIRST_BATCH: u32 = 10;
const LARGEST_BATCH: u32 = 100;
/// Wait before reading again after the store failed.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// The cipher the pool server uses, set once it is known (see `PoolServer`).
pub type CipherSlot = Arc<RwLock<Option<MessageCipher>>>;

/// Posts to one queue, shared by the lanes of its subscriptions: a post costs one
/// counter increment and one wake of the lanes waiting, however many there are.
#[derive(Default)]
pub struct QueueSignal {
    posts: AtomicU64,
    waiting: Notify,
}

impl QueueSignal {
    /// Something was posted to the queue (and is in the store already).
    pub fn posted(&self) {
        self.posts.fetch_add(1, Ordering::SeqCst);
        self.waiting.notify_waiters();
    }

    fn count(&self) -> u64 {
        self.posts.load(Ordering::SeqCst)
    }
}

/// What the dispatcher and a lane share.
pub struct LaneState {
    /// The subscription as last listed, and the queue's `_retry_policy` then.
    latest: Mutex<Latest>,
    /// Wakes for this lane only: its subscription changed, or it must stop.
    wake: Notify,
    signal: Arc<QueueSignal>,
    stopped: AtomicBool,
    /// Whether the lane is between listings (not waiting for a wake).
    busy: AtomicBool,
    /// Whether the lane's task has returned (a wake then needs a new lane).
    ended: AtomicBool,
    /// When (wall-clock ms) the message the lane is delivering was posted; 0 while it
    /// is caught up. The notifier's lag is the oldest of these.
    pending_ms: AtomicI64,
    /// The queue whose subscription this lane delivers.
    queue: QueueRef,
    /// Whether the lane holds its subscription's delivery lease.
    leased: AtomicBool,
}

struct Latest {
    subscription: Subscription,
    queue_policy: Arc<Map<String, Value>>,
    /// When the subscription expires, from its ttl and age when listed.
    expires: Instant,
    /// Wall-clock ms of the listing, to tell when the subscription was created.
    listed_ms: i64,
    /// The subscription's filter, parsed once per listing (the api-node checked it;
    /// one it would refuse filters nothing).
    filter: Option<Arc<Filter>>,
}

impl LaneState {
    pub fn new(
        queue: QueueRef,
        subscription: Subscription,
        queue_policy: Arc<Map<String, Value>>,
        signal: Arc<QueueSignal>,
    ) -> Self {
        LaneState {
            latest: Mutex::new(Latest::of(subscription, queue_policy)),
            wake: Notify::new(),
            signal,
            stopped: AtomicBool::new(false),
            busy: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            pending_ms: AtomicI64::new(0),
            queue,
            leased: AtomicBool::new(false),
        }
    }

    /// The queue and the id of the subscription this lane delivers.
    pub fn names(&self) -> (&QueueRef, String) {
        let id = self
            .latest
            .lock()
            .expect("never poisoned")
            .subscription
            .id
            .clone();
        (&self.queue, id)
    }

    /// Marks the lane as delivering a message posted at `posted_ms` (tests).
    #[cfg(test)]
    pub(super) fn set_pending(&self, posted_ms: i64) {
        self.pending_ms.store(posted_ms, Ordering::Relaxed);
    }

    /// Whether the lane holds its subscription's delivery lease now.
    pub fn holds_lease(&self) -> bool {
        self.leased.load(Ordering::Relaxed) && !self.has_ended()
    }

    /// When the message this lane is delivering was posted (ms), unless it is
    /// caught up or has ended.
    pub fn pending_since_ms(&self) -> Option<i64> {
        let pending = self.pending_ms.load(Ordering::Relaxed);
        (pending > 0 && !self.has_ended()).then_some(pending)
    }

    /// Hands the lane the subscription as just listed and wakes it.
    pub fn wake(&self, subscription: Subscription, queue_policy: Arc<Map<String, Value>>) {
        *self.latest.lock().expect("never poisoned") = Latest::of(subscription, queue_policy);
        self.wake.notify_one();
    }

    /// Makes the lane end (after the attempt in flight, if any).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    pub fn is_busy(&self) -> bool {
        self.busy.load(Ordering::Acquire)
    }

    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
}

impl Latest {
    fn of(subscription: Subscription, queue_policy: Arc<Map<String, Value>>) -> Self {
        let left = u64::from(subscription.ttl).saturating_sub(subscription.age);
        let filter = options_of(&subscription)
            .get(FILTER_OPTION)
            .and_then(|filter| Filter::parse(filter).ok())
            .map(Arc::new);
        Latest {
            filter,
            subscription,
            queue_policy,
            expires: Instant::now() + Duration::from_secs(left),
            listed_ms: now_ms(),
        }
    }
}

/// What one lane needs from the notifier.
pub struct Lane {
    pub queue: QueueRef,
    pub state: Arc<LaneState>,
    pub store: Arc<dyn MessageStore>,
    pub deliverer: Arc<Deliverer>,
    pub cache: Arc<DocumentCache>,
    pub cipher: CipherSlot,
    pub flush_every: Duration,
    /// This notifier's name as the holder of delivery leases.
    pub holder: Arc<str>,
    pub lease_ttl: Duration,
}

/// The lane's hold on the subscription's delivery lease.
struct Lease {
    renewed: Instant,
    next_renewal: Instant,
}

/// While the lane holds the lease: where it is in the queue.
struct Held {
    position: Position,
    lease: Lease,
    /// Marks the lane as holding the lease while this lives.
    _leased: LeaseMark,
}

/// Sets the lane's `leased` flag while it lives.
struct LeaseMark(Arc<LaneState>);

impl LeaseMark {
    fn new(state: &Arc<LaneState>) -> LeaseMark {
        state.leased.store(true, Ordering::Relaxed);
        LeaseMark(state.clone())
    }
}

impl Drop for LeaseMark {
    fn drop(&mut self) {
        self.0.leased.store(false, Ordering::Relaxed);
    }
}

/// A subscription's position: the cursor delivered up to, and the one stored.
struct Position {
    cursor: String,
    stored: String,
    flushed_at: Instant,
    /// Without a stored cursor: messages created before this (ms) are older than
    /// the subscription and skipped.
    created_after_ms: Option<i64>,
}

impl Lane {
    /// Delivers until stopped, or until the subscription is gone or expired.
    pub async fn run(self) {
        self.deliver_until_stopped().await;
        // A no-op unless the lane ended holding the lease.
        self.release().await;
        self.state.busy.store(false, Ordering::Release);
        self.state.ended.store(true, Ordering::Release);
    }

    async fn deliver_until_stopped(&self) {
        let mut held: Option<Held> = None;
        let mut batch = FIRST_BATCH;
        loop {
            if self.state.is_stopped() {
                if let Some(held) = held.as_mut() {
                    self.flush(&mut held.position).await;
                }
                return;
            }
            self.state.busy.store(true, Ordering::Release);
            // Posts counted from here on may be missing from this listing.
            let seen = self.state.signal.count();
            let held_now = match held.as_mut() {
                Some(held_now) => held_now,
                None => match self.take().await {
                    Ok(true) => {
                        // Another notifier may have moved the cursor on meanwhile.
                        let Some(position) = self.start().await else {
                            return;
                        };
                        held.insert(Held {
                            position,
                            lease: self.lease_taken(),
                            _leased: LeaseMark::new(&self.state),
                        })
                    }
                    Ok(false) => {
                        // Another notifier delivers it. A post wakes this lane
                        // again, and so does the lease's ttl, in case its holder died.
                        let _ = tokio::time::timeout(self.lease_ttl, self.idle(seen)).await;
                        continue;
                    }
                    Err(()) => {
                        self.wait_for_store().await;
                        continue;
                    }
                },
            };
            let position = &mut held_now.position;
            let (messages, next) = match self
                .store
                .list_messages(&self.queue, &self.after(&position.cursor, batch))
                .await
            {
                Ok(listed) => listed,
                Err(err) => {
                    tracing::warn!(project = %self.queue.project, queue = %self.queue.queue,
                        error = %err, "cannot read the queue to notify, retrying");
                    self.wait_for_store().await;
                    continue;
                }
            };
            if messages.is_empty() && next != position.cursor {
                // The store looked at a bounded number of expired messages
                // and found none to deliver: go on after them.
                position.cursor = next;
                continue;
            }
            if messages.is_empty() {
                self.state.pending_ms.store(0, Ordering::Relaxed);
                self.flush(position).await;
                let cursor = position.cursor.clone();
                held = None;
                self.release().await;
                // A lane elsewhere that found the lease held relies on this look:
                // what was posted before the release is seen here.
                if self.has_more(&cursor).await {
                    continue;
                }
                self.idle(seen).await;
                batch = FIRST_BATCH;
                continue;
            }
            if messages.len() >= batch as usize {
                batch = (batch * 2).min(LARGEST_BATCH);
            }
            if !self.deliver_batch(&messages, held_now).await {
                return;
            }
            let position = &mut held_now.position;
            position.cursor = next;
            position.created_after_ms = None;
            if position.flushed_at.elapsed() >= self.flush_every {
                self.flush(position).await;
            }
        }
    }

    /// A listing for delivery: up to `limit` messages after `cursor`, whatever their state.
    fn after(&self, cursor: &str, limit: u32) -> ListParams {
        ListParams {
            marker: cursor.to_string(),
            limit,
            echo: true,
            include_claimed: true,
            include_delayed: true,
            ..ListParams::default()
        }
    }

    /// Whether the queue has a message after `cursor` (true when the store cannot say).
    async fn has_more(&self, cursor: &str) -> bool {
        match self
            .store
            .list_messages(&self.queue, &self.after(cursor, 1))
            .await
        {
            Ok((messages, _)) => !messages.is_empty(),
            Err(_) => true,
        }
    }

    /// Not busy for a while after the store failed (or until woken).
    async fn wait_for_store(&self) {
        self.state.busy.store(false, Ordering::Release);
        let wake = self.state.wake.notified();
        let _ = tokio::time::timeout(STORE_RETRY, wake).await;
    }

    /// Takes the subscription's delivery lease; `Err` when the store cannot say.
    async fn take(&self) -> Result<bool, ()> {
        let id = self.subscription().id;
        self.store
            .take_delivery_lease(&self.queue, &id, &self.holder, self.lease_ttl)
            .await
            .map_err(|err| {
                tracing::warn!(project = %self.queue.project, queue = %self.queue.queue,
                    subscription = %id, error = %err, "cannot take the delivery lease");
            })
    }

    fn lease_taken(&self) -> Lease {
        let now = Instant::now();
        Lease {
            renewed: now,
            next_renewal: now + self.lease_ttl / 3,
        }
    }

    /// Renews the lease; false when it is lost (another notifier took it, or it
    /// may have run out while the store did not answer).
    async fn renew(&self, lease: &mut Lease) -> bool {
        match self.take().await {
            Ok(true) => {
                *lease = self.lease_taken();
                true
            }
            Ok(false) => {
                tracing::info!(project = %self.queue.project, queue = %self.queue.queue,
                    subscription = %self.subscription().id,
                    "delivery lease taken over by another notifier; this one stops");
                false
            }
            Err(()) => {
                lease.next_renewal = Instant::now() + STORE_RETRY.min(self.lease_ttl / 3);
                lease.renewed.elapsed() < self.lease_ttl
            }
        }
    }

    async fn release(&self) {
        let id = self.subscription().id;
        if let Err(err) = self
            .store
            .release_delivery_lease(&self.queue, &id, &self.holder)
            .await
        {
            tracing::warn!(project = %self.queue.project, queue = %self.queue.queue,
                subscription = %id, error = %err,
                "cannot give up the delivery lease (it runs out by itself)");
        }
    }

    /// The stored cursor; `None` (the lane ends) when the store cannot say.
    async fn start(&self) -> Option<Position> {
        let id = self.subscription().id;
        let stored = match self.store.delivery_cursor(&self.queue, &id).await {
            Ok(stored) => stored,
            Err(err) => {
                tracing::warn!(project = %self.queue.project, queue = %self.queue.queue,
                    subscription = %id, error = %err, "cannot read the delivery cursor");
                return None;
            }
        };
        let created_after_ms = match stored {
            Some(_) => None,
            None => {
                let latest = self.state.latest.lock().expect("never poisoned");
                // Ages are whole seconds: a second of margin.
                let age_ms = (latest.subscription.age as i64 + 1) * 1000;
                Some(latest.listed_ms - age_ms)
            }
        };
        let cursor = stored.unwrap_or_default();
        Some(Position {
            stored: cursor.clone(),
            cursor,
            flushed_at: Instant::now(),
            created_after_ms,
        })
    }

    /// Delivers `messages` in order, renewing the lease as it goes; false when
    /// the lane must end.
    async fn deliver_batch(&self, messages: &[Message], held: &mut Held) -> bool {
        let position = &held.position;
        for message in messages {
            if position
                .created_after_ms
                .is_some_and(|after| message.created_ms < after)
            {
                continue;
            }
            let (subscription, target, schedule, expires, filter) = {
                let latest = self.state.latest.lock().expect("never poisoned");
                let options = options_of(&latest.subscription);
                let own_policy = options
                    .get("_retry_policy")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let schedule = RetryPolicy::effective(&own_policy, &latest.queue_policy).schedule();
                let target = Target::of(&latest.subscription.subscriber, &options);
                (
                    latest.subscription.clone(),
                    target,
                    schedule,
                    latest.expires,
                    latest.filter.clone(),
                )
            };
            if self.state.is_stopped() || Instant::now() >= expires {
                return false;
            }
            let Ok(target) = target else { return false };
            self.state
                .pending_ms
                .store(message.created_ms.max(1), Ordering::Relaxed);
            let Some(document) = self.document(message) else {
                continue;
            };
            if filter
                .as_ref()
                .is_some_and(|filter| !passes(filter, &document))
            {
                // Skipped: the cursor moves past it with the batch.
                continue;
            }
            // With tracing on, the delivery is a span of the post's trace.
            // Kept as the post's trace was (drawn anew if the post left the cache).
            let trace = self.cache.trace(&message.id);
            let span = zaqar_proto::trace::continue_trace(
                |name| {
                    let (_, value) = trace.as_ref()?.iter().find(|(header, _)| *header == name)?;
                    Some(value.as_str())
                },
                || {
                    tracing::info_span!("notify", subscription = %subscription.id,
                        message = %message.id, trace_id = tracing::field::Empty)
                },
            );
            let delivery = tracing::Instrument::instrument(
                self.deliverer.deliver(
                    &self.queue,
                    &subscription.id,
                    &target,
                    &document,
                    &schedule,
                    &self.state.stopped,
                ),
                span,
            );
            tokio::pin!(delivery);
            // Retries may take longer than the lease: it is renewed meanwhile.
            let outcome = loop {
                let renewal = tokio::time::sleep_until(held.lease.next_renewal.into());
                tokio::select! {
                    outcome = &mut delivery => break outcome,
                    _ = renewal => {
                        if !self.renew(&mut held.lease).await {
                            return false;
                        }
                    }
                }
            };
            if outcome == Outcome::Abandoned {
                return false;
            }
            if outcome == Outcome::Delivered {
                let lag_ms = u64::try_from(now_ms() - message.created_ms).unwrap_or(0);
                crate::metrics::record_delivery_lag(target.kind(), Duration::from_millis(lag_ms));
            }
        }
        true
    }

    /// The document of `message`: as posted when cached, else read back.
    fn document(&self, message: &Message) -> Option<Arc<str>> {
        if let Some(document) = self.cache.document(&message.id, &self.queue.queue) {
            return Some(document);
        }
        let mut message = message.clone();
        let cipher = self.cipher.read().expect("never poisoned").clone();
        if let Err(err) = encryption::decrypt_messages(cipher.as_ref(), [&mut message]) {
            tracing::error!(project = %self.queue.project, queue = %self.queue.queue,
                message = %message.id, error = %err, "message not notified: cannot decrypt it");
            return None;
        }
        Some(stored_document(&self.queue.queue, &message).into())
    }

    /// Waits, not busy meanwhile, for a post counted after `seen` (at once if one
    /// already was) or a wake of this lane.
    async fn idle(&self, seen: u64) {
        self.state.busy.store(false, Ordering::Release);
        let signal = &self.state.signal;
        let posted = signal.waiting.notified();
        tokio::pin!(posted);
        posted.as_mut().enable();
        if signal.count() != seen {
            return;
        }
        tokio::select! {
            _ = posted => {}
            _ = self.state.wake.notified() => {}
        }
    }

    async fn flush(&self, position: &mut Position) {
        if position.cursor == position.stored {
            return;
        }
        let id = self.subscription().id;
        match self
            .store
            .set_delivery_cursor(&self.queue, &id, &position.cursor)
            .await
        {
            Ok(()) => {
                position.stored = position.cursor.clone();
                position.flushed_at = Instant::now();
            }
            Err(err) => tracing::warn!(project = %self.queue.project, queue = %self.queue.queue,
                subscription = %id, error = %err, "cannot store the delivery cursor"),
        }
    }

    fn subscription(&self) -> Subscription {
        let latest = self.state.latest.lock().expect("never poisoned");
        latest.subscription.clone()
    }
}

/// The wall clock in ms since the epoch (as messages' `created_ms`).
/// Whether the body of the notification `document` passes `filter`.
fn passes(filter: &Filter, document: &str) -> bool {
    let document: Value = serde_json::from_str(document).unwrap_or(Value::Null);
    filter.matches(&document["body"])
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}
