//! `/v2/queues`, `/v2/queues/{q}`, `/v2/queues/{q}/stats`, `/v2/queues/{q}/purge`,
//! `/v2/queues/{q}/share` and `/v2/queues/{q}/redrive` (dead-letter redrive).

use std::sync::Arc;

use serde_json::{json, Map, Value};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::messages::stats_message;
use super::{
    empty, handle, json, listing_item, located, next_link, queue_path, request,
    require_patch_media_type, Request, RestError,
};
use crate::operations::queues::{self, ListQueues};
use crate::operations::redrive;
use crate::operations::share;
use crate::operations::types::QueueStats;
use crate::operations::{Context, Services};

pub fn routes(services: Arc<Services>) -> BoxedFilter<(Response,)> {
    let collection = warp::path!("v2" / "queues")
        .and(request(services.clone()))
        .then(|req| handle(req, &["GET"], list));
    let item = warp::path!("v2" / "queues" / String)
        .and(request(services.clone()))
        .then(|queue: String, req| {
            handle(req, &["DELETE", "GET", "PATCH", "PUT"], move |ctx, req| {
                item(ctx, req, queue)
            })
        });
    let stats = warp::path!("v2" / "queues" / String / "stats")
        .and(request(services.clone()))
        .then(|queue: String, req| handle(req, &["GET"], move |ctx, _| stats(ctx, queue)));
    let purge = warp::path!("v2" / "queues" / String / "purge")
        .and(request(services.clone()))
        .then(|queue: String, req| {
            handle(req, &["POST"], move |ctx, req: Request| async move {
                queues::purge(&ctx, &queue, req.payload()).await?;
                Ok(empty(StatusCode::NO_CONTENT))
            })
        });
    let redrive = warp::path!("v2" / "queues" / String / "redrive")
        .and(request(services.clone()))
        .then(|queue: String, req| {
            handle(req, &["POST"], move |ctx, req: Request| async move {
                let done = redrive::redrive(&ctx, &queue, req.payload()).await?;
                Ok(json(StatusCode::OK, &done))
            })
        });
    let share = warp::path!("v2" / "queues" / String / "share")
        .and(request(services))
        .then(|queue: String, req| {
            handle(req, &["POST"], move |ctx, req: Request| async move {
                let signed = share::share(&ctx, &queue, req.payload()).await?;
                Ok(json(StatusCode::OK, &signed))
            })
        });
    collection
        .or(item)
        .unify()
        .or(stats)
        .unify()
        .or(purge)
        .unify()
        .or(share)
        .unify()
        .or(redrive)
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
        with_count: query.flag("with_count")?,
        stored_metadata: false,
    };
    let mut params: Vec<(&str, String)> = Vec::new();
    if let Some(limit) = input.limit {
        params.push(("limit", limit.to_string()));
    }
    for (name, value) in [
        ("detailed", input.detailed),
        ("with_count", input.with_count),
    ] {
        if query.get(name).is_some() {
            params.push((name, value.to_string()));
        }
    }
    if let Some(name) = &input.name {
        params.push(("name", name.clone()));
    }
    let listed = queues::list(&ctx, input).await?;
    let mut body = Map::new();
    let rendered: Vec<Value> = listed
        .queues
        .into_iter()
        .map(|queue| {
            let href = queue_path(&queue.name);
            listing_item(queue, href)
        })
        .collect();
    let links = if rendered.is_empty() {
        json!([])
    } else {
        params.push(("marker", listed.next_marker));
        next_link("/v2/queues", &params)
    };
    body.insert("queues".into(), Value::Array(rendered));
    body.insert("links".into(), links);
    // Zaqar 23 with its SQL catalog answers `"count": true` (it returns
    // `res is not None`); the count of queues is what was meant.
    if let Some(count) = listed.count.filter(|&count| count > 0) {
        body.insert("count".into(), Value::from(count));
    }
    Ok(json(StatusCode::OK, &body))
}

async fn item(ctx: Context, req: Request, queue: String) -> Result<Response, RestError> {
    match req.method.as_str() {
        "GET" => Ok(json(StatusCode::OK, &queues::get(&ctx, &queue).await?)),
        "PUT" => {
            let created = queues::create(&ctx, &queue, req.payload()).await?;
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::NO_CONTENT
            };
            Ok(located(empty(status), &queue_path(&queue)))
        }
        "PATCH" => {
            require_patch_media_type(&req)?;
            Ok(json(
                StatusCode::OK,
                &queues::update(&ctx, &queue, req.payload()).await?,
            ))
        }
        "DELETE" => {
            queues::delete(&ctx, &queue).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(RestError::MethodNotAllowed(&[
            "DELETE", "GET", "PATCH", "PUT",
        ])),
    }
}

async fn stats(ctx: Context, queue: String) -> Result<Response, RestError> {
    let stats = queues::stats(&ctx, &queue).await?;
    Ok(json(
        StatusCode::OK,
        &json!({"messages": render_stats(&queue_path(&queue), stats)}),
    ))
}

/// Zaqar's stats with the oldest and newest message's hrefs under `base`, the path
/// of the queue or topic.
pub(super) fn render_stats(base: &str, stats: QueueStats) -> Value {
    stats.counts(|message| stats_message(base, message))
}
