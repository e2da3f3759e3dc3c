//! Field names of the MongoDB documents, and their conversion to protocol messages.
//!
//! | field | in | content |
//! |---|---|---|
//! | `_id` | all | message, claim or subscription id (UUID text); counter key; queue: generated |
//! | `p`, `q` | queues, messages, claims, subscriptions | project and queue name |
//! | `m` | queues | metadata JSON text |
//! | `v` | counters | last sequence number handed out |
//! | `fh`, `n` | counters (free heads) | free head of a queue (see `scan.rs`), changes made to it |
//! | `k` | messages, subscriptions | sequence number: FIFO order and listing marker |
//! | `c` | messages | client id of the poster |
//! | `b`, `h` | messages | body JSON text, its checksum |
//! | `t` | messages, claims, subscriptions | ttl in seconds |
//! | `cr` | messages, subscriptions | creation, ms since the epoch |
//! | `vi` | messages | visible from (end of the delay), ms |
//! | `e` | messages, claims, subscriptions | expiry as a BSON date (the TTL index) |
//! | `ci`, `ce`, `cc` | messages | live claim id (null when free), claim expiry ms, claim count |
//! | `st` | messages | [`FREE`], [`CLAIMED`] or [`DELAYED`] as last written (see `messages.rs`) |
//! | `dq` | messages | the queue a dead-lettered message came from (absent for the others) |
//! | `r` | claims | last renewal (creation or update), ms |
//! | `_id.p`, `_id.q`, `_id.k`, `ids` | idempotency | project, queue, idempotency key; the ids its post stored (`e`: the key's window ends) |
//! | `s`, `o`, `cf`, `dc` | subscriptions | subscriber, options JSON text, confirmed, delivery cursor |
//! | `lh`, `le` | subscriptions | delivery lease: holder (a notifier), expiry ms |

use mongodb::bson::{Bson, Document};
pub(super) use zaqar_proto::mongo::{int, text};
use zaqar_proto::pb::{Message, Subscription};

use super::whole_seconds;

pub(super) const ID: &str = "_id";
pub(super) const PROJECT: &str = "p";
pub(super) const QUEUE: &str = "q";
pub(super) const METADATA: &str = "m";
pub(super) const LAST: &str = "v";
pub(super) const FREE_HEAD: &str = "fh";
pub(super) const CHANGES: &str = "n";
pub(super) const SEQ: &str = "k";
pub(super) const CLIENT: &str = "c";
pub(super) const BODY: &str = "b";
pub(super) const CHECKSUM: &str = "h";
pub(super) const TTL: &str = "t";
pub(super) const CREATED: &str = "cr";
pub(super) const VISIBLE: &str = "vi";
pub(super) const EXPIRES: &str = "e";
pub(super) const CLAIM_ID: &str = "ci";
pub(super) const CLAIM_EXPIRES: &str = "ce";
pub(super) const CLAIM_COUNT: &str = "cc";
pub(super) const STATE: &str = "st";
pub(super) const DEAD_LETTER_SOURCE: &str = "dq";
/// The bytes of a message's body (`BODY`), kept for the queue's byte count.
pub(super) const SIZE: &str = "z";
pub(super) const RENEWED: &str = "r";
pub(super) const SUBSCRIBER: &str = "s";
pub(super) const OPTIONS: &str = "o";
pub(super) const CONFIRMED: &str = "cf";
pub(super) const CURSOR: &str = "dc";
pub(super) const LEASE_HOLDER: &str = "lh";
pub(super) const LEASE_EXPIRES: &str = "le";

/// The values of [`STATE`]. A claim that ended or a delay that passed is
/// moved back to `FREE` lazily, so `FREE` messages have an index range of their own.
pub(super) const FREE: i32 = 0;
pub(super) const CLAIMED: i32 = 1;
pub(super) const DELAYED: i32 = 2;

/// A message document as the API shows it at `now`.
pub(super) fn message(doc: &Document, now: i64) -> Message {
    let created_ms = int(doc, CREATED);
    let expires_ms = int(doc, EXPIRES);
    let claim_id = if int(doc, CLAIM_EXPIRES) > now {
        text(doc, CLAIM_ID)
    } else {
        String::new()
    };
    Message {
        id: text(doc, ID),
        ttl: whole_seconds(expires_ms - created_ms).min(i64::from(u32::MAX)) as u32,
        age: whole_seconds(now - created_ms) as u64,
        body_json: text(doc, BODY),
        claim_id,
        claim_count: int(doc, CLAIM_COUNT).clamp(0, i64::from(u32::MAX)) as u32,
        created_ms,
        checksum: text(doc, CHECKSUM),
        dead_letter_source: text(doc, DEAD_LETTER_SOURCE),
    }
}

/// A subscription document as the API shows it at `now`.
pub(super) fn subscription(doc: &Document, now: i64) -> Subscription {
    Subscription {
        id: text(doc, ID),
        source: text(doc, QUEUE),
        subscriber: text(doc, SUBSCRIBER),
        ttl: int(doc, TTL).clamp(0, i64::from(u32::MAX)) as u32,
        age: whole_seconds(now - int(doc, CREATED)) as u64,
        options_json: text(doc, OPTIONS),
        confirmed: matches!(doc.get(CONFIRMED), Some(Bson::Boolean(true))),
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    #[test]
    fn ttl_and_age_are_whole_seconds_and_expired_claims_are_hidden() {
        let doc = doc! {
            ID: "id", BODY: "{}", CHECKSUM: "MD5:x", CREATED: 1_000_i64,
            EXPIRES: mongodb::bson::DateTime::from_millis(61_999),
            CLAIM_ID: "claim", CLAIM_EXPIRES: 3_000_i64, CLAIM_COUNT: 2_i32,
        };
        let held = message(&doc, 2_500);
        assert_eq!((held.ttl, held.age, held.claim_count), (60, 1, 2));
        assert_eq!(held.claim_id, "claim");
        assert_eq!(message(&doc, 3_000).claim_id, "", "the claim expired");
    }
}
