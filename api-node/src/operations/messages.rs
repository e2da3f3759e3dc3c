//! Message operations: post, list, get one or many, delete one or many, pop.

use std::sync::Arc;

use serde_json::{Map, Value};
use zaqar_proto::pb;
use zaqar_proto::{ErrorCode, ZaqarError};

use super::json::{checked_int, invalid_body_type, parse_document, python_list};
use super::long_poll::Found;
use super::metadata::truthy_int;
use super::metadata_cache::KnownMetadata;
use super::types::{Message, MessageList};
use super::{check_limit, invalid_api, long_poll, queues, unavailable_as, Context, Payload};
use crate::routing::activity::Waiter;
use crate::routing::Pool;

/// How many times a post is checked against metadata that turned out stale
/// before it is posted unchecked (metadata changing that fast).
const CHECKED_ATTEMPTS: usize = 3;
/// How long a post's idempotency key is remembered, unless its queue's
/// `_idempotency_window` says otherwise (seconds).
pub const DEFAULT_IDEMPOTENCY_WINDOW: i64 = 300;
/// The longest idempotency key, in bytes.
const MAX_IDEMPOTENCY_KEY: usize = 255;

/// An `Idempotency-Key` (REST header, WebSocket `idempotency_key`) as the store
/// takes it: 1 to 255 visible ASCII characters or spaces; anything else is 400.
pub fn idempotency_key(key: &str) -> Result<String, ZaqarError> {
    let visible = |c: char| c == ' ' || c.is_ascii_graphic();
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY || !key.chars().all(visible) {
        return Err(invalid_api(format!(
            "The idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters."
        )));
    }
    Ok(key.to_string())
}

/// Posts the messages of a `{"messages": [{"body", "ttl", "delay"}]}` document,
/// creating (and placing) the queue if needed; returns the new ids in order.
///
/// The document is checked against the queue's metadata (size limit, default ttl
/// and delay): the metadata remembered from the queue's last post, else read from
/// its pool-node. The pool-node stores the messages only if the metadata is still
/// that one; else they are checked again against fresh metadata. With an
/// idempotency key (checked by [`idempotency_key`]), a post with the same key on
/// the queue within its window (`_idempotency_window`, default
/// [`DEFAULT_IDEMPOTENCY_WINDOW`]) makes this one store nothing and answer that
/// post's ids.
pub async fn post(
    ctx: &Context,
    queue: &str,
    payload: &Payload,
    idempotency_key: Option<&str>,
) -> Result<Vec<String>, ZaqarError> {
    ctx.check_queue(queue)?;
    let failed = unavailable_as("Messages could not be enqueued.");
    let remembered = &ctx.services.metadata_cache;
    for attempt in 0..=CHECKED_ATTEMPTS {
        let mut placed = ctx.pool_of(queue).await.map_err(&failed)?;
        let cached = match (&placed, attempt) {
            (Some(pool), 0) => remembered.get(&pool.endpoint, ctx.project(), queue),
            _ => None,
        };
        let known = match cached {
            Some(known) => known,
            None => current_metadata(ctx, queue, &mut placed)
                .await
                .map_err(&failed)?,
        };
        let messages = checked_messages(ctx, payload, &known.parsed)?;
        let pool = match placed {
            Some(pool) => pool,
            None => ctx.place_queue(queue, "").await.map_err(&failed)?,
        };
        let request = pb::PostMessagesRequest {
            queue: Some(ctx.queue_ref(queue)),
            client_id: ctx.identity.client_id.clone(),
            messages,
            expected_metadata_json: (attempt < CHECKED_ATTEMPTS).then(|| known.json.clone()),
            idempotency_key: idempotency_key.unwrap_or_default().to_string(),
            idempotency_window: truthy_int(&known.parsed, "_idempotency_window")
                .unwrap_or(DEFAULT_IDEMPOTENCY_WINDOW)
                .clamp(1, i64::from(u32::MAX)) as u32,
            max_messages: ctx.quotas.max_messages_per_queue.unwrap_or(0),
            max_bytes: ctx.quotas.max_bytes_per_queue.unwrap_or(0),
            drop_oldest: known.parsed.get("_overflow").and_then(Value::as_str)
                == Some("drop_oldest"),
        };
        let reply = ctx
            .call_pool(queue, &pool, request, |mut c, request| async move {
                c.post_messages(request).await
            })
            .await
            .map_err(&failed)?;
        if reply.stale_metadata {
            remembered.forget(&pool.endpoint, ctx.project(), queue);
            continue;
        }
        // A post creates its queue with empty metadata.
        let known = if known.json.is_empty() {
            KnownMetadata {
                json: "{}".to_string(),
                parsed: known.parsed,
            }
        } else {
            known
        };
        remembered.put(&pool.endpoint, ctx.project(), queue, known);
        return Ok(reply.ids);
    }
    Err(failed(ZaqarError::unavailable(
        "the queue's metadata kept changing during the post",
    )))
}

