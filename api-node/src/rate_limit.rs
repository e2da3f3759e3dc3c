//! Per-project limits, so that one tenant cannot starve the others: a request
//! rate (a token bucket per project: `requests_per_second` sustained, `burst`
//! at once), quotas (queues per project, messages per queue) and per-project
//! overrides of the request-size limits. Over its rate a project gets 429 with
//! `Retry-After`. Buckets live in memory, per api-node; at most
//! `max_tracked_projects` are kept, the idle ones forgotten first.
//!
//! A project's rate and quotas come from, in this order: what an operator set for it
//! in the catalog (`zaqar admin project-limits`, see `project_quotas.rs`), its
//! `[project_limits.overrides."ID"]`, then `[project_limits]`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use zaqar_proto::limits::{Limits, ProjectLimitOverrides};
use zaqar_proto::{ErrorCode, ZaqarError};

/// `[project_limits]`: the rate every project gets, and per-project overrides.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectLimitsConfig {
    /// Sustained requests per second of one project, on this api-node; 0 for no limit.
    pub requests_per_second: f64,
    /// Requests a project may make at once after being idle (the bucket's size);
    /// 0 for one second's worth (`requests_per_second`, at least 1).
    pub burst: u32,
    /// Most projects whose request rate is tracked at once (memory bound); past
    /// it, projects idle long enough to have a full bucket are forgotten first,
    /// then the least recently seen.
    pub max_tracked_projects: usize,
    /// Most queues one project may have (a quota, checked when a queue is created);
    /// 0 for no limit.
    pub max_queues: u64,
    /// Most messages one queue of a project may hold (a quota, checked at each post:
    /// over it a post is refused, 403, or makes room in a queue whose `_overflow` is
    /// `drop_oldest`); 0 for no limit.
    pub max_messages_per_queue: u64,
    /// Most bytes of message bodies one queue of a project may hold (a quota, checked
    /// at each post as `max_messages_per_queue` is); 0 for no limit.
    pub max_bytes_per_queue: u64,
    /// Per-project settings, by project id: `[project_limits.overrides."ID"]`.
    pub overrides: HashMap<String, ProjectOverride>,
    /// How long an api-node keeps the limits an operator set for a project in the
    /// catalog (`zaqar admin project-limits`) before asking again, in seconds; a
    /// change reaches every api-node within it. 0: the catalog is not asked, only
    /// this file counts.
    pub refresh_seconds: u64,
}

impl Default for ProjectLimitsConfig {
    fn default() -> Self {
        ProjectLimitsConfig {
            requests_per_second: 0.0,
            burst: 0,
            max_tracked_projects: 100_000,
            max_queues: 0,
            max_messages_per_queue: 0,
            max_bytes_per_queue: 0,
            overrides: HashMap::new(),
            refresh_seconds: 10,
        }
    }
}

/// The settings of one project that differ from the defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectOverride {
    /// This project's sustained request rate; 0 for no limit.
    pub requests_per_second: Option<f64>,
    /// This project's burst (0: one second's worth).
    pub burst: Option<u32>,
    /// Largest message post body, in bytes (`limits.max_messages_post_size`).
    pub max_messages_post_size: Option<usize>,
    /// Largest queue metadata document, in bytes (`limits.max_queue_metadata`).
    pub max_queue_metadata: Option<usize>,
    /// Most messages in one post (`limits.max_messages_per_post`).
    pub max_messages_per_post: Option<u32>,
    /// Most queues of this project; 0 for no limit.
    pub max_queues: Option<u64>,
    /// Most messages in one queue of this project; 0 for no limit.
    pub max_messages_per_queue: Option<u64>,
    /// Most bytes of message bodies in one queue of this project; 0 for no limit.
    pub max_bytes_per_queue: Option<u64>,
}

impl ProjectOverride {
    /// The rate and quotas among these settings, in the form operators set in the catalog.
    fn limits(&self) -> ProjectLimitOverrides {
        ProjectLimitOverrides {
            requests_per_second: self.requests_per_second,
            burst: self.burst,
            max_queues: self.max_queues,
            max_messages_per_queue: self.max_messages_per_queue,
            max_bytes_per_queue: self.max_bytes_per_queue,
        }
    }
}

/// A sustained rate and a burst; `None` rate means unlimited.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rate {
    per_second: f64,
    burst: f64,
}

impl Rate {
    fn new(per_second: f64, burst: u32) -> Option<Rate> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return None;
        }
        let burst = if burst == 0 {
            per_second.ceil().max(1.0)
        } else {
            f64::from(burst)
        };
        Some(Rate { per_second, burst })
    }
}

/// A project's token bucket, at the rate it was last used with.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    rate: Rate,
}

impl Bucket {
    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.updated = now;
        self.rate = rate;
    }

    /// Whether the bucket is full by `now`, so forgetting it changes nothing.
    fn full_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * self.rate.per_second >= self.rate.burst
    }
}

