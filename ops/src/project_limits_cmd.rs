//! `zaqar admin project-limits`: the limits operators set per project in the catalog
//! (request rate, queues per project, messages and bytes per queue), which every
//! api-node applies over its `[project_limits]` within `refresh_seconds`.

use clap::Subcommand;
use serde_json::{json, Map, Value};
use zaqar_proto::admin_pb as pb;
use zaqar_proto::admin_pb::admin_service_client::AdminServiceClient;
use zaqar_proto::cluster_auth::AuthChannel;
use zaqar_proto::limits::ProjectLimitOverrides;
use zaqar_proto::{ErrorCode, ZaqarError};

use crate::admin_cmd::request;

/// The columns of `list`, after the project.
pub const FIELDS: [&str; 5] = ProjectLimitOverrides::FIELDS;

#[derive(Debug, Clone, Subcommand)]
pub enum ProjectLimitsCommand {
    /// Every project with limits of its own.
    List,
    /// The limits set for one project.
    Get { project: String },
    /// Set some of a project's limits; the others keep their value (with --replace,
    /// they are unset and come from the api-nodes' [project_limits] again).
    Set {
        project: String,
        /// Sustained requests per second, per api-node; 0 for no limit.
        #[arg(long)]
        requests_per_second: Option<f64>,
        /// Requests at once after being idle; 0 for one second's worth.
        #[arg(long)]
        burst: Option<u32>,
        /// Most queues of the project; 0 for no limit.
        #[arg(long)]
        max_queues: Option<u64>,
        /// Most messages in one queue of the project; 0 for no limit.
        #[arg(long)]
        max_messages_per_queue: Option<u64>,
        /// Most bytes of message bodies in one queue of the project; 0 for no limit.
        #[arg(long)]
        max_bytes_per_queue: Option<u64>,
        /// Make the given limits the project's only ones.
        #[arg(long)]
        replace: bool,
    },
    /// Remove a project's limits: the api-nodes' [project_limits] apply again.
    Remove { project: String },
}

type Client = AdminServiceClient<AuthChannel>;

/// Runs one command, as JSON.
pub async fn call(
    client: &mut Client,
    token: Option<&str>,
    command: ProjectLimitsCommand,
) -> Result<Value, ZaqarError> {
    match command {
        ProjectLimitsCommand::List => {
            let reply = client
                .list_project_limits(request(pb::Empty {}, token)?)
                .await?;
            let projects = reply.into_inner().projects;
            Ok(Value::Array(projects.iter().map(limits_json).collect()))
        }
        ProjectLimitsCommand::Get { project } => {
            let id = pb::ProjectId { project };
            let reply = client.get_project_limits(request(id, token)?).await?;
            Ok(limits_json(&reply.into_inner()))
        }
        ProjectLimitsCommand::Set {
            project,
            requests_per_second,
            burst,
            max_queues,
            max_messages_per_queue,
            max_bytes_per_queue,
            replace,
        } => {
            let given = ProjectLimitOverrides {
                requests_per_second,
                burst,
                max_queues,
                max_messages_per_queue,
                max_bytes_per_queue,
            }
            .checked()?;
            if given.is_empty() {
                return Err(ZaqarError::bad_request(format!(
                    "give at least one limit to set: --{}",
                    FIELDS.join(", --").replace('_', "-")
                )));
            }
            let stored_json = if replace {
                given.to_json()
            } else {
                let stored = current(client, token, &project).await?;
                Value::Object(overlay(stored, &given)).to_string()
            };
            let put = pb::ProjectLimits {
                project,
                limits_json: stored_json,
            };
            let reply = client.put_project_limits(request(put, token)?).await?;
            Ok(limits_json(&reply.into_inner()))
        }
        ProjectLimitsCommand::Remove { project } => {
            let id = pb::ProjectId {
                project: project.clone(),
            };
            client.remove_project_limits(request(id, token)?).await?;
            Ok(json!({ "removed": project }))
        }
    }
}

/// The limits set for `project` now, as the catalog keeps them (with the fields of a
/// newer build too); none when it has none.
async fn current(
    client: &mut Client,
    token: Option<&str>,
    project: &str,
) -> Result<Map<String, Value>, ZaqarError> {
    let id = pb::ProjectId {
        project: project.to_string(),
    };
    match client.get_project_limits(request(id, token)?).await {
        Ok(reply) => match serde_json::from_str(&reply.into_inner().limits_json) {
            Ok(Value::Object(stored)) => Ok(stored),
            _ => Err(ZaqarError::internal(
                "the catalog's limits are not a JSON object",
            )),
        },
        Err(status) => {
            let err = ZaqarError::from(status);
            match err.code {
                ErrorCode::NotFound => Ok(Map::new()),
                _ => Err(err),
            }
        }
    }
}

/// `stored` with every field `given` sets replaced, the others kept.
fn overlay(mut stored: Map<String, Value>, given: &ProjectLimitOverrides) -> Map<String, Value> {
    if let Ok(Value::Object(fields)) = serde_json::to_value(given) {
        stored.extend(fields);
    }
    stored
}

/// A project's limits as `zaqar admin` shows them: every field, null when unset.
fn limits_json(limits: &pb::ProjectLimits) -> Value {
    let stored: Value = serde_json::from_str(&limits.limits_json).unwrap_or(json!({}));
    let mut shown = json!({ "project": limits.project });
    for field in FIELDS {
        shown[field] = stored.get(field).cloned().unwrap_or(Value::Null);
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_changes_only_the_given_limits() {
        let stored = json!({"max_queues": 5, "burst": 2, "max_queues_per_day": 7});
        let Value::Object(stored) = stored else {
            unreachable!()
        };
        let given = ProjectLimitOverrides {
            max_queues: Some(9),
            max_messages_per_queue: Some(0),
            ..ProjectLimitOverrides::default()
        };
        let merged = Value::Object(overlay(stored, &given));
        assert_eq!(
            merged,
            json!({"max_queues": 9, "burst": 2, "max_messages_per_queue": 0,
                   "max_queues_per_day": 7}),
            "a newer build's field is kept"
        );
    }

    #[test]
    fn unset_limits_show_as_null() {
        let shown = limits_json(&pb::ProjectLimits {
            project: "p".into(),
            limits_json: r#"{"max_queues":3}"#.into(),
        });
        assert_eq!(
            shown,
            json!({ "project": "p", "requests_per_second": null, "burst": null,
                    "max_queues": 3, "max_messages_per_queue": null,
                    "max_bytes_per_queue": null })
        );
    }
}
