//! `/v2/pools` (admin): pools as Zaqar 23 shows them, kept in the catalog through
//! its AdminService.
//!
//! A zaqar-rs pool also has the gRPC endpoint of the pool-node serving it, which
//! Zaqar's API has no field for: a pool-node registers it itself, and `PUT` keeps
//! it; a pool no pool-node registered takes it from `options.endpoint`. Where Zaqar
//! checks that it can connect to `uri`, api-node (which links no store client)
//! checks that the URI names a store a pool-node serves.

use serde_json::{json, Map, Value};
use zaqar_proto::admin_pb as pb;
use zaqar_proto::uri::redact;
use zaqar_proto::uri::StoreKind;
use zaqar_proto::{ErrorCode, ZaqarError};

use super::admin_listing::{
    listing_body, not_found_as, page, parse_object, require_admin, Listing,
};
use super::{invalid_body, Context, Payload};

/// Zaqar's limit on `uri` and `flavor` lengths.
const MAX_FIELD_LENGTH: usize = 255;

/// The path of a pool.
pub fn path(pool: &str) -> String {
    format!("/v2/pools/{pool}")
}

/// A pool as Zaqar renders it, its URI without password; `options` only when `detailed`.
pub fn render(pool: &pb::Pool, detailed: bool) -> Value {
    let mut body = Map::new();
    body.insert("name".into(), json!(pool.name));
    body.insert("uri".into(), json!(redact(&pool.uri)));
    body.insert("weight".into(), json!(pool.weight));
    let flavor = (!pool.flavor.is_empty()).then_some(pool.flavor.as_str());
    body.insert("flavor".into(), json!(flavor));
    if detailed {
        let options: Value = serde_json::from_str(&pool.options_json).unwrap_or(json!({}));
        body.insert("options".into(), options);
    }
    body.insert("href".into(), json!(path(&pool.name)));
    Value::Object(body)
}

/// `GET /v2/pools`: a page of pools by name.
pub async fn list(ctx: &Context, listing: &Listing) -> Result<Value, ZaqarError> {
    require_admin(ctx)?;
    let size = listing.page_size()?;
    let pools = ctx.services.admin.list_pools().await?;
    let pools = page(pools, |p| &p.name, &listing.marker, size);
    let last = pools.last().map(|p| p.name.clone());
    let items = pools
        .iter()
        .map(|p| render(p, listing.detailed()))
        .collect();
    Ok(listing_body(
        "/v2/pools",
        "pools",
        items,
        last.as_deref(),
        listing,
        false,
    ))
}

/// `GET /v2/pools/{pool}`.
pub async fn get(ctx: &Context, name: &str, detailed: bool) -> Result<Value, ZaqarError> {
    require_admin(ctx)?;
    let pool = ctx.services.admin.get_pool(name).await;
    Ok(render(&pool.map_err(not_found_as("Pool", name))?, detailed))
}

/// The fields of a pool body, each checked as Zaqar's JSON schema does.
#[derive(Default)]
struct PoolFields {
    weight: Option<i64>,
    uri: Option<String>,
    flavor: Option<String>,
    options: Option<Map<String, Value>>,
}

fn fields(body: &Map<String, Value>) -> Result<PoolFields, ZaqarError> {
    let mut fields = PoolFields::default();
    if let Some(weight) = body.get("weight").filter(|v| !v.is_null()) {
        let weight = weight
            .as_i64()
            .ok_or_else(|| invalid_body(format!("{weight} is not of type 'integer'")))?;
        if !(0..=i64::from(u32::MAX)).contains(&weight) {
            return Err(invalid_body(format!(
                "{weight} is out of range: the weight is from 0 to {}",
                u32::MAX
            )));
        }
        fields.weight = Some(weight);
    }
    for (key, slot) in [("uri", &mut fields.uri), ("flavor", &mut fields.flavor)] {
        if let Some(value) = body.get(key).filter(|v| !v.is_null()) {
            let text = value
                .as_str()
                .ok_or_else(|| invalid_body(format!("{value} is not of type 'string'")))?;
            if text.chars().count() > MAX_FIELD_LENGTH {
                return Err(invalid_body(format!(
                    "'{key}' is too long: at most {MAX_FIELD_LENGTH} characters"
                )));
            }
            *slot = Some(text.to_string());
        }
    }
    if let Some(options) = body.get("options").filter(|v| !v.is_null()) {
        let options = options
            .as_object()
            .ok_or_else(|| invalid_body(format!("{options} is not of type 'object'")))?;
        fields.options = Some(options.clone());
    }
    if let Some(uri) = &fields.uri {
        if StoreKind::of(uri).is_err() {
            return Err(invalid_body(format!("cannot connect to {}", redact(uri))));
        }
    }
    Ok(fields)
}