/// The stored metadata of a placed queue, read from its pool (`""` and empty for a
/// queue not placed or not on its pool). A cached placement of a queue its pool
/// does not have may be stale (deleted and re-placed through another api-node):
/// the catalog was asked again, so `placed` is resolved anew.
async fn current_metadata(
    ctx: &Context,
    queue: &str,
    placed: &mut Option<Pool>,
) -> Result<KnownMetadata, ZaqarError> {
    let absent = KnownMetadata {
        json: String::new(),
        parsed: Arc::new(Map::new()),
    };
    let Some(pool) = placed.as_ref() else {
        return Ok(absent);
    };
    let queue_ref = ctx.queue_ref(queue);
    let reply: pb::GetQueueReply = ctx
        .call_pool_checked(
            queue,
            pool,
            queue_ref,
            |mut c, queue_ref| async move { c.get_queue(queue_ref).await },
            |reply: &pb::GetQueueReply| !reply.exists,
        )
        .await?;
    if reply.exists {
        return Ok(KnownMetadata {
            parsed: Arc::new(queues::stored(&reply.metadata_json)),
            json: reply.metadata_json,
        });
    }
    if pool.cached {
        *placed = ctx.pool_of(queue).await?;
    }
    Ok(absent)
}

/// The messages of a post document, checked against the limits and the queue's
/// `metadata`, with its default ttl and delay applied.
fn checked_messages(
    ctx: &Context,
    payload: &Payload,
    metadata: &Map<String, Value>,
) -> Result<Vec<pb::NewMessage>, ZaqarError> {
    let limits = ctx.limits();
    check_post_size(
        payload.size(),
        truthy_int(metadata, "_max_messages_post_size"),
        limits.max_messages_post_size,
    )?;

    let default_ttl = truthy_int(metadata, "_default_message_ttl")
        .unwrap_or(i64::from(limits.default_message_ttl));
    // Zaqar 23 reads `delay` only on queues with `_default_message_delay` and
    // silently drops it elsewhere; we honour a message's delay on every queue,
    // as the API reference documents it (the queue's delay is the default).
    let default_delay = truthy_int(metadata, "_default_message_delay")
        .unwrap_or(i64::from(limits.default_message_delay));
    let document = parse_document(payload)?;
    let Some(items) = document.get("messages") else {
        return Err(invalid_api("No messages were found in the request body."));
    };
    let Value::Array(items) = items else {
        return Err(invalid_body_type());
    };
    let mut new_messages = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(item) = item else {
            return Err(invalid_body_type());
        };
        let ttl = checked_int(item, "ttl", Some(default_ttl))?;
        let body = item
            .get("body")
            .ok_or_else(|| super::invalid_body("Missing \"body\" field."))?;
        let delay = checked_int(item, "delay", Some(default_delay))?;
        new_messages.push((ttl, delay, body.to_string()));
    }
    if new_messages.is_empty() {
        return Err(invalid_api("No messages to enqueu."));
    }
    let most = limits.max_messages_per_post as usize;
    if most > 0 && new_messages.len() > most {
        return Err(invalid_api(format!(
            "No more than {most} messages can be posted at once."
        )));
    }
    let (min_ttl, max_ttl) = (
        i64::from(limits.min_message_ttl),
        i64::from(limits.max_message_ttl),
    );
    let max_delay = i64::from(limits.max_message_delay);
    for (ttl, delay, _) in &new_messages {
        if !(min_ttl..=max_ttl).contains(ttl) {
            return Err(invalid_api(format!(
                "The TTL for a message may not exceed {max_ttl} seconds, and must be at least {min_ttl} seconds long."
            )));
        }
        if !(0..=max_delay).contains(delay) {
            return Err(invalid_api(format!(
                "The Delay TTL for a message may not exceed {max_delay} seconds,and must be at least 0 seconds long."
            )));
        }
    }
    Ok(new_messages
        .into_iter()
        .map(|(ttl, delay, body_json)| pb::NewMessage {
            ttl: ttl as u32,
            delay: delay as u32,
            body_json,
        })
        .collect())
}

