//! A queue's quotas at a post: the project's `max_messages_per_queue` and
//! `max_bytes_per_queue`, which the api-node sends with the post. Either the post
//! fits, or, in a queue whose `_overflow` is `drop_oldest`, its oldest free messages
//! make room (at most [`MOST_DROPPED`]), or it is refused with 403 "Queue is full".
//!
//! The check reads the queue's stats (bounded work on every store), so posts made at
//! the same moment may pass it together, each by at most its own messages; and a
//! post that dropped messages for room goes in even when consumers took some of
//! those meanwhile. It runs before the store sees the post's idempotency key: a
//! retried post whose first attempt was stored is judged as a new one.

use zaqar_proto::pb::QueueRef;
use zaqar_proto::{ErrorCode, ZaqarError};

use crate::store::{ListParams, MessageStore};

/// The most messages one post drops to make room in a full `drop_oldest` queue.
pub const MOST_DROPPED: u64 = 100;

/// The most a queue may hold after a post; 0 for no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub messages: u64,
    pub bytes: u64,
}

/// What a post adds to its queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adding {
    pub messages: u64,
    /// The bytes of the bodies, as the stores count them.
    pub bytes: u64,
}

impl Quota {
    pub fn is_limited(&self) -> bool {
        self.messages > 0 || self.bytes > 0
    }
}

/// What must go for a post to fit: messages, and bytes of bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Excess {
    messages: u64,
    bytes: u64,
}

/// Checks `queue` against `quota` before a post adding `adding`, making room by
/// popping its oldest free messages when `drop_oldest` and they are enough; an error
/// (403, nothing dropped) when the post cannot fit.
pub async fn make_room(
    store: &dyn MessageStore,
    queue: &QueueRef,
    adding: Adding,
    quota: Quota,
    drop_oldest: bool,
) -> Result<(), ZaqarError> {
    let stats = store.queue_stats(queue).await?;
    let over = |held: u64, added: u64, most: u64| match most {
        0 => 0,
        most => (held + added).saturating_sub(most),
    };
    let excess = Excess {
        messages: over(stats.total, adding.messages, quota.messages),
        bytes: over(stats.bytes, adding.bytes, quota.bytes),
    };
    if excess == Excess::default() {
        return Ok(());
    }
    let full = || {
        let description = if excess.messages > 0 {
            format!(
                "Queue {} may hold at most {} messages; it holds {}.",
                queue.queue, quota.messages, stats.total
            )
        } else {
            format!(
                "Queue {} may hold at most {} bytes of messages; it holds {}.",
                queue.queue, quota.bytes, stats.bytes
            )
        };
        ZaqarError::titled(ErrorCode::Forbidden, "Queue is full", description)
    };
    let claimable = stats.free.saturating_sub(stats.delayed);
    if !drop_oldest || excess.messages > claimable.min(MOST_DROPPED) {
        return Err(full());
    }
    let count = match excess.bytes {
        0 => excess.messages,
        _ => match dropped_for_bytes(store, queue, excess).await? {
            Some(count) => count,
            None => return Err(full()),
        },
    };
    // Consumers taking messages meanwhile may leave fewer to pop: they made room
    // too, and once messages were dropped for it the post goes in.
    let dropped = store.pop_messages(queue, count as u32).await?;
    let freed: u64 = dropped.iter().map(|m| m.body_json.len() as u64).sum();
    tracing::debug!(project = %queue.project, queue = %queue.queue,
        dropped = dropped.len(), freed, "oldest messages dropped for room");
    Ok(())
}

/// How many of the queue's oldest free messages (at most [`MOST_DROPPED`]) make
/// room for `excess`; `None` when they are not enough.
async fn dropped_for_bytes(
    store: &dyn MessageStore,
    queue: &QueueRef,
    excess: Excess,
) -> Result<Option<u64>, ZaqarError> {
    let oldest = ListParams {
        limit: MOST_DROPPED as u32,
        echo: true,
        include_claimed: false,
        include_delayed: false,
        ..ListParams::default()
    };
    let (free, _) = store.list_messages(queue, &oldest).await?;
    let mut freed = 0;
    for (count, message) in (1..).zip(&free) {
        freed += message.body_json.len() as u64;
        if count >= excess.messages && freed >= excess.bytes {
            return Ok(Some(count));
        }
    }
    Ok(None)
}
