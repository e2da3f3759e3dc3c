//! The latest health report of each pool, as pool-nodes send them to this catalog node.
//!
//! Reports live in the memory of the catalog node that receives them; pool-nodes send
//! each report to every catalog node they know, so any live node can answer. A pool
//! whose last report is older than [`STALE_AFTER_INTERVALS`] of its own reporting
//! intervals (or that never reported to this node) counts as unhealthy.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zaqar_proto::ZaqarError;

use crate::model::{validate_pool_name, PoolSpec};

/// A report is stale once this many of its reporting intervals passed without another.
pub const STALE_AFTER_INTERVALS: u32 = 3;
/// Longest reporting interval a pool-node may announce.
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
/// Longest detail kept from a report.
const MAX_DETAIL: usize = 1024;

/// What a pool-node says of its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    pub pool: String,
    /// False when the store's own check failed.
    pub ok: bool,
    pub detail: String,
    /// When the next report is due.
    pub interval: Duration,
}

/// The health of one registered pool, as this node knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolHealth {
    pub pool: String,
    /// The last report said ok and is not stale.
    pub healthy: bool,
    /// `ok`, `degraded`, `stale` or `no report`.
    pub status: &'static str,
    pub detail: String,
    /// Since the last report; for `no report`, since this node started.
    pub since_report: Duration,
}

/// The latest report per pool.
#[derive(Debug)]
pub struct HealthBoard {
    started: Instant,
    reports: Mutex<HashMap<String, (HealthReport, Instant)>>,
}

impl Default for HealthBoard {
    fn default() -> Self {
        HealthBoard {
            started: Instant::now(),
            reports: Mutex::new(HashMap::new()),
        }
    }
}

impl HealthBoard {
    /// Keeps `report` as its pool's latest; `bad_request` for a bad pool name or an
    /// interval of 0 or above [`MAX_INTERVAL`].
    pub fn record(&self, mut report: HealthReport) -> Result<(), ZaqarError> {
        validate_pool_name(&report.pool)?;
        if report.interval.is_zero() || report.interval > MAX_INTERVAL {
            return Err(ZaqarError::bad_request(format!(
                "health report interval {:?} is not between 1 s and {MAX_INTERVAL:?}",
                report.interval
            )));
        }
        if report.detail.len() > MAX_DETAIL {
            let mut end = MAX_DETAIL;
            while !report.detail.is_char_boundary(end) {
                end -= 1;
            }
            report.detail.truncate(end);
        }
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        reports.insert(report.pool.clone(), (report, Instant::now()));
        Ok(())
    }

    /// Every pool that reported to this node: its name, whether its last report said
    /// ok, and how long ago that report came.
    pub fn reported(&self) -> Vec<(String, bool, Duration)> {
        let reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        let mut reported: Vec<_> = reports
            .values()
            .map(|(report, at)| (report.pool.clone(), report.ok, at.elapsed()))
            .collect();
        reported.sort_by(|a, b| a.0.cmp(&b.0));
        reported
    }

    /// The health of each of `pools`, in their order.
    pub fn status(&self, pools: &[PoolSpec]) -> Vec<PoolHealth> {
        let reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        pools
            .iter()
            .map(|pool| match reports.get(&pool.name) {
                None => PoolHealth {
                    pool: pool.name.clone(),
                    healthy: false,
                    status: "no report",
                    detail: String::new(),
                    since_report: self.started.elapsed(),
                },
                Some((report, at)) => {
                    let age = at.elapsed();
                    let stale = age > report.interval * STALE_AFTER_INTERVALS;
                    let status = match (stale, report.ok) {
                        (true, _) => "stale",
                        (false, true) => "ok",
                        (false, false) => "degraded",
                    };
                    PoolHealth {
                        pool: pool.name.clone(),
                        healthy: status == "ok",
                        status,
                        detail: report.detail.clone(),
                        since_report: age,
                    }
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str) -> PoolSpec {
        crate::conformance::pool(name, 1, "")
    }

    fn report(pool: &str, ok: bool, interval: Duration) -> HealthReport {
        HealthReport {
            pool: pool.into(),
            ok,
            detail: if ok { String::new() } else { "down".into() },
            interval,
        }
    }

    #[test]
    fn each_pool_shows_its_latest_report_or_none() {
        let board = HealthBoard::default();
        board
            .record(report("a", true, Duration::from_secs(5)))
            .unwrap();
        board
            .record(report("b", false, Duration::from_secs(5)))
            .unwrap();
        let status = board.status(&[pool("a"), pool("b"), pool("c")]);
        let summary: Vec<_> = status
            .iter()
            .map(|s| (s.pool.as_str(), s.healthy, s.status, s.detail.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("a", true, "ok", ""),
                ("b", false, "degraded", "down"),
                ("c", false, "no report", "")
            ]
        );
    }

    #[test]
    fn an_old_report_is_stale() {
        let board = HealthBoard::default();
        board
            .record(report("a", true, Duration::from_secs(1)))
            .unwrap();
        // Backdate the report past three intervals.
        board.reports.lock().unwrap().get_mut("a").unwrap().1 -= Duration::from_secs(4);
        let status = &board.status(&[pool("a")])[0];
        assert_eq!((status.healthy, status.status), (false, "stale"));
        assert!(status.since_report >= Duration::from_secs(4));
    }

    #[test]
    fn bad_reports_are_refused() {
        let board = HealthBoard::default();
        for bad in [
            report("a b", true, Duration::from_secs(1)),
            report("a", true, Duration::ZERO),
            report("a", true, MAX_INTERVAL * 2),
        ] {
            assert_eq!(
                board.record(bad).unwrap_err().code,
                zaqar_proto::ErrorCode::BadRequest
            );
        }
    }
}

/// The catalog server's gauges, read at each scrape: the health reports,
/// `zaqar_pool_report_age_seconds{pool}` (since the pool's last report to this catalog
/// node) and `zaqar_pool_report_ok{pool}` (1 when that report said ok), and
/// `zaqar_catalog_watchers`, the watch streams open on this node (api-nodes following
/// placement changes).
#[derive(Debug)]
pub struct HealthMetrics {
    pub board: std::sync::Arc<HealthBoard>,
    pub watchers: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl HealthMetrics {
    /// The watch streams open now.
    pub fn watchers(&self) -> i64 {
        self.watchers.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl prometheus_client::collector::Collector for HealthMetrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;
        use std::sync::atomic::AtomicU64;
        let ages = Family::<Vec<(String, String)>, Gauge<f64, AtomicU64>>::default();
        let oks = Family::<Vec<(String, String)>, Gauge>::default();
        for (pool, ok, age) in self.board.reported() {
            let labels = vec![("pool".to_string(), pool)];
            ages.get_or_create(&labels).set(age.as_secs_f64());
            oks.get_or_create(&labels).set(i64::from(ok));
        }
        let metric = encoder.encode_descriptor(
            "zaqar_pool_report_age_seconds",
            "Time since the pool's last health report to this catalog node",
            None,
            ages.metric_type(),
        )?;
        ages.encode(metric)?;
        let metric = encoder.encode_descriptor(
            "zaqar_pool_report_ok",
            "1 when the pool's last health report to this catalog node said ok",
            None,
            oks.metric_type(),
        )?;
        oks.encode(metric)?;
        let watchers = prometheus_client::metrics::gauge::ConstGauge::new(self.watchers());
        let metric = encoder.encode_descriptor(
            "zaqar_catalog_watchers",
            "Watch streams open on this catalog node (api-nodes following placement changes)",
            None,
            watchers.metric_type(),
        )?;
        watchers.encode(metric)
    }
}
