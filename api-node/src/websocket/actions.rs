//! The action table: each WebSocket action runs the same `operations::` fn as
//! its REST route, and its result is shown as Zaqar's WebSocket endpoint shows it.
//!
//! Where Zaqar 23 (noauth) answers otherwise, on purpose:
//! - `get_home_doc`, `check_node_health`, `ping_node` and `authenticate` make
//!   Zaqar drop the connection (no such endpoint / no auth strategy); here they
//!   answer the home document, the health report (admin), 204, and 200
//!   `{"message": "Authentified."}`.
//! - `pool_*` / `flavor_*` that pass their schema also drop Zaqar's connection
//!   (it has no endpoint for them); here they run as `admin_actions` says.
//! - `Client-ID` must be a UUID and `X-Project-ID` non-empty for every action
//!   (the REST checks); Zaqar checks the UUID only for message actions.
//! - `claim_create` that takes nothing answers 204 `{}` (Zaqar names an empty claim).
//! - `subscription_create` without `subscriber` subscribes this connection
//!   (`push`); see there for where that differs.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};
use zaqar_proto::{ErrorCode, ZaqarError};

use super::action::Action;
use super::protocol::{flag, Encoding, Reply, Request};
use super::push::ConnectionPush;
use super::{admin_actions, render};
use crate::auth::Credentials;
use crate::operations::long_poll::HangUp;
use crate::operations::messages::{DeleteMessages, ListMessages};
use crate::operations::queues::ListQueues;
use crate::operations::types::{Message, Subscription};
use crate::operations::{
    claims, health, home, messages, queues, redrive, subscriptions, Context, Payload, Services,
};

/// Runs a request that passed its schema and returns its reply; `token` is
/// the Keystone token bound to the connection (keystone mode), `hang_up` hears
/// when the connection closes (which ends a long poll).
pub async fn run(
    services: &Arc<Services>,
    request: &Request,
    token: Option<&str>,
    hang_up: &HangUp,
) -> Reply {
    let Some(action) = request.known else {
        let name = request.action_name();
        return Reply::error(400, format!("{name} is not a valid action"));
    };
    if matches!(action, Action::GetHomeDoc | Action::Authenticate) {
        return context_free(services, action);
    }
    let mut ctx = match Box::pin(context(services, request, token)).await {
        Ok(ctx) => ctx,
        Err(reply) => return reply,
    };
    ctx.hang_up = hang_up.clone();
    let queue = request.text("queue_name");
    // The long polls wait up to 20 s. Every other action runs boxed, so that a waiting
    // request does not keep room for the largest of them meanwhile.
    let result = match action {
        Action::ClaimCreate => claim_create(&ctx, request, &queue).await,
        Action::MessageList => message_list(&ctx, request, &queue).await,
        _ => Box::pin(act(&ctx, request, &queue, action)).await,
    };
    result.unwrap_or_else(|err| failed(&ctx, request, &queue, &err))
}

