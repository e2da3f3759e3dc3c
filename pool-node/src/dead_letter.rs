//! The dead-letter policy a queue's reserved metadata describes.

use serde_json::Value;

/// After `max_claim_count` claims, a message moves to `queue` (same project),
/// living `messages_ttl` seconds there (its own ttl when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterPolicy {
    pub max_claim_count: u32,
    pub queue: String,
    pub messages_ttl: Option<u32>,
}

impl DeadLetterPolicy {
    /// The policy of a queue from its metadata JSON; `None` unless both
    /// `_max_claim_count` and `_dead_letter_queue` are set.
    pub fn from_metadata(metadata_json: &str) -> Option<DeadLetterPolicy> {
        let metadata: Value = serde_json::from_str(metadata_json).ok()?;
        let max_claim_count = metadata.get("_max_claim_count")?.as_u64()?;
        let queue = metadata.get("_dead_letter_queue")?.as_str()?;
        if queue.is_empty() || max_claim_count == 0 {
            return None;
        }
        let messages_ttl = metadata
            .get("_dead_letter_queue_messages_ttl")
            .and_then(Value::as_u64)
            .map(|ttl| ttl.min(u32::MAX as u64) as u32);
        Some(DeadLetterPolicy {
            max_claim_count: max_claim_count.min(u32::MAX as u64) as u32,
            queue: queue.to_string(),
            messages_ttl,
        })
    }

    /// Whether a message claimed `claim_count` times goes to the dead letter queue
    /// instead of being claimed again.
    pub fn is_exhausted(&self, claim_count: u32) -> bool {
        claim_count >= self.max_claim_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_needs_both_count_and_queue() {
        assert_eq!(DeadLetterPolicy::from_metadata("{}"), None);
        assert_eq!(
            DeadLetterPolicy::from_metadata(r#"{"_max_claim_count": 2}"#),
            None
        );
        let policy = DeadLetterPolicy::from_metadata(
            r#"{"_max_claim_count": 2, "_dead_letter_queue": "dlq", "_dead_letter_queue_messages_ttl": 120}"#,
        )
        .unwrap();
        assert_eq!(policy.queue, "dlq");
        assert_eq!(policy.messages_ttl, Some(120));
        assert!(!policy.is_exhausted(1));
        assert!(policy.is_exhausted(2));
    }
}
