//! The REST transport: thin warp filters that turn HTTP into operation input
//! and operation results into Zaqar's JSON answers. One file per resource.

mod claims;
pub mod errors;
mod home;
mod messages;
pub(crate) mod owned_head;
mod pools_and_flavors;
pub mod query;
mod queues;
mod request;
mod subscriptions;
mod topics;

use std::sync::Arc;

use serde::Serialize;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

pub use errors::RestError;
pub use request::{handle, request, Request};

use crate::operations::types::QueueSummary;
use crate::operations::Services;

/// Every route of the API, ending with the JSON 404 for unknown paths (so
/// nothing is ever rejected to warp's own plain-text answers).
pub fn routes(
    services: Arc<Services>,
) -> impl Filter<Extract = (impl warp::Reply,), Error = Rejection> + Clone + Send + Sync + 'static {
    // Without admin mode the privileged routes do not exist (as in Zaqar): they
    // answer the JSON 404 of any unknown path.
    let privileged = if services.admin_mode {
        home::health_route(services.clone())
            .or(pools_and_flavors::routes(services.clone()))
            .unify()
            .boxed()
    } else {
        warp::any()
            .and_then(|| async { Err::<Response, _>(warp::reject::not_found()) })
            .boxed()
    };
    let cors = services.cors.clone();
    let routes = home::routes(services.clone())
        .or(privileged)
        .unify()
        .or(queues::routes(services.clone()))
        .unify()
        .or(messages::routes(services.clone()))
        .unify()
        .or(claims::routes(services.clone()))
        .unify()
        .or(subscriptions::routes(services.clone()))
        .unify()
        .or(topics::routes(services.clone()))
        .unify()
        .or(request(services).then(|mut req: Request| async move {
            match req.read_body().await {
                Ok(()) => errors::render(RestError::NotFound),
                Err(err) => errors::render(err),
            }
        }))
        .unify()
        // Only if the draining route above could not run (it always can).
        .or(warp::any().map(|| errors::render(RestError::NotFound)))
        .unify()
        .map(crate::request_id::ensure)
        .boxed();
    if !cors.enabled() {
        return routes;
    }
    warp::method()
        .and(warp::header::headers_cloned())
        .and(routes)
        .map(move |method, headers, response| cors.apply(&method, &headers, response))
        .boxed()
}

/// A JSON answer.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = Response::new(bytes.into());
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(err) => errors::render(RestError::Zaqar(zaqar_proto::ZaqarError::internal(
            format!("the answer could not be serialized: {err}"),
        ))),
    }
}

/// An answer without a body (204, or 201 of a create).
pub fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Default::default());
    *response.status_mut() = status;
    response
}

/// Adds a `Location` header.
pub fn located(mut response: Response, location: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The path of a queue: `/v2/queues/{queue}`.
pub fn queue_path(queue: &str) -> String {
    format!("/v2/queues/{queue}")
}

/// The media type of a queue's or topic's metadata PATCH.
const PATCH_MEDIA_TYPE: &str = "application/openstack-messaging-v2.0-json-patch";

/// 415 unless the request's body is a metadata patch of Zaqar's media type.
pub fn require_patch_media_type(req: &Request) -> Result<(), RestError> {
    if req.content_type() == Some(PATCH_MEDIA_TYPE) {
        return Ok(());
    }
    Err(RestError::UnsupportedMediaType(format!(
        "Accepted media type for PATCH: {{'Accept-Patch': '{PATCH_MEDIA_TYPE}'}}."
    )))
}

/// A queue or topic as a listing shows it: its name, its metadata when asked for,
/// and `href`, its path.
pub fn listing_item(queue: QueueSummary, href: String) -> serde_json::Value {
    let mut item = serde_json::Map::new();
    item.insert("name".into(), queue.name.into());
    if let Some(metadata) = queue.metadata {
        item.insert("metadata".into(), metadata.into());
    }
    item.insert("href".into(), href.into());
    item.into()
}

/// A `rel: next` link continuing a listing with `params`.
pub fn next_link(path: &str, params: &[(&str, String)]) -> serde_json::Value {
    let query = serde_urlencoded::to_string(params).unwrap_or_default();
    serde_json::json!([{"rel": "next", "href": format!("{path}?{query}")}])
}
