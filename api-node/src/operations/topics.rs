//! Topic operations (Zaqar v2.1 `/v2/topics...`): topics are queues kept in a
//! namespace of their own, so every queue, message and subscription operation
//! (and the pool-node's notifier fan-out) serves them unchanged.
//!
//! # Where topics live
//!
//! A topic `t` of project `p` is stored as the queue `t` of the project
//! [`topic_namespace`]`(p)`, that is `p` followed by U+FFFF
//! ([`TOPIC_NAMESPACE_MARK`]). The alternatives were weighed as follows:
//!
//! - A reserved queue name (a prefix or suffix on `t`): the catalog and the
//!   Redis key layout accept only `[a-zA-Z0-9_.-]` in queue names, which every
//!   client may use too, so no encoding there is collision-free; and topics
//!   would show up in, and have to be filtered out of, queue listings and counts.
//! - A namespace flag in `QueueRef`: every store key, every catalog backend
//!   (raft, etcd, SQL) and the placement cache would have to carry it.
//! - A reserved project (chosen): the catalog lists a project's placements, so
//!   `GET /v2/topics` is the queue listing of the namespace (markers, `name`
//!   filter, limits and counts come for free) and queue listings never see
//!   topics. The stores and the catalog take any project text without control
//!   characters, U+FFFF included. No client can name the namespace: REST
//!   headers carry ASCII only, and [`check_client_project`] refuses a project
//!   id containing the mark from any transport (WebSocket, Keystone). Messages
//!   posted to a topic reach the pool-node's `PostMessages`, whose notifier
//!   fans them out to the topic's subscriptions with `"queue_name": "t"`.
//!
//! Differences from Zaqar 23, which routes `/v2/topics...` but answers 503 or
//! 500 on most of them (its Redis driver has no topic controller, and the
//! message and subscription resources reject the `topic_name` route argument):
//! here every route works as its queue counterpart does, with the topic texts
//! of Zaqar's topic resources ("Topic could not be created.", three reserved
//! metadata keys). Subscriptions of a topic are its own: Zaqar's design would
//! have shared them with a queue of the same name.

use serde_json::{Map, Value};
use zaqar_proto::limits::{is_valid_name, topic_namespace, TOPIC_NAMESPACE_MARK};
use zaqar_proto::pb;
use zaqar_proto::{ErrorCode, ZaqarError};

use super::json::is_truthy;
use super::metadata::{apply_changes, check_reserved, parse_patch, reserved_defaults};
use super::queues::{self, ListQueues};
use super::types::{QueueList, QueueStats};
use super::{invalid_body, Context, Payload};
use crate::auth::Identity;

/// The reserved metadata keys a topic shows (Zaqar's topic `_get_reserved_metadata`).
const TOPIC_RESERVED: [&str; 3] = [
    "_max_messages_post_size",
    "_default_message_ttl",
    "_default_message_delay",
];

/// The longest project id the catalog stores, in bytes (its `MAX_PROJECT_LENGTH`).
/// A project id longer than this less the mark cannot hold topics.
const MAX_STORED_PROJECT_BYTES: usize = 256;

/// Refuses a client project id that could name a topic namespace.
pub fn check_client_project(project: &str) -> Result<(), ZaqarError> {
    if project.contains(TOPIC_NAMESPACE_MARK) {
        return Err(ZaqarError::titled(
            ErrorCode::BadRequest,
            "Invalid project id",
            "Project ids may not contain U+FFFF, a character reserved for internal use.",
        ));
    }
    Ok(())
}

/// The context of `ctx`'s caller inside its topic namespace, once `topic` and
/// the project pass Zaqar's topic identification check.
pub fn namespace(ctx: &Context, topic: &str) -> Result<Context, ZaqarError> {
    let limits = ctx.limits();
    let namespace = topic_namespace(ctx.project());
    if ctx.project().chars().count() > limits.max_project_id_length
        || namespace.len() > MAX_STORED_PROJECT_BYTES
        || !is_valid_name(topic, limits.max_queue_name_length)
    {
        return Err(ZaqarError::titled(
            ErrorCode::BadRequest,
            "Invalid topic identification",
            "The format of the submitted topic name or project id is not valid.",
        ));
    }
    Ok(in_namespace(ctx, namespace))
}

