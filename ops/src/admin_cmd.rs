//! `zaqar admin`: the operators' CLI over the catalog's gRPC `AdminService`, printing
//! tables (or JSON with `--json`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use zaqar_proto::admin_pb as pb;
use zaqar_proto::admin_pb::admin_service_client::AdminServiceClient;
use zaqar_proto::cluster_auth::{AuthChannel, ClusterToken};
use zaqar_proto::grpc_client::GrpcClientTls;
use zaqar_proto::pb::catalog_service_client::CatalogServiceClient;
use zaqar_proto::uri::redact;
use zaqar_proto::{ErrorCode, ZaqarError};

use crate::cluster_auth::{self, ClusterAuthArgs};
use crate::project_limits_cmd::{self, ProjectLimitsCommand};

/// How long connecting to one catalog endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one call may take (adding a node waits until it has caught up).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Flags of `zaqar admin`.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// gRPC endpoints of catalog nodes, comma-separated. They are tried in order while
    /// one is unreachable or answers "unavailable" (e.g. it is not the raft leader).
    #[arg(
        long,
        env = "ZAQAR_CATALOG",
        default_value = "http://127.0.0.1:7000",
        value_delimiter = ','
    )]
    pub catalog: Vec<String>,
    /// The catalog's admin token, sent as `authorization: Bearer TOKEN`.
    #[arg(long, env = "ZAQAR_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of the CA of the catalog's certificate; needed for https:// endpoints.
    #[arg(long, env = "ZAQAR_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate shown to a catalog that requires mTLS.
    #[arg(long, env = "ZAQAR_CERT_FILE", requires = "key_file")]
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    #[arg(long, env = "ZAQAR_KEY_FILE", requires = "cert_file")]
    pub key_file: Option<PathBuf>,
    /// Name expected in the catalog's certificate [default: the endpoint's host].
    #[arg(long, env = "ZAQAR_TLS_DOMAIN")]
    pub tls_domain: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterAuthArgs,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AdminCommand {
    /// List, show, add (or replace) and remove pools.
    #[command(subcommand)]
    Pools(PoolsCommand),
    /// List, show, add (or update) and remove flavors.
    #[command(subcommand)]
    Flavors(FlavorsCommand),
    /// List, show, set and remove the limits of projects (rate, queues, messages per
    /// queue), applied by every api-node over its [project_limits].
    #[command(subcommand)]
    ProjectLimits(ProjectLimitsCommand),
    /// Where queues are placed.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// The catalog backend and, on raft, leader, term and members.
    Status,
    /// Add or remove raft catalog nodes.
    #[command(subcommand)]
    Nodes(NodesCommand),
}

