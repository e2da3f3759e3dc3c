//! The catalog's documents: their keys and their conversion to the catalog's types.

use mongodb::bson::Document;
use zaqar_proto::mongo::{int, text};
use zaqar_proto::ZaqarError;

use crate::backend::CatalogResult;
use crate::model::{FlavorSpec, PoolSpec, ProjectLimitsSpec};

/// The `_id` of a placement: length-prefixed, so no two (project, queue) pairs
/// share one, and the feed can tell both from a deleted placement's key.
pub(crate) fn placement_key(project: &str, queue: &str) -> String {
    format!("{}:{project}/{queue}", project.len())
}

pub(crate) fn pool_from_doc(doc: &Document) -> PoolSpec {
    PoolSpec {
        name: text(doc, "_id"),
        weight: u32::try_from(int(doc, "w")).unwrap_or(0),
        flavor: text(doc, "g"),
        uri: text(doc, "u"),
        endpoint: text(doc, "e"),
        options_json: text(doc, "o"),
    }
}

pub(super) fn pool_not_found(name: &str) -> ZaqarError {
    ZaqarError::not_found(format!("pool {name:?} does not exist"))
}

/// A regular expression matching text that contains `literal`.
pub(super) fn contains(literal: &str) -> String {
    let mut pattern = String::with_capacity(literal.len() * 2);
    for c in literal.chars() {
        if !c.is_alphanumeric() {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
}

pub(super) fn flavor_from_doc(doc: &Document) -> CatalogResult<FlavorSpec> {
    let name = text(doc, "_id");
    let capabilities = serde_json::from_str(&text(doc, "c")).map_err(|err| {
        ZaqarError::internal(format!("unexpected capabilities of flavor {name:?}: {err}"))
    })?;
    Ok(FlavorSpec { name, capabilities })
}

pub(super) fn project_limits_from_doc(doc: &Document) -> ProjectLimitsSpec {
    ProjectLimitsSpec {
        project: text(doc, "_id"),
        limits_json: text(doc, "l"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_filter_matches_literally() {
        assert_eq!(contains("a.b-c"), "a\\.b\\-c");
        assert_ne!(placement_key("a/b", "c"), placement_key("a", "b/c"));
    }
}
