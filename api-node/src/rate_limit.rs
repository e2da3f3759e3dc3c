//! Per-project limits, so that one tenant cannot starve the others: a request
//! rate (a token bucket per project: `requests_per_second` sustained, `burst`
//! at once) and per-project overrides of the request-size limits. Over its rate
//! a project gets 429 with `Retry-After`. Buckets live in memory, per api-node;
//! at most `max_tracked_projects` are kept, the idle ones forgotten first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;
use zaqar_proto::limits::Limits;
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
    /// Per-project settings, by project id: `[project_limits.overrides."ID"]`.
    pub overrides: HashMap<String, ProjectOverride>,
}

impl Default for ProjectLimitsConfig {
    fn default() -> Self {
        ProjectLimitsConfig {
            requests_per_second: 0.0,
            burst: 0,
            max_tracked_projects: 100_000,
            max_queues: 0,
            max_messages_per_queue: 0,
            overrides: HashMap::new(),
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

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(rate.burst);
        self.updated = now;
    }

    /// Whether the bucket is full by `now`, so forgetting it changes nothing.
    fn full_at(&self, rate: Rate, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * rate.per_second >= rate.burst
    }
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
    default_rate: Option<Rate>,
    rates: HashMap<String, Option<Rate>>,
    limits: HashMap<String, Limits>,
    /// Most queues of a project (none: no limit), and the projects that differ.
    max_queues: Option<u64>,
    project_max_queues: HashMap<String, Option<u64>>,
    /// Most messages in a queue (none: no limit), and the projects that differ.
    max_messages: Option<u64>,
    project_max_messages: HashMap<String, Option<u64>>,
    largest_body: usize,
    max_tracked: usize,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl ProjectLimits {
    /// The limits of `config`, over the request-size limits `base` of every project.
    pub fn new(config: &ProjectLimitsConfig, base: &Limits) -> ProjectLimits {
        let default_rate = Rate::new(config.requests_per_second, config.burst);
        let mut rates = HashMap::new();
        let mut limits = HashMap::new();
        let mut largest_body = base.max_messages_post_size.max(base.max_queue_metadata);
        let quota = |max: u64| (max > 0).then_some(max);
        let mut project_max_queues = HashMap::new();
        let mut project_max_messages = HashMap::new();
        for (project, custom) in &config.overrides {
            if let Some(max) = custom.max_queues {
                project_max_queues.insert(project.clone(), quota(max));
            }
            if let Some(max) = custom.max_messages_per_queue {
                project_max_messages.insert(project.clone(), quota(max));
            }
            if custom.requests_per_second.is_some() || custom.burst.is_some() {
                let rate = Rate::new(
                    custom
                        .requests_per_second
                        .unwrap_or(config.requests_per_second),
                    custom.burst.unwrap_or(config.burst),
                );
                rates.insert(project.clone(), rate);
            }
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
            default_rate,
            rates,
            limits,
            max_queues: quota(config.max_queues),
            project_max_queues,
            max_messages: quota(config.max_messages_per_queue),
            project_max_messages,
            largest_body,
            max_tracked: config.max_tracked_projects.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The request-size limits of `project`, when they differ from the defaults.
    pub fn limits_of(&self, project: &str) -> Option<&Limits> {
        self.limits.get(project)
    }

    /// The most queues `project` may have, when it is limited.
    pub fn max_queues_of(&self, project: &str) -> Option<u64> {
        match self.project_max_queues.get(project) {
            Some(own) => *own,
            None => self.max_queues,
        }
    }

    /// The most messages a queue of `project` may hold, when it is limited.
    pub fn max_messages_of(&self, project: &str) -> Option<u64> {
        match self.project_max_messages.get(project) {
            Some(own) => *own,
            None => self.max_messages,
        }
    }

    /// The largest request body any project may send, in bytes.
    pub fn largest_body(&self) -> usize {
        self.largest_body
    }

    /// Counts one request of `project`, or refuses it when the project is over its rate.
    pub fn admit(&self, project: &str) -> Result<(), Throttled> {
        self.admit_at(project, Instant::now())
    }

    fn rate_of(&self, project: &str) -> Option<Rate> {
        match self.rates.get(project) {
            Some(rate) => *rate,
            None => self.default_rate,
        }
    }

    fn admit_at(&self, project: &str, now: Instant) -> Result<(), Throttled> {
        let Some(rate) = self.rate_of(project) else {
            return Ok(());
        };
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(project) && buckets.len() >= self.max_tracked {
            self.forget_some(&mut buckets, now);
        }
        let bucket = buckets.entry(project.to_string()).or_insert(Bucket {
            tokens: rate.burst,
            updated: now,
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
        buckets.retain(|project, bucket| match self.rate_of(project) {
            Some(rate) => !bucket.full_at(rate, now),
            None => false,
        });
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
            assert!(limits.admit_at("a", start).is_ok());
        }
        let refused = limits.admit_at("a", start).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        assert_eq!(retry_after_secs(refused.retry_after), 1);
        // Half a second later, one token has come back, and only one.
        let later = start + Duration::from_millis(500);
        assert!(limits.admit_at("a", later).is_ok());
        assert!(limits.admit_at("a", later).is_err());
        // Another project has its own bucket.
        assert!(limits.admit_at("b", start).is_ok());
    }

    #[test]
    fn no_rate_means_no_limit_and_no_memory() {
        let limits = ProjectLimits::new(&ProjectLimitsConfig::default(), &Limits::default());
        let now = Instant::now();
        for _ in 0..10_000 {
            assert!(limits.admit_at("a", now).is_ok());
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
            assert!(limits.admit_at("big", now).is_ok());
        }
        assert!(limits.admit_at("slow", now).is_ok());
        let refused = limits.admit_at("slow", now).unwrap_err();
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
        assert_eq!(limits.max_queues_of("any"), Some(10));
        assert_eq!(limits.max_queues_of("lifted"), None);
        assert_eq!(limits.max_queues_of("more"), Some(50));
        assert_eq!(limits.max_messages_of("any"), Some(1000));
        assert_eq!(limits.max_messages_of("lifted"), None);
        assert_eq!(limits.max_messages_of("more"), Some(5000));
        let unlimited = ProjectLimits::new(&ProjectLimitsConfig::default(), &Limits::default());
        assert_eq!(unlimited.max_queues_of("any"), None);
        assert_eq!(unlimited.max_messages_of("any"), None);
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
            limits.admit_at(&format!("p{i}"), now).unwrap();
            assert!(limits.tracked_projects() <= 100);
        }
        assert!(limits.buckets.lock().unwrap().contains_key("p999"));

        // A project over its rate is kept while idle (full) buckets can go.
        let mut config = self::config(1.0, 2);
        config.max_tracked_projects = 10;
        let limits = ProjectLimits::new(&config, &Limits::default());
        for i in 0..9 {
            limits.admit_at(&format!("idle{i}"), start).unwrap();
        }
        let hot_at = start + Duration::from_secs(10);
        limits.admit_at("hot", hot_at).unwrap();
        limits.admit_at("hot", hot_at).unwrap();
        assert!(limits.admit_at("hot", hot_at).is_err());
        // The idle buckets are full again by now: forgetting them changes nothing.
        limits.admit_at("newcomer", hot_at).unwrap();
        assert!(limits.tracked_projects() <= 10);
        let buckets = limits.buckets.lock().unwrap();
        assert!(buckets.contains_key("newcomer"));
        assert!(buckets.contains_key("hot"));
        drop(buckets);
        assert!(limits.admit_at("hot", hot_at).is_err(), "still throttled");
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
