//! The pool-node's Prometheus metrics, and [`MeteredStore`], the `MessageStore`
//! that measures every call of the store it wraps.
//!
//! - `zaqar_store_operation_duration_seconds{backend, operation}` (histogram) and
//!   `zaqar_store_operation_errors_total{backend, operation, code}`: every store call,
//!   the notifier's included; `code` is the Zaqar error code (`unavailable`, ...).
//! - `zaqar_messages_total{backend, event}`: messages `posted`, `claimed`, `deleted`
//!   (by id; a purge or a queue delete is not counted), `popped`, `dead_lettered`
//!   (moved by a claim to the queue's dead letter queue), and `expired` (removed by the
//!   store because their ttl ran out; see [`MessageStore::remove_expired_messages`]).
//! - `zaqar_queue_messages{project, queue, state}` (`free`, `claimed`, `delayed`, as the
//!   queue's stats count them: `free` includes the delayed) and
//!   `zaqar_queue_oldest_message_age_seconds{project, queue}`, for the queues posted to,
//!   claimed from or deleted from most recently, at most `metrics_queues` of them (so a
//!   pool of 100,000 queues does not make 100,000 series), refreshed by
//!   [`spawn_queue_depths`].
//!
//! - `zaqar_notifier_deliveries_total{kind, result}`: notifications by `kind`
//!   (`webhook`, `websocket`, `email`) and `result` (`delivered`, `gave_up`: refused
//!   or out of retries, `abandoned`: the subscription went away meanwhile).
//! - `zaqar_notifier_retries_total{kind}`: attempts made again after a transient
//!   failure (network, timeout, 5xx, SMTP 4xx), per the retry policy.
//! - `zaqar_notifier_delivery_lag_seconds{kind}` (histogram): from a message's post to
//!   its delivery, retries included: how far notifications run behind the queues.
//! - `zaqar_notifier_leases_held` (gauge): subscriptions whose delivery lease this
//!   pool-node's notifier holds; `zaqar_notifier_subscription_lag_seconds{project, queue,
//!   subscription}` (gauge): for the [`MOST_LAGGING`] subscriptions furthest behind, the
//!   age of the message each is still delivering (a caught-up one has no series), read
//!   at each scrape ([`NotifierMetrics`]).
//!
//! The metrics are process-wide; [`register`] adds them to the registry a role serves.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use zaqar_proto::pb::{ClaimReply, Message, NewMessage, QueueRef, QueueStatsReply, Subscription};

