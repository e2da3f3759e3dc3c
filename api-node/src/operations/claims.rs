//! Claim operations: create (claim messages), get, renew, release.

use serde_json::Map;
use zaqar_proto::pb;
use zaqar_proto::ZaqarError;

use super::json::{checked_int, expect_object, parse_document, parse_optional, too_large};
use super::long_poll::{self, Found};
use super::types::Claim;
use super::{invalid_api, unavailable_as, Context, Payload};
use crate::routing::activity::Waiter;

/// Claims up to `limit` free messages with the `ttl`/`grace` of `payload`
/// (defaults when the body is empty); `None` when there was nothing to claim, even
/// after waiting up to `wait` seconds for messages (long polling).
pub async fn create(
    ctx: &Context,
    queue: &str,
    limit: Option<i64>,
    payload: &Payload,
    wait: Option<i64>,
) -> Result<Option<Claim>, ZaqarError> {
    ctx.check_queue(queue)?;
    let wait = long_poll::checked_wait(ctx, wait)?;
    let limits = ctx.limits();
    if let Payload::TooLarge(size) = payload {
        return Err(too_large(*size));
    }
    // The parsed body goes before the wait: only its ttl and grace are kept.
    let (ttl, grace) = match parse_optional(payload)? {
        Some(document) => ttl_and_grace(ctx, &expect_object(document)?)?,
        None => ttl_and_grace(ctx, &Map::new())?,
    };
    let max = limits.max_messages_per_claim_or_pop;
    if let Some(limit) = limit {
        if !(1..=i64::from(max)).contains(&limit) {
            return Err(invalid_api(format!(
                "Limit must be at least 1 and may not be greater than {max}."
            )));
        }
    }
    check_grace(ctx, grace)?;
    let failed = unavailable_as("Claim could not be created.");
    let request = pb::CreateClaimRequest {
        queue: Some(ctx.queue_ref(queue)),
        ttl,
        grace,
        limit: limit.map_or(limits.default_page_size, |l| l as u32),
    };
    let took = |reply: &pb::ClaimReply| !reply.id.is_empty() && !reply.messages.is_empty();
    let attempt = || async {
        let reply = ctx
            .call_queue(
                queue,
                &failed,
                request.clone(),
                |mut c, request| async move { c.create_claim(request).await },
            )
            .await?;
        if let Some(dead_letter_queue) = reply.as_ref().map(|r| &r.dead_letter_queue) {
            if !dead_letter_queue.is_empty() {
                place_dead_letter_queue(ctx, queue, dead_letter_queue).await;
            }
        }
        Ok(reply)
    };
    // A claim that took fewer than it asked for found no more free messages, unless it
    // moved some to a dead letter queue (which may be its own queue): then it wakes
    // the next waiting claim as one that took all it asked for.
    let claimed = |reply: &Option<pb::ClaimReply>| match reply {
        Some(reply)
            if took(reply)
                && (reply.messages.len() >= request.limit as usize
                    || !reply.dead_letter_queue.is_empty()) =>
        {
            Found::AllAsked
        }
        Some(reply) if took(reply) => Found::Some,
        _ => Found::Nothing,
    };
    match long_poll::poll(ctx, queue, wait, Waiter::Claim, attempt, claimed).await? {
        Some(reply) if took(&reply) => ctx.claim(reply).map(Some),
        _ => Ok(None),
    }
}

/// Places the dead letter queue a claim of `queue` moved messages to on the pool of
/// `queue`, where the messages are, unless it is placed already: a dead letter queue
/// nobody created then shows them. A failure is logged; the next claim that moves
/// messages tries again.
async fn place_dead_letter_queue(ctx: &Context, queue: &str, dead_letter_queue: &str) {
    let router = ctx.router();
    let project = ctx.project();
    let Ok(Some(pool)) = router.lookup(project, queue).await else {
        return;
    };
    let placed = match router.lookup(project, dead_letter_queue).await {
        Ok(Some(placed)) => Ok(placed),
        _ => {
            router
                .place_beside(project, dead_letter_queue, &pool.name)
                .await
        }
    };
    match placed {
        Ok(placed) if placed.name != pool.name => {
            tracing::warn!(project, queue, dead_letter_queue, pool = %pool.name,
                dead_letter_queue_pool = %placed.name,
                "the dead letter queue is on another pool than its queue: the messages moved \
                 there cannot be read");
        }
        Ok(_) => {}
        Err(err) => {
            tracing::warn!(project, queue, dead_letter_queue, error = %err,
                "cannot place the dead letter queue beside its queue");
        }
    }
}

