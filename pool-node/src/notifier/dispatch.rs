//! The dispatcher: wakes the lanes of a queue's confirmed subscriptions when the
//! queue gets messages or its subscriptions change, resumes every subscribed queue
//! at start-up and periodically, and stops lanes that are no longer wanted.

use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use zaqar_proto::pb::QueueRef;

use super::cache::DocumentCache;
use super::deliver::Deliverer;
use super::lane::{CipherSlot, Lane, LaneState, QueueSignal};
use super::target::Target;
use super::NotifierConfig;
use crate::store::MessageStore;

/// Subscriptions read per store call.
const PAGE: u32 = 100;
/// A lane caught up and not woken for this long is closed (it reopens on demand).
const LANE_IDLE: Duration = Duration::from_secs(60);

/// How long a queue's listing of subscriptions is reused for its posts; changes
/// made through this pool-node are seen at once, others within this time.
const SUBSCRIPTIONS_FRESH: Duration = Duration::from_secs(1);

/// (project, queue, subscription id)
type LaneKey = (String, String, String);

/// Who waits for the lanes of a queue to follow a change of its subscriptions.
type Followers = Vec<oneshot::Sender<()>>;

/// How far behind one subscription's delivery is.
#[derive(Debug, Clone, PartialEq)]
pub struct LaneLag {
    pub project: String,
    pub queue: String,
    pub subscription: String,
    pub behind: Duration,
}

/// What happened to a queue.
#[derive(Debug)]
pub enum Event {
    /// Messages were posted to it.
    Posted(QueueRef),
    /// Its subscriptions changed (created, confirmed, unconfirmed, updated, deleted);
    /// the sender, if any, hears once the queue's lanes follow the change.
    SubscriptionsChanged(QueueRef, Option<oneshot::Sender<()>>),
}

/// The lanes a queue's last listing of subscriptions woke, and when it was made.
struct Listing {
    at: Instant,
    lanes: Vec<Arc<LaneState>>,
    signal: Arc<QueueSignal>,
}

/// The recent listings of every queue (by project, then queue), shared with the
/// post path: a post to a queue listed within [`SUBSCRIPTIONS_FRESH`] wakes its
/// lanes directly, without a store read or a dispatcher round.
#[derive(Default)]
pub struct Listings {
    by_project: RwLock<HashMap<String, HashMap<String, Listing>>>,
    /// Every lane started, listed or not, for the notifier's lag (see [`Listings::lag`]).
    all_lanes: std::sync::Mutex<TrackedLanes>,
}

/// Weak handles of the lanes; ended ones are dropped whenever the list has doubled
/// since the last sweep, so that tracking a lane costs O(1) amortized (a resume of
/// 100,000 subscriptions must not sweep the list 100,000 times).
#[derive(Default)]
struct TrackedLanes {
    lanes: Vec<std::sync::Weak<LaneState>>,
    sweep_at: usize,
}

impl Listings {
    /// Counts `lane` in the notifier's lag while it lives.
    fn track(&self, lane: &Arc<LaneState>) {
        let mut tracked = self.all_lanes.lock().expect("never poisoned");
        if tracked.lanes.len() >= tracked.sweep_at {
            tracked.lanes.retain(|lane| lane.strong_count() > 0);
            tracked.sweep_at = (tracked.lanes.len() * 2).max(64);
        }
        tracked.lanes.push(Arc::downgrade(lane));
    }

    /// How far behind the most lagging lane is: the age of the oldest message a
    /// lane is still delivering (zero when every lane is caught up).
    pub fn lag(&self, now_ms: i64) -> Duration {
        let tracked = self.all_lanes.lock().expect("never poisoned");
        let oldest = tracked
            .lanes
            .iter()
            .filter_map(|lane| lane.upgrade()?.pending_since_ms())
            .min();
        oldest.map_or(Duration::ZERO, |since| {
            Duration::from_millis(u64::try_from(now_ms - since).unwrap_or(0))
        })
    }

