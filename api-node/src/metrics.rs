//! The api-node's Prometheus metrics:
//!
//! - `zaqar_http_requests_total{route, method, status}` and
//!   `zaqar_http_request_duration_seconds{route, method}` (histogram): every REST
//!   request, by route template (`/v2/queues/{queue}/messages`, never a queue name or
//!   an id: the label's values are bounded), method and answer status.
//!
//! - `zaqar_websocket_connections` (gauge): WebSocket connections open.
//! - `zaqar_websocket_actions_total{action, status}` and
//!   `zaqar_websocket_action_duration_seconds{action}`: every WebSocket request, by
//!   action (one of Zaqar's, else `other`) and reply status.
//! - `zaqar_placement_lookups_total{result}`: where the router found a queue's pool:
//!   `cached`, `catalog` (asked), `shared` (the answer to the same question asked by
//!   another request at the same time), `last_known` (the catalog could not answer;
//!   see `routing/mod.rs`).
//! - `zaqar_placement_cache_evictions_total{reason}`: placements the cache dropped, to
//!   stay within its capacity (`capacity`), on a catalog event (`event`: the queue was
//!   removed or placed elsewhere, its pool removed), or because the queue was deleted
//!   through this api-node or its pool-node did not know it (`forgotten`);
//!   `zaqar_placement_cache_entries`:
//!   placements cached; `zaqar_catalog_watch_connected`: 1 while a catalog watch stream
//!   keeps the cache fresh.
//! - `zaqar_pool_calls_total{method, code}` and `zaqar_pool_call_duration_seconds{method}`:
//!   every call to a pool-node (over gRPC, or in process in standalone), by RPC and
//!   gRPC status code.
//! - `zaqar_long_polls_waiting`: requests waiting for messages (`wait`);
//!   `zaqar_pool_activity_streams`: pool-nodes' activity streams followed, live, to
//!   wake them (see `routing/activity.rs`).
//! - `zaqar_rate_limited_total`: requests refused with 429 by the per-project rate limit.
//! - `zaqar_keystone_validations_total{result}` and
//!   `zaqar_keystone_request_duration_seconds`: token validations (`cached`, or asked of
//!   Keystone: `valid`, `invalid`, `error`) and the time Keystone took to answer.
//!
//! The metrics are process-wide; [`register`] adds them to the registry a role serves.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabels {
    action: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionNameLabels {
    action: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolCallLabels {
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

struct ApiMetrics {
    pool_calls: Family<PoolCallLabels, Counter>,
    pool_call_durations: Family<MethodLabels, Histogram>,
    rate_limited: Counter,
    keystone_validations: Family<LookupLabels, Counter>,
    keystone_durations: Histogram,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    websockets: Gauge,
    actions: Family<ActionLabels, Counter>,
    action_durations: Family<ActionNameLabels, Histogram>,
    lookups: Family<LookupLabels, Counter>,
    evictions: Family<EvictionLabels, Counter>,
    cached_placements: Gauge,
    watch_connected: Gauge,
    long_polls: Gauge,
    activity_streams: Gauge,
    redriven: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EvictionLabels {
    reason: &'static str,
}

static METRICS: LazyLock<ApiMetrics> = LazyLock::new(|| ApiMetrics {
    pool_calls: Family::default(),
    pool_call_durations: Family::new_with_constructor(|| {
        Histogram::new(exponential_buckets(0.0001, 2.0, 17))
    }),
    rate_limited: Counter::default(),
    keystone_validations: Family::default(),
    keystone_durations: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
    websockets: Gauge::default(),
    actions: Family::default(),
    action_durations: Family::new_with_constructor(|| {
        Histogram::new(exponential_buckets(0.0001, 2.0, 17))
    }),
    lookups: Family::default(),
    evictions: Family::default(),
    cached_placements: Gauge::default(),
    watch_connected: Gauge::default(),
    long_polls: Gauge::default(),
    activity_streams: Gauge::default(),
    redriven: Counter::default(),
    requests: Family::default(),
    // 100 µs to about 6.5 s.
    durations: Family::new_with_constructor(|| {
        Histogram::new(exponential_buckets(0.0001, 2.0, 17))
    }),
});

/// Adds the api-node's metrics to `registry`.
pub fn register(registry: &mut Registry) {
    registry.register(
        "zaqar_http_requests",
        "REST requests answered, by route template, method and status",
        METRICS.requests.clone(),
    );
    registry.register(
        "zaqar_http_request_duration_seconds",
        "Time to answer a REST request, by route template and method",
        METRICS.durations.clone(),
    );
    registry.register(
        "zaqar_websocket_connections",
        "WebSocket connections open",
        METRICS.websockets.clone(),
    );
    registry.register(
        "zaqar_websocket_actions",
        "WebSocket requests answered, by action and reply status",
        METRICS.actions.clone(),
    );
    registry.register(
        "zaqar_websocket_action_duration_seconds",
        "Time to answer a WebSocket request, by action",
        METRICS.action_durations.clone(),
    );
    registry.register(
        "zaqar_placement_lookups",
        "Where the router found a queue's pool: cached, catalog or last_known",
        METRICS.lookups.clone(),
    );
    registry.register(
        "zaqar_placement_cache_evictions",
        "Placements the api-node's cache dropped: capacity, event or forgotten",
        METRICS.evictions.clone(),
    );
    registry.register(
        "zaqar_placement_cache_entries",
        "Placements in the api-node's cache",
        METRICS.cached_placements.clone(),
    );
    registry.register(
        "zaqar_catalog_watch_connected",
        "1 while a catalog watch stream keeps the api-node's placement cache fresh",
        METRICS.watch_connected.clone(),
    );
    registry.register(
        "zaqar_long_polls_waiting",
        "Requests waiting for messages (long polling)",
        METRICS.long_polls.clone(),
    );
    registry.register(
        "zaqar_pool_activity_streams",
        "Pool-nodes' activity streams followed, live, to wake waiting requests",
        METRICS.activity_streams.clone(),
    );
    registry.register(
        "zaqar_redriven_messages",
        "Messages moved out of a queue by redrive (POST .../redrive, queue_redrive)",
        METRICS.redriven.clone(),
    );
    registry.register(
        "zaqar_pool_calls",
        "Calls to pool-nodes, by RPC and gRPC status code",
        METRICS.pool_calls.clone(),
    );
    registry.register(
        "zaqar_pool_call_duration_seconds",
        "Time of a call to a pool-node, by RPC",
        METRICS.pool_call_durations.clone(),
    );
    registry.register(
        "zaqar_rate_limited",
        "Requests refused by the per-project rate limit (429)",
        METRICS.rate_limited.clone(),
    );
    registry.register(
        "zaqar_keystone_validations",
        "Token validations: cached, or asked of Keystone (valid, invalid, error)",
        METRICS.keystone_validations.clone(),
    );
    registry.register(
        "zaqar_keystone_request_duration_seconds",
        "Time Keystone took to validate a token",
        METRICS.keystone_durations.clone(),
    );
}

/// Records a call to a pool-node's `method` that ended with `code` after `took`.
pub fn record_pool_call(method: &'static str, code: tonic::Code, took: Duration) {
    let code = grpc_code_name(code);
    METRICS
        .pool_calls
        .get_or_create(&PoolCallLabels { method, code })
        .inc();
    METRICS
        .pool_call_durations
        .get_or_create(&MethodLabels { method })
        .observe(took.as_secs_f64());
}

/// The snake_case name of a gRPC status code (`ok`, `not_found`, `unavailable`, ...).
fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "ok",
        Cancelled => "cancelled",
        Unknown => "unknown",
        InvalidArgument => "invalid_argument",
        DeadlineExceeded => "deadline_exceeded",
        NotFound => "not_found",
        AlreadyExists => "already_exists",
        PermissionDenied => "permission_denied",
        ResourceExhausted => "resource_exhausted",
        FailedPrecondition => "failed_precondition",
        Aborted => "aborted",
        OutOfRange => "out_of_range",
        Unimplemented => "unimplemented",
        Internal => "internal",
        Unavailable => "unavailable",
        DataLoss => "data_loss",
        Unauthenticated => "unauthenticated",
    }
}

/// Counts `moved` messages moved by a redrive.
pub fn record_redriven(moved: usize) {
    METRICS.redriven.inc_by(moved as u64);
}

/// Counts a request refused by the rate limit.
pub fn record_rate_limited() {
    METRICS.rate_limited.inc();
}

/// Counts a token validation: `cached`, `valid`, `invalid` or `error`.
pub fn record_keystone_validation(result: &'static str) {
    METRICS
        .keystone_validations
        .get_or_create(&LookupLabels { result })
        .inc();
}

/// Records how long Keystone took to answer a validation.
pub fn record_keystone_request(took: Duration) {
    METRICS.keystone_durations.observe(took.as_secs_f64());
}

/// Counts an open WebSocket connection until the returned guard is dropped.
pub fn websocket_opened() -> impl Drop {
    struct Open;
    impl Drop for Open {
        fn drop(&mut self) {
            METRICS.websockets.dec();
        }
    }
    METRICS.websockets.inc();
    Open
}

/// Records a WebSocket request for `action` (none: not an action of the API) answered with `status` after `took`.
pub fn record_action(action: Option<crate::websocket::Action>, status: u16, took: Duration) {
    let action = action.map_or("other", crate::websocket::Action::name);
    METRICS
        .actions
        .get_or_create(&ActionLabels { action, status })
        .inc();
    METRICS
        .action_durations
        .get_or_create(&ActionNameLabels { action })
        .observe(took.as_secs_f64());
}

/// Records `count` placements the cache dropped for `reason` (`capacity`, `event`, `forgotten`),
/// and how many it holds now.
pub fn record_evictions(reason: &'static str, count: usize, cached: usize) {
    if count > 0 {
        METRICS
            .evictions
            .get_or_create(&EvictionLabels { reason })
            .inc_by(count as u64);
    }
    record_cached_placements(cached);
}

/// Records how many placements the cache holds.
pub fn record_cached_placements(cached: usize) {
    METRICS.cached_placements.set(cached as i64);
}

/// Records whether a catalog watch stream keeps the placement cache fresh.
pub fn record_watch_connected(connected: bool) {
    METRICS.watch_connected.set(i64::from(connected));
}

/// Records how many requests wait for messages (long polling).
pub fn record_long_polls(waiting: usize) {
    METRICS.long_polls.set(waiting as i64);
}

/// Records a pool's activity stream going live (`true`) or ending.
pub fn record_activity_stream(live: bool) {
    if live {
        METRICS.activity_streams.inc();
    } else {
        METRICS.activity_streams.dec();
    }
}

/// Records where the router found a queue's pool (`cached`, `catalog`, `last_known`).
pub fn record_lookup(result: &'static str) {
    METRICS
        .lookups
        .get_or_create(&LookupLabels { result })
        .inc();
}

/// The labels of a REST request, taken before it is handled: its route template and
/// method, both `'static`, so nothing of the request is kept or copied.
pub struct RouteOf {
    route: &'static str,
    method: &'static str,
}

impl RouteOf {
    pub fn new(method: &str, path: &str) -> RouteOf {
        RouteOf {
            route: route(path),
            method: method_label(method),
        }
    }

    /// Records the request, answered with `status` after `took`.
    pub fn record(self, status: u16, took: Duration) {
        let RouteOf { route, method } = self;
        METRICS
            .requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
        METRICS
            .durations
            .get_or_create(&RouteLabels { route, method })
            .observe(took.as_secs_f64());
    }
}

/// The method as a label: one of the HTTP methods the API knows, else `other`.
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
    KNOWN
        .into_iter()
        .find(|known| *known == method)
        .unwrap_or("other")
}

