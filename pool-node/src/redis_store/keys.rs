//! The Redis key layout: every key of a project shares one hash tag.
//!
//! Keys start with `zq:{<byte length of project>:<project>}`, so any project
//! id (arbitrary text) gives distinct keys, and a project's keys (a queue and
//! its dead letter queue included) share a Redis Cluster slot. Queue names
//! (`[a-zA-Z0-9_.-]`) never contain `:`, which separates the parts after it.
//!
//! | key | type | content |
//! |---|---|---|
//! | `<p>:q:<queue>` | hash | `meta` (metadata JSON), `seq` (last message sequence number; kept when the queue is deleted), `x` (ms until which the message keys below live), `g` (claim generation, moved on by purges), `b` (bytes of the message bodies) |
//! | `<p>:fre:<queue>` | zset | free message id → sequence number (FIFO, listing marker) |
//! | `<p>:hld:<queue>` | zset | claimed message id → sequence number |
//! | `<p>:lat:<queue>` | zset | delayed message id → sequence number |
//! | `<p>:exp:<queue>` | zset | message id → expiry ms (`total` = ZCOUNT of the future) |
//! | `<p>:clm:<queue>` | zset | claimed message id → claim expiry ms (`claimed`) |
//! | `<p>:dly:<queue>` | zset | delayed message id → min(delay end, expiry) ms (`delayed`) |
//! | `<p>:m:<queue>` | hash | message id → the message, packed (fields in `lua/prelude.lua`) |
//! | `<p>:dl:<queue>` | zset | Redis Cluster only: messages on their way to the dead letter queue (id and message packed together → sequence number; empty but for a moment) |
//! | `<p>:i:<queue>:<key>` | string | the ids (comma-separated) of the post that brought idempotency key `<key>`; expires with the key's window |
//! | `<p>:c:<queue>:<id>` | hash | one claim: `t` ttl, `e` expiry ms, `g` generation, `ids`; expires with it |
//! | `<p>:subs:<queue>` | zset | subscription id → creation sequence number |
//! | `<p>:subr:<queue>` | hash | subscriber → subscription id |
//! | `<p>:sseq:<queue>` | string | subscription sequence counter |
//! | `<p>:s:<queue>:<id>` | hash | one subscription (with its delivery cursor `x` and delivery lease `lh`, `le`); expires with it |
//! | `zq:layout` | string | the layout version of the whole store ([`LAYOUT`]) |
//!
//! A Redis Cluster pool puts each *queue* in a slot of its own instead, so that one
//! large project spreads over the shards: its keys are `zq:{<byte length of
//! project>:<project>:<queue>}:<kind>` (`...:c:<id>`, `...:s:<id>` for a claim and a
//! subscription), with the same content ([`Slots::Queue`]). A script touches the keys
//! of one queue only; dead lettering, which crosses queues, is two calls (see
//! `claims.rs`).
//!
//! Layout 1 (2026-11-26 to 2026-12-04) kept every message in one `ids` zset by
//! sequence number instead of `fre`, `hld` and `lat`; layout 2 (2026-12-04 to
//! 2026-12-08) kept no `b`. `migration.rs` moves a store written in either to layout 3.

use zaqar_proto::pb::QueueRef;

/// The layout version this build reads and writes.
pub(super) const LAYOUT: u32 = 3;
/// The key holding the layout version of the store.
pub(super) const LAYOUT_KEY: &str = "zq:layout";

/// Which keys share a Redis Cluster slot (a hash tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slots {
    /// A project's keys share one slot: one server, or a Sentinel group.
    Project,
    /// A queue's keys share one slot: a Redis Cluster.
    Queue,
}

/// The keys of one queue of one project.
#[derive(Debug, Clone)]
pub(super) struct QueueKeys {
    project: String,
    queue: String,
    slots: Slots,
}

impl QueueKeys {
    pub(super) fn new(queue: &QueueRef, slots: Slots) -> Self {
        QueueKeys {
            project: queue.project.clone(),
            queue: queue.queue.clone(),
            slots,
        }
    }

    /// Another queue of the same project (e.g. a dead letter queue).
    pub(super) fn sibling(&self, queue: &str) -> Self {
        QueueKeys {
            queue: queue.to_string(),
            ..self.clone()
        }
    }

    /// The `SCAN MATCH` pattern of every queue's key of one kind (`subs`, ...).
    pub(super) fn pattern(kind: &str, slots: Slots) -> String {
        match slots {
            Slots::Project => format!("zq:{{*}}:{kind}:*"),
            Slots::Queue => format!("zq:{{*}}:{kind}"),
        }
    }