/// Zaqar's `message_length`: the body may not exceed the queue's
/// `_max_messages_post_size` nor the configured maximum.
fn check_post_size(
    size: Option<u64>,
    queue_max: Option<i64>,
    config_max: usize,
) -> Result<(), ZaqarError> {
    let Some(size) = size else { return Ok(()) };
    if let Some(queue_max) = queue_max {
        let effective = queue_max.min(config_max as i64);
        if size as i64 > effective {
            return Err(invalid_api(format!(
                "Message collection size is too large. The max size for current queue is {effective}. \
                 It is calculated by max size = min(max_messages_post_size_config: {config_max}, \
                 max_messages_post_size_queue: {queue_max})."
            )));
        }
    }
    if size > config_max as u64 {
        return Err(invalid_api(format!(
            "Message collection size is too large. Max size {config_max}"
        )));
    }
    Ok(())
}

/// `GET .../messages` input.
#[derive(Debug, Clone, Default)]
pub struct ListMessages {
    pub marker: Option<String>,
    pub limit: Option<i64>,
    pub echo: bool,
    pub include_claimed: bool,
    pub include_delayed: bool,
    /// Seconds to wait for messages when there are none (long polling).
    pub wait: Option<i64>,
}

/// Lists messages oldest first; empty for a queue that does not exist (after
/// waiting up to `wait` seconds for some).
pub async fn list(
    ctx: &Context,
    queue: &str,
    input: ListMessages,
) -> Result<MessageList, ZaqarError> {
    ctx.check_queue(queue)?;
    let limits = ctx.limits();
    check_limit(
        input.limit,
        limits.max_page_size,
        "Limit must be at least 1 and may not be greater than {0}.",
    )?;
    let wait = long_poll::checked_wait(ctx, input.wait)?;
    let failed = unavailable_as("Messages could not be listed.");
    let marker = input.marker.unwrap_or_default();
    let empty = MessageList {
        messages: Vec::new(),
        next_marker: marker.clone(),
    };
    // Zaqar's Redis driver answers 503 for include_claimed without a marker
    // (zrank(key, None)); we give the listing that was intended.
    let request = pb::ListMessagesRequest {
        queue: Some(ctx.queue_ref(queue)),
        client_id: ctx.identity.client_id.clone(),
        marker,
        limit: input.limit.map_or(limits.default_page_size, |l| l as u32),
        echo: input.echo,
        include_claimed: input.include_claimed,
        include_delayed: input.include_delayed,
    };
    let attempt = || {
        ctx.call_queue(
            queue,
            &failed,
            request.clone(),
            |mut c, request| async move { c.list_messages(request).await },
        )
    };
    let listed = |reply: &Option<pb::ListMessagesReply>| match reply {
        Some(reply) if !reply.messages.is_empty() => Found::Some,
        _ => Found::Nothing,
    };
    match long_poll::poll(ctx, queue, wait, Waiter::Listing, attempt, listed).await? {
        Some(reply) => Ok(MessageList {
            messages: ctx.messages(reply.messages)?,
            next_marker: reply.next_marker,
        }),
        None => Ok(empty),
    }
}