#[derive(Debug, Clone, Subcommand)]
pub enum PoolsCommand {
    /// Every pool, by name.
    List,
    /// One pool.
    Get { name: String },
    /// Add a pool, or replace the pool of the same name.
    Add {
        name: String,
        /// URI of the pool's store, e.g. redis://10.0.0.5:6379/0.
        #[arg(long)]
        uri: String,
        /// gRPC endpoint of the pool's pool-node, e.g. http://10.0.0.5:7001.
        #[arg(long)]
        endpoint: String,
        /// Share of new queues, an integer >= 0 (0 takes none).
        #[arg(long, default_value_t = 100, allow_negative_numbers = true)]
        weight: i64,
        /// The pool's flavor; empty for the default (`--group` is the same).
        #[arg(long, visible_alias = "group", default_value = "")]
        flavor: String,
        /// Pool options, a JSON object.
        #[arg(long, default_value = "")]
        options: String,
    },
    /// Remove a pool that holds no queues.
    Remove { name: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum FlavorsCommand {
    /// Every flavor, by name, with its pools and capabilities.
    List,
    /// One flavor.
    Get { name: String },
    /// Create the flavor (or add to it) with these pools, which take its name as their flavor.
    Add {
        name: String,
        /// Names of the flavor's pools, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        pools: Vec<String>,
        /// Make these the flavor's only pools: the others return to the default flavor.
        #[arg(long)]
        replace: bool,
    },
    /// Remove a flavor; its pools return to the default flavor.
    Remove { name: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum QueueCommand {
    /// The pool of a queue.
    Lookup { project: String, queue: String },
}

#[derive(Debug, Clone, Subcommand)]
pub enum NodesCommand {
    /// Add the raft node ID at ADDR (its --raft-advertise) as a voter; start it with --join.
    Add { id: u64, addr: String },
    /// Remove the raft node ID from the cluster.
    Remove { id: u64 },
}

/// Runs the command against the first catalog endpoint that can answer it and prints
/// the result.
pub async fn run(args: AdminArgs) -> Result<()> {
    let tls = match args.ca_file.clone() {
        Some(ca_file) => Some(GrpcClientTls {
            ca_file,
            cert_file: args.cert_file.clone(),
            key_file: args.key_file.clone(),
            domain: args.tls_domain.clone(),
        }),
        None if args.cert_file.is_some() => {
            return Err(anyhow!("--cert-file needs --ca-file (the catalog's CA)"))
        }
        None => None,
    };
    let cluster = cluster_auth::token(args.cluster.cluster_token.as_deref())?;
    let mut last = None;
    for endpoint in &args.catalog {
        let credentials = Credentials {
            tls: tls.as_ref(),
            cluster: &cluster,
            admin_token: args.token.as_deref(),
        };
        match call(endpoint, &credentials, &args.command).await {
            Ok(value) => {
                print(&args.command, &value, args.json)?;
                return Ok(());
            }
            Err(err) if err.code == ErrorCode::Unavailable => {
                let hint = tls_hint(endpoint, tls.as_ref());
                last = Some(anyhow!("{endpoint}: {err}{hint}"));
            }
            Err(err) => return Err(anyhow!("{endpoint}: {err}")),
        }
    }
    Err(last.unwrap_or_else(|| anyhow!("no catalog endpoint given")))
}

/// What may be wrong with the TLS flags when a catalog cannot be reached
/// (gRPC reports a refused handshake only as a "transport error").
fn tls_hint(endpoint: &str, tls: Option<&GrpcClientTls>) -> &'static str {
    match (endpoint.starts_with("https://"), tls) {
        (true, None) => " (an https:// catalog needs --ca-file)",
        (true, Some(tls)) if tls.cert_file.is_none() => {
            " (if the catalog requires mTLS, give --cert-file and --key-file)"
        }
        (false, Some(_)) => " (the TLS flags apply to https:// endpoints only)",
        _ => "",
    }
}

/// `message` with the admin token, when there is one.
pub(crate) fn request<T>(message: T, token: Option<&str>) -> Result<tonic::Request<T>, ZaqarError> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ZaqarError::bad_request("the admin token is not valid ASCII"))?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

/// What `zaqar admin` shows a catalog.
struct Credentials<'a> {
    tls: Option<&'a GrpcClientTls>,
    cluster: &'a ClusterToken,
    admin_token: Option<&'a str>,
}

/// One command on one endpoint, as JSON.
async fn call(
    endpoint: &str,
    credentials: &Credentials<'_>,
    command: &AdminCommand,
) -> Result<Value, ZaqarError> {
    let token = credentials.admin_token;
    let channel = zaqar_proto::grpc_client::connect(
        endpoint,
        credentials.tls,
        credentials.cluster,
        CONNECT_TIMEOUT,
        CALL_TIMEOUT,
    )
    .await?;
    let mut client = AdminServiceClient::new(channel.clone());
    let value = match command.clone() {
        AdminCommand::Pools(PoolsCommand::List) => {
            let reply = client.list_pools(request(pb::Empty {}, token)?).await?;
            let health = pool_health(channel).await;
            let pools = reply.into_inner().pools;
            let pools = pools.iter().map(|pool| {
                let mut json = pool_json(pool);
                json["health"] = json!(health.get(&pool.name));
                json
            });
            Value::Array(pools.collect())
        }
        AdminCommand::Pools(PoolsCommand::Get { name }) => {
            let reply = client
                .get_pool(request(pb::PoolName { name }, token)?)
                .await?;
            pool_json(&reply.into_inner())
        }
        AdminCommand::Pools(PoolsCommand::Add {
            name,
            uri,
            endpoint,
            weight,
            flavor,
            options,
        }) => {
            let pool = pb::Pool {
                name,
                weight,
                flavor,
                uri,
                endpoint,
                options_json: options,
            };
            pool_json(&client.add_pool(request(pool, token)?).await?.into_inner())
        }
        AdminCommand::Pools(PoolsCommand::Remove { name }) => {
            client
                .remove_pool(request(pb::PoolName { name: name.clone() }, token)?)
                .await?;
            json!({ "removed": name })
        }
        AdminCommand::Flavors(FlavorsCommand::List) => {
            let reply = client.list_flavors(request(pb::Empty {}, token)?).await?;
            let flavors = reply.into_inner().flavors;
            Value::Array(flavors.iter().map(flavor_json).collect())
        }
        AdminCommand::Flavors(FlavorsCommand::Get { name }) => {
            let name = pb::FlavorName { name };
            flavor_json(&client.get_flavor(request(name, token)?).await?.into_inner())
        }
        AdminCommand::Flavors(FlavorsCommand::Add {
            name,
            pools,
            replace,
        }) => {
            let put = pb::PutFlavorRequest {
                name,
                pool_list: pools,
                replace,
            };
            flavor_json(&client.put_flavor(request(put, token)?).await?.into_inner())
        }
        AdminCommand::Flavors(FlavorsCommand::Remove { name }) => {
            let flavor = pb::FlavorName { name: name.clone() };
            client.remove_flavor(request(flavor, token)?).await?;
            json!({ "removed": name })
        }
        AdminCommand::ProjectLimits(command) => {
            project_limits_cmd::call(&mut client, token, command).await?
        }
        AdminCommand::Queue(QueueCommand::Lookup { project, queue }) => {
            let lookup = pb::LookupQueueRequest {
                project: project.clone(),
                queue: queue.clone(),
            };
            let reply = client
                .lookup_queue(request(lookup, token)?)
                .await?
                .into_inner();
            json!({ "project": project, "queue": queue, "found": reply.found,
                    "pool": reply.pool, "endpoint": reply.endpoint })
        }
        AdminCommand::Status => status_json(
            client
                .cluster_status(request(pb::Empty {}, token)?)
                .await?
                .into_inner(),
        ),
        AdminCommand::Nodes(NodesCommand::Add { id, addr }) => {
            let node = pb::CatalogNode { node_id: id, addr };
            status_json(
                client
                    .add_catalog_node(request(node, token)?)
                    .await?
                    .into_inner(),
            )
        }
        AdminCommand::Nodes(NodesCommand::Remove { id }) => {
            let node = pb::CatalogNodeId { node_id: id };
            status_json(
                client
                    .remove_catalog_node(request(node, token)?)
                    .await?
                    .into_inner(),
            )
        }
    };
    Ok(value)
}

/// What each pool last reported to this catalog node (served by its `CatalogService`
/// on the same port): `ok`, `degraded: DETAIL`, `stale: no report for N s` or
/// `no report: ...`; empty when the catalog keeps no reports.
async fn pool_health(channel: AuthChannel) -> HashMap<String, String> {
    let reply = CatalogServiceClient::new(channel)
        .pool_health(zaqar_proto::pb::Empty {})
        .await;
    let Ok(reply) = reply else {
        return HashMap::new();
    };
    let describe = |health: &zaqar_proto::pb::PoolHealthStatus| match health.status.as_str() {
        "ok" => "ok".to_string(),
        "degraded" => format!("degraded: {}", health.detail),
        other => format!(
            "{other}: no report for {} s",
            health.seconds_since_report.floor()
        ),
    };
    reply
        .into_inner()
        .pools
        .iter()
        .map(|health| (health.pool.clone(), describe(health)))
        .collect()
}

fn pool_json(pool: &pb::Pool) -> Value {
    let options: Value = serde_json::from_str(&pool.options_json).unwrap_or(json!({}));
    json!({ "name": pool.name, "weight": pool.weight, "group": pool.flavor,
            "uri": redact(&pool.uri), "endpoint": pool.endpoint, "options": options })
}

fn flavor_json(flavor: &pb::Flavor) -> Value {
    json!({ "name": flavor.name, "pool_list": flavor.pool_list,
            "capabilities": flavor.capabilities })
}

fn status_json(status: pb::ClusterStatusReply) -> Value {
    let Some(raft) = status.raft else {
        return json!({ "backend": status.backend });
    };
    let members: Vec<Value> = raft
        .members
        .iter()
        .map(|m| {
            json!({ "id": m.id, "addr": m.addr, "voter": m.voter,
                         "leader": raft.leader_id == Some(m.id) })
        })
        .collect();
    json!({
        "backend": status.backend,
        "node_id": raft.node_id,
        "state": raft.state,
        "leader_id": raft.leader_id,
        "leader_addr": raft.leader_addr,
        "term": raft.term,
        "last_log_index": raft.last_log_index,
        "last_applied_index": raft.last_applied_index,
        "snapshot_index": raft.snapshot_index,
        "members": members,
    })
}

fn print(command: &AdminCommand, value: &Value, as_json: bool) -> Result<()> {
    if as_json {
        println!("{}", serde_json::to_string_pretty(value)?);
        return Ok(());
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    match command {
        AdminCommand::Pools(PoolsCommand::List) => {
            let columns = ["name", "weight", "group", "uri", "endpoint", "health"];
            let empty = Vec::new();
            let rows = value.as_array().unwrap_or(&empty).iter();
            let rows = rows.map(|pool| columns.iter().map(|c| text(&pool[*c])).collect());
            print_table(&columns, rows.collect());
        }
        AdminCommand::Flavors(FlavorsCommand::List) => {
            let columns = ["name", "pool_list", "capabilities"];
            let empty = Vec::new();
            let rows = value.as_array().unwrap_or(&empty).iter();
            let cell = |v: &Value| match v.as_array() {
                Some(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
                None => text(v),
            };
            let rows = rows.map(|flavor| columns.iter().map(|c| cell(&flavor[*c])).collect());
            print_table(&columns, rows.collect());
        }
        AdminCommand::ProjectLimits(ProjectLimitsCommand::List) => {
            let columns: Vec<&str> = ["project"]
                .into_iter()
                .chain(project_limits_cmd::FIELDS)
                .collect();
            let empty = Vec::new();
            let rows = value.as_array().unwrap_or(&empty).iter();
            let rows = rows.map(|limits| columns.iter().map(|c| text(&limits[*c])).collect());
            print_table(&columns, rows.collect());
        }
        AdminCommand::Status | AdminCommand::Nodes(_) if value.get("members").is_some() => {
            for key in [
                "backend",
                "node_id",
                "state",
                "leader_id",
                "leader_addr",
                "term",
                "last_log_index",
                "last_applied_index",
                "snapshot_index",
            ] {
                println!("{key:<20}{}", text(&value[key]));
            }
            println!();
            let columns = ["id", "addr", "voter", "leader"];
            let empty = Vec::new();
            let rows = value["members"].as_array().unwrap_or(&empty).iter();
            let rows = rows.map(|m| columns.iter().map(|c| text(&m[*c])).collect());
            print_table(&columns, rows.collect());
        }
        _ => {
            if let Some(object) = value.as_object() {
                for (key, field) in object {
                    println!("{key:<20}{}", text(field));
                }
            }
        }
    }
    Ok(())
}

/// Prints left-aligned columns under a header.
fn print_table(columns: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(columns.iter().map(|c| c.to_uppercase()).collect());
    for row in rows {
        line(row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_are_shown_without_their_store_password() {
        let pool = pb::Pool {
            name: "p".into(),
            uri: "redis://:s3cret@10.0.0.1:6379/0".into(),
            options_json: "{}".into(),
            ..Default::default()
        };
        let shown = pool_json(&pool).to_string();
        assert!(shown.contains("redis://:***@10.0.0.1:6379/0"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