use crate::store::{
    CheckedPost, ClaimStore, DeliveryStore, Lease, ListParams, MessageLog, MessageStore, NewClaim,
    Once, Post, Purge, QueueStore, StoreResult, SubscriptionStore, SubscriptionUpdate,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    backend: &'static str,
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    backend: &'static str,
    operation: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    backend: &'static str,
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    project: String,
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DepthLabels {
    project: String,
    queue: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    kind: &'static str,
    result: &'static str,
}

/// The pool-node's metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

struct PoolMetrics {
    deliveries: Family<DeliveryLabels, Counter>,
    retries: Family<KindLabels, Counter>,
    delivery_lags: Family<KindLabels, Histogram>,
    durations: Family<OperationLabels, Histogram>,
    errors: Family<ErrorLabels, Counter>,
    messages: Family<MessageLabels, Counter>,
    depths: Family<DepthLabels, Gauge>,
    oldest: Family<QueueLabels, Gauge<f64, AtomicU64>>,
    /// The queues used most recently; empty (and not kept) until
    /// [`spawn_queue_depths`] gives it a capacity.
    active: Mutex<ActiveQueues>,
}

static METRICS: LazyLock<PoolMetrics> = LazyLock::new(|| PoolMetrics {
    deliveries: Family::default(),
    retries: Family::default(),
    // 1 ms to about 4.7 hours.
    delivery_lags: Family::new_with_constructor(|| {
        Histogram::new(exponential_buckets(0.001, 4.0, 13))
    }),
    // 100 µs to about 6.5 s.
    durations: Family::new_with_constructor(|| {
        Histogram::new(exponential_buckets(0.0001, 2.0, 17))
    }),
    errors: Family::default(),
    messages: Family::default(),
    depths: Family::default(),
    oldest: Family::default(),
    active: Mutex::new(ActiveQueues::default()),
});

/// The most recently used queues, at most `capacity`: a touch is O(log n), and the
/// queue touched longest ago goes first.
#[derive(Default)]
struct ActiveQueues {
    capacity: usize,
    /// Queue → the stamp of its last touch.
    stamps: HashMap<(String, String), u64>,
    /// Stamp → queue, oldest first.
    order: BTreeMap<u64, (String, String)>,
    next: u64,
}

impl ActiveQueues {
    fn touch(&mut self, queue: &QueueRef) {
        if self.capacity == 0 {
            return;
        }
        let key = (queue.project.clone(), queue.queue.clone());
        let stamp = self.next;
        self.next += 1;
        if let Some(old) = self.stamps.insert(key.clone(), stamp) {
            self.order.remove(&old);
        }
        self.order.insert(stamp, key);
        while self.order.len() > self.capacity {
            if let Some((_, oldest)) = self.order.pop_first() {
                self.stamps.remove(&oldest);
            }
        }
    }

    fn queues(&self) -> Vec<QueueRef> {
        self.order
            .values()
            .map(|(project, queue)| QueueRef {
                project: project.clone(),
                queue: queue.clone(),
            })
            .collect()
    }
}

/// Records what became of a notification of `kind`: `result` is `delivered`,
/// `gave_up` or `abandoned`.
pub(crate) fn record_delivery(kind: &'static str, result: &'static str) {
    METRICS
        .deliveries
        .get_or_create(&DeliveryLabels { kind, result })
        .inc();
}

/// Records that a notification of `kind` is attempted again after a transient failure.
pub(crate) fn record_retry(kind: &'static str) {
    METRICS.retries.get_or_create(&KindLabels { kind }).inc();
}

/// Records that a notification of `kind` was delivered `lag` after its message's post.
pub(crate) fn record_delivery_lag(kind: &'static str, lag: Duration) {
    METRICS
        .delivery_lags
        .get_or_create(&KindLabels { kind })
        .observe(lag.as_secs_f64());
}

/// Whether [`spawn_queue_depths`] keeps depth gauges, so that store calls note their queue.
static DEPTHS_WATCHED: AtomicBool = AtomicBool::new(false);

fn touch(queue: &QueueRef) {
    // Without depth gauges (the default), a store call takes no lock here.
    if !DEPTHS_WATCHED.load(Ordering::Relaxed) {
        return;
    }
    METRICS
        .active
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .touch(queue);
}

/// Keeps the depth gauges of the `capacity` most recently used queues (0: none) of
/// `store`, asking it for their stats every `interval`.
pub fn spawn_queue_depths(
    store: Arc<dyn MessageStore>,
    capacity: usize,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    METRICS
        .active
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .capacity = capacity;
    DEPTHS_WATCHED.store(capacity > 0, Ordering::Relaxed);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let queues = METRICS
                .active
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .queues();
            let mut depths = Vec::with_capacity(queues.len());
            for queue in queues {
                if let Ok(stats) = store.queue_stats(&queue).await {
                    depths.push((queue, stats));
                }
            }
            METRICS.depths.clear();
            METRICS.oldest.clear();
            for (queue, stats) in depths {
                for (state, count) in [
                    ("free", stats.free),
                    ("claimed", stats.claimed),
                    ("delayed", stats.delayed),
                ] {
                    let labels = DepthLabels {
                        project: queue.project.clone(),
                        queue: queue.queue.clone(),
                        state,
                    };
                    METRICS.depths.get_or_create(&labels).set(count as i64);
                }
                let age = stats.oldest.as_ref().map_or(0, |oldest| oldest.age);
                let labels = QueueLabels {
                    project: queue.project,
                    queue: queue.queue,
                };
                METRICS.oldest.get_or_create(&labels).set(age as f64);
            }
        }
    })
}

