//! `/v2/topics...` (Zaqar v2.1): topics, their stats and purge, and the
//! messages and subscriptions under a topic, shown as their queue counterparts
//! with `/v2/topics/` paths. Topics have no claims and no share route (404).

use std::sync::Arc;

use serde_json::{json, Map, Value};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::messages::{stats_message, Shown};
use super::{empty, handle, json, located, next_link, request, Request, RestError};
use crate::operations::messages::{self, DeleteMessages, ListMessages};
use crate::operations::queues::ListQueues;
use crate::operations::topics::{self, public};
use crate::operations::types::{Message, QueueStats, Subscription};
use crate::operations::{subscriptions, Context, Services};

const PATCH_MEDIA_TYPE: &str = "application/openstack-messaging-v2.0-json-patch";

/// The path of a topic: `/v2/topics/{topic}`.
fn topic_path(topic: &str) -> String {
    format!("/v2/topics/{topic}")
}

pub fn routes(services: Arc<Services>) -> BoxedFilter<(Response,)> {
    let collection = warp::path!("v2" / "topics")
        .and(request(services.clone()))
        .then(|req| handle(req, &["GET"], list));
    let item = warp::path!("v2" / "topics" / String)
        .and(request(services.clone()))
        .then(|topic: String, req| {
            handle(req, &["DELETE", "GET", "PATCH", "PUT"], move |ctx, req| {
                item(ctx, req, topic)
            })
        });
    let stats = warp::path!("v2" / "topics" / String / "stats")
        .and(request(services.clone()))
        .then(|topic: String, req| handle(req, &["GET"], move |ctx, _| stats(ctx, topic)));
    let purge = warp::path!("v2" / "topics" / String / "purge")
        .and(request(services.clone()))
        .then(|topic: String, req| {
            handle(req, &["POST"], move |ctx, req: Request| async move {
                topics::purge(&ctx, &topic, req.payload()).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            })
        });
    collection
        .or(item)
        .unify()
        .or(stats)
        .unify()
        .or(purge)
        .unify()
        .or(message_routes(services.clone()))
        .unify()
        .or(subscription_routes(services))
        .unify()
        .boxed()
}

async fn list(ctx: Context, req: Request) -> Result<Response, RestError> {
    let query = &req.query;
    let input = ListQueues {
        marker: query.string("marker"),
        limit: query.int("limit")?,
        detailed: query.flag("detailed")?,
        name: query.string("name"),
        ..ListQueues::default()
    };
    let mut params: Vec<(&str, String)> = Vec::new();
    if let Some(limit) = input.limit {
        params.push(("limit", limit.to_string()));
    }
    if query.get("detailed").is_some() {
        params.push(("detailed", input.detailed.to_string()));
    }
    if let Some(name) = &input.name {
        params.push(("name", name.clone()));
    }
    let listed = topics::list(&ctx, input).await?;
    let rendered: Vec<Value> = listed
        .queues
        .into_iter()
        .map(|topic| {
            let mut item = Map::new();
            item.insert("name".into(), Value::String(topic.name.clone()));
            if let Some(metadata) = topic.metadata {
                item.insert("metadata".into(), Value::Object(metadata));
            }
            item.insert("href".into(), Value::String(topic_path(&topic.name)));
            Value::Object(item)
        })
        .collect();
    let links = if rendered.is_empty() {
        json!([])
    } else {
        params.push(("marker", listed.next_marker));
        next_link("/v2/topics", &params)
    };
    Ok(json(
        StatusCode::OK,
        &json!({"topics": rendered, "links": links}),
    ))
}

async fn item(ctx: Context, req: Request, topic: String) -> Result<Response, RestError> {
    match req.method.as_str() {
        "GET" => Ok(json(StatusCode::OK, &topics::get(&ctx, &topic).await?)),
        "PUT" => {
            let created = topics::create(&ctx, &topic, req.payload()).await?;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::NO_CONTENT
            };
            Ok(located(empty(status), &topic_path(&topic)))
        }
        "PATCH" => {
            if req.content_type() != Some(PATCH_MEDIA_TYPE) {
                return Err(RestError::UnsupportedMediaType(format!(
                    "Accepted media type for PATCH: {{'Accept-Patch': '{PATCH_MEDIA_TYPE}'}}."
                )));
            }
            let metadata = topics::update(&ctx, &topic, req.payload()).await?;
            Ok(json(StatusCode::OK, &metadata))
        }
        "DELETE" => {
            topics::delete(&ctx, &topic).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(RestError::MethodNotAllowed(&[
            "DELETE", "GET", "PATCH", "PUT",
        ])),
    }
}