/// The live messages among `ids` (`GET .../messages?ids=`); 404 when none is.
pub async fn get_many(
    ctx: &Context,
    queue: &str,
    ids: &[String],
) -> Result<Vec<Message>, ZaqarError> {
    ctx.check_queue(queue)?;
    let max = ctx.limits().max_page_size;
    check_limit(
        Some(ids.len() as i64),
        max,
        "Limit must be at least 1 and may not be greater than {0}.",
    )?;
    let found = fetch(ctx, queue, ids).await?.unwrap_or_default();
    if found.is_empty() {
        return Err(ZaqarError::not_found(format!(
            "No messages with IDs: {} found in the queue {queue} for project {}.",
            python_list(ids),
            ctx.project()
        )));
    }
    Ok(found)
}

/// One live message.
pub async fn get(ctx: &Context, queue: &str, id: &str) -> Result<Message, ZaqarError> {
    ctx.check_queue(queue)?;
    let found = fetch(ctx, queue, &[id.to_string()]).await?;
    let Some(found) = found else {
        return Err(ZaqarError::not_found(format!(
            "Queue {queue} does not exist for project {}",
            ctx.project()
        )));
    };
    found.into_iter().next().ok_or_else(|| {
        ZaqarError::not_found(format!(
            "Message {id} does not exist in queue {queue} for project {}",
            ctx.project()
        ))
    })
}

/// The live messages among `ids`; `None` when the queue was never placed.
async fn fetch(
    ctx: &Context,
    queue: &str,
    ids: &[String],
) -> Result<Option<Vec<Message>>, ZaqarError> {
    let failed = unavailable_as("Message could not be retrieved.");
    let Some(pool) = ctx.pool_of(queue).await.map_err(&failed)? else {
        return Ok(None);
    };
    let request = pb::GetMessagesRequest {
        queue: Some(ctx.queue_ref(queue)),
        ids: ids.to_vec(),
    };
    let reply = ctx
        .call_pool_checked(
            queue,
            &pool,
            request,
            |mut c, request| async move { c.get_messages(request).await },
            |reply: &pb::MessagesReply| reply.messages.is_empty(),
        )
        .await;
    match reply {
        Ok(reply) => ctx.messages(reply.messages).map(Some),
        Err(err) if err.code == ErrorCode::NotFound => Ok(Some(Vec::new())),
        Err(err) => Err(failed(err)),
    }
}

/// Deletes one message; a claimed message needs its claim id.
pub async fn delete(
    ctx: &Context,
    queue: &str,
    id: &str,
    claim_id: Option<String>,
) -> Result<(), ZaqarError> {
    ctx.check_queue(queue)?;
    let failed = unavailable_as("Message could not be deleted.");
    let request = pb::DeleteMessageRequest {
        queue: Some(ctx.queue_ref(queue)),
        id: id.to_string(),
        claim_id: claim_id.unwrap_or_default(),
    };
    // The pool-node answers Zaqar's "Unable to delete" 403/400 itself.
    ctx.call_queue(queue, &failed, request, |mut c, request| async move {
        c.delete_message(request).await
    })
    .await?;
    Ok(())
}

/// `DELETE .../messages` input: `ids` (with `claim_ids`) or `pop`.
#[derive(Debug, Clone, Default)]
pub struct DeleteMessages {
    pub ids: Option<Vec<String>>,
    pub claim_ids: Option<Vec<String>>,
    pub pop: Option<i64>,
}

