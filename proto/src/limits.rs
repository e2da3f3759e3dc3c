//! The limits of the API (Zaqar's defaults), shared by every role that checks input.

use serde::{Deserialize, Serialize};

use crate::ZaqarError;

/// Configurable limits; `Limits::default()` gives Zaqar's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Longest queue name, in characters.
    pub max_queue_name_length: usize,
    /// Longest project id, in characters.
    pub max_project_id_length: usize,
    /// Largest page of queues, messages or subscriptions.
    pub max_page_size: u32,
    /// Default page size.
    pub default_page_size: u32,
    /// Most messages taken by one claim or pop.
    pub max_messages_per_claim_or_pop: u32,
    /// Most messages in one post; 0 for no limit but the size of the post (as Zaqar).
    pub max_messages_per_post: u32,
    /// Largest queue metadata document, in bytes.
    pub max_queue_metadata: usize,
    /// Largest post request body, in bytes (`_max_messages_post_size` default).
    pub max_messages_post_size: usize,
    pub max_message_ttl: u32,
    pub min_message_ttl: u32,
    pub default_message_ttl: u32,
    pub max_message_delay: u32,
    pub default_message_delay: u32,
    pub max_claim_ttl: u32,
    pub min_claim_ttl: u32,
    pub default_claim_ttl: u32,
    pub max_claim_grace: u32,
    pub min_claim_grace: u32,
    pub default_claim_grace: u32,
    pub min_subscription_ttl: u32,
    pub default_subscription_ttl: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_queue_name_length: 64,
            max_project_id_length: 256,
            max_page_size: 20,
            default_page_size: 10,
            max_messages_per_claim_or_pop: 20,
            max_messages_per_post: 0,
            max_queue_metadata: 64 * 1024,
            max_messages_post_size: 256 * 1024,
            max_message_ttl: 1_209_600,
            min_message_ttl: 60,
            default_message_ttl: 3600,
            max_message_delay: 900,
            default_message_delay: 0,
            max_claim_ttl: 43_200,
            min_claim_ttl: 60,
            default_claim_ttl: 300,
            max_claim_grace: 43_200,
            min_claim_grace: 60,
            default_claim_grace: 60,
            min_subscription_ttl: 60,
            default_subscription_ttl: 3600,
        }
    }
}

/// The limits an operator sets for one project through the catalog's admin API
/// (`zaqar admin project-limits set`). Each field that is present replaces, for that
/// project, what the api-nodes' `[project_limits]` says; an absent one leaves it.
/// The catalog keeps them as JSON (`ProjectLimitsSpec::limits_json`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectLimitOverrides {
    /// Sustained requests per second of the project, per api-node; 0 for no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<f64>,
    /// Requests the project may make at once after being idle; 0 for one second's worth.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Most queues of the project; 0 for no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_queues: Option<u64>,
    /// Most messages in one queue of the project; 0 for no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_messages_per_queue: Option<u64>,
    /// Most bytes of message bodies in one queue of the project; 0 for no limit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes_per_queue: Option<u64>,
}

impl ProjectLimitOverrides {
    /// The fields, as JSON names them.
    pub const FIELDS: [&'static str; 5] = [
        "requests_per_second",
        "burst",
        "max_queues",
        "max_messages_per_queue",
        "max_bytes_per_queue",
    ];

    /// Parses and checks limits to store: an object of [`Self::FIELDS`] only, with a
    /// finite rate of at least 0. (Reading what the catalog stored, use
    /// [`Self::from_stored_json`], which a newer build's fields do not fail.)
    pub fn from_json(json: &str) -> Result<ProjectLimitOverrides, ZaqarError> {
        let invalid = |why: String| {
            ZaqarError::bad_request(format!("invalid project limits {json:?}: {why}"))
        };
        let value: serde_json::Value =
            serde_json::from_str(json).map_err(|err| invalid(err.to_string()))?;
        let Some(object) = value.as_object() else {
            return Err(invalid("not a JSON object".into()));
        };
        if let Some(unknown) = object
            .keys()
            .find(|key| !Self::FIELDS.contains(&key.as_str()))
        {
            return Err(invalid(format!(
                "unknown field {unknown:?}, expected one of {}",
                Self::FIELDS.join(", ")
            )));
        }
        let overrides: ProjectLimitOverrides =
            serde_json::from_value(value).map_err(|err| invalid(err.to_string()))?;
        overrides.checked()
    }

    /// These limits if their values are valid: a finite rate of at least 0 (JSON
    /// would write any other as `null`, which means "unset").
    pub fn checked(self) -> Result<ProjectLimitOverrides, ZaqarError> {
        if let Some(rate) = self.requests_per_second {
            if !(rate.is_finite() && rate >= 0.0) {
                return Err(ZaqarError::bad_request(format!(
                    "invalid requests_per_second {rate}: a number of at least 0"
                )));
            }
        }
        Ok(self)
    }