async fn stats(ctx: Context, topic: String) -> Result<Response, RestError> {
    let stats: QueueStats = topics::stats(&ctx, &topic).await?;
    let mut messages = Map::new();
    messages.insert("claimed".into(), stats.claimed.into());
    messages.insert("free".into(), stats.free.into());
    messages.insert("total".into(), stats.total.into());
    if stats.total != 0 {
        for (name, message) in [("oldest", &stats.oldest), ("newest", &stats.newest)] {
            if let Some(message) = message {
                let shown = retarget(stats_message(&topic, message), &topic, message);
                messages.insert(name.into(), shown);
            }
        }
    }
    Ok(json(StatusCode::OK, &json!({"messages": messages})))
}

/// A message rendered as under a queue, with its href under the topic.
fn retarget(mut shown: Value, topic: &str, message: &Message) -> Value {
    shown["href"] = Value::String(format!("{}/messages/{}", topic_path(topic), message.id));
    shown
}

fn shown_message(topic: &str, message: &Message) -> Value {
    let shown = serde_json::to_value(Shown::of(topic, message)).unwrap_or(Value::Null);
    retarget(shown, topic, message)
}

fn message_routes(services: Arc<Services>) -> BoxedFilter<(Response,)> {
    let collection = warp::path!("v2" / "topics" / String / "messages")
        .and(request(services.clone()))
        .then(|topic: String, req| {
            handle(req, &["DELETE", "GET", "POST"], move |ctx, req| {
                messages_collection(ctx, req, topic)
            })
        });
    let item = warp::path!("v2" / "topics" / String / "messages" / String)
        .and(request(services))
        .then(|topic: String, id: String, req| {
            handle(req, &["DELETE", "GET"], move |ctx, req| {
                message_item(ctx, req, topic, id)
            })
        });
    collection.or(item).unify().boxed()
}

async fn messages_collection(
    ctx: Context,
    req: Request,
    topic: String,
) -> Result<Response, RestError> {
    let topics = topics::namespace(&ctx, &topic)?;
    let path = format!("{}/messages", topic_path(&topic));
    match req.method.as_str() {
        "POST" => {
            let ids = messages::post(&topics, &topic, req.payload())
                .await
                .map_err(public)?;
            let hrefs: Vec<String> = ids.iter().map(|id| format!("{path}/{id}")).collect();
            let response = json(StatusCode::CREATED, &json!({"resources": hrefs}));
            Ok(located(response, &format!("{path}?ids={}", ids.join(","))))
        }
        "GET" => match req.query.list("ids") {
            Some(ids) => {
                let found = messages::get_many(&topics, &topic, &ids)
                    .await
                    .map_err(public)?;
                let shown: Vec<Value> = found.iter().map(|m| shown_message(&topic, m)).collect();
                Ok(json(StatusCode::OK, &json!({"messages": shown})))
            }
            None => list_messages(topics, req, topic, path).await,
        },
        "DELETE" => {
            let input = DeleteMessages {
                ids: req.query.list("ids"),
                claim_ids: req.query.list("claim_ids"),
                pop: req.query.int("pop")?,
            };
            match messages::delete_many(&topics, &topic, input)
                .await
                .map_err(public)?
            {
                None => Ok(empty(StatusCode::NO_CONTENT)),
                Some(popped) => {
                    let shown: Vec<Value> = popped.iter().map(popped_message).collect();
                    Ok(json(StatusCode::OK, &json!({"messages": shown})))
                }
            }
        }
        _ => Err(RestError::MethodNotAllowed(&["DELETE", "GET", "POST"])),
    }
}

/// A popped message, as Zaqar's pop shows it (storage fields, no href).
fn popped_message(message: &Message) -> Value {
    json!({
        "id": message.id,
        "age": message.age,
        "ttl": message.ttl,
        "body": &message.body,
        "claim_id": message.claim_id,
        "claim_count": message.claim_count,
    })
}

async fn list_messages(
    topics: Context,
    req: Request,
    topic: String,
    path: String,
) -> Result<Response, RestError> {
    let query = &req.query;
    let input = ListMessages {
        marker: query.string("marker"),
        limit: query.int("limit")?,
        echo: query.flag("echo")?,
        include_claimed: query.flag("include_claimed")?,
        include_delayed: query.flag("include_delayed")?,
    };
    let mut params: Vec<(&str, String)> = Vec::new();
    if let Some(limit) = input.limit {
        params.push(("limit", limit.to_string()));
    }
    for (name, value) in [
        ("echo", input.echo),
        ("include_claimed", input.include_claimed),
        ("include_delayed", input.include_delayed),
    ] {
        if query.get(name).is_some() {
            params.push((name, value.to_string()));
        }
    }
    let listed = messages::list(&topics, &topic, input)
        .await
        .map_err(public)?;
    let shown: Vec<Value> = listed
        .messages
        .iter()
        .map(|m| shown_message(&topic, m))
        .collect();
    let links = if shown.is_empty() {
        json!([])
    } else {
        params.push(("marker", listed.next_marker));
        next_link(&path, &params)
    };
    Ok(json(
        StatusCode::OK,
        &json!({"messages": shown, "links": links}),
    ))
}

