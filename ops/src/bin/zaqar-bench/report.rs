//! The end-of-run report: built from the merged tally, printed as a table per role and
//! written as JSON (same figures).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::args::Args;
use crate::stats::{OpStats, Role, Tally};

/// Everything a run measured, with the settings that produced it.
#[derive(Debug, Serialize)]
pub struct Report {
    pub label: String,
    pub url: String,
    pub settings: Settings,
    /// The measured window (start of the load to the deadline), seconds.
    pub elapsed_s: f64,
    pub roles: Vec<RoleReport>,
    /// All operations of all roles together.
    pub total: Summary,
}

/// The workload settings, as given.
#[derive(Debug, Serialize)]
pub struct Settings {
    pub producers: usize,
    pub consumers: usize,
    pub observers: usize,
    pub poppers: usize,
    pub queue_listers: usize,
    pub stats_readers: usize,
    pub extra_queues: usize,
    /// Messages in each queue before the run, and how many of them were claimed.
    pub prefill: usize,
    pub prefill_claimed: usize,
    pub list_from_head: bool,
    pub duration_s: f64,
    pub queues: usize,
    pub message_size: usize,
    pub batch: usize,
    pub claim_limit: usize,
    /// Consumers delete what a claim took with one request.
    pub bulk_delete: bool,
    /// How long consumers' claims wait for messages, in seconds.
    pub wait: u32,
    pub list_limit: usize,
    pub project: String,
}

#[derive(Debug, Serialize)]
pub struct RoleReport {
    pub role: &'static str,
    pub workers: usize,
    #[serde(flatten)]
    pub summary: Summary,
    pub ops: Vec<OpReport>,
}

#[derive(Debug, Serialize)]
pub struct OpReport {
    pub op: &'static str,
    #[serde(flatten)]
    pub summary: Summary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// Counts and rates: `requests` includes errors; `requests_per_s` counts only 2xx
/// answers; latencies are of 2xx answers.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub requests: u64,
    pub errors: u64,
    pub messages: u64,
    pub requests_per_s: f64,
    pub messages_per_s: f64,
    pub latency_ms: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    fn of(stats: &OpStats, messages: u64, elapsed: Duration) -> Self {
        let secs = elapsed.as_secs_f64().max(f64::EPSILON);
        let ms = |us: u64| us as f64 / 1000.0;
        let h = &stats.latency;
        Self {
            requests: stats.requests(),
            errors: stats.errors,
            messages,
            requests_per_s: stats.ok as f64 / secs,
            messages_per_s: messages as f64 / secs,
            latency_ms: Latency {
                p50: ms(h.percentile_us(50.0)),
                p90: ms(h.percentile_us(90.0)),
                p99: ms(h.percentile_us(99.0)),
                max: ms(h.max_us()),
                mean: h.mean_us() / 1000.0,
            },
        }
    }
}

impl Report {
    /// The report of a run of `args` that took `elapsed`; roles without workers are left out.
    pub fn new(args: &Args, tally: &Tally, elapsed: Duration) -> Self {
        let mut roles = Vec::new();
        let mut all = OpStats::default();
        let mut all_messages = 0;
        for role in Role::ALL {
            let workers = args.workers(role);
            if workers == 0 {
                continue;
            }
            let mut merged = OpStats::default();
            let ops = role
                .ops()
                .iter()
                .map(|&op| {
                    let stats = tally.op(op);
                    merged.merge(stats);
                    OpReport {
                        op: op.name(),
                        summary: Summary::of(stats, stats.messages, elapsed),
                        first_error: stats.first_error.clone(),
                    }
                })
                .collect();
            let messages = tally.op(role.message_op()).messages;
            all.merge(&merged);
            all_messages += messages;
            roles.push(RoleReport {
                role: role.name(),
                workers,
                summary: Summary::of(&merged, messages, elapsed),
                ops,
            });
        }
        Self {
            label: args.label.clone(),
            url: args.ws_url.clone().unwrap_or_else(|| args.url.clone()),
            settings: Settings {
                producers: args.producers,
                consumers: args.consumers,
                observers: args.observers,
                poppers: args.poppers,
                queue_listers: args.queue_listers,
                stats_readers: args.stats_readers,
                extra_queues: args.extra_queues,
                prefill: args.prefill,
                prefill_claimed: args.prefill_claimed,
                list_from_head: args.list_from_head,
                duration_s: args.duration.as_secs_f64(),
                queues: args.queues,
                message_size: args.message_size,
                batch: args.batch,
                claim_limit: args.claim_limit,
                bulk_delete: args.bulk_delete,
                wait: args.wait,
                list_limit: args.list_limit,
                project: args.project.clone(),
            },
            elapsed_s: elapsed.as_secs_f64(),
            roles,
            total: Summary::of(&all, all_messages, elapsed),
        }
    }