fn in_namespace(ctx: &Context, project: String) -> Context {
    Context {
        services: ctx.services.clone(),
        identity: Identity {
            project,
            ..ctx.identity.clone()
        },
        quotas: ctx.quotas,
        hang_up: ctx.hang_up.clone(),
    }
}

/// How a client names the owner of resources stored under `project`: its own
/// project id and `"topics"` for a topic namespace, else `project` and
/// `"queues"` (e.g. for the confirm URL of a subscription: `/v2/{collection}/...`).
pub fn client_view(project: &str) -> (&str, &'static str) {
    match project.strip_suffix(TOPIC_NAMESPACE_MARK) {
        Some(client_project) => (client_project, "topics"),
        None => (project, "queues"),
    }
}

/// An error of an operation run in the namespace as the caller sees it: the
/// caller's own project id, and "Topic" where the queue operation said "Queue".
pub fn public(err: ZaqarError) -> ZaqarError {
    let description = err.description.replace(TOPIC_NAMESPACE_MARK, "");
    let description = match description.strip_prefix("Queue ") {
        Some(rest) if rest.contains(" does not exist for project ") => format!("Topic {rest}"),
        _ => description,
    };
    ZaqarError { description, ..err }
}

/// Like [`public`], describing an unavailable store with `what` failed
/// ("Topic could not be created. Please try again in a few seconds.").
fn failed_as(what: &'static str) -> impl Fn(ZaqarError) -> ZaqarError {
    move |err| {
        if err.code == ErrorCode::Unavailable {
            ZaqarError::unavailable(format!("{what} Please try again in a few seconds."))
        } else {
            public(err)
        }
    }
}

/// Shows the topic's reserved keys that are missing or falsy with their defaults.
fn with_topic_defaults(mut metadata: Map<String, Value>, ctx: &Context) -> Map<String, Value> {
    for (key, default) in reserved_defaults(ctx.limits()) {
        if TOPIC_RESERVED.contains(&key) && !metadata.get(key).is_some_and(is_truthy) {
            metadata.insert(key.to_string(), default);
        }
    }
    metadata
}

/// Lists the project's topics, sorted by name (`with_count` is not a topic option).
pub async fn list(ctx: &Context, input: ListQueues) -> Result<QueueList, ZaqarError> {
    let namespace = topic_namespace(ctx.project());
    if namespace.len() > MAX_STORED_PROJECT_BYTES {
        // No topic can have been created under such a project id.
        return Ok(QueueList {
            queues: Vec::new(),
            next_marker: input.marker.unwrap_or_default(),
            count: None,
        });
    }
    let detailed = input.detailed;
    let input = ListQueues {
        with_count: false,
        stored_metadata: true,
        ..input
    };
    let mut listed = queues::list(&in_namespace(ctx, namespace), input)
        .await
        .map_err(failed_as("Topics could not be listed."))?;
    if detailed {
        for topic in &mut listed.queues {
            let stored = topic.metadata.take().unwrap_or_default();
            topic.metadata = Some(with_topic_defaults(stored, ctx));
        }
    }
    Ok(listed)
}

/// Creates a topic with the metadata in `payload`; false if it already existed.
pub async fn create(ctx: &Context, topic: &str, payload: &Payload) -> Result<bool, ZaqarError> {
    let topics = namespace(ctx, topic)?;
    queues::create(&topics, topic, payload)
        .await
        .map_err(failed_as("Topic could not be created."))
}

/// The metadata of a topic with its reserved defaults (only defaults for a
/// topic that does not exist, as for queues).
pub async fn get(ctx: &Context, topic: &str) -> Result<Map<String, Value>, ZaqarError> {
    let topics = namespace(ctx, topic)?;
    let stored = queues::get_stored(&topics, topic)
        .await
        .map_err(failed_as("Topic metadata could not be retrieved."))?;
    Ok(with_topic_defaults(stored.unwrap_or_default(), ctx))
}