    /// How many lanes hold their subscription's delivery lease, and the `most`
    /// lanes furthest behind, by how far (the age of the message each is still
    /// delivering), furthest first; a caught-up lane is not among them.
    pub fn lanes_report(&self, now_ms: i64, most: usize) -> (usize, Vec<LaneLag>) {
        // One pass over the lanes, keeping the `most` oldest pending ones in a heap
        // whose top is the newest of them: O(lanes × log most), no copy of the list.
        let mut leased = 0;
        let mut oldest: BinaryHeap<(i64, usize)> = BinaryHeap::with_capacity(most + 1);
        let mut kept: Vec<Arc<LaneState>> = Vec::with_capacity(most + 1);
        {
            let tracked = self.all_lanes.lock().expect("never poisoned");
            for lane in tracked.lanes.iter().filter_map(std::sync::Weak::upgrade) {
                leased += usize::from(lane.holds_lease());
                let Some(since) = lane.pending_since_ms() else {
                    continue;
                };
                if oldest.len() == most && oldest.peek().is_none_or(|(top, _)| since >= *top) {
                    continue;
                }
                let slot = if oldest.len() < most {
                    kept.push(lane);
                    kept.len() - 1
                } else {
                    // Replaces the newest of the kept ones.
                    let (_, slot) = oldest.pop().expect("full");
                    kept[slot] = lane;
                    slot
                };
                oldest.push((since, slot));
            }
        }
        let lagging = oldest
            .into_sorted_vec()
            .into_iter()
            .map(|(since, slot)| {
                let (queue, subscription) = kept[slot].names();
                LaneLag {
                    project: queue.project.clone(),
                    queue: queue.queue.clone(),
                    subscription,
                    behind: Duration::from_millis(u64::try_from(now_ms - since).unwrap_or(0)),
                }
            })
            .collect();
        (leased, lagging)
    }

    /// Whether the queue's fresh listing has no subscription at all (its posts
    /// then have nobody to notify and nothing to cache).
    pub fn has_no_subscriptions(&self, queue: &QueueRef) -> bool {
        let by_project = self.by_project.read().expect("never poisoned");
        by_project
            .get(&queue.project)
            .and_then(|queues| queues.get(&queue.queue))
            .is_some_and(|listing| {
                listing.lanes.is_empty() && listing.at.elapsed() < SUBSCRIPTIONS_FRESH
            })
    }

    /// Wakes the lanes of the queue's fresh listing; false (nothing woken) when
    /// there is none or one of its lanes has ended.
    pub fn wake(&self, queue: &QueueRef) -> bool {
        let by_project = self.by_project.read().expect("never poisoned");
        let Some(listing) = by_project
            .get(&queue.project)
            .and_then(|queues| queues.get(&queue.queue))
        else {
            return false;
        };
        if listing.at.elapsed() >= SUBSCRIPTIONS_FRESH
            || listing.lanes.iter().any(|lane| lane.has_ended())
        {
            return false;
        }
        listing.signal.posted();
        true
    }

    /// Forgets the listing of `queue`: until the dispatcher lists its
    /// subscriptions again, posts wake no lane directly.
    pub fn forget(&self, queue: &QueueRef) {
        self.set(queue, None);
    }

    fn set(&self, queue: &QueueRef, listing: Option<Listing>) {
        let mut by_project = self.by_project.write().expect("never poisoned");
        match listing {
            Some(listing) => {
                by_project
                    .entry(queue.project.clone())
                    .or_default()
                    .insert(queue.queue.clone(), listing);
            }
            None => {
                if let Some(queues) = by_project.get_mut(&queue.project) {
                    queues.remove(&queue.queue);
                }
            }
        }
    }

    fn forget_stale(&self) {
        let mut by_project = self.by_project.write().expect("never poisoned");
        by_project.retain(|_, queues| {
            queues.retain(|_, listing| listing.at.elapsed() < SUBSCRIPTIONS_FRESH);
            !queues.is_empty()
        });
    }
}

struct LaneEntry {
    state: Arc<LaneState>,
    woken: Instant,
    /// The lane's task, awaited when the notifier stops.
    task: tokio::task::JoinHandle<()>,
}

