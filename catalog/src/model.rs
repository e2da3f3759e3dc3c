//! The catalog's domain types (pools, flavors, placements, queue listings, project limits)
//! and their validation.
//!
//! Every backend validates its input with these functions, so that the same request
//! is rejected the same way whichever backend holds the catalog.

use serde::{Deserialize, Serialize};
use zaqar_proto::limits::{is_valid_name, ProjectLimitOverrides};
use zaqar_proto::ZaqarError;

/// Longest pool, flavor or queue name the catalog stores. api-node applies the
/// (smaller, configurable) API limits before a request gets here.
pub const MAX_NAME_LENGTH: usize = 256;
/// Longest project id the catalog stores.
pub const MAX_PROJECT_LENGTH: usize = 256;
/// Largest page of [`list_queues`](crate::CatalogBackend::list_queues).
pub const MAX_LIST_LIMIT: u32 = 1000;

/// A pool: one message store and the pool-node that serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    /// Unique name, `[a-zA-Z0-9_.-]+`.
    pub name: String,
    /// Relative share of new queues; 0 takes no new queues.
    pub weight: u32,
    /// The pool's flavor: queues of flavor `F` go to the pools whose flavor is `F`;
    /// empty for the default (stored as `group`, the name of builds before 2026-12-07).
    #[serde(rename = "group", alias = "flavor")]
    pub flavor: String,
    /// The URI of the store behind the pool (`redis://`, `sqlite://`, ...).
    pub uri: String,
    /// gRPC endpoint of the pool-node, `http://host:port` or `https://host:port`.
    pub endpoint: String,
    /// A JSON object of pool options; `{}` when none.
    pub options_json: String,
}

impl PoolSpec {
    /// Checks the pool and normalises empty options to `{}`.
    pub fn validated(mut self) -> Result<Self, ZaqarError> {
        if !is_valid_name(&self.name, MAX_NAME_LENGTH) {
            return Err(ZaqarError::bad_request(format!(
                "invalid pool name {:?}: 1 to {MAX_NAME_LENGTH} characters of [a-zA-Z0-9_.-]",
                self.name
            )));
        }
        validate_flavor(&self.flavor, "pool flavor")?;
        if self.uri.trim().is_empty() {
            return Err(ZaqarError::bad_request(format!(
                "pool {:?} has no store URI",
                self.name
            )));
        }
        let endpoint_ok = ["http://", "https://"].iter().any(|scheme| {
            self.endpoint
                .strip_prefix(scheme)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
        });
        if !endpoint_ok {
            return Err(ZaqarError::bad_request(format!(
                "invalid endpoint {:?} of pool {:?}: expected http://host:port or https://host:port",
                self.endpoint, self.name
            )));
        }
        if self.options_json.trim().is_empty() {
            self.options_json = "{}".to_string();
        } else {
            let options: serde_json::Value = serde_json::from_str(&self.options_json)
                .map_err(|err| ZaqarError::bad_request(format!("invalid pool options: {err}")))?;
            if !options.is_object() {
                return Err(ZaqarError::bad_request(
                    "pool options must be a JSON object",
                ));
            }
        }
        Ok(self)
    }
}

/// A flavor: a named set of pools with the capabilities its pools offer.
///
/// Its pools are the pools whose `flavor` is the flavor's name (Zaqar 23 keeps the
/// flavor on the pool the same way and derives a flavor's `pool_list` from it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlavorSpec {
    /// Unique name, `[a-zA-Z0-9_.-]+`.
    pub name: String,
    /// What the flavor's stores offer (`FIFO`, `CLAIMS`, ...), as recorded when the
    /// flavor was last written.
    pub capabilities: Vec<String>,
}

impl FlavorSpec {
    /// Checks the flavor's name and capabilities.
    pub fn validated(self) -> Result<Self, ZaqarError> {
        validate_flavor_name(&self.name)?;
        if let Some(bad) = self
            .capabilities
            .iter()
            .find(|cap| !is_valid_name(cap, MAX_NAME_LENGTH))
        {
            return Err(ZaqarError::bad_request(format!(
                "invalid capability {bad:?} of flavor {:?}",
                self.name
            )));
        }
        Ok(self)
    }
}

/// Zaqar's answer for a flavor that does not exist.
pub fn flavor_not_found(name: &str) -> ZaqarError {
    ZaqarError::not_found(format!("Flavor {name} does not exist"))
}

