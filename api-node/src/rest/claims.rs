//! `/v2/queues/{q}/claims` and `/v2/queues/{q}/claims/{id}`.

use std::sync::Arc;

use serde_json::json;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::messages::Shown;
use super::{empty, handle, json, located, queue_path, request, Request, RestError};
use crate::operations::claims;
use crate::operations::types::Claim;
use crate::operations::{Context, Services};

pub fn routes(services: Arc<Services>) -> BoxedFilter<(Response,)> {
    let collection = warp::path!("v2" / "queues" / String / "claims")
        .and(request(services.clone()))
        .then(|queue: String, req| handle(req, &["POST"], move |ctx, req| create(ctx, req, queue)));
    let item = warp::path!("v2" / "queues" / String / "claims" / String)
        .and(request(services))
        .then(|queue: String, id: String, req| {
            handle(req, &["DELETE", "GET", "PATCH"], move |ctx, req| {
                item(ctx, req, queue, id)
            })
        });
    collection.or(item).unify().boxed()
}

async fn create(ctx: Context, req: Request, queue: String) -> Result<Response, RestError> {
    let limit = req.query.int("limit")?;
    let wait = req.query.int("wait")?;
    match claims::create(&ctx, &queue, limit, req.payload(), wait).await? {
        None => Ok(empty(StatusCode::NO_CONTENT)),
        Some(claim) => {
            let location = format!("{}/claims/{}", queue_path(&queue), claim.id);
            let claim = held(claim);
            let shown: Vec<Shown> = claim
                .messages
                .iter()
                .map(|m| Shown::of(&queue, m))
                .collect();
            Ok(located(
                json(StatusCode::CREATED, &json!({"messages": shown})),
                &location,
            ))
        }
    }
}

async fn item(
    ctx: Context,
    req: Request,
    queue: String,
    id: String,
) -> Result<Response, RestError> {
    match req.method.as_str() {
        "GET" => {
            let claim = held(claims::get(&ctx, &queue, &id).await?);
            let shown: Vec<Shown> = claim
                .messages
                .iter()
                .map(|m| Shown::of(&queue, m))
                .collect();
            let href = format!("{}/claims/{id}", queue_path(&queue));
            let body = json!({"age": claim.age, "ttl": claim.ttl, "messages": shown, "href": href});
            Ok(json(StatusCode::OK, &body))
        }
        "PATCH" => {
            claims::update(&ctx, &queue, &id, req.payload()).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        "DELETE" => {
            claims::delete(&ctx, &queue, &id).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(RestError::MethodNotAllowed(&["DELETE", "GET", "PATCH"])),
    }
}

/// The claim with each message marked as held by it (their hrefs carry the claim id).
fn held(mut claim: Claim) -> Claim {
    for message in &mut claim.messages {
        message.claim_id = Some(claim.id.clone());
    }
    claim
}
