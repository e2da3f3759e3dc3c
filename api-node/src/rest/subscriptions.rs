//! `/v2/queues/{q}/subscriptions`, `.../{id}` and `.../{id}/confirm`. Topics serve
//! their subscriptions through the same handlers under `/v2/topics/{t}`.

use std::sync::Arc;

use serde_json::{json, Value};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::{empty, handle, json, located, next_link, queue_path, request, Request, RestError};
use crate::operations::subscriptions;
use crate::operations::types::Subscription;
use crate::operations::{Context, Services};

pub fn routes(services: Arc<Services>) -> BoxedFilter<(Response,)> {
    let collection = warp::path!("v2" / "queues" / String / "subscriptions")
        .and(request(services.clone()))
        .then(|queue: String, req| {
            handle(req, &["GET", "POST"], move |ctx, req| {
                let base = queue_path(&queue);
                collection_at(ctx, req, queue, base)
            })
        });
    let item = warp::path!("v2" / "queues" / String / "subscriptions" / String)
        .and(request(services.clone()))
        .then(|queue: String, id: String, req| {
            handle(req, &["DELETE", "GET", "PATCH"], move |ctx, req| {
                let base = queue_path(&queue);
                item_at(ctx, req, queue, id, base)
            })
        });
    let confirm = warp::path!("v2" / "queues" / String / "subscriptions" / String / "confirm")
        .and(request(services))
        .then(|queue: String, id: String, req| {
            handle(req, &["PUT"], move |ctx, req| {
                let base = queue_path(&queue);
                confirm_at(ctx, req, queue, id, base)
            })
        });
    collection.or(item).unify().or(confirm).unify().boxed()
}

/// `PUT .../subscriptions/{id}/confirm` of `queue`, whose own path is `base`.
pub(super) async fn confirm_at(
    ctx: Context,
    req: Request,
    queue: String,
    id: String,
    base: String,
) -> Result<Response, RestError> {
    subscriptions::confirm_with_notice(&ctx, &queue, &id, req.payload()).await?;
    let location = format!("{base}/subscriptions/{id}/confirm");
    Ok(located(empty(StatusCode::NO_CONTENT), &location))
}

/// The subscriptions of `queue`, whose own path (queue or topic) is `base`.
pub(super) async fn collection_at(
    ctx: Context,
    req: Request,
    queue: String,
    base: String,
) -> Result<Response, RestError> {
    let path = format!("{base}/subscriptions");
    match req.method.as_str() {
        "POST" => {
            let created =
                subscriptions::create_requesting_confirmation(&ctx, &queue, req.payload()).await?;
            let response = json(StatusCode::CREATED, &json!({"subscription_id": created.id}));
            Ok(located(response, &path))
        }
        "GET" => {
            let marker = req.query.string("marker");
            let limit = req.query.int("limit")?;
            let listed = subscriptions::list(&ctx, &queue, marker, limit).await?;
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
                .map(Subscription::shown)
                .collect();
            Ok(json(
                StatusCode::OK,
                &json!({"subscriptions": shown, "links": links}),
            ))
        }
        _ => Err(RestError::MethodNotAllowed(&["GET", "POST"])),
    }
}

/// One subscription of `queue`, whose own path (queue or topic) is `base`.
pub(super) async fn item_at(
    ctx: Context,
    req: Request,
    queue: String,
    id: String,
    base: String,
) -> Result<Response, RestError> {
    match req.method.as_str() {
        "GET" => {
            let subscription = subscriptions::get(&ctx, &queue, &id).await?;
            Ok(json(StatusCode::OK, &subscription.shown()))
        }
        "PATCH" => {
            subscriptions::update(&ctx, &queue, &id, req.payload()).await?;
            let location = format!("{base}/subscriptions/{id}");
            Ok(located(empty(StatusCode::NO_CONTENT), &location))
        }
        "DELETE" => {
            subscriptions::delete(&ctx, &queue, &id).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(RestError::MethodNotAllowed(&["DELETE", "GET", "PATCH"])),
    }
}