/// The route template of `path`: its names and ids replaced by what they are;
/// `other` for a path the API does not serve.
pub fn route(path: &str) -> &'static str {
    // The API's longest path has 6 segments; a longer one is `other`.
    let mut segments = [""; 7];
    let mut count = 0;
    for segment in path.trim_matches('/').split('/') {
        if count == segments.len() {
            return "other";
        }
        segments[count] = segment;
        count += 1;
    }
    match &segments[..count] {
        [""] => "/",
        ["v2"] => "/v2",
        ["v2", "ping"] => "/v2/ping",
        ["v2", "health"] => "/v2/health",
        ["v2", "health", "detailed"] => "/v2/health/detailed",
        ["v2", "queues"] => "/v2/queues",
        ["v2", "queues", _] => "/v2/queues/{queue}",
        ["v2", "queues", _, rest @ ..] => queue_route(rest),
        ["v2", "topics"] => "/v2/topics",
        ["v2", "topics", _] => "/v2/topics/{topic}",
        ["v2", "topics", _, rest @ ..] => topic_route(rest),
        ["v2", "pools"] => "/v2/pools",
        ["v2", "pools", _] => "/v2/pools/{pool}",
        ["v2", "flavors"] => "/v2/flavors",
        ["v2", "flavors", _] => "/v2/flavors/{flavor}",
        _ => "other",
    }
}

