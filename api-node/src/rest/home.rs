//! `/` (versions), `/v2/` (home document), `/v2/ping` and `/v2/health`.

use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::Filter;
use zaqar_proto::ZaqarError;

use super::{empty, handle, json, request, RestError};
use crate::operations::{health, Services};

/// The json-home document of Zaqar's v2 API as the reference shows it in admin
/// mode (to every caller): with pools, flavors and health.
const HOME_DOCUMENT: &str = include_str!("home.json");

pub fn routes(services: Arc<Services>) -> BoxedFilter<(Response,)> {
    let versions = warp::path::end().and(warp::get()).map(versions);
    let home = warp::path!("v2")
        .and(request(services.clone()))
        .then(|req| handle(req, &["GET"], |_, _| async { Ok(home_document()) }));
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
    let health = warp::path!("v2" / "health")
        .and(request(services))
        .then(|req| {
            handle(req, &["GET"], |ctx, _| async move {
                let report = health::health(&ctx).await.map_err(RestError::from)?;
                Ok(json(StatusCode::OK, &report))
            })
        });
    versions
        .or(home)
        .unify()
        .or(ping)
        .unify()
        .or(health)
        .unify()
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

fn home_document() -> Response {
    let mut response = Response::new(HOME_DOCUMENT.into());
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
