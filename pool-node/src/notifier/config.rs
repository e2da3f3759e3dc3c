//! Settings of the notifier: where email goes and how much delivery work runs at once.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use zaqar_proto::ZaqarError;

use super::network::NetworkPolicy;
use super::trustee::TrusteeConfig;

/// The notifier's settings; every key is optional (see docs/configuration.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifierConfig {
    /// Whether posted messages are delivered to subscribers at all.
    pub enabled: bool,
    /// SMTP server for `mailto:` subscriptions (plain SMTP, no TLS, no login).
    pub smtp_host: String,
    pub smtp_port: u16,
    /// The `From` of a notification email when the subscription has no `from` option.
    pub smtp_from: String,
    /// Delivery attempts (HTTP requests, SMTP sessions) running at the same time.
    pub max_in_flight: usize,
    /// Limit of one delivery attempt, connection included, in milliseconds.
    pub delivery_timeout_ms: u64,
    /// Posts waiting to be fanned out to subscriptions; when full, a new post
    /// wakes its subscriptions only at the next resume (logged as a warning).
    pub queue_capacity: usize,
    /// Notification documents of recent posts kept in memory, so that delivery
    /// sends the message as posted without decrypting it again.
    pub document_cache_capacity: usize,
    /// How often every subscribed queue is resumed from its delivery cursors
    /// (also done once at start-up), in milliseconds.
    pub resume_interval_ms: u64,
    /// How often a busy subscription stores its delivery cursor, in milliseconds;
    /// after a crash at most this much delivery is repeated. An idle subscription
    /// stores it at once.
    pub cursor_flush_ms: u64,
    /// How long a subscription's delivery lease lasts without renewal, in
    /// milliseconds: the time after which another pool-node on the same store
    /// takes over the subscriptions of one that died.
    pub lease_ttl_ms: u64,
    /// Networks (CIDR blocks or addresses) webhooks may reach although they are
    /// internal (loopback, private, link-local, ...), which are refused otherwise.
    pub allowed_networks: Vec<String>,
    /// `[notifier.trustee]`: how `trust+http(s)` subscribers get their Keystone
    /// token (unset: they are not delivered).
    pub trustee: TrusteeConfig,
}

impl Default for NotifierConfig {
    fn default() -> Self {
        NotifierConfig {
            enabled: true,
            smtp_host: "localhost".to_string(),
            smtp_port: 25,
            smtp_from: "Zaqar Notifications <no-reply@openstack.org>".to_string(),
            // Zaqar's `max_notifier_workers`.
            max_in_flight: 10,
            delivery_timeout_ms: 10_000,
            queue_capacity: 10_000,
            document_cache_capacity: 10_000,
            resume_interval_ms: 30_000,
            cursor_flush_ms: 1_000,
            lease_ttl_ms: 10_000,
            allowed_networks: Vec::new(),
            trustee: TrusteeConfig::default(),
        }
    }
}

impl NotifierConfig {
    pub fn delivery_timeout(&self) -> Duration {
        Duration::from_millis(self.delivery_timeout_ms.max(1))
    }

    pub fn resume_interval(&self) -> Duration {
        Duration::from_millis(self.resume_interval_ms.max(10))
    }

    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms.max(30))
    }

    /// Where webhooks may go; an entry of `allowed_networks` that is not a network is an error.
    pub fn network_policy(&self) -> Result<NetworkPolicy, ZaqarError> {
        NetworkPolicy::new(&self.allowed_networks).map_err(ZaqarError::bad_request)
    }

    pub fn cursor_flush(&self) -> Duration {
        Duration::from_millis(self.cursor_flush_ms)
    }
}