    /// The queue of a key of one kind (see [`Self::pattern`]).
    pub(super) fn queue_of(key: &str, kind: &str, slots: Slots) -> Option<QueueRef> {
        let rest = key.strip_prefix("zq:{")?;
        let (length, rest) = rest.split_once(':')?;
        let length: usize = length.parse().ok()?;
        let project = rest.get(..length)?;
        let rest = rest.get(length..)?;
        let queue = match slots {
            Slots::Project => rest
                .strip_prefix("}:")?
                .strip_prefix(kind)?
                .strip_prefix(':')?,
            Slots::Queue => rest
                .strip_prefix(':')?
                .strip_suffix(kind)?
                .strip_suffix("}:")?,
        };
        Some(QueueRef {
            project: project.to_string(),
            queue: queue.to_string(),
        })
    }

    fn key(&self, kind: &str) -> String {
        let (project, queue) = (&self.project, &self.queue);
        match self.slots {
            Slots::Project => format!("zq:{{{}:{project}}}:{kind}:{queue}", project.len()),
            Slots::Queue => format!("zq:{{{}:{project}:{queue}}}:{kind}", project.len()),
        }
    }

    pub(super) fn record(&self) -> String {
        self.key("q")
    }

    /// The record of an idempotency key of the queue's posts.
    pub(super) fn idempotency(&self, key: &str) -> String {
        format!("{}:{key}", self.key("i"))
    }

    /// The eight keys of the queue, in the order the scripts' `queue_keys` reads them.
    pub(super) fn queue(&self) -> [String; 8] {
        ["q", "fre", "hld", "lat", "exp", "clm", "dly", "m"].map(|kind| self.key(kind))
    }

    /// The index of every message by sequence number of layout 1.
    pub(super) fn layout_1_ids(&self) -> String {
        self.key("ids")
    }

    /// Messages on their way to the dead letter queue (Redis Cluster, see `claims.rs`).
    pub(super) fn parked(&self) -> String {
        self.key("dl")
    }

    pub(super) fn claim(&self, claim_id: &str) -> String {
        format!("{}:{claim_id}", self.key("c"))
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

    fn of(project: &str, queue: &str, slots: Slots) -> QueueKeys {
        let queue = QueueRef {
            project: project.to_string(),
            queue: queue.to_string(),
        };
        QueueKeys::new(&queue, slots)
    }

    #[test]
    fn projects_never_share_keys() {
        for slots in [Slots::Project, Slots::Queue] {
            // Without the length prefix, `}` in a project id could forge another's keys.
            let a = of("a}:q:b", "c", slots).record();
            let b = of("a", "b", slots).sibling("c").record();
            assert_ne!(a, b);
            assert_eq!(b, of("a", "c", slots).record());
        }
        assert_eq!(of("p", "q1", Slots::Project).record(), "zq:{1:p}:q:q1");
        assert_eq!(of("p", "q1", Slots::Project).claim("x"), "zq:{1:p}:c:q1:x");
        assert_eq!(of("p", "q1", Slots::Queue).record(), "zq:{1:p:q1}:q");
        assert_eq!(of("p", "q1", Slots::Queue).claim("x"), "zq:{1:p:q1}:c:x");
    }

    #[test]
    fn a_cluster_queue_keeps_its_keys_in_one_slot_of_its_own() {
        let keys = of("p", "q1", Slots::Queue);
        let mut all = keys.queue().to_vec();
        all.extend([
            keys.claim("c"),
            keys.subscription("s"),
            keys.subscriptions(),
        ]);
        for key in &all {
            assert!(key.starts_with("zq:{1:p:q1}:"), "{key}");
        }
        assert_ne!(keys.record(), keys.sibling("q2").record());
    }

    #[test]
    fn keys_give_back_their_queue() {
        for slots in [Slots::Project, Slots::Queue] {
            for (project, queue) in [("p", "q1"), ("a}:subs:b", "c"), ("", "x")] {
                let keys = of(project, queue, slots);
                for (key, kind) in [(keys.subscriptions(), "subs"), (keys.layout_1_ids(), "ids")] {
                    let found = QueueKeys::queue_of(&key, kind, slots).unwrap();
                    assert_eq!(
                        (found.project.as_str(), found.queue.as_str()),
                        (project, queue)
                    );
                }
                assert!(QueueKeys::queue_of(&keys.subscriptions(), "ids", slots).is_none());
            }
        }
        assert!(QueueKeys::queue_of("zq:{9:p}:subs:q", "subs", Slots::Project).is_none());
        assert!(QueueKeys::queue_of("zq:{9:p:q}:subs", "subs", Slots::Queue).is_none());
    }
}
