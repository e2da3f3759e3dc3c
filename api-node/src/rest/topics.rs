//! `/v2/topics...` (Zaqar v2.1): topics, their stats and purge, and the
//! messages and subscriptions under a topic, shown as their queue counterparts
//! with `/v2/topics/` paths. Topics have no claims and no share route (404).

use std::sync::Arc;

use serde_json::{json, Value};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::messages::{collection_at, item_at};
use super::queues::render_stats;
use super::subscriptions;
use super::{
    empty, handle, json, listing_item, located, next_link, request, require_patch_media_type,
    Request, RestError,
};
use crate::operations::queues::ListQueues;
use crate::operations::topics::{self, public};
use crate::operations::types::QueueStats;
use crate::operations::{Context, Services};

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
            let href = topic_path(&topic.name);
            listing_item(topic, href)
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
            require_patch_media_type(&req)?;
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
    let messages = render_stats(&topic_path(&topic), stats);
    Ok(json(StatusCode::OK, &json!({"messages": messages})))
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
    let base = topic_path(&topic);
    collection_at(topics, req, topic, base)
        .await
        .map_err(public_rest)
}

async fn message_item(
    ctx: Context,
    req: Request,
    topic: String,
    id: String,
) -> Result<Response, RestError> {
    let topics = topics::namespace(&ctx, &topic)?;
    let base = topic_path(&topic);
    item_at(topics, req, topic, id, base)
        .await
        .map_err(public_rest)
}

/// [`public`] for the errors of the shared REST handlers.
fn public_rest(err: RestError) -> RestError {
    match err {
        RestError::Zaqar(err) => RestError::Zaqar(public(err)),
        other => other,
    }
}

fn subscription_routes(services: Arc<Services>) -> BoxedFilter<(Response,)> {
    let collection = warp::path!("v2" / "topics" / String / "subscriptions")
        .and(request(services.clone()))
        .then(|topic: String, req| {
            handle(req, &["GET", "POST"], move |ctx, req| async move {
                let topics = topics::namespace(&ctx, &topic)?;
                let base = topic_path(&topic);
                let answer = subscriptions::collection_at(topics, req, topic, base).await;
                answer.map_err(public_rest)
            })
        });
    let item = warp::path!("v2" / "topics" / String / "subscriptions" / String)
        .and(request(services.clone()))
        .then(|topic: String, id: String, req| {
            handle(
                req,
                &["DELETE", "GET", "PATCH"],
                move |ctx, req| async move {
                    let topics = topics::namespace(&ctx, &topic)?;
                    let base = topic_path(&topic);
                    let answer = subscriptions::item_at(topics, req, topic, id, base).await;
                    answer.map_err(public_rest)
                },
            )
        });
    let confirm = warp::path!("v2" / "topics" / String / "subscriptions" / String / "confirm")
        .and(request(services))
        .then(|topic: String, id: String, req| {
            handle(req, &["PUT"], move |ctx, req| async move {
                let topics = topics::namespace(&ctx, &topic)?;
                let base = topic_path(&topic);
                let answer = subscriptions::confirm_at(topics, req, topic, id, base).await;
                answer.map_err(public_rest)
            })
        });
    collection.or(item).unify().or(confirm).unify().boxed()
}
