//! What `/v2/pools` and `/v2/flavors` share: the admin role check, body parsing,
//! and Zaqar's paged listing (`marker`, `limit`, `detailed`, the `next` link).

use serde_json::{json, Map, Value};
use zaqar_proto::{ErrorCode, ZaqarError};

use super::{check_limit, invalid_body, not_authorized, Context, Payload};

/// Zaqar's page size of pools and flavors when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 10;
/// The largest page (Zaqar's `max_pools_per_page` / `max_flavors_per_page`).
pub const MAX_LIMIT: u32 = 20;

/// A listing request as the transport parsed it; `None` for parameters not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub marker: Option<String>,
    pub limit: Option<i64>,
    pub detailed: Option<bool>,
}

impl Listing {
    pub fn detailed(&self) -> bool {
        self.detailed.unwrap_or(false)
    }

    /// Checks `limit` and returns the page size.
    pub fn page_size(&self) -> Result<usize, ZaqarError> {
        check_limit(
            self.limit,
            MAX_LIMIT,
            "Limit must be at least 1 and no greater than {0}.",
        )?;
        Ok(self.limit.map_or(DEFAULT_LIMIT as usize, |l| l as usize))
    }
}

/// 403 unless the caller has the admin role (Zaqar's `acl.enforce`, checked first).
pub fn require_admin(ctx: &Context) -> Result<(), ZaqarError> {
    if ctx.identity.is_admin() {
        Ok(())
    } else {
        Err(not_authorized())
    }
}

/// Zaqar's `wsgi_utils.load`: the body must be a JSON object.
pub fn parse_object(payload: &Payload) -> Result<Map<String, Value>, ZaqarError> {
    let unparsable = || invalid_body("JSON could not be parsed.");
    let bytes = match payload {
        Payload::Read(bytes) => bytes,
        Payload::Absent => return Err(unparsable()),
        Payload::TooLarge(size) => return Err(super::json::too_large(*size)),
    };
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(invalid_body("The request body must be a JSON object.")),
        Err(_) => Err(unparsable()),
    }
}

/// The items of a page after `marker` (sorted by name), at most `size`.
pub fn page<T>(
    items: Vec<T>,
    name: impl Fn(&T) -> &str,
    marker: &Option<String>,
    size: usize,
) -> Vec<T> {
    items
        .into_iter()
        .filter(|item| match marker.as_deref() {
            Some(marker) => name(item) > marker,
            None => true,
        })
        .take(size)
        .collect()
}

/// `{"<key>": items, "links": [...]}` with Zaqar's `next` link: the query
/// parameters given (in Zaqar's order) with `marker` set to the last item, or no
/// link for an empty page. `detailed_last` is the flavors' order (detailed after
/// the marker); pools keep it before.
pub fn listing_body(
    path: &str,
    key: &str,
    items: Vec<Value>,
    last: Option<&str>,
    listing: &Listing,
    detailed_last: bool,
) -> Value {
    let links = match last {
        None => json!([]),
        Some(last) => {
            let mut params: Vec<(&str, String)> = Vec::new();
            let detailed = listing.detailed.map(|d| ("detailed", d.to_string()));
            if listing.marker.is_some() {
                params.push(("marker", last.to_string()));
            }
            if let Some(limit) = listing.limit {
                params.push(("limit", limit.to_string()));
            }
            if !detailed_last {
                params.extend(detailed.clone());
            }
            if listing.marker.is_none() {
                params.push(("marker", last.to_string()));
            }
            if detailed_last {
                params.extend(detailed);
            }
            let query = serde_urlencoded::to_string(&params).unwrap_or_default();
            json!([{"rel": "next", "href": format!("{path}?{query}")}])
        }
    };
    let mut body = Map::new();
    body.insert("links".into(), links);
    body.insert(key.into(), Value::Array(items));
    Value::Object(body)
}

/// The catalog's "no such thing" as Zaqar words it (`Pool p does not exist`).
pub fn not_found_as<'a>(
    what: &'static str,
    name: &'a str,
) -> impl Fn(ZaqarError) -> ZaqarError + 'a {
    move |err| {
        if err.code == ErrorCode::NotFound {
            ZaqarError::not_found(format!("{what} {name} does not exist"))
        } else {
            err
        }
    }
}
