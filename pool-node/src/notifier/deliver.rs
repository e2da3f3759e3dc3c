//! Delivery for one subscription: its notifications in posting order, each retried
//! per the retry policy, every attempt holding one of the shared slots and bounded
//! by the delivery timeout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lettre::{AsyncSmtpTransport, Tokio1Executor};
use serde_json::{Map, Value};
use tokio::sync::{mpsc, Semaphore};
use zaqar_proto::pb::{QueueRef, Subscription};
use zaqar_proto::{ErrorCode, ZaqarError};

use super::retry::RetryPolicy;
use super::target::{options_of, Target};
use super::{mailto, webhook, NotifierConfig};
use crate::store::MessageStore;

/// Why one attempt did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Worth another attempt (network, timeout, 5xx, SMTP 4xx).
    Transient(String),
    /// Another attempt would fail the same way (bad address, 4xx, SMTP 5xx).
    Permanent(String),
}

/// The messages of one post for one subscription.
#[derive(Debug)]
pub struct Job {
    pub queue: QueueRef,
    /// The subscription as listed when the post was fanned out.
    pub subscription: Subscription,
    /// The queue's `_retry_policy` (empty when unset).
    pub queue_policy: Arc<Map<String, Value>>,
    /// One notification document per message, in posting order.
    pub documents: Arc<Vec<String>>,
}

/// What became of one notification.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Delivered,
    GaveUp,
    /// Deleted or unconfirmed while its deliveries waited for a retry.
    Unsubscribed,
}

/// Shared by every subscription's lane: the clients and the bound on attempts in flight.
pub struct Deliverer {
    store: Arc<dyn MessageStore>,
    http: reqwest::Client,
    smtp: AsyncSmtpTransport<Tokio1Executor>,
    smtp_from: String,
    slots: Semaphore,
    timeout: Duration,
}

impl Deliverer {
    pub fn new(store: Arc<dyn MessageStore>, config: &NotifierConfig) -> Result<Self, ZaqarError> {
        let timeout = config.delivery_timeout();
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|err| {
                ZaqarError::internal(format!("cannot build the webhook client: {err}"))
            })?;
        Ok(Deliverer {
            store,
            http,
            smtp: mailto::transport(&config.smtp_host, config.smtp_port, timeout),
            smtp_from: config.smtp_from.clone(),
            slots: Semaphore::new(config.max_in_flight.max(1)),
            timeout,
        })
    }

    /// Delivers the jobs of one subscription one after the other until the sender
    /// closes, counting each finished job off `pending`.
    pub async fn run_lane(
        self: Arc<Self>,
        mut jobs: mpsc::Receiver<Job>,
        pending: Arc<AtomicUsize>,
    ) {
        while let Some(job) = jobs.recv().await {
            self.deliver(&job).await;
            pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    async fn deliver(&self, job: &Job) {
        let options = options_of(&job.subscription);
        let target = match Target::of(&job.subscription.subscriber, &options) {
            Ok(target) => target,
            Err(reason) => {
                tracing::debug!(project = %job.queue.project, queue = %job.queue.queue,
                    subscription = %job.subscription.id, %reason, "subscription not notified");
                return;
            }
        };
        let own_policy = options
            .get("_retry_policy")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let schedule = RetryPolicy::effective(&own_policy, &job.queue_policy).schedule();
        for document in job.documents.iter() {
            if self.deliver_one(job, &target, document, &schedule).await == Outcome::Unsubscribed {
                return;
            }
        }
    }

    async fn deliver_one(
        &self,
        job: &Job,
        target: &Target,
        document: &str,
        schedule: &[Duration],
    ) -> Outcome {
        let mut waits = schedule.iter();
        let mut attempt = 1u32;
        loop {
            let reason = match self.attempt(target, document).await {
                Ok(()) => {
                    tracing::debug!(project = %job.queue.project, queue = %job.queue.queue,
                        subscription = %job.subscription.id, attempt, "notification delivered");
                    return Outcome::Delivered;
                }
                Err(Failure::Permanent(reason)) => {
                    tracing::warn!(project = %job.queue.project, queue = %job.queue.queue,
                        subscription = %job.subscription.id, attempt, %reason,
                        "notification refused, not retried");
                    return Outcome::GaveUp;
                }
                Err(Failure::Transient(reason)) => reason,
            };
            let Some(wait) = waits.next() else {
                tracing::warn!(project = %job.queue.project, queue = %job.queue.queue,
                    subscription = %job.subscription.id, attempt, %reason,
                    "notification dropped after its last retry");
                return Outcome::GaveUp;
            };
            tracing::debug!(project = %job.queue.project, queue = %job.queue.queue,
                subscription = %job.subscription.id, attempt, %reason,
                retry_in_s = wait.as_secs(), "notification failed, retrying");
            if !wait.is_zero() {
                tokio::time::sleep(*wait).await;
                if !self.still_subscribed(job).await {
                    return Outcome::Unsubscribed;
                }
            }
            attempt += 1;
        }
    }

    /// One attempt, holding a slot, within the delivery timeout.
    async fn attempt(&self, target: &Target, document: &str) -> Result<(), Failure> {
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the slots are never closed");
        let work = async {
            match target {
                Target::Webhook {
                    url,
                    headers,
                    post_data,
                } => {
                    let body = Target::webhook_body(post_data.as_deref(), document);
                    webhook::post(&self.http, url, headers, body).await
                }
                Target::Mailto { to, from, subject } => {
                    let from = from.as_deref().unwrap_or(&self.smtp_from);
                    mailto::send(&self.smtp, from, to, subject, document.to_string()).await
                }
            }
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or_else(|_| {
                Err(Failure::Transient(format!(
                    "no answer within {:?}",
                    self.timeout
                )))
            })
    }

    /// Whether the subscription still exists and is confirmed; an unreachable store
    /// counts as yes (the delivery goes on).
    async fn still_subscribed(&self, job: &Job) -> bool {
        match self
            .store
            .get_subscription(&job.queue, &job.subscription.id)
            .await
        {
            Ok(subscription) => subscription.confirmed,
            Err(err) => err.code != ErrorCode::NotFound,
        }
    }
}
