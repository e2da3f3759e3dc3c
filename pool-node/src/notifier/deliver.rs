//! Delivery of one notification: its attempts, retried per the retry policy, each
//! holding one of the shared slots and bounded by the delivery timeout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lettre::{AsyncSmtpTransport, Tokio1Executor};
use tokio::sync::Semaphore;
use zaqar_proto::pb::QueueRef;
use zaqar_proto::{ErrorCode, ZaqarError};

use super::network::{address_of, NetworkPolicy};
use super::target::Target;
use super::trustee::Trustee;
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

/// What became of one notification.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Refused by the endpoint, or out of retries.
    GaveUp,
    /// Not finished: the subscription was deleted or unconfirmed, or its lane
    /// stopped, while the delivery waited for a retry.
    Abandoned,
}

/// Shared by every subscription's lane: the clients and the bound on attempts in flight.
pub struct Deliverer {
    store: Arc<dyn MessageStore>,
    /// Tenants' webhooks: only to addresses `policy` permits, no redirects.
    http: reqwest::Client,
    /// WebSocket push subscriptions (the api-nodes' own listeners): no redirects.
    push_http: reqwest::Client,
    policy: NetworkPolicy,
    /// Tokens for `trust+` subscribers (`None` without `[notifier.trustee]`).
    trustee: Option<Trustee>,
    smtp: AsyncSmtpTransport<Tokio1Executor>,
    smtp_from: String,
    slots: Semaphore,
    timeout: Duration,
}

impl Deliverer {
    pub fn new(store: Arc<dyn MessageStore>, config: &NotifierConfig) -> Result<Self, ZaqarError> {
        let timeout = config.delivery_timeout();
        let policy = config.network_policy()?;
        let client = || {
            reqwest::Client::builder()
                .connect_timeout(timeout)
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
        };
        let built = |client: reqwest::ClientBuilder| {
            client.build().map_err(|err| {
                ZaqarError::internal(format!("cannot build the webhook client: {err}"))
            })
        };
        Ok(Deliverer {
            store,
            http: built(client().dns_resolver(policy.resolver()))?,
            push_http: built(client())?,
            policy,
            trustee: Trustee::new(&config.trustee, timeout)?,
            smtp: mailto::transport(&config.smtp_host, config.smtp_port, timeout),
            smtp_from: config.smtp_from.clone(),
            slots: Semaphore::new(config.max_in_flight.max(1)),
            timeout,
        })
    }

    /// Delivers one notification to `target`, retrying transient failures after
    /// the waits of `schedule`.
    pub async fn deliver(
        &self,
        queue: &QueueRef,
        subscription_id: &str,
        target: &Target,
        document: &str,
        schedule: &[Duration],
        stopped: &AtomicBool,
    ) -> Outcome {
        let mut waits = schedule.iter();
        let mut attempt = 1u32;
        let outcome = loop {
            let reason = match self.attempt(target, document).await {
                Ok(()) => {
                    tracing::debug!(project = %queue.project, queue = %queue.queue,
                        subscription = %subscription_id, attempt, "notification delivered");
                    break Outcome::Delivered;
                }
                Err(Failure::Permanent(reason)) => {
                    tracing::warn!(project = %queue.project, queue = %queue.queue,
                        subscription = %subscription_id, attempt, %reason,
                        "notification refused, not retried");
                    break Outcome::GaveUp;
                }
                Err(Failure::Transient(reason)) => reason,
            };
            let Some(wait) = waits.next() else {
                tracing::warn!(project = %queue.project, queue = %queue.queue,
                    subscription = %subscription_id, attempt, %reason,
                    "notification dropped after its last retry");
                break Outcome::GaveUp;
            };
            tracing::debug!(project = %queue.project, queue = %queue.queue,
                subscription = %subscription_id, attempt, %reason,
                retry_in_s = wait.as_secs(), "notification failed, retrying");
            if !wait.is_zero() {
                tokio::time::sleep(*wait).await;
                if stopped.load(Ordering::Acquire)
                    || !self.still_subscribed(queue, subscription_id).await
                {
                    break Outcome::Abandoned;
                }
            }
            crate::metrics::record_retry(target.kind());
            attempt += 1;
        };
        let kind = target.kind();
        let result = match outcome {
            Outcome::Delivered => "delivered",
            Outcome::GaveUp => "gave_up",
            Outcome::Abandoned => "abandoned",
        };
        crate::metrics::record_delivery(kind, result);
        outcome
    }

    /// Where webhooks may go.
    pub fn policy(&self) -> &NetworkPolicy {
        &self.policy
    }

    /// A webhook whose host is an address the policy does not permit is refused
    /// (names are checked as they resolve, by the client's resolver).
    fn refuse_internal_address(&self, url: &str) -> Result<(), Failure> {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|url| url.host_str().and_then(address_of));
        match host {
            Some(ip) if !self.policy.permits(ip) => Err(Failure::Permanent(format!(
                "{ip} is an internal address, which this service does not notify"
            ))),
            _ => Ok(()),
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
                    trusted,
                    signing_secret,
                    trust_id,
                } => {
                    let body = Target::webhook_body(post_data.as_deref(), document);
                    let client = if *trusted {
                        &self.push_http
                    } else {
                        self.refuse_internal_address(url)?;
                        &self.http
                    };
                    let mut headers = std::borrow::Cow::Borrowed(headers);
                    if let Some(trust_id) = trust_id {
                        let token = self.trust_token(trust_id).await?;
                        headers.to_mut().push(("X-Auth-Token".to_string(), token));
                    }
                    webhook::post(client, url, &headers, signing_secret.as_ref(), body).await
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

    /// A token of the Keystone trust `trust_id` for a `trust+` subscriber.
    async fn trust_token(&self, trust_id: &str) -> Result<String, Failure> {
        match &self.trustee {
            Some(trustee) => trustee.token(trust_id).await,
            None => Err(Failure::Permanent(
                "trust+ subscribers need [notifier.trustee] on the pool-node".to_string(),
            )),
        }
    }

    /// Whether the subscription still exists and is confirmed; an unreachable store
    /// counts as yes (the delivery goes on).
    async fn still_subscribed(&self, queue: &QueueRef, subscription_id: &str) -> bool {
        match self.store.get_subscription(queue, subscription_id).await {
            Ok(subscription) => subscription.confirmed,
            Err(err) => err.code != ErrorCode::NotFound,
        }
    }
}
