//! `/v2/flavors` (admin): flavors as Zaqar 23 shows them. A flavor's `pool_list` is
//! the pools whose flavor is its name, and its `capabilities` are those of its
//! pools' store (Zaqar ignores `capabilities` given on PUT, and so do we).
//!
//! Zaqar keeps flavors per project; the catalog keeps them global, like pools
//! (which name their flavor without a project anyway).

use serde_json::{json, Map, Value};
use zaqar_proto::admin_pb as pb;
use zaqar_proto::{ErrorCode, ZaqarError};

use super::admin_listing::{
    listing_body, not_found_as, page, parse_object, require_admin, Listing,
};
use super::{invalid_body, Context, Payload};

/// The path of a flavor.
pub fn path(flavor: &str) -> String {
    format!("/v2/flavors/{flavor}")
}

/// A flavor as `GET /v2/flavors/{f}` renders it.
pub fn render(flavor: &pb::Flavor) -> Value {
    json!({
        "name": flavor.name,
        "capabilities": flavor.capabilities,
        "pool_list": flavor.pool_list,
        "href": path(&flavor.name),
    })
}

/// A flavor as a listing shows it: `pool_list` only when it has pools,
/// `capabilities` only when `detailed`.
fn render_listed(flavor: &pb::Flavor, detailed: bool) -> Value {
    let mut item = Map::new();
    item.insert("name".into(), json!(flavor.name));
    item.insert("href".into(), json!(path(&flavor.name)));
    if !flavor.pool_list.is_empty() {
        item.insert("pool_list".into(), json!(flavor.pool_list));
    }
    if detailed {
        item.insert("capabilities".into(), json!(flavor.capabilities));
    }
    Value::Object(item)
}

/// `GET /v2/flavors`: a page of flavors by name.
pub async fn list(ctx: &Context, listing: &Listing) -> Result<Value, ZaqarError> {
    require_admin(ctx)?;
    let size = listing.page_size()?;
    let flavors = ctx.services.admin.list_flavors().await?;
    let flavors = page(flavors, |f| &f.name, &listing.marker, size);
    let last = flavors.last().map(|f| f.name.clone());
    let items = flavors
        .iter()
        .map(|f| render_listed(f, listing.detailed()))
        .collect();
    Ok(listing_body(
        "/v2/flavors",
        "flavors",
        items,
        last.as_deref(),
        listing,
        true,
    ))
}

/// `GET /v2/flavors/{flavor}`.
pub async fn get(ctx: &Context, name: &str) -> Result<Value, ZaqarError> {
    require_admin(ctx)?;
    let flavor = ctx.services.admin.get_flavor(name).await;
    Ok(render(&flavor.map_err(not_found_as("Flavor", name))?))
}

/// The `pool_list` of a flavor body (checked as Zaqar's schema: only `pool_list`
/// and `capabilities`, `pool_list` an array, `capabilities` an object).
fn pool_list(body: &Map<String, Value>) -> Result<Vec<String>, ZaqarError> {
    if let Some(key) = body
        .keys()
        .find(|k| !["pool_list", "capabilities"].contains(&k.as_str()))
    {
        return Err(invalid_body(format!(
            "Additional properties are not allowed ('{key}' was unexpected)"
        )));
    }
    if let Some(caps) = body.get("capabilities").filter(|c| !c.is_object()) {
        return Err(invalid_body(format!("{caps} is not of type 'object'")));
    }
    let Some(list) = body.get("pool_list") else {
        return Err(invalid_body("'pool_list' is a required property"));
    };
    let items = list
        .as_array()
        .ok_or_else(|| invalid_body(format!("{list} is not of type 'array'")))?;
    items
        .iter()
        .map(|item| {
            item.as_str()
                .map(str::to_string)
                .ok_or_else(|| invalid_body(format!("{item} is not of type 'string'")))
        })
        .collect()
}

/// Writes the flavor; Zaqar's 400 titles for an empty or unknown pool list.
async fn write(
    ctx: &Context,
    name: &str,
    pools: Vec<String>,
    replace: bool,
) -> Result<pb::Flavor, ZaqarError> {
    let unable = if replace {
        "updatefail"
    } else {
        "Unable to create"
    };
    if pools.is_empty() {
        return Err(ZaqarError::titled(
            ErrorCode::BadRequest,
            "Unable to create",
            "Bad Request",
        ));
    }
    let put = pb::PutFlavorRequest {
        name: name.to_string(),
        pool_list: pools,
        replace,
    };
    ctx.services
        .admin
        .put_flavor(put)
        .await
        .map_err(|err| match err.code {
            ErrorCode::BadRequest => {
                ZaqarError::titled(ErrorCode::BadRequest, unable, err.description)
            }
            ErrorCode::NotFound => ZaqarError::not_found(format!("Flavor {name} does not exist")),
            _ => err,
        })
}

/// `PUT /v2/flavors/{flavor}`: creates the flavor (or adds pools to it); its pools
/// join it.
pub async fn put(ctx: &Context, name: &str, payload: &Payload) -> Result<(), ZaqarError> {
    require_admin(ctx)?;
    let pools = pool_list(&parse_object(payload)?)?;
    write(ctx, name, pools, false).await?;
    Ok(())
}

/// `PATCH /v2/flavors/{flavor}`: makes `pool_list` the flavor's pools; returns it.
pub async fn update(ctx: &Context, name: &str, payload: &Payload) -> Result<Value, ZaqarError> {
    require_admin(ctx)?;
    let body = parse_object(payload)?;
    if !body.contains_key("pool_list") {
        return Err(invalid_body("`pool_list` needs to be specified"));
    }
    let pools = pool_list(&body)?;
    let flavor = write(ctx, name, pools, true).await?;
    Ok(render(&flavor))
}

/// `DELETE /v2/flavors/{flavor}`: its pools return to the default flavor; done when
/// there is no such flavor.
pub async fn delete(ctx: &Context, name: &str) -> Result<(), ZaqarError> {
    require_admin(ctx)?;
    match ctx.services.admin.remove_flavor(name).await {
        Err(err) if err.code != ErrorCode::NotFound => Err(err),
        _ => Ok(()),
    }
}