/// Adds the pool-node's metrics to `registry`.
pub fn register(registry: &mut Registry) {
    registry.register(
        "zaqar_store_operation_duration_seconds",
        "Time of each call to the message store, by backend and operation",
        METRICS.durations.clone(),
    );
    registry.register(
        "zaqar_store_operation_errors",
        "Calls to the message store that failed, by backend, operation and Zaqar error code",
        METRICS.errors.clone(),
    );
    registry.register(
        "zaqar_messages",
        "Messages posted, claimed, deleted (by id) and popped, by backend",
        METRICS.messages.clone(),
    );
    registry.register(
        "zaqar_notifier_deliveries",
        "Notifications by kind (webhook, websocket, email) and result",
        METRICS.deliveries.clone(),
    );
    registry.register(
        "zaqar_notifier_retries",
        "Notification attempts made again after a transient failure, by kind",
        METRICS.retries.clone(),
    );
    registry.register(
        "zaqar_notifier_delivery_lag_seconds",
        "Time from a message's post to its delivery as a notification, by kind",
        METRICS.delivery_lags.clone(),
    );
    registry.register(
        "zaqar_queue_messages",
        "Messages of the most recently used queues, by state (free includes delayed)",
        METRICS.depths.clone(),
    );
    registry.register(
        "zaqar_queue_oldest_message_age_seconds",
        "Age of the oldest live message of the most recently used queues",
        METRICS.oldest.clone(),
    );
}

/// Counts `count` messages a claim moved to their dead letter queue, in the
/// `backend` store (each store counts its own moves, once they are stored).
pub fn count_dead_lettered(backend: &'static str, count: u64) {
    if count > 0 {
        METRICS
            .messages
            .get_or_create(&MessageLabels {
                backend,
                event: "dead_lettered",
            })
            .inc_by(count);
    }
}

/// Counts `count` messages the `backend` store removed because their ttl ran out.
pub fn count_expired(backend: &'static str, count: u64) {
    if count > 0 {
        METRICS
            .messages
            .get_or_create(&MessageLabels {
                backend,
                event: "expired",
            })
            .inc_by(count);
    }
}

/// Messages dead lettered so far, over every backend (tests).
#[cfg(test)]
pub fn dead_lettered_total() -> u64 {
    ["redis", "sqlite", "mongodb"]
        .into_iter()
        .map(|backend| event_total(backend, "dead_lettered"))
        .sum()
}

/// Messages of `backend` counted under `event` so far (tests).
#[cfg(test)]
pub fn event_total(backend: &'static str, event: &'static str) -> u64 {
    METRICS
        .messages
        .get_or_create(&MessageLabels { backend, event })
        .get()
}

fn count_messages(queue: &QueueRef, backend: &'static str, event: &'static str, count: usize) {
    touch(queue);
    METRICS
        .messages
        .get_or_create(&MessageLabels { backend, event })
        .inc_by(count as u64);
}

/// A `MessageStore` that measures every call of `inner`.
pub struct MeteredStore {
    inner: Arc<dyn MessageStore>,
    backend: &'static str,
}

impl MeteredStore {
    /// Wraps `inner`, a store of `backend` (`redis`, `sqlite`, `mongodb`).
    pub fn wrap(inner: Arc<dyn MessageStore>, backend: &'static str) -> Arc<dyn MessageStore> {
        Arc::new(MeteredStore { inner, backend })
    }

    /// Runs `call` as `operation` in a `store` span, recording its time and, if it
    /// fails, its error.
    async fn measure<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let started = Instant::now();
        let span = tracing::info_span!("store", backend = self.backend, op = operation);
        let result = tracing::Instrument::instrument(call, span).await;
        let labels = OperationLabels {
            backend: self.backend,
            operation,
        };
        METRICS
            .durations
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        if let Err(err) = &result {
            let labels = ErrorLabels {
                backend: self.backend,
                operation,
                code: err.code.name(),
            };
            METRICS.errors.get_or_create(&labels).inc();
        }
        result
    }
}

