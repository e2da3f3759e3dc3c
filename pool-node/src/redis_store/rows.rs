//! The rows the scripts return, and their conversion to protocol messages.

use md5::{Digest, Md5};
use zaqar_proto::pb::{Message, Subscription};
use zaqar_proto::ZaqarError;

/// A message row: id, body, checksum, created ms, expires ms, live claim id or "",
/// claim count, the queue it was dead-lettered from or "".
pub(super) type MessageRow = (String, String, String, i64, i64, String, u32, String);

/// A subscription row: id, subscriber, ttl s, created ms, options JSON, confirmed (1/0).
pub(super) type SubscriptionRow = (String, String, u32, i64, String, u8);

/// Whole seconds from `from_ms` to `to_ms`, never negative.
pub(super) fn seconds(from_ms: i64, to_ms: i64) -> u64 {
    (to_ms.saturating_sub(from_ms).max(0) / 1000) as u64
}

/// A message as listed at `now` (server ms); its ttl is expiry - creation.
pub(super) fn message(row: MessageRow, now: i64) -> Message {
    let (id, body_json, checksum, created_ms, expires_ms, claim_id, claim_count, source) = row;
    Message {
        id,
        ttl: seconds(created_ms, expires_ms).min(u32::MAX as u64) as u32,
        age: seconds(created_ms, now),
        body_json,
        claim_id,
        claim_count,
        created_ms,
        checksum,
        dead_letter_source: source,
    }
}

pub(super) fn messages(rows: Vec<MessageRow>, now: i64) -> Vec<Message> {
    rows.into_iter().map(|row| message(row, now)).collect()
}

/// Zaqar's checksum of a message body.
pub(super) fn checksum(body_json: &str) -> String {
    format!("MD5:{:x}", Md5::digest(body_json.as_bytes()))
}

pub(super) fn subscription(row: SubscriptionRow, queue: &str, now: i64) -> Subscription {
    let (id, subscriber, ttl, created_ms, options_json, confirmed) = row;
    Subscription {
        id,
        source: queue.to_string(),
        subscriber,
        ttl,
        age: seconds(created_ms, now),
        options_json,
        confirmed: confirmed == 1,
    }
}

/// Parses a listing marker: the decimal sequence number of the last item returned.
pub(super) fn parse_marker(marker: &str) -> Result<u64, ZaqarError> {
    if marker.is_empty() {
        return Ok(0);
    }
    marker
        .parse()
        .map_err(|_| ZaqarError::bad_request(format!("invalid marker {marker:?}")))
}

/// The marker continuing a listing that ended at `last` (0: nothing was ever returned).
pub(super) fn next_marker(last: u64, given: &str) -> String {
    if last == 0 {
        given.to_string()
    } else {
        last.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_decimal_sequence_numbers() {
        assert_eq!(parse_marker("").unwrap(), 0);
        assert_eq!(parse_marker("42").unwrap(), 42);
        for bad in ["x", "-1", "1.5", " 3"] {
            let err = parse_marker(bad).unwrap_err();
            assert_eq!(err.code, zaqar_proto::ErrorCode::BadRequest);
        }
        assert_eq!(next_marker(0, ""), "");
        assert_eq!(next_marker(7, "3"), "7");
    }

    #[test]
    fn ttl_and_age_are_whole_seconds() {
        let row = (
            "id".into(),
            "{}".into(),
            checksum("{}"),
            1_000,
            61_999,
            String::new(),
            0,
            "jobs".into(),
        );
        let message = message(row, 3_500);
        assert_eq!((message.ttl, message.age), (60, 2));
        assert_eq!(seconds(5_000, 1_000), 0);
        assert_eq!(message.checksum, "MD5:99914b932bd37a50b983c5e7c90ae93b");
        assert_eq!(message.dead_letter_source, "jobs");
    }
}
