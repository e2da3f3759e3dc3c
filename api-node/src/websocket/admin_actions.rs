//! The admin WebSocket actions `pool_*` and `flavor_*`, over the same operations
//! as `/v2/pools` and `/v2/flavors`.
//!
//! Zaqar 23 validates these actions against the schemas of its `api/v2/request.py`
//! (which `schema.rs` follows: e.g. `pool_list` requires a `pool_name` it ignores,
//! `flavor_create` names one pool in `pool_name`) but has no endpoint for them, so
//! the reference drops the connection. We follow those documented schemas and
//! answer with the REST bodies; a flavor's pools may also be given as `pool_list`
//! like REST. Writes answer `{"message": ...}`-style text as `queue_create` does.

use bytes::Bytes;
use serde_json::{json, Map, Value};
use zaqar_proto::ZaqarError;

use super::action::Action;
use super::protocol::{Reply, Request};
use crate::operations::admin_listing::Listing;
use crate::operations::{flavors, pools, Context, Payload};

/// Runs `action`, one of the `pool_*` / `flavor_*` actions, of `request`.
pub async fn run(ctx: &Context, request: &Request, action: Action) -> Result<Reply, ZaqarError> {
    let pool = request.text("pool_name");
    let flavor = request.text("flavor_name");
    let detailed = request.field("detailed").and_then(Value::as_bool);
    match action {
        Action::PoolList => pools::list(ctx, &listing(request)).await.map(ok),
        Action::PoolGet => pools::get(ctx, &pool, detailed.unwrap_or(false))
            .await
            .map(ok),
        Action::PoolCreate => {
            let body = fields(request, &["weight", "uri", "flavor", "options"]);
            pools::put(ctx, &pool, &body).await?;
            Ok(Reply::new(201, json!(format!("Pool {pool} created."))))
        }
        Action::PoolUpdate => {
            let body = fields(request, &["weight", "uri", "flavor", "options"]);
            pools::update(ctx, &pool, &body).await.map(ok)
        }
        Action::PoolDelete => pools::delete(ctx, &pool)
            .await
            .map(|()| Reply::new(204, json!(format!("Pool {pool} removed.")))),
        Action::FlavorList => flavors::list(ctx, &listing(request)).await.map(ok),
        Action::FlavorGet => flavors::get(ctx, &flavor).await.map(ok),
        Action::FlavorCreate => {
            flavors::put(ctx, &flavor, &flavor_body(request)).await?;
            Ok(Reply::new(201, json!(format!("Flavor {flavor} created."))))
        }
        Action::FlavorUpdate => flavors::update(ctx, &flavor, &flavor_body(request))
            .await
            .map(ok),
        Action::FlavorDelete => flavors::delete(ctx, &flavor)
            .await
            .map(|()| Reply::new(204, json!(format!("Flavor {flavor} removed.")))),
        other => Ok(Reply::error(
            400,
            format!("{} is not a valid action", other.name()),
        )),
    }
}

fn ok(body: Value) -> Reply {
    Reply::new(200, body)
}

fn listing(request: &Request) -> Listing {
    Listing {
        marker: request
            .field("marker")
            .and_then(Value::as_str)
            .map(str::to_string),
        limit: request.field("limit").and_then(Value::as_i64),
        detailed: request.field("detailed").and_then(Value::as_bool),
    }
}

fn document(body: Map<String, Value>) -> Payload {
    Payload::Read(Bytes::from(Value::Object(body).to_string()))
}

/// The named fields of the request body, as a REST body.
fn fields(request: &Request, names: &[&str]) -> Payload {
    Payload::Read(Bytes::from(request.fields(names).to_string()))
}

/// A flavor body: `pool_list`, or the one pool of Zaqar's `pool_name`.
fn flavor_body(request: &Request) -> Payload {
    let mut body = Map::new();
    match (request.field("pool_list"), request.field("pool_name")) {
        (Some(list), _) => {
            body.insert("pool_list".into(), list.clone());
        }
        (None, Some(pool)) => {
            body.insert("pool_list".into(), json!([pool]));
        }
        (None, None) => {}
    }
    if let Some(capabilities) = request.field("capabilities") {
        body.insert("capabilities".into(), capabilities.clone());
    }
    document(body)
}