/// Runs `action` for `ctx`, `queue` being the request's `queue_name`.
async fn act(
    ctx: &Context,
    request: &Request,
    queue: &str,
    action: Action,
) -> Result<Reply, ZaqarError> {
    match action {
        Action::PingNode => ping(ctx).await,
        Action::CheckNodeHealth => health::health(ctx)
            .await
            .map(|report| Reply::new(200, Value::Object(report))),
        Action::QueueList => queue_list(ctx, request).await,
        Action::QueueCreate => queue_create(ctx, request, queue).await,
        Action::QueueGet => queues::get_stored(ctx, queue)
            .await
            .map(|metadata| Reply::new(200, Value::Object(metadata.unwrap_or_default()))),
        Action::QueueDelete => queues::delete(ctx, queue)
            .await
            .map(|()| Reply::new(204, json!(format!("Queue {queue} removed.")))),
        Action::QueueGetStats => queue_stats(ctx, queue).await,
        Action::QueueRedrive => {
            let document = request.fields(&["destination", "limit"]);
            redrive::redrive(ctx, queue, &payload(document))
                .await
                .map(|done| Reply::new(200, json!(done)))
        }
        Action::QueuePurge => {
            let payload = match request.field("resource_types") {
                Some(types) => payload(json!({"resource_types": types})),
                None => Payload::Absent,
            };
            queues::purge(ctx, queue, &payload)
                .await
                .map(|()| Reply::new(204, json!({})))
        }
        Action::MessageList => message_list(ctx, request, queue).await,
        Action::MessageGet => messages::get(ctx, queue, &request.text("message_id"))
            .await
            .map(|m| Reply::new(200, json!({"messages": render::message(&m, None)}))),
        Action::MessageGetMany => {
            let ids = strings(request.field("message_ids"));
            messages::get_many(ctx, queue, &ids)
                .await
                .map(|found| Reply::new(200, json!({"messages": render::messages(&found, None)})))
        }
        Action::MessagePost => message_post(ctx, request, queue).await,
        Action::MessageDelete => {
            let claim_id = request.field("claim_id").and_then(Value::as_str);
            let id = request.text("message_id");
            messages::delete(ctx, queue, &id, claim_id.map(str::to_string))
                .await
                .map(|()| Reply::new(204, json!({})))
        }
        Action::MessageDeleteMany => message_delete_many(ctx, request, queue).await,
        Action::ClaimCreate => claim_create(ctx, request, queue).await,
        Action::ClaimGet => {
            let id = request.text("claim_id");
            claims::get(ctx, queue, &id).await.map(|claim| {
                let shown = render::messages(&claim.messages, Some(&id));
                Reply::new(
                    200,
                    json!({"age": claim.age, "ttl": claim.ttl, "messages": shown}),
                )
            })
        }
        Action::ClaimUpdate => {
            let id = request.text("claim_id");
            claims::update(ctx, queue, &id, &payload(ttl_and_grace(request)))
                .await
                .map(|()| Reply::new(204, json!(format!("Claim {id} updated."))))
        }
        Action::ClaimDelete => {
            let id = request.text("claim_id");
            claims::delete(ctx, queue, &id)
                .await
                .map(|()| Reply::new(204, json!(format!("Claim {id} deleted."))))
        }
        Action::SubscriptionList => {
            subscriptions::list(ctx, queue, None, None)
                .await
                .map(|listed| {
                    let shown: Vec<Value> = listed
                        .subscriptions
                        .iter()
                        .map(Subscription::shown)
                        .collect();
                    Reply::new(200, json!({"subscriptions": shown}))
                })
        }
        Action::SubscriptionCreate => subscription_create(ctx, request, queue).await,
        Action::SubscriptionGet => {
            let id = request.text("subscription_id");
            subscriptions::get(ctx, queue, &id)
                .await
                .map(|sub| Reply::new(200, sub.shown()))
        }
        Action::SubscriptionDelete => {
            let id = request.text("subscription_id");
            subscriptions::delete(ctx, queue, &id)
                .await
                .map(|()| Reply::new(204, json!(format!("Subscription {id} removed."))))
        }
        Action::PoolCreate
        | Action::PoolList
        | Action::PoolGet
        | Action::PoolUpdate
        | Action::PoolDelete
        | Action::FlavorCreate
        | Action::FlavorList
        | Action::FlavorGet
        | Action::FlavorUpdate
        | Action::FlavorDelete => admin_actions::run(ctx, request, action).await,
        // Answered before a context is needed.
        Action::GetHomeDoc | Action::Authenticate => Ok(context_free(&ctx.services, action)),
    }
}

/// The reply to `get_home_doc` or `authenticate`, which need no context (who asks).
fn context_free(services: &Services, action: Action) -> Reply {
    if action == Action::GetHomeDoc {
        return Reply::new(200, home::document(services.admin_mode));
    }
    // Nothing to authenticate without Keystone: every request carries its
    // project. (Zaqar 23 in noauth mode drops the connection here.) With
    // Keystone, `session` answers `authenticate` before it gets here.
    Reply::new(200, json!({"message": "Authentified."}))
}

/// Runs a `subscription_create` without subscriber: a push subscription of
/// the connection whose `push` side this is; `replies` is its reply queue.
pub async fn subscribe_connection(
    services: &Arc<Services>,
    request: &Request,
    token: Option<&str>,
    push: &mut ConnectionPush,
    encoding: Encoding,
    replies: &super::Replies,
) -> Reply {
    let ctx = match Box::pin(context(services, request, token)).await {
        Ok(ctx) => ctx,
        Err(reply) => return reply,
    };
    let queue = request.text("queue_name");
    push.subscribe(&ctx, request, &queue, encoding, replies)
        .await
        .unwrap_or_else(|err| failed(&ctx, request, &queue, &err))
}