fn queue_route(rest: &[&str]) -> &'static str {
    match rest {
        ["messages"] => "/v2/queues/{queue}/messages",
        ["messages", _] => "/v2/queues/{queue}/messages/{message_id}",
        ["claims"] => "/v2/queues/{queue}/claims",
        ["claims", _] => "/v2/queues/{queue}/claims/{claim_id}",
        ["subscriptions"] => "/v2/queues/{queue}/subscriptions",
        ["subscriptions", _] => "/v2/queues/{queue}/subscriptions/{subscription_id}",
        ["subscriptions", _, "confirm"] => {
            "/v2/queues/{queue}/subscriptions/{subscription_id}/confirm"
        }
        ["stats"] => "/v2/queues/{queue}/stats",
        ["purge"] => "/v2/queues/{queue}/purge",
        ["share"] => "/v2/queues/{queue}/share",
        ["redrive"] => "/v2/queues/{queue}/redrive",
        _ => "other",
    }
}

fn topic_route(rest: &[&str]) -> &'static str {
    match rest {
        ["messages"] => "/v2/topics/{topic}/messages",
        ["messages", _] => "/v2/topics/{topic}/messages/{message_id}",
        ["subscriptions"] => "/v2/topics/{topic}/subscriptions",
        ["subscriptions", _] => "/v2/topics/{topic}/subscriptions/{subscription_id}",
        ["subscriptions", _, "confirm"] => {
            "/v2/topics/{topic}/subscriptions/{subscription_id}/confirm"
        }
        ["stats"] => "/v2/topics/{topic}/stats",
        ["purge"] => "/v2/topics/{topic}/purge",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids_never_reach_a_label() {
        let cases = [
            ("/v2/queues/orders/messages", "/v2/queues/{queue}/messages"),
            (
                "/v2/queues/orders/messages/5f2b",
                "/v2/queues/{queue}/messages/{message_id}",
            ),
            (
                "/v2/queues/q/subscriptions/s1/confirm",
                "/v2/queues/{queue}/subscriptions/{subscription_id}/confirm",
            ),
            ("/v2/queues/dlq/redrive", "/v2/queues/{queue}/redrive"),
            (
                "/v2/topics/t/messages/5f2b",
                "/v2/topics/{topic}/messages/{message_id}",
            ),
            (
                "/v2/topics/t/subscriptions/s1/confirm",
                "/v2/topics/{topic}/subscriptions/{subscription_id}/confirm",
            ),
            ("/v2/pools/p1", "/v2/pools/{pool}"),
            ("/", "/"),
            ("/v2/ping", "/v2/ping"),
            ("/v2/queues/q/anything/else/here", "other"),
            ("/wp-admin", "other"),
        ];
        for (path, label) in cases {
            assert_eq!(route(path), label, "{path}");
        }
        assert_eq!(method_label("BREW"), "other");
    }

    /// Every path a REST route declares (`warp::path!` in src/rest/) has a label of
    /// its own: a route added without one would be counted as `other`.
    #[test]
    fn every_rest_route_has_a_label() {
        let rest = concat!(env!("CARGO_MANIFEST_DIR"), "/src/rest");
        let mut declared = Vec::new();
        for file in std::fs::read_dir(rest).unwrap() {
            let source = std::fs::read_to_string(file.unwrap().path()).unwrap();
            for after in source.split("warp::path!(").skip(1) {
                let segments = &after[..after.find(')').unwrap()];
                let path: Vec<&str> = segments
                    .split('/')
                    .map(|segment| match segment.trim() {
                        "String" => "x",
                        literal => literal.trim_matches('"'),
                    })
                    .collect();
                declared.push(format!("/{}", path.join("/")));
            }
        }
        assert!(declared.len() > 25, "only {declared:?}");
        for path in declared {
            assert_ne!(route(&path), "other", "{path}");
        }
    }
}