/// What one project may do: its request rate and its quotas, from the catalog,
/// `[project_limits.overrides."ID"]` and `[project_limits]` (see [`ProjectLimits::quotas`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProjectQuotas {
    /// None: no limit.
    rate: Option<Rate>,
    /// Most queues of the project, when it is limited.
    pub max_queues: Option<u64>,
    /// Most messages in one queue of the project, when it is limited.
    pub max_messages_per_queue: Option<u64>,
    /// Most bytes of message bodies in one queue of the project, when it is limited.
    pub max_bytes_per_queue: Option<u64>,
}

/// A request over its project's rate: how long until one more would be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub retry_after: Duration,
}

impl From<Throttled> for ZaqarError {
    fn from(throttled: Throttled) -> ZaqarError {
        crate::metrics::record_rate_limited();
        let seconds = retry_after_secs(throttled.retry_after);
        ZaqarError::new(
            ErrorCode::TooManyRequests {
                retry_after_secs: seconds,
            },
            format!(
                "This project is sending requests faster than its limit allows. \
                 Retry after {seconds} second(s)."
            ),
        )
    }
}

/// Whole seconds, rounded up, at least 1 (`Retry-After` has no fractions).
fn retry_after_secs(wait: Duration) -> u32 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
}

/// The per-project limits of a running api-node.
pub struct ProjectLimits {
    /// `[project_limits]` as configured.
    config: ProjectLimitsConfig,
    limits: HashMap<String, Limits>,
    largest_body: usize,
    max_tracked: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl ProjectLimits {
    /// The limits of `config`, over the request-size limits `base` of every project.
    pub fn new(config: &ProjectLimitsConfig, base: &Limits) -> ProjectLimits {
        let mut limits = HashMap::new();
        let mut largest_body = base.max_messages_post_size.max(base.max_queue_metadata);
        for (project, custom) in &config.overrides {
            let mut own = base.clone();
            let sizes = [
                (
                    custom.max_messages_post_size,
                    &mut own.max_messages_post_size,
                ),
                (custom.max_queue_metadata, &mut own.max_queue_metadata),
            ];
            for (value, setting) in sizes {
                if let Some(value) = value {
                    *setting = value;
                }
            }
            if let Some(count) = custom.max_messages_per_post {
                own.max_messages_per_post = count;
            }
            largest_body = largest_body.max(own.max_messages_post_size.max(own.max_queue_metadata));
            if own != *base {
                limits.insert(project.clone(), own);
            }
        }
        ProjectLimits {
            config: config.clone(),
            limits,
            largest_body,
            max_tracked: config.max_tracked_projects.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The request-size limits of `project`, when they differ from the defaults.
    pub fn limits_of(&self, project: &str) -> Option<&Limits> {
        self.limits.get(project)
    }

    /// The rate and quotas of `project`, given what an operator set for it in the
    /// catalog (`operator`): each value from there, else from the project's
    /// `[project_limits.overrides."ID"]`, else from `[project_limits]`.
    pub fn quotas(&self, project: &str, operator: &ProjectLimitOverrides) -> ProjectQuotas {
        let file = self
            .config
            .overrides
            .get(project)
            .map(ProjectOverride::limits);
        let set = operator.or(&file.unwrap_or_default());
        let config = &self.config;
        let quota =
            |set: Option<u64>, default: u64| Some(set.unwrap_or(default)).filter(|&max| max > 0);
        ProjectQuotas {
            rate: Rate::new(
                set.requests_per_second
                    .unwrap_or(config.requests_per_second),
                set.burst.unwrap_or(config.burst),
            ),
            max_queues: quota(set.max_queues, config.max_queues),
            max_messages_per_queue: quota(
                set.max_messages_per_queue,
                config.max_messages_per_queue,
            ),
            max_bytes_per_queue: quota(set.max_bytes_per_queue, config.max_bytes_per_queue),
        }
    }

    /// How long the limits an operator set in the catalog are kept before asking
    /// again; `None` when the catalog is not asked.
    pub fn refresh_interval(&self) -> Option<Duration> {
        (self.config.refresh_seconds > 0).then(|| Duration::from_secs(self.config.refresh_seconds))
    }

    /// The largest request body any project may send, in bytes.
    pub fn largest_body(&self) -> usize {
        self.largest_body
    }

    /// Counts one request of `project`, or refuses it when the project is over the
    /// rate of its `quotas`.
    pub fn admit(&self, project: &str, quotas: &ProjectQuotas) -> Result<(), Throttled> {
        self.admit_at(project, quotas, Instant::now())
    }

    fn admit_at(
        &self,
        project: &str,
        quotas: &ProjectQuotas,
        now: Instant,
    ) -> Result<(), Throttled> {
        let Some(rate) = quotas.rate else {
            return Ok(());
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(project) && buckets.len() >= self.max_tracked {
            self.forget_some(&mut buckets, now);
        }
        let bucket = buckets.entry(project.to_string()).or_insert(Bucket {
            tokens: rate.burst,
            updated: now,
            rate,
        });
        bucket.refill(rate, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / rate.per_second;
        Err(Throttled {
            retry_after: Duration::from_secs_f64(wait.min(86_400.0)),
        })
    }

    /// Frees room: the buckets that are full anyway, then, if that frees less
    /// than a tenth, the least recently used tenth (amortised over the inserts
    /// that follow).
    fn forget_some(&self, buckets: &mut HashMap<String, Bucket>, now: Instant) {
        let before = buckets.len();
        buckets.retain(|_, bucket| !bucket.full_at(now));
        let wanted = (self.max_tracked / 10).max(1);
        let freed = before - buckets.len();
        if freed >= wanted {
            tracing::debug!(forgotten = freed, "idle project rate buckets forgotten");
            return;
        }
        let mut by_age: Vec<(Instant, String)> = buckets
            .iter()
            .map(|(project, bucket)| (bucket.updated, project.clone()))
            .collect();
        by_age.sort_unstable();
        for (_, project) in by_age.into_iter().take(wanted - freed) {
            buckets.remove(&project);
        }
        tracing::info!(
            tracked = buckets.len(),
            "project rate buckets at their limit: least recent forgotten"
        );
    }

    /// How many projects have a bucket (for tests and metrics).
    pub fn tracked_projects(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No limits set in the catalog.
    fn none() -> ProjectLimitOverrides {
        ProjectLimitOverrides::default()
    }

    /// Admits one request of `project` at its limits without catalog overrides.
    fn admit(limits: &ProjectLimits, project: &str, now: Instant) -> Result<(), Throttled> {
        limits.admit_at(project, &limits.quotas(project, &none()), now)
    }

    fn config(rate: f64, burst: u32) -> ProjectLimitsConfig {
        ProjectLimitsConfig {
            requests_per_second: rate,
            burst,
            ..ProjectLimitsConfig::default()
        }
    }

    #[test]
    fn a_bucket_admits_its_burst_then_its_rate() {
        let limits = ProjectLimits::new(&config(2.0, 3), &Limits::default());
        let start = Instant::now();
        for _ in 0..3 {
            assert!(admit(&limits, "a", start).is_ok());
        }
        let refused = admit(&limits, "a", start).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        assert_eq!(retry_after_secs(refused.retry_after), 1);
        // Half a second later, one token has come back, and only one.
        let later = start + Duration::from_millis(500);
        assert!(admit(&limits, "a", later).is_ok());
        assert!(admit(&limits, "a", later).is_err());
        // Another project has its own bucket.
        assert!(admit(&limits, "b", start).is_ok());
    }

    #[test]
    fn no_rate_means_no_limit_and_no_memory() {
        let limits = ProjectLimits::new(&ProjectLimitsConfig::default(), &Limits::default());
        let now = Instant::now();
        for _ in 0..10_000 {
            assert!(admit(&limits, "a", now).is_ok());
        }
        assert_eq!(limits.tracked_projects(), 0);
    }

    #[test]
    fn overrides_change_one_projects_rate_and_sizes() {
        let mut config = config(1.0, 1);
        config.overrides.insert(
            "big".into(),
            ProjectOverride {
                requests_per_second: Some(0.0),
                max_messages_post_size: Some(1 << 20),
                ..ProjectOverride::default()
            },
        );
        config.overrides.insert(
            "slow".into(),
            ProjectOverride {
                requests_per_second: Some(0.1),
                ..ProjectOverride::default()
            },
        );
        let base = Limits::default();
        let limits = ProjectLimits::new(&config, &base);
        let now = Instant::now();
        for _ in 0..100 {
            assert!(admit(&limits, "big", now).is_ok());
        }
        assert!(admit(&limits, "slow", now).is_ok());
        let refused = admit(&limits, "slow", now).unwrap_err();
        assert_eq!(retry_after_secs(refused.retry_after), 10);
        assert_eq!(
            limits.limits_of("big").unwrap().max_messages_post_size,
            1 << 20
        );
        assert!(limits.limits_of("slow").is_none());
        assert_eq!(limits.largest_body(), 1 << 20);
    }

    #[test]
    fn the_quotas_have_a_default_and_per_project_values() {
        let mut config = ProjectLimitsConfig {
            max_queues: 10,
            max_messages_per_queue: 1000,
            ..ProjectLimitsConfig::default()
        };
        for (project, max) in [("lifted", 0), ("more", 50)] {
            config.overrides.insert(
                project.into(),
                ProjectOverride {
                    max_queues: Some(max),
                    max_messages_per_queue: Some(max * 100),
                    ..ProjectOverride::default()
                },
            );
        }
        let limits = ProjectLimits::new(&config, &Limits::default());
        assert_eq!(limits.quotas("any", &none()).max_queues, Some(10));
        assert_eq!(limits.quotas("lifted", &none()).max_queues, None);
        assert_eq!(limits.quotas("more", &none()).max_queues, Some(50));
        assert_eq!(
            limits.quotas("any", &none()).max_messages_per_queue,
            Some(1000)
        );
        assert_eq!(
            limits.quotas("lifted", &none()).max_messages_per_queue,
            None
        );
        assert_eq!(
            limits.quotas("more", &none()).max_messages_per_queue,
            Some(5000)
        );
        let unlimited = ProjectLimits::new(&ProjectLimitsConfig::default(), &Limits::default());
        assert_eq!(unlimited.quotas("any", &none()).max_queues, None);
        assert_eq!(
            unlimited.quotas("any", &none()).max_messages_per_queue,
            None
        );
    }

    #[test]
    fn an_operators_limits_come_before_the_files() {
        let mut config = ProjectLimitsConfig {
            requests_per_second: 1.0,
            burst: 1,
            max_queues: 10,
            max_messages_per_queue: 1000,
            ..ProjectLimitsConfig::default()
        };
        config.overrides.insert(
            "filed".into(),
            ProjectOverride {
                max_queues: Some(20),
                burst: Some(4),
                ..ProjectOverride::default()
            },
        );
        let limits = ProjectLimits::new(&config, &Limits::default());
        let operator = ProjectLimitOverrides {
            max_queues: Some(3),
            requests_per_second: Some(0.0),
            ..ProjectLimitOverrides::default()
        };
        // The operator's values win; what they leave unset comes from the file.
        let quotas = limits.quotas("filed", &operator);
        assert_eq!(quotas.max_queues, Some(3));
        assert_eq!(quotas.max_messages_per_queue, Some(1000));
        assert_eq!(quotas.rate, None, "a rate of 0 lifts the limit");
        let now = Instant::now();
        for _ in 0..100 {
            assert!(limits.admit_at("filed", &quotas, now).is_ok());
        }
        // Without them: the project's overrides, then the defaults.
        let filed = limits.quotas("filed", &none());
        assert_eq!(filed.max_queues, Some(20));
        assert_eq!(filed.rate, Rate::new(1.0, 4));
        let lifted = ProjectLimitOverrides {
            max_messages_per_queue: Some(0),
            ..ProjectLimitOverrides::default()
        };
        assert_eq!(limits.quotas("other", &lifted).max_messages_per_queue, None);
        assert_eq!(limits.quotas("other", &lifted).max_queues, Some(10));
    }

    #[test]
    fn memory_stays_bounded_and_idle_projects_go_first() {
        let mut config = config(1.0, 5);
        config.max_tracked_projects = 100;
        let limits = ProjectLimits::new(&config, &Limits::default());
        let start = Instant::now();
        // Many one-off projects, one per millisecond: none has refilled its
        // bucket yet, so the least recently seen make room.
        for i in 0..1_000 {
            let now = start + Duration::from_millis(i);
            admit(&limits, &format!("p{i}"), now).unwrap();
            assert!(limits.tracked_projects() <= 100);
        }
        assert!(limits.buckets.lock().unwrap().contains_key("p999"));

        // A project over its rate is kept while idle (full) buckets can go.
        let mut config = self::config(1.0, 2);
        config.max_tracked_projects = 10;
        let limits = ProjectLimits::new(&config, &Limits::default());
        for i in 0..9 {
            admit(&limits, &format!("idle{i}"), start).unwrap();
        }
        let hot_at = start + Duration::from_secs(10);
        admit(&limits, "hot", hot_at).unwrap();
        admit(&limits, "hot", hot_at).unwrap();
        assert!(admit(&limits, "hot", hot_at).is_err());
        // The idle buckets are full again by now: forgetting them changes nothing.
        admit(&limits, "newcomer", hot_at).unwrap();
        assert!(limits.tracked_projects() <= 10);
        let buckets = limits.buckets.lock().unwrap();
        assert!(buckets.contains_key("newcomer"));
        assert!(buckets.contains_key("hot"));
        drop(buckets);
        assert!(admit(&limits, "hot", hot_at).is_err(), "still throttled");
    }

    #[test]
    fn throttling_is_a_429_with_the_wait() {
        let err = ZaqarError::from(Throttled {
            retry_after: Duration::from_millis(1_200),
        });
        assert_eq!(err.code.http_status(), 429);
        assert_eq!(
            err.code,
            ErrorCode::TooManyRequests {
                retry_after_secs: 2
            }
        );
        assert!(err.description.contains("Retry after 2 second(s)"));
    }
}