/// Deletes messages by id (`None`), or pops up to `pop` free messages (`Some`).
pub async fn delete_many(
    ctx: &Context,
    queue: &str,
    input: DeleteMessages,
) -> Result<Option<Vec<Message>>, ZaqarError> {
    ctx.check_queue(queue)?;
    let limits = ctx.limits();
    let with_claims = ctx.services.message_delete_with_claim_id;
    let claim_ids = if with_claims { input.claim_ids } else { None };
    match (&input.ids, input.pop) {
        (Some(_), Some(_)) => {
            return Err(invalid_api("pop and id params cannot be present together in the delete request."))
        }
        (None, None) => {
            return Err(invalid_api(
                "The request should have either \"ids\" or \"pop\" parameter in the request, to be able to delete.",
            ))
        }
        _ => {}
    }
    if with_claims && input.ids.is_some() != claim_ids.is_some() {
        return Err(invalid_api(
            "The request should have both \"ids\" and \"claim_ids\" parameter in the request when message_delete_with_claim_id is True.",
        ));
    }
    if let Some(pop) = input.pop {
        let max = limits.max_messages_per_claim_or_pop;
        check_limit(
            Some(pop),
            max,
            "Pop value must be at least 1 and may not be greater than {0}.",
        )?;
        return pop_messages(ctx, queue, pop as u32).await.map(Some);
    }
    let ids = input.ids.unwrap_or_default();
    let max = limits.max_page_size;
    check_limit(
        Some(ids.len() as i64),
        max,
        "ids parameter should have at least 1 and not greater than {0} values.",
    )?;
    delete_ids(ctx, queue, ids, claim_ids.unwrap_or_default()).await?;
    Ok(None)
}

/// Deletes the messages `ids` that claim `claim_id` holds, whatever the
/// `message_delete_with_claim_id` setting (a redrive's own claim).
pub async fn delete_claimed(
    ctx: &Context,
    queue: &str,
    ids: Vec<String>,
    claim_id: &str,
) -> Result<(), ZaqarError> {
    delete_ids(ctx, queue, ids, vec![claim_id.to_string()]).await
}

/// Deletes `ids`, all or none; a claimed one only with its claim among `claim_ids`.
async fn delete_ids(
    ctx: &Context,
    queue: &str,
    ids: Vec<String>,
    claim_ids: Vec<String>,
) -> Result<(), ZaqarError> {
    let failed = unavailable_as("Messages could not be deleted.");
    let request = pb::DeleteMessagesRequest {
        queue: Some(ctx.queue_ref(queue)),
        ids,
        claim_ids,
    };
    ctx.call_queue(queue, &failed, request, |mut c, request| async move {
        c.delete_messages(request).await
    })
    .await?;
    Ok(())
}

async fn pop_messages(ctx: &Context, queue: &str, limit: u32) -> Result<Vec<Message>, ZaqarError> {
    let failed = unavailable_as("Messages could not be popped.");
    let request = pb::PopMessagesRequest {
        queue: Some(ctx.queue_ref(queue)),
        limit,
    };
    let reply = ctx
        .call_queue(queue, &failed, request, |mut c, request| async move {
            c.pop_messages(request).await
        })
        .await?;
    reply.map_or(Ok(Vec::new()), |reply| ctx.messages(reply.messages))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_size_follows_queue_and_config_limits() {
        assert!(check_post_size(None, None, 100).is_ok());
        assert!(check_post_size(Some(100), None, 100).is_ok());
        let err = check_post_size(Some(101), None, 100).unwrap_err();
        assert_eq!(
            err.description,
            "Message collection size is too large. Max size 100"
        );
        let err = check_post_size(Some(60), Some(50), 100).unwrap_err();
        assert!(err
            .description
            .contains("The max size for current queue is 50."));
        assert!(err
            .description
            .contains("max_messages_post_size_queue: 50)"));
    }
}