    /// The human-readable table: one row per role, a sub-row per operation for roles with
    /// several, a total row, then the first error of each operation that had errors.
    pub fn table(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let label = if self.label.is_empty() {
            String::new()
        } else {
            format!(" [{}]", self.label)
        };
        let _ = writeln!(
            out,
            "zaqar-bench{label} {} for {:.1}s: {} producers (batch {}), {} consumers \
             (claim {}{}), {} observers (list {}{}), {} poppers, {} stats readers, {} queues, \
             {} B messages",
            self.url,
            self.elapsed_s,
            s.producers,
            s.batch,
            s.consumers,
            s.claim_limit,
            if s.bulk_delete { ", bulk delete" } else { "" },
            s.observers,
            s.list_limit,
            if s.list_from_head {
                ", from the head"
            } else {
                ""
            },
            s.poppers,
            s.stats_readers,
            s.queues,
            s.message_size
        );
        if s.queue_listers > 0 || s.extra_queues > 0 {
            let _ = writeln!(
                out,
                "{} queue listers (first {} queues); {} more queues of the project besides",
                s.queue_listers, s.list_limit, s.extra_queues
            );
        }
        if s.prefill > 0 {
            let _ = writeln!(
                out,
                "each queue held {} messages before the run, the oldest {} of them claimed",
                s.prefill, s.prefill_claimed
            );
        }
        let _ = writeln!(
            out,
            "{:<12} {:>7} {:>10} {:>8} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8}",
            "role",
            "workers",
            "requests",
            "errors",
            "ok req/s",
            "msgs/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "max ms"
        );
        let row = |out: &mut String, name: &str, workers: String, m: &Summary| {
            let l = &m.latency_ms;
            let _ = writeln!(
                out,
                "{name:<12} {workers:>7} {:>10} {:>8} {:>10.1} {:>10.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                m.requests, m.errors, m.requests_per_s, m.messages_per_s, l.p50, l.p90, l.p99, l.max
            );
        };
        let mut workers = 0;
        for role in &self.roles {
            workers += role.workers;
            row(&mut out, role.role, role.workers.to_string(), &role.summary);
            if role.ops.len() > 1 {
                for op in &role.ops {
                    row(
                        &mut out,
                        &format!("  {}", op.op),
                        String::new(),
                        &op.summary,
                    );
                }
            }
        }
        row(&mut out, "total", workers.to_string(), &self.total);
        for role in &self.roles {
            for op in &role.ops {
                if let Some(error) = &op.first_error {
                    let _ = writeln!(out, "first {} {} error: {error}", role.role, op.op);
                }
            }
        }
        out
    }
}