/// How long a stopping notifier waits for its lanes to flush their cursors and end.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Owns the lanes; runs until every [`super::Notifier`] handle is dropped.
pub struct Dispatcher {
    pub store: Arc<dyn MessageStore>,
    pub deliverer: Arc<Deliverer>,
    pub cache: Arc<DocumentCache>,
    pub cipher: CipherSlot,
    pub flush_every: Duration,
    pub resume_every: Duration,
    /// This notifier's name as the holder of delivery leases.
    pub holder: Arc<str>,
    pub lease_ttl: Duration,
    lanes: HashMap<LaneKey, LaneEntry>,
    listings: Arc<Listings>,
    /// The post signal of every queue with lanes.
    signals: HashMap<(String, String), Arc<QueueSignal>>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn MessageStore>,
        deliverer: Arc<Deliverer>,
        cache: Arc<DocumentCache>,
        cipher: CipherSlot,
        config: &NotifierConfig,
        holder: Arc<str>,
        listings: Arc<Listings>,
    ) -> Self {
        Dispatcher {
            store,
            deliverer,
            cache,
            cipher,
            flush_every: config.cursor_flush(),
            resume_every: config.resume_interval(),
            holder,
            lease_ttl: config.lease_ttl(),
            lanes: HashMap::new(),
            listings,
            signals: HashMap::new(),
        }
    }

    /// Serves the events of `events` until the channel closes, then stops every lane
    /// and waits (at most [`STOP_WAIT`]) until they have ended.
    pub async fn run(mut self, mut events: mpsc::Receiver<Event>) {
        // The first tick is at once: the start-up resume.
        let mut resume = tokio::time::interval(self.resume_every);
        let mut sweep = tokio::time::interval(LANE_IDLE);
        loop {
            tokio::select! {
                event = events.recv() => {
                    let Some(event) = event else { break };
                    // Many events of one queue are served once; a change wins.
                    let mut queues: HashMap<(String, String), (bool, Followers)> = HashMap::new();
                    let mut add = |event| {
                        let (queue, changed, followed) = match event {
                            Event::Posted(queue) => (queue, false, None),
                            Event::SubscriptionsChanged(queue, followed) => (queue, true, followed),
                        };
                        let entry = queues.entry((queue.project, queue.queue)).or_default();
                        entry.0 |= changed;
                        entry.1.extend(followed);
                    };
                    add(event);
                    while let Ok(event) = events.try_recv() {
                        add(event);
                    }
                    for ((project, queue), (changed, followed)) in queues {
                        let queue = QueueRef { project, queue };
                        if changed || !self.listings.wake(&queue) {
                            self.wake_queue(&queue).await;
                        }
                        for sender in followed {
                            let _ = sender.send(());
                        }
                    }
                }
                _ = resume.tick() => self.resume_all().await,
                _ = sweep.tick() => self.close_idle_lanes(),
            }
        }
        let lanes: Vec<LaneEntry> = self.lanes.drain().map(|(_, lane)| lane).collect();
        for lane in &lanes {
            lane.state.stop();
        }
        // Each lane flushes its delivery cursor as it stops: what was delivered is
        // not delivered again after a restart.
        let deadline = tokio::time::Instant::now() + STOP_WAIT;
        for lane in lanes {
            let _ = tokio::time::timeout_at(deadline, lane.task).await;
        }
        tracing::debug!("notifier stopped");
    }

    async fn resume_all(&mut self) {
        match self.store.subscribed_queues().await {
            Ok(queues) => {
                for queue in queues {
                    self.wake_queue(&queue).await;
                }
            }
            Err(err) => tracing::warn!(error = %err,
                "cannot list the subscribed queues to resume their delivery"),
        }
    }

    /// Wakes (opening if needed) the lane of every confirmed subscription of
    /// `queue` that this notifier delivers, and stops the others.
    async fn wake_queue(&mut self, queue: &QueueRef) {
        self.listings.set(queue, None);
        let signal = self
            .signals
            .entry((queue.project.clone(), queue.queue.clone()))
            .or_default()
            .clone();
        let queue_policy = match self.store.get_queue(queue).await {
            Ok(metadata) => Arc::new(retry_policy_of(metadata.as_deref())),
            Err(err) => return unreadable(queue, &err.description),
        };
        let mut wanted = BTreeSet::new();
        let mut marker = String::new();
        loop {
            let (page, next) = match self.store.list_subscriptions(queue, &marker, PAGE).await {
                Ok(listed) => listed,
                Err(err) => return unreadable(queue, &err.description),
            };
            let last_page = page.len() < PAGE as usize || next == marker;
            for subscription in page {
                if !subscription.confirmed {
                    continue;
                }
                if let Err(reason) = Target::of_subscription(&subscription) {
                    tracing::debug!(project = %queue.project, queue = %queue.queue,
                        subscription = %subscription.id, %reason, "subscription not notified");
                    continue;
                }
                let key = (
                    queue.project.clone(),
                    queue.queue.clone(),
                    subscription.id.clone(),
                );
                wanted.insert(key.clone());
                match self.lanes.get_mut(&key) {
                    Some(lane) if !lane.state.has_ended() => {
                        lane.woken = Instant::now();
                        lane.state.wake(subscription, queue_policy.clone());
                    }
                    _ => {
                        let policy = queue_policy.clone();
                        self.open_lane(queue, key, subscription, policy, signal.clone());
                    }
                }
            }
            if last_page {
                break;
            }
            marker = next;
        }
        // The lanes of subscriptions no longer notified stop before the others
        // are signalled: they must not read what was posted since.
        self.lanes.retain(|key, lane| {
            let unwanted = key.0 == queue.project && key.1 == queue.queue && !wanted.contains(key);
            if unwanted {
                lane.state.stop();
            }
            !unwanted
        });
        let lanes = wanted
            .iter()
            .filter_map(|key| self.lanes.get(key).map(|lane| lane.state.clone()))
            .collect();
        // Whatever a woken lane had not read yet, it reads now.
        signal.posted();
        let listing = Listing {
            at: Instant::now(),
            lanes,
            signal,
        };
        self.listings.set(queue, Some(listing));
    }

    fn open_lane(
        &mut self,
        queue: &QueueRef,
        key: LaneKey,
        subscription: zaqar_proto::pb::Subscription,
        queue_policy: Arc<Map<String, Value>>,
        signal: Arc<QueueSignal>,
    ) {
        let state = Arc::new(LaneState::new(
            queue.clone(),
            subscription,
            queue_policy,
            signal,
        ));
        let lane = Lane {
            queue: queue.clone(),
            state: state.clone(),
            store: self.store.clone(),
            deliverer: self.deliverer.clone(),
            cache: self.cache.clone(),
            cipher: self.cipher.clone(),
            flush_every: self.flush_every,
            holder: self.holder.clone(),
            lease_ttl: self.lease_ttl,
        };
        self.listings.track(&state);
        let task = tokio::spawn(lane.run());
        self.lanes.insert(
            key,
            LaneEntry {
                state,
                woken: Instant::now(),
                task,
            },
        );
    }

    /// Stops the lanes that are caught up and were not woken for [`LANE_IDLE`].
    fn close_idle_lanes(&mut self) {
        self.listings.forget_stale();
        let queues: BTreeSet<_> = self
            .lanes
            .keys()
            .map(|(project, queue, _)| (project.clone(), queue.clone()))
            .collect();
        self.signals.retain(|queue, _| queues.contains(queue));
        self.lanes.retain(|_, lane| {
            let idle = lane.state.has_ended()
                || (!lane.state.is_busy() && lane.woken.elapsed() >= LANE_IDLE);
            if idle {
                lane.state.stop();
            }
            !idle
        });
    }
}