/// The limits an operator set for one project (see [`ProjectLimitOverrides`]), kept as
/// the JSON of the fields that are set, so that the catalog stores them whatever fields
/// later builds add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectLimitsSpec {
    pub project: String,
    /// A JSON object, as [`ProjectLimitOverrides::to_json`] writes it.
    pub limits_json: String,
}

impl ProjectLimitsSpec {
    /// Checks the project id and the limits, and writes the limits in their one form.
    pub fn validated(self) -> Result<Self, ZaqarError> {
        validate_project(&self.project)?;
        let overrides = ProjectLimitOverrides::from_json(&self.limits_json)?;
        Ok(ProjectLimitsSpec {
            project: self.project,
            limits_json: overrides.to_json(),
        })
    }
}

/// The answer for a project without limits of its own.
pub fn project_limits_not_found(project: &str) -> ZaqarError {
    ZaqarError::not_found(format!("Project {project} has no limits of its own"))
}

/// Checks the name of a flavor.
pub fn validate_flavor_name(name: &str) -> Result<(), ZaqarError> {
    if !is_valid_name(name, MAX_NAME_LENGTH) {
        return Err(ZaqarError::bad_request(format!(
            "invalid flavor name {name:?}: 1 to {MAX_NAME_LENGTH} characters of [a-zA-Z0-9_.-]"
        )));
    }
    Ok(())
}

/// The capabilities of the store behind `uri`, named as Zaqar 23 names its drivers'
/// (`redis`: FIFO, CLAIMS, AOD, HIGH_THROUGHPUT; `mongodb`: all five). Our embedded
/// SQLite store keeps FIFO order and claims; it reports FIFO, CLAIMS and AOD.
pub fn store_capabilities(uri: &str) -> Vec<String> {
    let scheme = uri.split("://").next().unwrap_or_default();
    let caps: &[&str] = match scheme {
        "redis" | "rediss" | "redis+sentinel" | "redis+cluster" => {
            &["FIFO", "CLAIMS", "AOD", "HIGH_THROUGHPUT"]
        }
        "mongodb" | "mongodb+srv" => &["FIFO", "CLAIMS", "DURABILITY", "AOD", "HIGH_THROUGHPUT"],
        "sqlite" => &["FIFO", "CLAIMS", "AOD"],
        _ => &[],
    };
    caps.iter().map(|cap| cap.to_string()).collect()
}

/// Where a queue lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub project: String,
    pub queue: String,
    /// The pool holding the queue.
    pub pool: String,
    /// The endpoint of that pool's pool-node, as last registered; empty if the pool
    /// is unknown.
    pub endpoint: String,
}

impl Placement {
    /// `queue` of `project` on `pool`, whose pool-node is at `endpoint`.
    pub fn new(project: &str, queue: impl Into<String>, pool: String, endpoint: String) -> Self {
        Placement {
            project: project.to_string(),
            queue: queue.into(),
            pool,
            endpoint,
        }
    }
}

/// A page request of [`list_queues`](crate::CatalogBackend::list_queues).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQueues {
    /// Only names after this one (exclusive); empty for the start.
    pub marker: String,
    /// Most queues in the page, at most [`MAX_LIST_LIMIT`]; 0 lists none (only the count).
    pub limit: u32,
    /// Only names that contain this text (case-sensitive); empty for all.
    pub name_filter: String,
    /// Whether to count the matching queues (with a name filter every queue of the
    /// project is looked at); without it `count` is 0.
    pub with_count: bool,
}

/// A page of placed queues.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueuePage {
    /// Sorted by queue name (byte order).
    pub queues: Vec<Placement>,
    /// Queues of the project matching the filter, regardless of marker and limit
    /// (0 unless asked for with `with_count`).
    pub count: u64,
}

/// Checks the name of a pool to look up or remove.
pub fn validate_pool_name(name: &str) -> Result<(), ZaqarError> {
    if !is_valid_name(name, MAX_NAME_LENGTH) {
        return Err(ZaqarError::bad_request(format!(
            "invalid pool name {name:?}: 1 to {MAX_NAME_LENGTH} characters of [a-zA-Z0-9_.-]"
        )));
    }
    Ok(())
}