/// Implements a store trait for [`MeteredStore`]: each method listed calls the same
/// method of the wrapped store, measured under its own name (or the one after `as`),
/// and, with `counts EVENT in QUEUE by |answer| N`, adds N (from the answer or the
/// arguments) to the `zaqar_messages_total` of that event and counts the queue as used
/// for the depth gauges; N may be an `Option` (`None`: nothing to count, as for a post
/// that stored nothing).
macro_rules! measured {
    (@operation $name:ident) => { stringify!($name) };
    (@operation $name:ident $operation:literal) => { $operation };
    ($store:ident {
        $(
            $name:ident($($arg:ident: $type:ty),*) -> $out:ty
            $(as $operation:literal)?
            $(, counts $event:literal in $queue:ident by |$answer:ident| $count:expr)?;
        )*
    }) => {
        #[async_trait]
        impl $store for MeteredStore {
            $(
                async fn $name(&self, $($arg: $type),*) -> StoreResult<$out> {
                    let operation = measured!(@operation $name $($operation)?);
                    let answer = self.measure(operation, self.inner.$name($($arg),*)).await?;
                    $(
                        let $answer = &answer;
                        let count: Option<usize> = $count.into();
                        if let Some(count) = count {
                            count_messages($queue, self.backend, $event, count);
                        }
                    )?
                    Ok(answer)
                }
            )*
        }
    };
}

measured!(QueueStore {
    create_queue(queue: &QueueRef, metadata_json: &str) -> bool;
    get_queue(queue: &QueueRef) -> Option<String>;
    set_queue_metadata(queue: &QueueRef, metadata_json: &str) -> ();
    delete_queue(queue: &QueueRef) -> ();
    queue_stats(queue: &QueueRef) -> QueueStatsReply;
    purge_queue(queue: &QueueRef, purge: Purge) -> ();
});

