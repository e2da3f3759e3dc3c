//! Queue operations: list, create, get metadata, patch metadata, delete, stats, purge.

use futures::future::try_join_all;
use serde_json::{Map, Value};
use zaqar_proto::pb::{self, GetQueueReply};
use zaqar_proto::ZaqarError;

use super::json::{expect_object, parse_optional};
use super::metadata::{apply_changes, check_reserved, parse_patch, reserved_keys, with_defaults};
use super::types::{QueueList, QueueStats, QueueSummary};
use super::{check_limit, invalid_api, invalid_body, unavailable_as, Context, Payload};
use crate::routing::Pool;

/// `GET /v2/queues` input.
#[derive(Debug, Clone, Default)]
pub struct ListQueues {
    pub marker: Option<String>,
    pub limit: Option<i64>,
    pub detailed: bool,
    /// Only queues whose name contains this text.
    pub name: Option<String>,
    pub with_count: bool,
    /// Detailed metadata as stored, without the reserved defaults (what the
    /// WebSocket API lists; REST adds the defaults).
    pub stored_metadata: bool,
}

/// Lists the project's queues, sorted by name.
pub async fn list(ctx: &Context, input: ListQueues) -> Result<QueueList, ZaqarError> {
    let limits = ctx.limits();
    check_limit(
        input.limit,
        limits.max_page_size,
        "Limit must be at least 1 and no greater than {0}.",
    )?;
    let limit = input.limit.map_or(limits.default_page_size, |l| l as u32);
    let marker = input.marker.unwrap_or_default();
    let failed = unavailable_as("Queues could not be listed.");
    let (placements, count) = ctx
        .router()
        .list_queues(
            ctx.project(),
            &marker,
            limit,
            input.name.as_deref().unwrap_or(""),
            input.with_count,
        )
        .await
        .map_err(&failed)?;
    let metadata = if input.detailed {
        let fetches = placements
            .iter()
            .map(|placement| detailed_metadata(ctx, placement, input.stored_metadata));
        try_join_all(fetches).await.map_err(&failed)?
    } else {
        vec![None; placements.len()]
    };
    let queues: Vec<QueueSummary> = placements
        .iter()
        .zip(metadata)
        .map(|(placement, metadata)| QueueSummary {
            name: placement
                .queue
                .as_ref()
                .map(|q| q.queue.clone())
                .unwrap_or_default(),
            metadata,
        })
        .collect();
    let next_marker = queues.last().map_or(marker, |q| q.name.clone());
    Ok(QueueList {
        queues,
        next_marker,
        count: input.with_count.then_some(count),
    })
}

async fn detailed_metadata(
    ctx: &Context,
    placement: &pb::Placement,
    as_stored: bool,
) -> Result<Option<Map<String, Value>>, ZaqarError> {
    let pool = ctx.router().pool_of(placement)?;
    let queue = placement.queue.clone().unwrap_or_default();
    let reply = pool.client.clone().get_queue(queue).await?.into_inner();
    let metadata = stored(&reply.metadata_json);
    if as_stored {
        return Ok(Some(metadata));
    }
    Ok(Some(with_defaults(metadata, ctx.limits())))
}

/// Creates a queue with the metadata in `payload`; false if it already existed.
pub async fn create(ctx: &Context, queue: &str, payload: &Payload) -> Result<bool, ZaqarError> {
    ctx.check_queue(queue)?;
    let max = ctx.limits().max_queue_metadata;
    if payload.size().unwrap_or(0) > max as u64 {
        return Err(invalid_api(format!(
            "Queue metadata is too large. Max size: {max}"
        )));
    }
    let metadata = match parse_optional(payload)? {
        Some(document) => expect_object(document)?,
        None => Map::new(),
    };
    check_reserved(&metadata, ctx.limits()).map_err(invalid_api)?;
    let failed = unavailable_as("Queue could not be created.");
    // Zaqar places a queue with `_flavor` on a pool of that flavor (400 "Flavor X
    // does not exist" for an unknown one) and keeps `_flavor` in its metadata.
    let flavor = metadata
        .get("_flavor")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let pool = ctx.place_queue(queue, flavor).await.map_err(&failed)?;
    let request = pb::CreateQueueRequest {
        queue: Some(ctx.queue_ref(queue)),
        metadata_json: Value::Object(metadata).to_string(),
    };
    let reply = ctx
        .call_pool(queue, &pool, request, |mut c, request| async move {
            c.create_queue(request).await
        })
        .await
        .map_err(&failed)?;
    Ok(reply.created)
}

