//! `/v2/pools`, `/v2/pools/{p}`, `/v2/flavors` and `/v2/flavors/{f}` (admin role).

use std::sync::Arc;

use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::{empty, handle, json, located, request, Request, RestError};
use crate::operations::admin_listing::Listing;
use crate::operations::{flavors, pools, Context, Services};

const ITEM_METHODS: &[&str] = &["DELETE", "GET", "PATCH", "PUT"];

pub fn routes(services: Arc<Services>) -> BoxedFilter<(Response,)> {
    let pool_list = warp::path!("v2" / "pools")
        .and(request(services.clone()))
        .then(|req| {
            handle(req, &["GET"], |ctx, req: Request| async move {
                let body = pools::list(&ctx, &listing(&req)?).await?;
                Ok(json(StatusCode::OK, &body))
            })
        });
    let pool = warp::path!("v2" / "pools" / String)
        .and(request(services.clone()))
        .then(|name: String, req| {
            handle(req, ITEM_METHODS, move |ctx, req| pool_item(ctx, req, name))
        });
    let flavor_list = warp::path!("v2" / "flavors")
        .and(request(services.clone()))
        .then(|req| {
            handle(req, &["GET"], |ctx, req: Request| async move {
                let body = flavors::list(&ctx, &listing(&req)?).await?;
                Ok(json(StatusCode::OK, &body))
            })
        });
    let flavor = warp::path!("v2" / "flavors" / String)
        .and(request(services))
        .then(|name: String, req| {
            handle(req, ITEM_METHODS, move |ctx, req| {
                flavor_item(ctx, req, name)
            })
        });
    pool_list
        .or(pool)
        .unify()
        .or(flavor_list)
        .unify()
        .or(flavor)
        .unify()
        .boxed()
}

/// `marker`, `limit` and `detailed` as given.
fn listing(req: &Request) -> Result<Listing, RestError> {
    let query = &req.query;
    let detailed = match query.get("detailed") {
        Some(_) => Some(query.flag("detailed")?),
        None => None,
    };
    Ok(Listing {
        marker: query.string("marker"),
        limit: query.int("limit")?,
        detailed,
    })
}

async fn pool_item(ctx: Context, req: Request, name: String) -> Result<Response, RestError> {
    match req.method.as_str() {
        "GET" => {
            let detailed = req.query.flag("detailed")?;
            Ok(json(
                StatusCode::OK,
                &pools::get(&ctx, &name, detailed).await?,
            ))
        }
        "PUT" => {
            pools::put(&ctx, &name, req.payload()).await?;
            Ok(located(empty(StatusCode::CREATED), &pools::path(&name)))
        }
        "PATCH" => Ok(json(
            StatusCode::OK,
            &pools::update(&ctx, &name, req.payload()).await?,
        )),
        "DELETE" => {
            pools::delete(&ctx, &name).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(RestError::MethodNotAllowed(ITEM_METHODS)),
    }
}

async fn flavor_item(ctx: Context, req: Request, name: String) -> Result<Response, RestError> {
    match req.method.as_str() {
        "GET" => Ok(json(StatusCode::OK, &flavors::get(&ctx, &name).await?)),
        "PUT" => {
            flavors::put(&ctx, &name, req.payload()).await?;
            Ok(located(empty(StatusCode::CREATED), &flavors::path(&name)))
        }
        "PATCH" => Ok(json(
            StatusCode::OK,
            &flavors::update(&ctx, &name, req.payload()).await?,
        )),
        "DELETE" => {
            flavors::delete(&ctx, &name).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(RestError::MethodNotAllowed(ITEM_METHODS)),
    }
}