/// The one-line live progress: requests/s of each role over the last interval, and the
/// errors so far.
pub fn progress_line(
    elapsed: Duration,
    total: Duration,
    rates: &[(Role, f64)],
    errors: u64,
) -> String {
    let mut line = format!(
        "[{:>4.0}s/{:.0}s]",
        elapsed.as_secs_f64(),
        total.as_secs_f64()
    );
    for (role, rate) in rates {
        let _ = write!(line, " {} {rate:.0} req/s |", role.name());
    }
    let _ = write!(line, " errors {errors}");
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Live, Op};
    use clap::Parser;

    fn op_named(report: &Report, role: &str, op: Op) -> Summary {
        let role = report.roles.iter().find(|r| r.role == role).unwrap();
        let op = role.ops.iter().find(|o| o.op == op.name()).unwrap();
        op.summary.clone()
    }

    fn sample() -> Report {
        let args = Args::try_parse_from(["zaqar-bench", "--observers", "0", "--label", "ref"])
            .unwrap()
            .validated()
            .unwrap();
        let live = Live::default();
        let mut tally = Tally::default();
        for ms in 1..=100 {
            tally.ok(&live, Op::Post, Duration::from_millis(ms), 5);
        }
        tally.ok(&live, Op::Claim, Duration::from_millis(4), 2);
        tally.ok(&live, Op::Delete, Duration::from_millis(2), 1);
        tally.ok(&live, Op::Delete, Duration::from_millis(2), 1);
        tally.error(&live, Op::Delete, || "HTTP 404 Not Found: gone".into());
        Report::new(&args, &tally, Duration::from_secs(10))
    }

    #[test]
    fn rates_and_percentiles() {
        let report = sample();
        assert_eq!(report.roles.len(), 2, "observers had no workers");
        let producer = &report.roles[0].summary;
        assert_eq!((producer.requests, producer.messages), (100, 500));
        assert!((producer.requests_per_s - 10.0).abs() < 1e-9);
        assert!((producer.messages_per_s - 50.0).abs() < 1e-9);
        assert!((producer.latency_ms.p50 - 50.0).abs() <= 50.0 / 64.0);
        assert!((producer.latency_ms.max - 100.0).abs() < 1e-9);
        let consumer = &report.roles[1].summary;
        assert_eq!((consumer.requests, consumer.errors), (4, 1));
        assert_eq!(consumer.messages, 2, "deleted, not claimed, messages");
        assert_eq!(op_named(&report, "consumer", Op::Claim).messages, 2);
        assert_eq!(report.total.requests, 104);
        assert_eq!(report.total.messages, 502);
    }

    #[test]
    fn the_table_has_a_row_per_role_and_op() {
        let table = sample().table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("zaqar-bench [ref] http://127.0.0.1:8888 for 10.0s"));
        assert!(lines[1].starts_with("role") && lines[1].ends_with("max ms"));
        assert!(lines[2].starts_with("producer"));
        assert!(lines[3].starts_with("consumer"));
        assert!(lines[4].starts_with("  claim"));
        assert!(lines[5].starts_with("  delete"));
        assert!(lines[6].starts_with("total"));
        assert_eq!(
            lines[7],
            "first consumer delete error: HTTP 404 Not Found: gone"
        );
        let producer: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(producer[..6], ["producer", "4", "100", "0", "10.0", "50.0"]);
        let widths: Vec<usize> = lines[1..7].iter().map(|l| l.len()).collect();
        assert!(widths.iter().all(|&w| w == widths[0]), "columns line up");
    }

    #[test]
    fn the_json_has_the_same_figures() {
        let json = serde_json::to_value(sample()).unwrap();
        assert_eq!(json["label"], "ref");
        assert_eq!(json["roles"][0]["role"], "producer");
        assert_eq!(json["roles"][0]["requests"], 100);
        assert_eq!(json["roles"][1]["ops"][1]["op"], "delete");
        assert_eq!(json["roles"][1]["ops"][1]["errors"], 1);
        assert!(json["roles"][1]["ops"][0].get("first_error").is_none());
        assert_eq!(json["total"]["requests"], 104);
        assert!(json["total"]["latency_ms"]["p99"].as_f64().unwrap() > 90.0);
    }

    #[test]
    fn progress_lines() {
        let line = progress_line(
            Duration::from_secs(3),
            Duration::from_secs(10),
            &[(Role::Producer, 812.4), (Role::Observer, 9.6)],
            2,
        );
        assert_eq!(
            line,
            "[   3s/10s] producer 812 req/s | observer 10 req/s | errors 2"
        );
    }
}