/// The metadata of a queue with the reserved defaults; defaults only for a
/// queue that does not exist (as Zaqar 23's v2 answers).
pub async fn get(ctx: &Context, queue: &str) -> Result<Map<String, Value>, ZaqarError> {
    let metadata = get_stored(ctx, queue).await?.unwrap_or_default();
    Ok(with_defaults(metadata, ctx.limits()))
}

/// The metadata of a queue as stored (no defaults); `None` when the queue
/// does not exist.
pub async fn get_stored(
    ctx: &Context,
    queue: &str,
) -> Result<Option<Map<String, Value>>, ZaqarError> {
    ctx.check_queue(queue)?;
    let failed = unavailable_as("Queue metadata could not be retrieved.");
    match ctx.pool_of(queue).await.map_err(&failed)? {
        Some(pool) => fetch(ctx, queue, &pool).await.map_err(&failed),
        None => Ok(None),
    }
}

/// The stored metadata of a queue on its pool, `None` if it does not exist there.
pub async fn fetch(
    ctx: &Context,
    queue: &str,
    pool: &Pool,
) -> Result<Option<Map<String, Value>>, ZaqarError> {
    let queue_ref = ctx.queue_ref(queue);
    let reply: GetQueueReply = ctx
        .call_pool_checked(
            queue,
            pool,
            queue_ref,
            |mut c, queue_ref| async move { c.get_queue(queue_ref).await },
            |reply: &GetQueueReply| !reply.exists,
        )
        .await?;
    Ok(reply.exists.then(|| stored(&reply.metadata_json)))
}

/// Applies a JSON patch (already known to have the JSON-patch media type) to a
/// queue's metadata and returns the new metadata with defaults.
pub async fn update(
    ctx: &Context,
    queue: &str,
    payload: &Payload,
) -> Result<Map<String, Value>, ZaqarError> {
    ctx.check_queue(queue)?;
    let changes = parse_patch(payload, ctx.limits())?;
    let missing = || {
        ZaqarError::not_found(format!(
            "Queue {queue} does not exist for project {}",
            ctx.project()
        ))
    };
    let failed = unavailable_as("Queue could not be updated.");
    let pool = ctx
        .pool_of(queue)
        .await
        .map_err(&failed)?
        .ok_or_else(missing)?;
    let mut metadata = fetch(ctx, queue, &pool)
        .await
        .map_err(&failed)?
        .ok_or_else(missing)?;
    apply_changes(&mut metadata, changes, &reserved_keys(ctx.limits()))?;
    check_reserved(&metadata, ctx.limits()).map_err(invalid_body)?;
    let request = pb::SetQueueMetadataRequest {
        queue: Some(ctx.queue_ref(queue)),
        metadata_json: Value::Object(metadata.clone()).to_string(),
    };
    ctx.call_pool(queue, &pool, request, |mut c, request| async move {
        c.set_queue_metadata(request).await
    })
    .await
    .map_err(|err| {
        if err.code == zaqar_proto::ErrorCode::NotFound {
            missing()
        } else {
            failed(err)
        }
    })?;
    Ok(with_defaults(metadata, ctx.limits()))
}

/// Deletes a queue with its messages, claims and subscriptions, then forgets
/// its placement.
pub async fn delete(ctx: &Context, queue: &str) -> Result<(), ZaqarError> {
    ctx.check_queue(queue)?;
    let failed = unavailable_as("Queue could not be deleted.");
    let Some(pool) = ctx.pool_of(queue).await.map_err(&failed)? else {
        return Ok(());
    };
    // Zaqar 23 keeps the subscriptions of a deleted queue. Here the queue's
    // placement goes with it, which would leave them unreachable yet alive on
    // the pool (and notified again if the name is re-created there), so they
    // are deleted with the queue.
    let purge = pb::PurgeQueueRequest {
        queue: Some(ctx.queue_ref(queue)),
        messages: false,
        subscriptions: true,
    };
    ctx.call_pool(queue, &pool, purge, |mut c, purge| async move {
        c.purge_queue(purge).await
    })
    .await
    .map_err(&failed)?;
    let queue_ref = ctx.queue_ref(queue);
    ctx.call_pool(queue, &pool, queue_ref, |mut c, queue_ref| async move {
        c.delete_queue(queue_ref).await
    })
    .await
    .map_err(&failed)?;
    ctx.router()
        .remove(ctx.project(), queue)
        .await
        .map_err(&failed)?;
    tracing::debug!(project = ctx.project(), queue, pool = %pool.name, "queue deleted");
    Ok(())
}