/// Applies a JSON patch (the caller checked its media type) to a topic's
/// metadata; returns the new metadata with the topic defaults.
pub async fn update(
    ctx: &Context,
    topic: &str,
    payload: &Payload,
) -> Result<Map<String, Value>, ZaqarError> {
    let topics = namespace(ctx, topic)?;
    let changes = parse_patch(payload, ctx.limits())?;
    let failed = failed_as("Topic could not be updated.");
    let missing = || {
        ZaqarError::not_found(format!(
            "Topic {topic} does not exist for project {}",
            ctx.project()
        ))
    };
    let pool = topics
        .pool_of(topic)
        .await
        .map_err(&failed)?
        .ok_or_else(missing)?;
    let mut metadata = queues::fetch(&topics, topic, &pool)
        .await
        .map_err(&failed)?
        .ok_or_else(missing)?;
    apply_changes(&mut metadata, changes, &TOPIC_RESERVED)?;
    check_reserved(&metadata, ctx.limits()).map_err(invalid_body)?;
    let request = pb::SetQueueMetadataRequest {
        queue: Some(topics.queue_ref(topic)),
        metadata_json: Value::Object(metadata.clone()).to_string(),
    };
    topics
        .call_pool(topic, &pool, request, |mut c, request| async move {
            c.set_queue_metadata(request).await
        })
        .await
        .map_err(|err| {
            if err.code == ErrorCode::NotFound {
                missing()
            } else {
                failed(err)
            }
        })?;
    Ok(with_topic_defaults(metadata, ctx))
}

/// Deletes a topic with its messages and subscriptions.
pub async fn delete(ctx: &Context, topic: &str) -> Result<(), ZaqarError> {
    let topics = namespace(ctx, topic)?;
    queues::delete(&topics, topic)
        .await
        .map_err(failed_as("Topic could not be deleted."))
}

/// Message counts of a topic; zeros for a topic that does not exist.
pub async fn stats(ctx: &Context, topic: &str) -> Result<QueueStats, ZaqarError> {
    let topics = namespace(ctx, topic)?;
    queues::stats(&topics, topic)
        .await
        .map_err(failed_as("Topic stats could not be read."))
}

/// Deletes all messages and/or subscriptions of a topic (`resource_types`).
pub async fn purge(ctx: &Context, topic: &str, payload: &Payload) -> Result<(), ZaqarError> {
    let topics = namespace(ctx, topic)?;
    queues::purge(&topics, topic, payload)
        .await
        .map_err(failed_as("Topic could not be purged."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operations::metadata::Change;
    use serde_json::json;

    #[test]
    fn namespace_errors_show_the_client_project_and_say_topic() {
        let project = topic_namespace("acme");
        let err = public(ZaqarError::not_found(format!(
            "Queue t1 does not exist for project {project}"
        )));
        assert_eq!(err.code, ErrorCode::NotFound);
        assert_eq!(err.description, "Topic t1 does not exist for project acme");
        let err = public(ZaqarError::not_found(format!(
            "Message m1 does not exist in queue t1 for project {project}"
        )));
        assert_eq!(
            err.description,
            "Message m1 does not exist in queue t1 for project acme"
        );
    }

    #[test]
    fn namespaces_are_shown_as_the_client_project_and_topics() {
        assert_eq!(client_view(&topic_namespace("acme")), ("acme", "topics"));
        assert_eq!(client_view("acme"), ("acme", "queues"));
    }

    #[test]
    fn client_projects_may_not_hold_the_mark() {
        assert!(check_client_project("acme").is_ok());
        let err = check_client_project(&topic_namespace("acme")).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
    }

    #[test]
    fn topic_patches_know_only_topic_reserved_keys() {
        let mut metadata = Map::new();
        let replace = |key: &str| vec![Change::Replace(key.into(), json!(1))];
        apply_changes(
            &mut metadata,
            replace("_default_message_ttl"),
            &TOPIC_RESERVED,
        )
        .unwrap();
        let err =
            apply_changes(&mut metadata, replace("_max_claim_count"), &TOPIC_RESERVED).unwrap_err();
        assert_eq!(err.code, ErrorCode::Conflict);
        let err = apply_changes(
            &mut metadata,
            vec![Change::Remove("color".into())],
            &TOPIC_RESERVED,
        )
        .unwrap_err();
        assert_eq!(err.description, "Can't remove non-existent object color.");
        apply_changes(
            &mut metadata,
            vec![Change::Remove("_default_message_delay".into())],
            &TOPIC_RESERVED,
        )
        .unwrap();
        assert_eq!(
            metadata,
            json!({"_default_message_ttl": 1})
                .as_object()
                .unwrap()
                .clone()
        );
    }
}
