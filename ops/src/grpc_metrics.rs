//! Metrics of the gRPC calls a process serves (the catalog's CatalogService and
//! AdminService, a pool-node's PoolService), counted by a layer of every gRPC server
//! (`grpc::server`): `zaqar_grpc_server_calls_total{service, method, code}` and
//! `zaqar_grpc_server_call_duration_seconds{service, method}`, the time to the
//! answer's headers. `code` is the gRPC status in lower snake case (`ok`,
//! `not_found`, `unavailable`, ...) as the answer's headers give it; a call answered
//! `unimplemented` (an unknown method) counts as service and method `other`, so a
//! client cannot make new label values.

use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tonic::codegen::http;
use tonic::codegen::Service;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: String,
    method: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    service: String,
    method: String,
}

struct Metrics {
    calls: Family<CallLabels, Counter>,
    durations: Family<MethodLabels, Histogram>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    calls: Family::default(),
    durations: Family::new_with_constructor(|| {
        Histogram::new(exponential_buckets(0.0001, 2.0, 17))
    }),
});

/// Adds the gRPC server metrics to `registry`.
pub fn register(registry: &mut Registry) {
    registry.register(
        "zaqar_grpc_server_calls",
        "gRPC calls served, by service, method and status",
        METRICS.calls.clone(),
    );
    registry.register(
        "zaqar_grpc_server_call_duration_seconds",
        "Time to answer a gRPC call served, by service and method",
        METRICS.durations.clone(),
    );
}

/// The gRPC status names, by code (0 to 16).
const CODES: [&str; 17] = [
    "ok",
    "cancelled",
    "unknown",
    "invalid_argument",
    "deadline_exceeded",
    "not_found",
    "already_exists",
    "permission_denied",
    "resource_exhausted",
    "failed_precondition",
    "aborted",
    "out_of_range",
    "unimplemented",
    "internal",
    "unavailable",
    "data_loss",
    "unauthenticated",
];

/// Counts one call of `path` (`/package.Service/Method`) answered with `headers`.
fn record(path: &str, headers: &http::HeaderMap, took: Duration) {
    // A unary call's status is in the headers when it failed (a "trailers only"
    // answer), and in the trailers, ok, otherwise.
    let code = headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok()?.parse::<usize>().ok())
        .map_or("ok", |code| CODES.get(code).copied().unwrap_or("unknown"));
    let (service, method) = match path.trim_start_matches('/').split_once('/') {
        Some((service, method)) if code != "unimplemented" => {
            let service = service.rsplit('.').next().unwrap_or(service);
            (service.to_string(), method.to_string())
        }
        _ => ("other".to_string(), "other".to_string()),
    };
    let labels = MethodLabels { service, method };
    METRICS
        .durations
        .get_or_create(&labels)
        .observe(took.as_secs_f64());
    METRICS
        .calls
        .get_or_create(&CallLabels {
            service: labels.service,
            method: labels.method,
            code,
        })
        .inc();
}

/// The layer counting the calls of a gRPC server.
#[derive(Clone, Copy, Debug, Default)]
pub struct CallMetricsLayer;

impl<S> tower_layer::Layer<S> for CallMetricsLayer {
    type Service = CallMetrics<S>;

    fn layer(&self, inner: S) -> CallMetrics<S> {
        CallMetrics(inner)
    }
}

/// A gRPC server's service, counting its calls.
#[derive(Clone, Debug)]
pub struct CallMetrics<S>(S);

impl<S, B, R> Service<http::Request<B>> for CallMetrics<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_string();
        let started = Instant::now();
        let call = self.0.call(request);
        Box::pin(async move {
            let answer = call.await;
            if let Ok(response) = &answer {
                record(&path, response.headers(), started.elapsed());
            }
            answer
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(service: &str, method: &str, code: &'static str) -> u64 {
        METRICS
            .calls
            .get_or_create(&CallLabels {
                service: service.to_string(),
                method: method.to_string(),
                code,
            })
            .get()
    }

    #[test]
    fn calls_are_counted_by_service_method_and_status() {
        let mut failed = http::HeaderMap::new();
        failed.insert("grpc-status", http::HeaderValue::from_static("5"));
        let before = count("AdminService", "GetPool", "not_found");
        record("/zaqar.v1.AdminService/GetPool", &failed, Duration::ZERO);
        assert_eq!(count("AdminService", "GetPool", "not_found"), before + 1);

        let before = count("AdminService", "ListPools", "ok");
        let ok = http::HeaderMap::new();
        record("/zaqar.v1.AdminService/ListPools", &ok, Duration::ZERO);
        assert_eq!(count("AdminService", "ListPools", "ok"), before + 1);

        let mut unknown = http::HeaderMap::new();
        unknown.insert("grpc-status", http::HeaderValue::from_static("12"));
        let before = count("other", "other", "unimplemented");
        record("/made.Up/Anything", &unknown, Duration::ZERO);
        assert_eq!(count("other", "other", "unimplemented"), before + 1);
        assert_eq!(count("Up", "Anything", "unimplemented"), 0);
    }
}
