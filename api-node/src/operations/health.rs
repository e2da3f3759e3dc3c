//! Node health: ping (for load balancers) and the admin health report.

use std::collections::HashMap;
use std::time::Instant;

use futures::future::join_all;
use serde_json::{json, Map, Value};
use zaqar_proto::pb;
use zaqar_proto::ZaqarError;

use super::{not_authorized, Context};

/// Whether this api-node can serve: a catalog node answered it once (from then on
/// it serves the queues it knows even while the catalog has no quorum, so that a
/// catalog outage does not take every api-node out of its load balancer at once),
/// or answers now. (Zaqar's pooled ping also asks every pool; one sick pool would
/// then take every api-node out too, so we leave pools to the health report.)
pub async fn ping(ctx: &Context) -> bool {
    if ctx.router().catalog_answered() {
        return true;
    }
    match ctx.router().list_pools().await {
        Ok(_) => true,
        Err(err) => {
            tracing::warn!(error = %err, "ping: catalog unreachable");
            false
        }
    }
}

/// Zaqar's pooled health report (admin only): whether the catalog answers (and,
/// under `catalog`, its backend and raft leadership), and, per pool, whether its store answers and how long the check took, and (under
/// `report`) what the pool-node last reported to the catalog: a pool that has not
/// reported for three of its intervals is unhealthy ("no report for N s").
pub async fn health(ctx: &Context) -> Result<Map<String, Value>, ZaqarError> {
    if !ctx.identity.is_admin() {
        return Err(not_authorized());
    }
    let mut report = Map::new();
    let pools = match ctx.router().list_pools().await {
        Ok(pools) => pools,
        Err(err) => {
            tracing::warn!(error = %err, "health: catalog unreachable");
            report.insert("catalog_reachable".into(), Value::Bool(false));
            // A raft node without quorum cannot list pools, but says what it sees.
            report.insert("catalog".into(), catalog_health(ctx).await);
            return Ok(report);
        }
    };
    report.insert("catalog_reachable".into(), Value::Bool(true));
    report.insert("catalog".into(), catalog_health(ctx).await);
    let reported: HashMap<String, pb::PoolHealthStatus> = match ctx.router().pool_health().await {
        Ok(reported) => reported.into_iter().map(|r| (r.pool.clone(), r)).collect(),
        Err(err) => {
            tracing::warn!(error = %err, "health: the catalog gave no pool reports");
            HashMap::new()
        }
    };
    let checks = pools.iter().map(|pool| pool_health(ctx, pool));
    for (pool, mut status) in pools.iter().zip(join_all(checks).await) {
        status["report"] = reported_health(reported.get(&pool.name));
        report.insert(pool.name.clone(), status);
    }
    Ok(report)
}

/// The catalog's backend and, for a raft catalog, whether the node that answered
/// knows a leader (it does not while its group has no quorum, once an election
/// timeout has passed), with the term and the voters it knows.
async fn catalog_health(ctx: &Context) -> Value {
    match ctx.services.admin.cluster_status().await {
        Ok(status) => {
            let raft = status.raft.map(|raft| {
                json!({
                    "node_id": raft.node_id,
                    "state": raft.state,
                    "has_leader": raft.leader_id.is_some(),
                    "leader_id": raft.leader_id,
                    "term": raft.term,
                    "voters": raft.members.iter().filter(|member| member.voter).count(),
                })
            });
            json!({"backend": status.backend, "raft": raft})
        }
        Err(err) => json!({"backend": null, "error": err.description}),
    }
}

/// What the pool-node last reported, as the catalog judges it.
fn reported_health(reported: Option<&pb::PoolHealthStatus>) -> Value {
    let Some(reported) = reported else {
        return json!({"healthy": false, "status": "unknown",
            "detail": "the catalog did not say", "seconds_since_report": null});
    };
    let seconds = reported.seconds_since_report.floor();
    let detail = match reported.status.as_str() {
        "stale" | "no report" => Some(format!("no report for {seconds} s")),
        _ => (!reported.detail.is_empty()).then(|| reported.detail.clone()),
    };
    json!({
        "healthy": reported.healthy,
        "status": reported.status,
        "detail": detail,
        "seconds_since_report": seconds,
    })
}

async fn pool_health(ctx: &Context, pool: &pb::Pool) -> Value {
    let started = Instant::now();
    let answer = match ctx.router().pool_client(&pool.endpoint) {
        Ok(mut client) => client
            .health(pb::Empty {})
            .await
            .map(tonic::Response::into_inner),
        Err(err) => Err(tonic::Status::unavailable(err.description)),
    };
    let seconds = started.elapsed().as_secs_f64();
    let (reachable, detail, lag) = match answer {
        Ok(reply) => (reply.ok, reply.detail, Some(reply.notifier_lag_seconds)),
        Err(status) => (false, status.message().to_string(), None),
    };
    json!({
        "storage_reachable": reachable,
        "notifier_lag_seconds": lag,
        "operation_status": {
            "health": {"succeeded": reachable, "seconds": seconds, "ref": (!detail.is_empty()).then_some(detail)}
        }
    })
}
