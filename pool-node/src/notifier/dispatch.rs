//! The fan-out task: takes posts in order, lists the queue's subscriptions and
//! hands each confirmed one its job on its own lane (one lane per subscription,
//! so a slow endpoint holds up only itself).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use zaqar_proto::pb::{NewMessage, QueueRef};

use super::deliver::{Deliverer, Job};
use super::target::{documents, Target};
use crate::store::MessageStore;

/// Subscriptions read per store call.
const PAGE: u32 = 100;
/// A lane with nothing new for this long and nothing pending is closed.
const LANE_IDLE: Duration = Duration::from_secs(60);

/// One successful post, as handed over by the post path.
#[derive(Debug)]
pub struct Post {
    pub queue: QueueRef,
    pub messages: Vec<NewMessage>,
}

struct Lane {
    jobs: mpsc::Sender<Job>,
    /// Jobs handed to the lane and not finished yet; a lane still busy is kept, so
    /// that one subscription never has two lanes (which could reorder it).
    pending: Arc<AtomicUsize>,
    last_used: Instant,
}

/// Owns the lanes; runs until every [`super::Notifier`] handle is dropped.
pub struct Dispatcher {
    store: Arc<dyn MessageStore>,
    deliverer: Arc<Deliverer>,
    lanes: HashMap<(String, String, String), Lane>,
    lane_capacity: usize,
    dropped: Arc<AtomicU64>,
}

impl Dispatcher {
    pub fn new(
        store: Arc<dyn MessageStore>,
        deliverer: Deliverer,
        lane_capacity: usize,
        dropped: Arc<AtomicU64>,
    ) -> Self {
        Dispatcher {
            store,
            deliverer: Arc::new(deliverer),
            lanes: HashMap::new(),
            lane_capacity: lane_capacity.max(1),
            dropped,
        }
    }

    pub async fn run(mut self, mut posts: mpsc::Receiver<Post>) {
        let mut sweep = tokio::time::interval(LANE_IDLE);
        loop {
            tokio::select! {
                post = posts.recv() => match post {
                    Some(post) => self.fan_out(post).await,
                    None => break,
                },
                _ = sweep.tick() => {
                    // Dropping the sender of an idle lane ends its task.
                    self.lanes.retain(|_, lane| {
                        lane.pending.load(Ordering::Acquire) > 0 || lane.last_used.elapsed() < LANE_IDLE
                    });
                }
            }
        }
        tracing::debug!("notifier stopped");
    }

    async fn fan_out(&mut self, post: Post) {
        let Post { queue, messages } = post;
        let queue_policy = match self.store.get_queue(&queue).await {
            Ok(metadata) => Arc::new(retry_policy_of(metadata.as_deref())),
            Err(err) => return self.drop_post(&queue, messages.len(), &err.description),
        };
        let documents = Arc::new(documents(&queue.queue, &messages));
        let mut marker = String::new();
        loop {
            let (page, next) = match self.store.list_subscriptions(&queue, &marker, PAGE).await {
                Ok(listed) => listed,
                Err(err) => return self.drop_post(&queue, messages.len(), &err.description),
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
                let job = Job {
                    queue: queue.clone(),
                    subscription,
                    queue_policy: queue_policy.clone(),
                    documents: documents.clone(),
                };
                self.enqueue(job);
            }
            if last_page {
                return;
            }
            marker = next;
        }
    }

    /// Puts `job` on its subscription's lane, opening the lane if needed.
    fn enqueue(&mut self, job: Job) {
        let key = (
            job.queue.project.clone(),
            job.queue.queue.clone(),
            job.subscription.id.clone(),
        );
        let lane = self.lanes.entry(key.clone()).or_insert_with(|| {
            let (jobs, receiver) = mpsc::channel(self.lane_capacity);
            let pending = Arc::new(AtomicUsize::new(0));
            tokio::spawn(self.deliverer.clone().run_lane(receiver, pending.clone()));
            Lane {
                jobs,
                pending,
                last_used: Instant::now(),
            }
        });
        lane.last_used = Instant::now();
        lane.pending.fetch_add(1, Ordering::AcqRel);
        let job = match lane.jobs.try_send(job) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(job)) => job,
            Err(mpsc::error::TrySendError::Closed(job)) => {
                // Only a panicked lane closes while listed; the next post opens a new one.
                self.lanes.remove(&key);
                job
            }
        };
        if let Some(lane) = self.lanes.get(&key) {
            lane.pending.fetch_sub(1, Ordering::AcqRel);
        }
        self.dropped
            .fetch_add(job.documents.len() as u64, Ordering::Relaxed);
        tracing::warn!(project = %job.queue.project, queue = %job.queue.queue,
            subscription = %job.subscription.id, messages = job.documents.len(),
            "subscription backlog full, notification dropped");
    }

    fn drop_post(&self, queue: &QueueRef, messages: usize, reason: &str) {
        self.dropped.fetch_add(messages as u64, Ordering::Relaxed);
        tracing::warn!(project = %queue.project, queue = %queue.queue, messages, %reason,
            "cannot read the queue's subscriptions, notification dropped");
    }
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
