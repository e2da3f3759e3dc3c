//! `--metrics-listen ADDR`: serves the Prometheus metrics of the roles this process runs
//! on `http://ADDR/metrics` (OpenMetrics text). Each role adds its metrics to one
//! process-wide registry when it starts ([`add`]); the process's own are always there:
//! `zaqar_build_info{version, git_sha, features}`, `zaqar_process_resident_memory_bytes`,
//! `zaqar_process_cpu_seconds_total` and `zaqar_process_open_fds` (from `/proc/self`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use hyper014::service::{make_service_fn, service_fn};
use hyper014::{Body, Response, StatusCode};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    git_sha: &'static str,
    /// The optional backends built in (cargo features), comma-separated:
    /// `store-mongodb`, `catalog-etcd`, `catalog-mongodb`.
    features: String,
}

/// The optional backends this binary has, as `zaqar_build_info`'s `features` label.
fn features() -> String {
    let stores = zaqar_pool_node::optional_stores()
        .into_iter()
        .map(|s| format!("store-{s}"));
    let catalogs = zaqar_catalog::optional_backends()
        .into_iter()
        .map(|c| format!("catalog-{c}"));
    let all: Vec<String> = stores.chain(catalogs).collect();
    if all.is_empty() {
        "none".to_string()
    } else {
        all.join(",")
    }
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| {
    let mut registry = Registry::default();
    let build = Family::<BuildLabels, Gauge>::default();
    build
        .get_or_create(&BuildLabels {
            version: env!("CARGO_PKG_VERSION"),
            git_sha: env!("ZAQAR_GIT_SHA"),
            features: features(),
        })
        .set(1);
    registry.register(
        "zaqar_build_info",
        "The zaqar build serving (always 1)",
        build,
    );
    registry.register_collector(Box::new(ProcessMetrics));
    Mutex::new(registry)
});

/// How often the depth of the most recently used queues is read again.
const QUEUE_DEPTH_INTERVAL: Duration = Duration::from_secs(5);

/// Whether [`serve`] serves the metrics.
static SERVING: AtomicBool = AtomicBool::new(false);

/// A started pool-node's metrics: when the metrics are served, the depth gauges of
/// the `queues` most recently used queues of its store (see
/// `zaqar_pool_node::metrics`); its notifier's gauges.
pub fn watch_pool_node(node: &zaqar_pool_node::serve::PoolNode, queues: u32) {
    if SERVING.load(Ordering::Relaxed) && queues > 0 {
        zaqar_pool_node::metrics::spawn_queue_depths(
            node.store.clone(),
            queues as usize,
            QUEUE_DEPTH_INTERVAL,
        );
    }
    if let Some(notifier) = &node.notifier {
        let gauges = notifier.metrics();
        add(|registry| registry.register_collector(Box::new(gauges)));
    }
}

/// Adds metrics to the registry of this process (a role's `register`).
pub fn add(register: impl FnOnce(&mut Registry)) {
    register(&mut REGISTRY.lock().unwrap_or_else(|e| e.into_inner()));
}

/// The registry's metrics in the OpenMetrics text format.
fn encoded() -> String {
    let mut text = String::new();
    let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::warn!(error = %err, "the metrics could not be encoded");
    }
    text
}

/// Serves `/metrics` on `addr` as long as the process runs; returns once it listens.
pub fn serve(addr: SocketAddr) -> Result<()> {
    let make = make_service_fn(|_| async {
        Ok::<_, Infallible>(service_fn(|request: hyper014::Request<Body>| async move {
            let response = if request.uri().path() == "/metrics" {
                Response::builder()
                    .header(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )
                    .body(Body::from(encoded()))
            } else {
                Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .body(Body::from("metrics are on /metrics\n"))
            };
            Ok::<_, Infallible>(response.unwrap_or_default())
        }))
    });
    let server = hyper014::Server::try_bind(&addr)
        .with_context(|| format!("serving metrics on {addr}"))?
        .serve(make);
    tracing::info!(addr = %server.local_addr(), "metrics listening");
    SERVING.store(true, Ordering::Relaxed);
    tokio::spawn(async move {
        if let Err(err) = server.await {
            tracing::warn!(error = %err, "the metrics listener stopped");
        }
    });
    Ok(())
}

/// The process's resources, read from `/proc/self` at each scrape (Linux).
#[derive(Debug)]
struct ProcessMetrics;

impl Collector for ProcessMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        // Linux's USER_HZ and page size on every platform zaqar runs on.
        const TICKS_PER_SECOND: f64 = 100.0;
        const PAGE_SIZE: i64 = 4096;
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        // The fields after the command name (which may hold spaces), from field 3 on.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
        let cpu = field(14).unwrap_or(0.0) + field(15).unwrap_or(0.0);
        let cpu = ConstCounter::new(cpu / TICKS_PER_SECOND);
        let metric = encoder.encode_descriptor(
            "zaqar_process_cpu_seconds",
            "CPU time this process used, user and system",
            None,
            cpu.metric_type(),
        )?;
        cpu.encode(metric)?;
        let rss = field(24).map_or(0, |pages| pages as i64 * PAGE_SIZE);
        let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count() as i64);
        for (name, help, value) in [
            (
                "zaqar_process_resident_memory_bytes",
                "Resident memory of this process",
                rss,
            ),
            (
                "zaqar_process_open_fds",
                "Open file descriptors of this process",
                fds,
            ),
        ] {
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_metrics_are_read_from_proc() {
        let text = encoded();
        let sha = env!("ZAQAR_GIT_SHA");
        assert!(sha == "unknown" || sha.len() == 12, "{sha}");
        let build = format!(
            "zaqar_build_info{{version=\"{}\",git_sha=\"{sha}\",features=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION"),
            features()
        );
        assert!(text.contains(&build), "{build} not in {text}");
        let rss = text
            .lines()
            .find_map(|line| line.strip_prefix("zaqar_process_resident_memory_bytes "))
            .and_then(|value| value.parse::<f64>().ok())
            .expect("the resident memory");
        assert!(rss > 1_000_000.0, "{text}");
        assert!(text.contains("zaqar_process_cpu_seconds_total "), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// The metric names in `text`: `zaqar_...` words, `_total` left out (counters are
    /// registered without it and exported with it).
    fn names(text: &str) -> std::collections::BTreeSet<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|word| word.starts_with("zaqar_") && word.len() > "zaqar_".len())
            .map(|word| word.trim_end_matches("_total").to_string())
            .collect()
    }

    #[test]
    fn docs_operations_lists_exactly_the_metrics_the_code_exports() {
        let sources = [
            include_str!("metrics.rs"),
            include_str!("grpc_metrics.rs"),
            include_str!("../../api-node/src/metrics.rs"),
            include_str!("../../pool-node/src/metrics.rs"),
            include_str!("../../catalog/src/raft/metrics.rs"),
            include_str!("../../catalog/src/health.rs"),
        ];
        let exported: std::collections::BTreeSet<String> = sources
            .iter()
            .flat_map(|source| {
                // Only string literals: names in doc comments are prose.
                source
                    .split('"')
                    .skip(1)
                    .step_by(2)
                    .flat_map(names)
                    .collect::<Vec<_>>()
            })
            .collect();
        let docs = include_str!("../../docs/operations.md");
        let documented: std::collections::BTreeSet<String> = docs
            .lines()
            .filter(|line| line.starts_with("| `zaqar_"))
            .filter_map(|line| line.split('|').nth(1))
            .flat_map(names)
            .collect();
        assert!(exported.len() > 20, "{exported:?}");
        assert_eq!(
            exported, documented,
            "docs/operations.md and the code disagree"
        );
    }
}