fn unreadable(queue: &QueueRef, reason: &str) {
    tracing::warn!(project = %queue.project, queue = %queue.queue, %reason,
        "cannot read the queue's subscriptions; delivery resumes later");
}

/// The `_retry_policy` object of a queue's metadata, empty when unset.
fn retry_policy_of(metadata: Option<&str>) -> Map<String, Value> {
    metadata
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .and_then(|mut metadata| metadata.get_mut("_retry_policy").map(Value::take))
        .and_then(|policy| match policy {
            Value::Object(policy) => Some(policy),
            _ => None,
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lanes come and go (a resume starts one per subscription): the list of tracked
    /// lanes stays within twice the live ones, and each lane is swept once.
    #[test]
    fn tracking_lanes_keeps_only_the_live_ones() {
        let listings = Listings::default();
        let signal = Arc::new(QueueSignal::default());
        let lane = || {
            Arc::new(LaneState::new(
                QueueRef::default(),
                zaqar_proto::pb::Subscription::default(),
                Arc::default(),
                signal.clone(),
            ))
        };
        let live: Vec<_> = (0..1_000).map(|_| lane()).collect();
        for lane in &live {
            listings.track(lane);
        }
        for _ in 0..100_000 {
            listings.track(&lane());
        }
        let tracked = listings.all_lanes.lock().unwrap().lanes.len();
        assert!(tracked <= 2 * (live.len() + 1) + 64, "{tracked} tracked");
        assert_eq!(listings.lag(0), Duration::ZERO, "no lane is delivering");
    }

    /// The report names the lanes furthest behind, furthest first, at most `most`.
    #[test]
    fn the_report_keeps_the_lanes_furthest_behind() {
        let listings = Listings::default();
        let signal = Arc::new(QueueSignal::default());
        let lanes: Vec<_> = (0..25)
            .map(|i: i64| {
                let subscription = zaqar_proto::pb::Subscription {
                    id: format!("s{i}"),
                    ..Default::default()
                };
                let lane = Arc::new(LaneState::new(
                    QueueRef::default(),
                    subscription,
                    Arc::default(),
                    signal.clone(),
                ));
                // Posted at 1,000 + (i × 7 mod 25) ms; s24 is caught up.
                if i < 24 {
                    lane.set_pending(1_000 + (i * 7) % 25);
                }
                listings.track(&lane);
                lane
            })
            .collect();
        let (leased, lagging) = listings.lanes_report(2_000, 10);
        assert_eq!(leased, 0);
        let behind: Vec<(String, u128)> = lagging
            .iter()
            .map(|lag| (lag.subscription.clone(), lag.behind.as_millis()))
            .collect();
        let expected: Vec<(String, u128)> = (0..10)
            .map(|offset: i64| {
                let i = (0..24).find(|i| (i * 7) % 25 == offset).unwrap();
                (format!("s{i}"), (1_000 - offset) as u128)
            })
            .collect();
        assert_eq!(behind, expected);
        drop(lanes);
    }
}