/// The context of a request (who asks), or the reply refusing it.
async fn context(
    services: &Arc<Services>,
    request: &Request,
    token: Option<&str>,
) -> Result<Context, Reply> {
    let credentials = Credentials {
        client_id: request.header("Client-ID"),
        project: request.header("X-Project-ID"),
        roles: request.header("X-Roles"),
        token,
        signature: None,
        method: "",
        path: "",
    };
    services
        .context(&credentials)
        .await
        .map_err(|err| render::failure(&err, None))
}

/// Zaqar's reply to a failure of `request`, with the endpoint's own wording
/// for the failures it names.
fn failed(ctx: &Context, request: &Request, queue: &str, err: &ZaqarError) -> Reply {
    let project = ctx.project();
    let not_found = err.code == ErrorCode::NotFound;
    let (exception, error) = match (request.known, not_found) {
        (Some(Action::MessageGet), true) => {
            let id = request.text("message_id");
            let exception =
                format!("Message {id} does not exist in queue {queue} for project {project}");
            (Some(exception), None)
        }
        (Some(Action::ClaimGet | Action::ClaimUpdate), true) => {
            let id = request.text("claim_id");
            let exception =
                format!("Claim {id} does not exist in queue {queue} for project {project}");
            (Some(exception), Some(format!("Claim {id} does not exist.")))
        }
        (Some(Action::SubscriptionGet), true) => {
            let id = request.text("subscription_id");
            (
                Some(format!("Subscription {id} does not exist")),
                Some(format!(
                    "Subscription {id} for queue {queue} does not exist."
                )),
            )
        }
        (Some(Action::MessageDelete), _)
            if matches!(err.code, ErrorCode::BadRequest | ErrorCode::Forbidden) =>
        {
            (None, Some(err.description.clone()))
        }
        _ if err.title == "Invalid queue identification" => {
            (Some(identification_problem(ctx, queue)), None)
        }
        _ => (None, None),
    };
    let mut reply = render::failure(err, error);
    if let Some(exception) = exception {
        reply.body["exception"] = json!(exception);
    }
    reply
}

/// What Zaqar's `queue_identification` check says, in its order.
fn identification_problem(ctx: &Context, queue: &str) -> String {
    let limits = ctx.limits();
    if ctx.project().chars().count() > limits.max_project_id_length {
        let max = limits.max_project_id_length;
        format!("Project ids may not be more than {max} characters long.")
    } else if queue.chars().count() > limits.max_queue_name_length {
        let max = limits.max_queue_name_length;
        format!("Queue names may not be more than {max} characters long.")
    } else {
        "Queue names may only contain ASCII letters, digits, underscores, and dashes.".to_string()
    }
}

fn payload(document: Value) -> Payload {
    Payload::Read(Bytes::from(document.to_string()))
}

fn strings(value: Option<&Value>) -> Vec<String> {
    let items = value.and_then(Value::as_array).cloned().unwrap_or_default();
    items
        .into_iter()
        .map(|item| match item {
            Value::String(text) => text,
            other => other.to_string(),
        })
        .collect()
}

fn int(request: &Request, name: &str) -> Option<i64> {
    request.field(name).and_then(Value::as_i64)
}

/// The `ttl` and `grace` of a claim request, as a claim body.
fn ttl_and_grace(request: &Request) -> Value {
    request.fields(&["ttl", "grace"])
}

async fn ping(ctx: &Context) -> Result<Reply, ZaqarError> {
    if health::ping(ctx).await {
        Ok(Reply::new(204, json!({})))
    } else {
        Err(ZaqarError::unavailable(
            "Service temporarily unavailable. Please try again in a few seconds.",
        ))
    }
}

async fn queue_list(ctx: &Context, request: &Request) -> Result<Reply, ZaqarError> {
    let input = ListQueues {
        marker: request
            .field("marker")
            .and_then(Value::as_str)
            .map(str::to_string),
        limit: int(request, "limit"),
        detailed: flag(request.field("detailed")),
        stored_metadata: true,
        ..ListQueues::default()
    };
    let listed = queues::list(ctx, input).await?;
    let shown: Vec<Value> = listed
        .queues
        .into_iter()
        .map(|queue| match queue.metadata {
            Some(metadata) => json!({"name": queue.name, "metadata": metadata}),
            None => json!({"name": queue.name}),
        })
        .collect();
    Ok(Reply::new(200, json!({"queues": shown})))
}

async fn queue_create(ctx: &Context, request: &Request, queue: &str) -> Result<Reply, ZaqarError> {
    let metadata = request
        .field("metadata")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let created = queues::create(ctx, queue, &payload(metadata)).await?;
    // Zaqar says "created" even when the queue was already there (204).
    let status = if created { 201 } else { 204 };
    Ok(Reply::new(status, json!(format!("Queue {queue} created."))))
}