    /// These limits, with each field they leave unset taken from `under`.
    pub fn or(&self, under: &ProjectLimitOverrides) -> ProjectLimitOverrides {
        ProjectLimitOverrides {
            requests_per_second: self.requests_per_second.or(under.requests_per_second),
            burst: self.burst.or(under.burst),
            max_queues: self.max_queues.or(under.max_queues),
            max_messages_per_queue: self.max_messages_per_queue.or(under.max_messages_per_queue),
            max_bytes_per_queue: self.max_bytes_per_queue.or(under.max_bytes_per_queue),
        }
    }

    /// Limits as the catalog stored them; fields this build does not know are skipped.
    pub fn from_stored_json(json: &str) -> Result<ProjectLimitOverrides, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// The JSON the catalog keeps (only the fields that are set).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain fields serialize")
    }

    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        *self == ProjectLimitOverrides::default()
    }
}

/// Whether `name` is a valid queue (or pool, flavor) name: 1..=max chars of `[a-zA-Z0-9_.-]`.
pub fn is_valid_name(name: &str, max_len: usize) -> bool {
    !name.is_empty()
        && name.len() <= max_len
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Marks the project that holds a project's topics (`/v2/topics`): U+FFFF, a
/// Unicode noncharacter, "permanently reserved for internal use". Client project
/// ids may not contain it (the api-node refuses them), so no client project can
/// name a topic namespace. See `zaqar_api_node::operations::topics`.
pub const TOPIC_NAMESPACE_MARK: char = '\u{FFFF}';

/// The project under which the pool-nodes and the catalog keep the topics of
/// `project`, stored as queues.
pub fn topic_namespace(project: &str) -> String {
    format!("{project}{TOPIC_NAMESPACE_MARK}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_names_follow_zaqar_rules() {
        assert!(is_valid_name("fizbit-1.2_x", 64));
        assert!(!is_valid_name("", 64));
        assert!(!is_valid_name("has space", 64));
        assert!(!is_valid_name("ünïcode", 64));
        assert!(!is_valid_name(&"a".repeat(65), 64));
        assert!(is_valid_name(&"a".repeat(64), 64));
    }

    #[test]
    fn project_limit_overrides_round_trip_and_refuse_bad_values() {
        let overrides =
            ProjectLimitOverrides::from_json(r#"{"max_queues": 5, "burst": 2}"#).expect("valid");
        assert_eq!(overrides.max_queues, Some(5));
        assert_eq!(overrides.burst, Some(2));
        assert_eq!(overrides.requests_per_second, None);
        assert_eq!(overrides.to_json(), r#"{"burst":2,"max_queues":5}"#);
        assert!(ProjectLimitOverrides::from_json("{}").unwrap().is_empty());
        let newer = r#"{"max_queues": 5, "max_bytes_per_day": 9}"#;
        assert!(ProjectLimitOverrides::from_json(newer).is_err());
        let stored = ProjectLimitOverrides::from_stored_json(newer).unwrap();
        assert_eq!(stored.max_queues, Some(5));
        // FIELDS names every field: a value of each serializes under those names.
        let full = ProjectLimitOverrides {
            requests_per_second: Some(1.0),
            burst: Some(1),
            max_queues: Some(1),
            max_messages_per_queue: Some(1),
            max_bytes_per_queue: Some(1),
        };
        let value: serde_json::Value = serde_json::from_str(&full.to_json()).unwrap();
        let names: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(names.len(), ProjectLimitOverrides::FIELDS.len());
        assert!(names
            .iter()
            .all(|name| ProjectLimitOverrides::FIELDS.contains(name)));
        let under = ProjectLimitOverrides {
            burst: Some(9),
            max_queues: Some(9),
            ..ProjectLimitOverrides::default()
        };
        let merged = stored.or(&under);
        assert_eq!((merged.max_queues, merged.burst), (Some(5), Some(9)));
        for bad in [
            r#"{"max_queue": 5}"#,
            r#"{"max_queues": -1}"#,
            r#"{"requests_per_second": -0.5}"#,
            r#"[1]"#,
            "",
        ] {
            let err = ProjectLimitOverrides::from_json(bad).unwrap_err();
            assert_eq!(err.code, crate::ErrorCode::BadRequest, "{bad}");
        }
    }

    #[test]
    fn topic_namespaces_are_not_client_projects() {
        let namespace = topic_namespace("acme");
        assert_ne!(namespace, "acme");
        assert!(namespace.starts_with("acme"));
        assert!(namespace.contains(TOPIC_NAMESPACE_MARK));
        assert!(!namespace.chars().any(char::is_control));
    }
}