/// Message counts of a queue; zeros for a queue that does not exist.
pub async fn stats(ctx: &Context, queue: &str) -> Result<QueueStats, ZaqarError> {
    ctx.check_queue(queue)?;
    let failed = unavailable_as("Queue stats could not be read.");
    let reply = ctx
        .call_queue(
            queue,
            &failed,
            ctx.queue_ref(queue),
            |mut c, queue_ref| async move { c.queue_stats(queue_ref).await },
        )
        .await?;
    let max = ctx.quotas.max_messages_per_queue;
    let max_bytes = ctx.quotas.max_bytes_per_queue;
    let Some(reply) = reply else {
        return Ok(QueueStats {
            max,
            bytes: max_bytes.map(|most| (0, most)),
            ..QueueStats::default()
        });
    };
    Ok(QueueStats {
        claimed: reply.claimed,
        free: reply.free,
        delayed: reply.delayed,
        total: reply.total,
        oldest: reply.oldest.map(|m| ctx.message(m)).transpose()?,
        newest: reply.newest.map(|m| ctx.message(m)).transpose()?,
        max,
        bytes: max_bytes.map(|most| (reply.bytes, most)),
    })
}

/// Deletes all messages and/or subscriptions of a queue (`resource_types`).
pub async fn purge(ctx: &Context, queue: &str, payload: &Payload) -> Result<(), ZaqarError> {
    ctx.check_queue(queue)?;
    let (messages, subscriptions) = match parse_optional(payload)? {
        None => (true, true),
        Some(document) => resource_types(&document)?,
    };
    let failed = unavailable_as("Queue could not be purged.");
    let Some(pool) = ctx.pool_of(queue).await.map_err(&failed)? else {
        return Ok(());
    };
    let request = pb::PurgeQueueRequest {
        queue: Some(ctx.queue_ref(queue)),
        messages,
        subscriptions,
    };
    ctx.call_pool(queue, &pool, request, |mut c, request| async move {
        c.purge_queue(request).await
    })
    .await
    .map_err(&failed)?;
    Ok(())
}

/// Zaqar's `queue_purging`: which of messages and subscriptions to purge.
fn resource_types(document: &Value) -> Result<(bool, bool), ZaqarError> {
    let Some(types) = document.get("resource_types") else {
        return Err(invalid_api(
            "Post body must contain key \"resource_types\".",
        ));
    };
    let invalid =
        || invalid_api("Resource types must be a sub set of {'subscriptions', 'messages'}.");
    let types = types.as_array().ok_or_else(invalid)?;
    let (mut messages, mut subscriptions) = (false, false);
    for kind in types {
        match kind.as_str() {
            Some("messages") => messages = true,
            Some("subscriptions") => subscriptions = true,
            _ => return Err(invalid()),
        }
    }
    Ok((messages, subscriptions))
}

/// Stored metadata text as an object (empty when unreadable).
pub(super) fn stored(metadata_json: &str) -> Map<String, Value> {
    match serde_json::from_str::<Map<String, Value>>(metadata_json) {
        Ok(map) => map,
        Err(err) => {
            if !metadata_json.is_empty() {
                tracing::warn!(error = %err, "a pool-node returned unreadable queue metadata");
            }
            Map::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn purge_resource_types_follow_zaqar() {
        assert_eq!(
            resource_types(&json!({"resource_types": ["messages"]})).unwrap(),
            (true, false)
        );
        assert_eq!(
            resource_types(&json!({"resource_types": ["subscriptions", "messages"]})).unwrap(),
            (true, true)
        );
        assert!(resource_types(&json!({"resource_types": ["foo"]})).is_err());
        assert!(resource_types(&json!({"resource_types": "messages"})).is_err());
        let err = resource_types(&json!({})).unwrap_err();
        assert_eq!(
            err.description,
            "Post body must contain key \"resource_types\"."
        );
    }
}