/// A live claim and the messages it holds.
pub async fn get(ctx: &Context, queue: &str, claim_id: &str) -> Result<Claim, ZaqarError> {
    ctx.check_queue(queue)?;
    let failed = unavailable_as("Claim could not be queried.");
    let claim = pb::ClaimRef {
        queue: Some(ctx.queue_ref(queue)),
        claim_id: claim_id.to_string(),
    };
    let reply = ctx
        .call_queue(queue, &failed, claim, |mut c, claim| async move {
            c.get_claim(claim).await
        })
        .await?
        .ok_or_else(|| missing_claim(ctx, queue, claim_id))?;
    ctx.claim(reply)
}

/// Renews a live claim with the `ttl`/`grace` of `payload`.
pub async fn update(
    ctx: &Context,
    queue: &str,
    claim_id: &str,
    payload: &Payload,
) -> Result<(), ZaqarError> {
    ctx.check_queue(queue)?;
    let document = expect_object(parse_document(payload)?)?;
    let (ttl, grace) = ttl_and_grace(ctx, &document)?;
    // As in Zaqar, the grace of a renewal is not bounded (only the ttl is).
    let failed = unavailable_as("Claim could not be updated.");
    let request = pb::UpdateClaimRequest {
        claim: Some(pb::ClaimRef {
            queue: Some(ctx.queue_ref(queue)),
            claim_id: claim_id.to_string(),
        }),
        ttl,
        grace,
    };
    ctx.call_queue(queue, &failed, request, |mut c, request| async move {
        c.update_claim(request).await
    })
    .await?
    .ok_or_else(|| missing_claim(ctx, queue, claim_id))?;
    Ok(())
}

/// Releases a claim: its messages become free again. A missing claim succeeds.
pub async fn delete(ctx: &Context, queue: &str, claim_id: &str) -> Result<(), ZaqarError> {
    ctx.check_queue(queue)?;
    let failed = unavailable_as("Claim could not be deleted.");
    let claim = pb::ClaimRef {
        queue: Some(ctx.queue_ref(queue)),
        claim_id: claim_id.to_string(),
    };
    ctx.call_queue(queue, &failed, claim, |mut c, claim| async move {
        c.delete_claim(claim).await
    })
    .await?;
    Ok(())
}

/// The claim's `ttl` (checked) and `grace` (unchecked) with Zaqar's defaults.
fn ttl_and_grace(
    ctx: &Context,
    document: &Map<String, serde_json::Value>,
) -> Result<(u32, u32), ZaqarError> {
    let limits = ctx.limits();
    let ttl = checked_int(document, "ttl", Some(i64::from(limits.default_claim_ttl)))?;
    let grace = checked_int(
        document,
        "grace",
        Some(i64::from(limits.default_claim_grace)),
    )?;
    let (min, max) = (
        i64::from(limits.min_claim_ttl),
        i64::from(limits.max_claim_ttl),
    );
    if !(min..=max).contains(&ttl) {
        return Err(invalid_api(format!(
            "The TTL for a claim may not exceed {max} seconds, and must be at least {min} seconds long."
        )));
    }
    let grace = u32::try_from(grace).unwrap_or(if grace < 0 { 0 } else { u32::MAX });
    Ok((ttl as u32, grace))
}

fn check_grace(ctx: &Context, grace: u32) -> Result<(), ZaqarError> {
    let limits = ctx.limits();
    let (min, max) = (limits.min_claim_grace, limits.max_claim_grace);
    if !(min..=max).contains(&grace) {
        return Err(invalid_api(format!(
            "The grace for a claim may not exceed {max} seconds, and must be at least {min} seconds long."
        )));
    }
    Ok(())
}

fn missing_claim(ctx: &Context, queue: &str, claim_id: &str) -> ZaqarError {
    ZaqarError::not_found(format!(
        "Claim {claim_id} does not exist in queue {queue} for project {}",
        ctx.project()
    ))
}