measured!(MessageLog {
    post_messages(queue: &QueueRef, client_id: &str, messages: &[NewMessage]) -> Vec<String>,
        counts "posted" in queue by |ids| ids.len();
    post_checked_messages(
        queue: &QueueRef,
        client_id: &str,
        messages: &[NewMessage],
        expected_metadata: Option<&str>
    ) -> CheckedPost as "post_messages", counts "posted" in queue by |checked| checked.posted();
    post_once(queue: &QueueRef, post: Post<'_>, once: &Once) -> CheckedPost
        as "post_messages", counts "posted" in queue by |checked| checked.posted();
    list_messages(queue: &QueueRef, params: &ListParams) -> (Vec<Message>, String);
    get_messages(queue: &QueueRef, ids: &[String]) -> Vec<Message>;
    delete_messages(queue: &QueueRef, ids: &[String], claim_ids: &[String]) -> (),
        counts "deleted" in queue by |_done| ids.len();
    delete_message(queue: &QueueRef, id: &str, claim_id: Option<&str>) -> (),
        counts "deleted" in queue by |_done| 1;
    pop_messages(queue: &QueueRef, limit: u32) -> Vec<Message>,
        counts "popped" in queue by |popped| popped.len();
});

measured!(ClaimStore {
    create_claim(queue: &QueueRef, claim: NewClaim) -> Option<ClaimReply>,
        counts "claimed" in queue by |claim| claim.as_ref().map_or(0, |c| c.messages.len());
    get_claim(queue: &QueueRef, claim_id: &str) -> ClaimReply;
    update_claim(queue: &QueueRef, id: &str, lease: Lease) -> ();
    delete_claim(queue: &QueueRef, claim_id: &str) -> ();
});

measured!(SubscriptionStore {
    create_subscription(
        queue: &QueueRef,
        subscriber: &str,
        ttl: u32,
        options_json: &str,
        confirmed: bool
    ) -> (String, bool);
    list_subscriptions(queue: &QueueRef, marker: &str, limit: u32) -> (Vec<Subscription>, String);
    get_subscription(queue: &QueueRef, id: &str) -> Subscription;
    update_subscription(queue: &QueueRef, id: &str, update: &SubscriptionUpdate) -> ();
    delete_subscription(queue: &QueueRef, id: &str) -> ();
    confirm_subscription(queue: &QueueRef, id: &str, confirmed: bool) -> ();
});

measured!(DeliveryStore {
    delivery_cursor(queue: &QueueRef, id: &str) -> Option<String>;
    set_delivery_cursor(queue: &QueueRef, id: &str, marker: &str) -> ();
    reset_delivery_cursor(queue: &QueueRef, id: &str) -> String;
    take_delivery_lease(queue: &QueueRef, id: &str, holder: &str, ttl: Duration) -> bool;
    release_delivery_lease(queue: &QueueRef, id: &str, holder: &str) -> ();
    subscribed_queues() -> Vec<QueueRef>;
});

#[async_trait]
impl MessageStore for MeteredStore {
    async fn health(&self) -> StoreResult<()> {
        self.measure("health", self.inner.health()).await
    }

    async fn volatility(&self) -> StoreResult<Option<String>> {
        self.measure("volatility", self.inner.volatility()).await
    }

    async fn remove_expired_messages(&self) -> StoreResult<u64> {
        self.measure(
            "remove_expired_messages",
            self.inner.remove_expired_messages(),
        )
        .await
    }

    fn relay_activity(&self, relay: crate::activity::Relay) {
        self.inner.relay_activity(relay);
    }
}

/// How many of the subscriptions furthest behind get a lag series.
pub const MOST_LAGGING: usize = 10;

/// The notifier's gauges, read at each scrape from `report`, which gives the leases
/// held and the [`MOST_LAGGING`] lanes furthest behind (`Notifier::lanes_report`).
pub struct NotifierMetrics {
    report: Box<dyn Fn() -> (usize, Vec<crate::notifier::LaneLag>) + Send + Sync>,
}

impl NotifierMetrics {
    pub fn new(
        report: impl Fn() -> (usize, Vec<crate::notifier::LaneLag>) + Send + Sync + 'static,
    ) -> NotifierMetrics {
        NotifierMetrics {
            report: Box::new(report),
        }
    }
}

impl std::fmt::Debug for NotifierMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NotifierMetrics")
    }
}

impl prometheus_client::collector::Collector for NotifierMetrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::gauge::ConstGauge;
        let (leased, lagging) = (self.report)();
        let held = ConstGauge::new(leased as i64);
        let metric = encoder.encode_descriptor(
            "zaqar_notifier_leases_held",
            "Subscriptions whose delivery lease this notifier holds",
            None,
            held.metric_type(),
        )?;
        held.encode(metric)?;
        let lags = Family::<Vec<(String, String)>, Gauge<f64, AtomicU64>>::default();
        for lane in lagging {
            let labels = vec![
                ("project".to_string(), lane.project),
                ("queue".to_string(), lane.queue),
                ("subscription".to_string(), lane.subscription),
            ];
            lags.get_or_create(&labels).set(lane.behind.as_secs_f64());
        }
        let metric = encoder.encode_descriptor(
            "zaqar_notifier_subscription_lag_seconds",
            "Age of the message a subscription's delivery is still on, for the subscriptions furthest behind",
            None,
            lags.metric_type(),
        )?;
        lags.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(name: &str) -> QueueRef {
        QueueRef {
            project: "p".into(),
            queue: name.into(),
        }
    }

    #[test]
    fn the_active_queues_keep_the_most_recent_within_the_capacity() {
        let mut active = ActiveQueues {
            capacity: 2,
            ..ActiveQueues::default()
        };
        for name in ["a", "b", "a", "c"] {
            active.touch(&queue(name));
        }
        let names: Vec<String> = active.queues().into_iter().map(|q| q.queue).collect();
        assert_eq!(names, ["a", "c"]);
        let mut off = ActiveQueues::default();
        off.touch(&queue("a"));
        assert!(off.queues().is_empty());
    }
}