async fn message_item(
    ctx: Context,
    req: Request,
    topic: String,
    id: String,
) -> Result<Response, RestError> {
    let topics = topics::namespace(&ctx, &topic)?;
    match req.method.as_str() {
        "GET" => {
            let message = messages::get(&topics, &topic, &id).await.map_err(public)?;
            Ok(json(StatusCode::OK, &shown_message(&topic, &message)))
        }
        "DELETE" => {
            messages::delete(&topics, &topic, &id, req.query.string("claim_id"))
                .await
                .map_err(public)?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(RestError::MethodNotAllowed(&["DELETE", "GET"])),
    }
}

fn subscription_routes(services: Arc<Services>) -> BoxedFilter<(Response,)> {
    let collection = warp::path!("v2" / "topics" / String / "subscriptions")
        .and(request(services.clone()))
        .then(|topic: String, req| {
            handle(req, &["GET", "POST"], move |ctx, req| {
                subscriptions_collection(ctx, req, topic)
            })
        });
    let item = warp::path!("v2" / "topics" / String / "subscriptions" / String)
        .and(request(services.clone()))
        .then(|topic: String, id: String, req| {
            handle(req, &["DELETE", "GET", "PATCH"], move |ctx, req| {
                subscription_item(ctx, req, topic, id)
            })
        });
    let confirm = warp::path!("v2" / "topics" / String / "subscriptions" / String / "confirm")
        .and(request(services))
        .then(|topic: String, id: String, req| {
            handle(req, &["PUT"], move |ctx, req: Request| async move {
                let topics = topics::namespace(&ctx, &topic)?;
                subscriptions::confirm_with_notice(&topics, &topic, &id, req.payload())
                    .await
                    .map_err(public)?;
                let location = format!("{}/subscriptions/{id}/confirm", topic_path(&topic));
                Ok(located(empty(StatusCode::NO_CONTENT), &location))
            })
        });
    collection.or(item).unify().or(confirm).unify().boxed()
}

async fn subscriptions_collection(
    ctx: Context,
    req: Request,
    topic: String,
) -> Result<Response, RestError> {
    let topics = topics::namespace(&ctx, &topic)?;
    let path = format!("{}/subscriptions", topic_path(&topic));
    match req.method.as_str() {
        "POST" => {
            let created =
                subscriptions::create_requesting_confirmation(&topics, &topic, req.payload())
                    .await
                    .map_err(public)?;
            let response = json(StatusCode::CREATED, &json!({"subscription_id": created.id}));
            Ok(located(response, &path))
        }
        "GET" => {
            let marker = req.query.string("marker");
            let limit = req.query.int("limit")?;
            let listed = subscriptions::list(&topics, &topic, marker, limit)
                .await
                .map_err(public)?;
            let links = if listed.subscriptions.is_empty() {
                json!([])
            } else {
                let mut params = Vec::new();
                if let Some(limit) = limit {
                    params.push(("limit", limit.to_string()));
                }
                params.push(("marker", listed.next_marker));
                next_link(&path, &params)
            };
            let shown: Vec<Value> = listed
                .subscriptions
                .iter()
                .map(shown_subscription)
                .collect();
            Ok(json(
                StatusCode::OK,
                &json!({"subscriptions": shown, "links": links}),
            ))
        }
        _ => Err(RestError::MethodNotAllowed(&["GET", "POST"])),
    }
}

async fn subscription_item(
    ctx: Context,
    req: Request,
    topic: String,
    id: String,
) -> Result<Response, RestError> {
    let topics = topics::namespace(&ctx, &topic)?;
    match req.method.as_str() {
        "GET" => {
            let subscription = subscriptions::get(&topics, &topic, &id)
                .await
                .map_err(public)?;
            Ok(json(StatusCode::OK, &shown_subscription(&subscription)))
        }
        "PATCH" => {
            subscriptions::update(&topics, &topic, &id, req.payload())
                .await
                .map_err(public)?;
            let location = format!("{}/subscriptions/{id}", topic_path(&topic));
            Ok(located(empty(StatusCode::NO_CONTENT), &location))
        }
        "DELETE" => {
            subscriptions::delete(&topics, &topic, &id)
                .await
                .map_err(public)?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(RestError::MethodNotAllowed(&["DELETE", "GET", "PATCH"])),
    }
}

/// A subscription as Zaqar shows it; its `source` is the topic's name.
fn shown_subscription(subscription: &Subscription) -> Value {
    json!({
        "id": subscription.id,
        "source": subscription.source,
        "subscriber": subscription.subscriber,
        "ttl": subscription.ttl,
        "age": subscription.age,
        "options": subscription.options,
        "confirmed": subscription.confirmed,
    })
}
