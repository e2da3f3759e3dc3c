//! `/` (versions), `/v2/` (home document), `/v2/ping` and, in admin mode, `/v2/health`.

use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;
use zaqar_proto::ZaqarError;

use super::{empty, handle, json, request, RestError};
use crate::operations::{health, home, Services};

pub fn routes(services: Arc<Services>) -> BoxedFilter<(Response,)> {
    let versions = warp::path::end().and(warp::get()).map(versions);
    let admin_mode = services.admin_mode;
    let home = warp::path!("v2")
        .and(request(services.clone()))
        .then(move |req| {
            handle(req, &["GET"], move |_, _| async move {
                Ok(home_document(admin_mode))
            })
        });
    let ping = warp::path!("v2" / "ping")
        .and(request(services.clone()))
        .then(|req| {
            handle(req, &["GET", "HEAD"], |ctx, req| async move {
                if req.method == warp::http::Method::HEAD || health::ping(&ctx).await {
                    Ok(empty(StatusCode::NO_CONTENT))
                } else {
                    Err(ZaqarError::unavailable(
                        "Service temporarily unavailable. Please try again in a few seconds.",
                    )
                    .into())
                }
            })
        });
    versions.or(home).unify().or(ping).unify().boxed()
}

/// `/v2/health` (admin mode only).
pub fn health_route(services: Arc<Services>) -> BoxedFilter<(Response,)> {
    warp::path!("v2" / "health")
        .and(request(services))
        .then(|req| {
            handle(req, &["GET"], |ctx, _| async move {
                let report = health::health(&ctx).await.map_err(RestError::from)?;
                Ok(json(StatusCode::OK, &report))
            })
        })
        .boxed()
}

/// `GET /`: the API versions (300 Multiple Choices), no identity needed.
fn versions() -> Response {
    json(
        StatusCode::MULTIPLE_CHOICES,
        &serde_json::json!({"versions": [{
            "id": "2",
            "status": "CURRENT",
            "updated": "2014-9-24T04:06:47Z",
            "media-types": [{"base": "application/json", "type": "application/vnd.openstack.messaging-v2+json"}],
            "links": [{"href": "/v2/", "rel": "self"}]
        }]}),
    )
}

/// The home document of the mode the api-node runs in.
fn home_document(admin_mode: bool) -> Response {
    let body = serde_json::to_string_pretty(&home::document(admin_mode)).unwrap_or_default();
    let mut response = Response::new(body.into());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json-home"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=86400"),
    );
    response
}
