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
        PoolSpec {
            name: name.into(),
            weight: 1,
            group: String::new(),
            uri: "redis://127.0.0.1:6379".into(),
            endpoint: "http://127.0.0.1:7001".into(),
            options_json: "{}".into(),
        }
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
