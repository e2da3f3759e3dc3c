//! Dead-letter redrive (`POST /v2/queues/{queue}/redrive`, WebSocket `queue_redrive`):
//! moves the oldest messages of a queue (a dead letter queue, usually) to a named
//! queue, or each back to the queue it was dead-lettered from, `limit` at a time, as
//! new messages there (claim count 0, their body and ttl kept). Nothing is lost and
//! nothing doubled when a call fails half-way: the messages are claimed, each is
//! posted to the destination with an idempotency key naming it
//! (`redrive:<queue>:<id>`, within the destination's `_idempotency_window`), and only
//! then deleted; a failed call leaves the rest claimed until the claim ends, and the
//! next call moves them, its posts of the messages already moved answered from their
//! keys.

use serde::Serialize;
use serde_json::{json, Value};
use zaqar_proto::ZaqarError;

use super::json::{checked_int, expect_object, parse_document};
use super::{claims, invalid_api, messages, queues, Context, Payload};

/// What one redrive did, as both transports show it (`{"moved": .., "remaining": ..}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redriven {
    /// Messages moved by this call.
    pub moved: usize,
    /// Free messages left in the queue after it.
    pub remaining: u64,
}

/// Moves up to `limit` (default: the page size; at most a claim's limit) of the
/// oldest free messages of `queue` to `destination`, or without one each to the
/// queue it was dead-lettered from, as the document `{"destination": ..., "limit":
/// ...}` of `payload` says. Without a destination, a batch holding a message that was
/// posted to `queue` itself is refused (400) and left as it was.
pub async fn redrive(
    ctx: &Context,
    queue: &str,
    payload: &Payload,
) -> Result<Redriven, ZaqarError> {
    ctx.check_queue(queue)?;
    let document = expect_object(parse_document(payload)?)?;
    let destination = match document.get("destination") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name.clone()),
        Some(_) => {
            return Err(invalid_api(
                "\"destination\" must be the name of the queue to move the messages to.",
            ))
        }
    };
    if let Some(destination) = &destination {
        ctx.check_queue(destination)?;
        if destination == queue {
            return Err(invalid_api("The destination must be another queue."));
        }
    }
    let limits = ctx.limits();
    let max = i64::from(limits.max_messages_per_claim_or_pop);
    let limit = checked_int(
        &document,
        "limit",
        Some(i64::from(limits.default_page_size)),
    )?;
    if !(1..=max).contains(&limit) {
        return Err(invalid_api(format!(
            "Limit must be at least 1 and may not be greater than {max}."
        )));
    }
    if queues::get_stored(ctx, queue).await?.is_none() {
        return Err(ZaqarError::not_found(format!(
            "Queue {queue} does not exist."
        )));
    }
    // Held as briefly as claims may be: a call that fails leaves them for the next.
    let hold = json!({"ttl": limits.min_claim_ttl, "grace": limits.min_claim_grace});
    let hold = Payload::Read(hold.to_string().into());
    let mut moved = 0;
    if let Some(claim) = claims::create(ctx, queue, Some(limit), &hold, None).await? {
        let sourceless = claim
            .messages
            .iter()
            .find(|message| message.dead_letter_source.is_none());
        if let (None, Some(message)) = (&destination, sourceless) {
            // Nothing moved: the messages are free again at once.
            claims::delete(ctx, queue, &claim.id).await?;
            return Err(invalid_api(format!(
                "Message {} was not dead-lettered from another queue: name a \"destination\".",
                message.id
            )));
        }
        let mut ids = Vec::with_capacity(claim.messages.len());
        for message in &claim.messages {
            let destination = destination
                .as_deref()
                .or(message.dead_letter_source.as_deref())
                .unwrap_or_default();
            let post = format!(
                r#"{{"messages": [{{"ttl": {}, "body": {}}}]}}"#,
                message.ttl,
                message.body.get()
            );
            let key = format!("redrive:{queue}:{}", message.id);
            messages::post(ctx, destination, &Payload::Read(post.into()), Some(&key)).await?;
            ids.push(message.id.clone());
        }
        messages::delete_claimed(ctx, queue, ids, &claim.id).await?;
        moved = claim.messages.len();
        crate::metrics::record_redriven(moved);
    }
    let remaining = queues::stats(ctx, queue).await?.free;
    Ok(Redriven { moved, remaining })
}
