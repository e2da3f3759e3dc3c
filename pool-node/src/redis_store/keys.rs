//! The Redis key layout: every key of a project shares one hash tag.
//!
//! Keys start with `zq:{<byte length of project>:<project>}`, so any project
//! id (arbitrary text) gives distinct keys, and a project's keys (a queue and
//! its dead letter queue included) share a Redis Cluster slot. Queue names
//! (`[a-zA-Z0-9_.-]`) never contain `:`, which separates the parts after it.
//!
//! | key | type | content |
//! |---|---|---|
//! | `<p>:q:<queue>` | hash | `meta` (metadata JSON), `seq` (last message sequence number; kept when the queue is deleted), `x` (ms until which the message keys below live) |
//! | `<p>:ids:<queue>` | zset | message id → sequence number (FIFO, listing marker) |
//! | `<p>:exp:<queue>` | zset | message id → expiry ms (`total` = ZCOUNT of the future) |
//! | `<p>:clm:<queue>` | zset | claimed message id → claim expiry ms (`claimed`) |
//! | `<p>:dly:<queue>` | zset | delayed message id → min(delay end, expiry) ms (`delayed`) |
//! | `<p>:m:<queue>` | hash | message id → the message, packed (fields in `lua/prelude.lua`) |
//! | `<p>:c:<queue>:<id>` | hash | one claim: `t` ttl, `e` expiry ms, `ids`; expires with it |
//! | `<p>:subs:<queue>` | zset | subscription id → creation sequence number |
//! | `<p>:subr:<queue>` | hash | subscriber → subscription id |
//! | `<p>:sseq:<queue>` | string | subscription sequence counter |
//! | `<p>:s:<queue>:<id>` | hash | one subscription (with its delivery cursor `x` and delivery lease `lh`, `le`); expires with it |

use zaqar_proto::pb::QueueRef;

/// The keys of one queue of one project.
#[derive(Debug, Clone)]
pub(super) struct QueueKeys {
    base: String,
    queue: String,
}

impl QueueKeys {
    pub(super) fn new(queue: &QueueRef) -> Self {
        Self::of(&queue.project, &queue.queue)
    }

    /// Another queue of the same project (e.g. a dead letter queue).
    pub(super) fn sibling(&self, queue: &str) -> Self {
        QueueKeys {
            base: self.base.clone(),
            queue: queue.to_string(),
        }
    }

    /// The `SCAN MATCH` pattern of every queue's subscription index.
    pub(super) fn subscriptions_pattern() -> &'static str {
        "zq:{*}:subs:*"
    }

    /// The queue of a subscription index key (see [`Self::subscriptions_pattern`]).
    pub(super) fn queue_of_subscriptions(key: &str) -> Option<QueueRef> {
        let rest = key.strip_prefix("zq:{")?;
        let (length, rest) = rest.split_once(':')?;
        let length: usize = length.parse().ok()?;
        let project = rest.get(..length)?;
        let queue = rest.get(length..)?.strip_prefix("}:subs:")?;
        Some(QueueRef {
            project: project.to_string(),
            queue: queue.to_string(),
        })
    }

    fn of(project: &str, queue: &str) -> Self {
        QueueKeys {
            base: format!("zq:{{{}:{}}}", project.len(), project),
            queue: queue.to_string(),
        }
    }

    fn key(&self, kind: &str) -> String {
        format!("{}:{}:{}", self.base, kind, self.queue)
    }

    pub(super) fn record(&self) -> String {
        self.key("q")
    }

    /// The six keys of the queue, in the order the scripts' `queue_keys` reads them.
    pub(super) fn queue(&self) -> [String; 6] {
        ["q", "ids", "exp", "clm", "dly", "m"].map(|kind| self.key(kind))
    }

    pub(super) fn claim_prefix(&self) -> String {
        self.key("c") + ":"
    }

    pub(super) fn claim(&self, claim_id: &str) -> String {
        self.claim_prefix() + claim_id
    }

    pub(super) fn subscriptions(&self) -> String {
        self.key("subs")
    }

    pub(super) fn subscribers(&self) -> String {
        self.key("subr")
    }

    pub(super) fn subscription_seq(&self) -> String {
        self.key("sseq")
    }

    pub(super) fn subscription_prefix(&self) -> String {
        self.key("s") + ":"
    }

    pub(super) fn subscription(&self, id: &str) -> String {
        self.subscription_prefix() + id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_never_share_keys() {
        // Without the length prefix, `}` in a project id could forge another's keys.
        let a = QueueKeys::of("a}:q:b", "c").record();
        let b = QueueKeys::of("a", "b").sibling("c").record();
        assert_ne!(a, b);
        assert_eq!(b, "zq:{1:a}:q:c");
        assert_eq!(QueueKeys::of("p", "q1").record(), "zq:{1:p}:q:q1");
        assert_eq!(QueueKeys::of("p", "q1").claim("x"), "zq:{1:p}:c:q1:x");
    }

    #[test]
    fn subscription_index_keys_give_back_their_queue() {
        for (project, queue) in [("p", "q1"), ("a}:subs:b", "c"), ("", "x")] {
            let key = QueueKeys::of(project, queue).subscriptions();
            let found = QueueKeys::queue_of_subscriptions(&key).unwrap();
            assert_eq!(
                (found.project.as_str(), found.queue.as_str()),
                (project, queue)
            );
        }
        assert!(QueueKeys::queue_of_subscriptions("zq:{9:p}:subs:q").is_none());
    }
}
