//! Rows as the API shows them, and the small conversions every file of the store
//! shares: times, markers, checksums, errors.

use std::time::{SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use zaqar_proto::pb::Message;
use zaqar_proto::ZaqarError;

use crate::store::StoreResult;

/// The `state` of a message row: free, claimed or delayed, as last written (a
/// claim that ended or a delay that passed is moved back to free lazily).
pub(super) const FREE: i64 = 0;
pub(super) const CLAIMED: i64 = 1;
pub(super) const DELAYED: i64 = 2;

/// The columns `message_from_row` reads, for `SELECT {MESSAGE_COLUMNS} FROM messages`.
pub(super) const MESSAGE_COLUMNS: &str =
    "seq, id, client_id, body, checksum, ttl, created_ms, expires_ms, \
                               claim_id, claim_expires_ms, claim_count, dead_letter_source";

/// Every sqlx failure is the store failing: retrying later is safe.
pub(super) fn store_error(e: sqlx::Error) -> ZaqarError {
    ZaqarError::unavailable(format!("the sqlite message store failed: {e}"))
}

/// Wall-clock milliseconds since the Unix epoch.
pub(super) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `seconds` as milliseconds.
pub(super) fn ms(seconds: u32) -> i64 {
    i64::from(seconds) * 1000
}

/// Whole seconds in a span of milliseconds (0 for a negative span).
pub(super) fn whole_seconds(span_ms: i64) -> i64 {
    span_ms.max(0) / 1000
}

/// Zaqar's checksum of a message body: `MD5:` and the hex digest of its JSON text.
pub(super) fn checksum(body_json: &str) -> String {
    format!("MD5:{:x}", Md5::digest(body_json.as_bytes()))
}

/// Parses a listing marker: empty is the start, otherwise a decimal sequence number.
pub(super) fn parse_marker(marker: &str) -> StoreResult<i64> {
    if marker.is_empty() {
        return Ok(0);
    }
    marker
        .parse()
        .map_err(|_| ZaqarError::bad_request(format!("invalid marker {marker:?}")))
}

/// A message row (selected with `MESSAGE_COLUMNS`) as the API shows it at `now`.
pub(super) fn message_from_row(row: &SqliteRow, now: i64) -> Message {
    let created_ms: i64 = row.get("created_ms");
    let expires_ms: i64 = row.get("expires_ms");
    let claim_expires_ms: i64 = row.get("claim_expires_ms");
    let claim_id: Option<String> = row.get("claim_id");
    Message {
        id: row.get("id"),
        ttl: whole_seconds(expires_ms - created_ms) as u32,
        age: whole_seconds(now - created_ms) as u64,
        body_json: row.get("body"),
        claim_id: claim_id
            .filter(|_| claim_expires_ms > now)
            .unwrap_or_default(),
        claim_count: row.get::<i64, _>("claim_count") as u32,
        created_ms,
        checksum: row.get("checksum"),
        dead_letter_source: row.get("dead_letter_source"),
    }
}