/// `PUT /v2/pools/{pool}`: creates the pool or replaces its weight, URI, flavor and
/// options (keeping the pool-node endpoint it has).
pub async fn put(ctx: &Context, name: &str, payload: &Payload) -> Result<(), ZaqarError> {
    require_admin(ctx)?;
    let body = parse_object(payload)?;
    if let Some(key) = body
        .keys()
        .find(|k| !["weight", "uri", "flavor", "options"].contains(&k.as_str()))
    {
        return Err(invalid_body(format!(
            "Additional properties are not allowed ('{key}' was unexpected)"
        )));
    }
    for required in ["uri", "weight"] {
        if !body.contains_key(required) {
            return Err(invalid_body(format!("'{required}' is a required property")));
        }
    }
    let fields = fields(&body)?;
    let (Some(uri), Some(weight)) = (fields.uri, fields.weight) else {
        return Err(invalid_body("'uri' and 'weight' may not be null"));
    };
    let options = fields.options.unwrap_or_default();
    let given_endpoint = options.get("endpoint").and_then(Value::as_str);
    let endpoint = match ctx.services.admin.get_pool(name).await {
        Ok(existing) => given_endpoint.unwrap_or(&existing.endpoint).to_string(),
        Err(err) if err.code == ErrorCode::NotFound => match given_endpoint {
            Some(endpoint) => endpoint.to_string(),
            None => {
                return Err(invalid_body(format!(
                    "cannot connect to {}: no pool-node serves pool {name}; start one \
                     with `zaqar pool-node --name {name}` or give options.endpoint",
                    redact(&uri)
                )))
            }
        },
        Err(err) => return Err(err),
    };
    let pool = pb::Pool {
        name: name.to_string(),
        weight,
        flavor: fields.flavor.unwrap_or_default(),
        uri,
        endpoint,
        options_json: Value::Object(options).to_string(),
    };
    ctx.services.admin.add_pool(pool).await?;
    Ok(())
}

/// `PATCH /v2/pools/{pool}`: changes the fields given; returns the pool.
pub async fn update(ctx: &Context, name: &str, payload: &Payload) -> Result<Value, ZaqarError> {
    require_admin(ctx)?;
    let body = parse_object(payload)?;
    let expected = ["weight", "uri", "flavor", "options"];
    if !expected.iter().any(|key| body.contains_key(*key)) {
        return Err(invalid_body(
            "One of `uri`, `weight`, `flavor`, or `options` needs to be specified",
        ));
    }
    let fields = fields(&body)?;
    let endpoint = fields
        .options
        .as_ref()
        .and_then(|o| o.get("endpoint"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let update = pb::PoolUpdate {
        name: name.to_string(),
        weight: fields.weight,
        uri: fields.uri,
        flavor: fields.flavor,
        endpoint,
        options_json: fields.options.map(|o| Value::Object(o).to_string()),
    };
    let pool = ctx.services.admin.update_pool(update).await;
    Ok(render(&pool.map_err(not_found_as("Pool", name))?, false))
}

/// `DELETE /v2/pools/{pool}`: done when there is no such pool. Zaqar refuses to
/// delete a pool of a flavor (403 "Unable to delete"); so do we, and also a pool
/// that still holds queues (which Zaqar would orphan).
pub async fn delete(ctx: &Context, name: &str) -> Result<(), ZaqarError> {
    require_admin(ctx)?;
    let pool = match ctx.services.admin.get_pool(name).await {
        Ok(pool) => pool,
        Err(err) if err.code == ErrorCode::NotFound => return Ok(()),
        Err(err) => return Err(err),
    };
    let unable = |description: String| {
        ZaqarError::titled(ErrorCode::Forbidden, "Unable to delete", description)
    };
    if !pool.flavor.is_empty() && ctx.services.admin.get_flavor(&pool.flavor).await.is_ok() {
        return Err(unable(format!(
            "This pool is used by flavors {}; It cannot be deleted.",
            pool.flavor
        )));
    }
    match ctx.services.admin.remove_pool(name).await {
        Ok(()) => Ok(()),
        Err(err) if err.code == ErrorCode::NotFound => Ok(()),
        Err(err) if err.code == ErrorCode::Conflict => Err(unable(err.description)),
        Err(err) => Err(err),
    }
}