/// The refusal to remove a pool that still holds `count` queues.
pub fn pool_in_use(name: &str, count: u64) -> ZaqarError {
    let queues = if count == 1 { "queue" } else { "queues" };
    ZaqarError::new(
        zaqar_proto::ErrorCode::Conflict,
        format!("pool {name:?} still holds {count} {queues}; delete or migrate them first"),
    )
}

/// Checks a project id: non-empty, at most [`MAX_PROJECT_LENGTH`] bytes, no control characters.
pub fn validate_project(project: &str) -> Result<(), ZaqarError> {
    if project.is_empty()
        || project.len() > MAX_PROJECT_LENGTH
        || project.chars().any(char::is_control)
    {
        return Err(ZaqarError::bad_request(format!(
            "invalid project id {project:?}: 1 to {MAX_PROJECT_LENGTH} bytes without control characters"
        )));
    }
    Ok(())
}

/// Checks a project id and queue name.
pub fn validate_queue(project: &str, queue: &str) -> Result<(), ZaqarError> {
    validate_project(project)?;
    if !is_valid_name(queue, MAX_NAME_LENGTH) {
        return Err(ZaqarError::bad_request(format!(
            "invalid queue name {queue:?}: 1 to {MAX_NAME_LENGTH} characters of [a-zA-Z0-9_.-]"
        )));
    }
    Ok(())
}

/// Checks a flavor name: empty (the default) or a valid name.
pub fn validate_flavor(flavor: &str, what: &str) -> Result<(), ZaqarError> {
    if !flavor.is_empty() && !is_valid_name(flavor, MAX_NAME_LENGTH) {
        return Err(ZaqarError::bad_request(format!(
            "invalid {what} {flavor:?}: empty or 1 to {MAX_NAME_LENGTH} characters of [a-zA-Z0-9_.-]"
        )));
    }
    Ok(())
}

/// Checks a listing request.
pub fn validate_listing(project: &str, params: &ListQueues) -> Result<(), ZaqarError> {
    validate_project(project)?;
    if params.limit > MAX_LIST_LIMIT {
        return Err(ZaqarError::bad_request(format!(
            "limit {} is larger than {MAX_LIST_LIMIT}",
            params.limit
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use zaqar_proto::ErrorCode;

    #[test]
    fn a_pools_flavor_is_stored_as_group_as_older_builds_stored_it() {
        let pool = PoolSpec {
            name: "p".into(),
            weight: 1,
            flavor: "gold".into(),
            uri: "redis://h:6379/0".into(),
            endpoint: "http://h:7001".into(),
            options_json: "{}".into(),
        };
        let stored = serde_json::to_value(&pool).unwrap();
        assert_eq!(stored["group"], "gold");
        let older: PoolSpec = serde_json::from_value(stored).unwrap();
        assert_eq!(older, pool);
    }

    fn pool() -> PoolSpec {
        PoolSpec {
            name: "pool-1".into(),
            weight: 10,
            flavor: String::new(),
            uri: "redis://127.0.0.1:6379/0".into(),
            endpoint: "http://127.0.0.1:7001".into(),
            options_json: String::new(),
        }
    }

    #[test]
    fn a_valid_pool_gets_empty_options_as_an_object() {
        assert_eq!(pool().validated().unwrap().options_json, "{}");
    }

    #[test]
    fn bad_pools_are_bad_requests() {
        let bad = [
            PoolSpec {
                name: "has space".into(),
                ..pool()
            },
            PoolSpec {
                flavor: "a/b".into(),
                ..pool()
            },
            PoolSpec {
                uri: " ".into(),
                ..pool()
            },
            PoolSpec {
                endpoint: "127.0.0.1:7001".into(),
                ..pool()
            },
            PoolSpec {
                endpoint: "http://".into(),
                ..pool()
            },
            PoolSpec {
                options_json: "[1]".into(),
                ..pool()
            },
            PoolSpec {
                options_json: "{".into(),
                ..pool()
            },
        ];
        for spec in bad {
            let err = spec.clone().validated().unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest, "{spec:?}");
        }
    }

    #[test]
    fn queue_refs_are_checked() {
        assert!(validate_queue("p", "q.1_-").is_ok());
        assert!(validate_queue("", "q").is_err());
        assert!(validate_queue("p\n", "q").is_err());
        assert!(validate_queue("p", "").is_err());
        assert!(validate_queue("p", "q q").is_err());
        assert!(validate_queue(&"p".repeat(MAX_PROJECT_LENGTH + 1), "q").is_err());
    }
}