/// Stats, and 404 with zero counts for a queue that does not exist.
async fn queue_stats(ctx: &Context, queue: &str) -> Result<Reply, ZaqarError> {
    let stats = queues::stats(ctx, queue).await?;
    if stats.total == 0 && queues::get_stored(ctx, queue).await?.is_none() {
        return Ok(Reply::new(404, render::stats(&stats)));
    }
    Ok(Reply::new(200, render::stats(&stats)))
}

/// Messages of a queue; 404 for a queue that does not exist (unlike REST).
/// `message_post`, with the post's `idempotency_key` when it has one.
async fn message_post(ctx: &Context, request: &Request, queue: &str) -> Result<Reply, ZaqarError> {
    let document = json!({"messages": request.field("messages")});
    let key = match request.field("idempotency_key") {
        None | Some(Value::Null) => None,
        Some(key) => Some(messages::idempotency_key(key.as_str().unwrap_or(""))?),
    };
    let ids = messages::post(ctx, queue, &payload(document), key.as_deref()).await?;
    Ok(Reply::new(201, json!({"message_ids": ids})))
}

async fn message_list(ctx: &Context, request: &Request, queue: &str) -> Result<Reply, ZaqarError> {
    let input = ListMessages {
        marker: request
            .field("marker")
            .and_then(Value::as_str)
            .map(str::to_string),
        limit: int(request, "limit"),
        echo: flag(request.field("echo")),
        include_claimed: flag(request.field("include_claimed")),
        include_delayed: flag(request.field("include_delayed")),
        wait: int(request, "wait"),
    };
    let listed = messages::list(ctx, queue, input).await?;
    // Boxed, as the other actions (see `run`): this listing may have waited.
    if listed.messages.is_empty() && Box::pin(queues::get_stored(ctx, queue)).await?.is_none() {
        let project = ctx.project();
        let description = format!("Queue {queue} does not exist for project {project}");
        return Err(ZaqarError::not_found(description));
    }
    Ok(Reply::new(
        200,
        json!({"messages": render::messages(&listed.messages, None)}),
    ))
}

async fn message_delete_many(
    ctx: &Context,
    request: &Request,
    queue: &str,
) -> Result<Reply, ZaqarError> {
    let ids = request.field("message_ids").map(|ids| strings(Some(ids)));
    let input = DeleteMessages {
        ids: ids.filter(|ids| !ids.is_empty()),
        claim_ids: request.field("claim_ids").map(|ids| strings(Some(ids))),
        pop: int(request, "pop"),
    };
    match messages::delete_many(ctx, queue, input).await? {
        None => Ok(Reply::new(204, json!({}))),
        Some(popped) => {
            let shown: Vec<Value> = popped.iter().map(Message::popped).collect();
            Ok(Reply::new(200, json!({"messages": shown})))
        }
    }
}

async fn claim_create(ctx: &Context, request: &Request, queue: &str) -> Result<Reply, ZaqarError> {
    let limit = int(request, "limit");
    let wait = int(request, "wait");
    match claims::create(ctx, queue, limit, &payload(ttl_and_grace(request)), wait).await? {
        // Zaqar names a claim even when it took nothing; none is made here.
        None => Ok(Reply::new(204, json!({}))),
        Some(claim) => {
            let shown = render::messages(&claim.messages, Some(&claim.id));
            Ok(Reply::new(
                201,
                json!({"claim_id": claim.id, "messages": shown}),
            ))
        }
    }
}

async fn subscription_create(
    ctx: &Context,
    request: &Request,
    queue: &str,
) -> Result<Reply, ZaqarError> {
    // Without a subscriber the connection subscribes itself (`push`).
    let mut document = json!({"subscriber": request.text("subscriber")});
    for name in ["ttl", "options"] {
        if let Some(value) = request.field(name) {
            document[name] = value.clone();
        }
    }
    let created = subscriptions::create(ctx, queue, &payload(document)).await?;
    if !created.created {
        // Zaqar's storage refuses the same subscriber twice on a queue.
        return Ok(Reply::new(
            409,
            json!(format!("Subscription {queue} not created.")),
        ));
    }
    let message = format!("Subscription {queue} created.");
    Ok(Reply::new(
        201,
        json!({"subscription_id": created.id, "message": message}),
    ))
}
