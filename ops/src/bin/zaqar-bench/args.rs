//! Command-line flags of `zaqar-bench`, validated once into the run's settings.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Parser;

use crate::stats::Role;

/// Longest queue name Zaqar accepts.
const MAX_QUEUE_NAME: usize = 64;

/// Load generator for a Zaqar v2 REST endpoint (zaqar-rs or OpenStack Zaqar).
///
/// Producers post batches of messages, consumers claim messages then delete each one,
/// observers list messages page by page (following the `next` marker), poppers pop
/// messages. Every worker is a task with its own Client-ID; each picks the queues in
/// turn. The run stops by itself after --duration; a request still in flight then is
/// not counted. With --prefill, each queue is filled first (and with --prefill-claimed
/// its oldest messages claimed for the whole run), to measure the cost of a deep queue.
#[derive(Debug, Clone, Parser)]
#[command(name = "zaqar-bench", version)]
pub struct Args {
    /// Base URL of the Zaqar REST API (plain http://host:port).
    #[arg(long, default_value = "http://127.0.0.1:8888")]
    pub url: String,
    /// The Zaqar WebSocket API (ws://host:port): the workers speak it instead of REST
    /// (queues are still prepared and deleted over REST at --url). Observers then
    /// list from each queue's head: WebSocket listings carry no next marker.
    #[arg(long)]
    pub ws_url: Option<String>,
    /// Producer workers (each posts --batch messages per request).
    #[arg(long, default_value_t = 4)]
    pub producers: usize,
    /// Consumer workers (each claims up to --claim-limit messages, then deletes them).
    #[arg(long, default_value_t = 4)]
    pub consumers: usize,
    /// Observer workers (each lists up to --list-limit messages per request).
    #[arg(long, default_value_t = 2)]
    pub observers: usize,
    /// Popper workers (each pops up to --claim-limit messages per request, REST only).
    #[arg(long, default_value_t = 0)]
    pub poppers: usize,
    /// Lister workers (each lists the first --list-limit queues of the project, REST only).
    #[arg(long, default_value_t = 0)]
    pub queue_listers: usize,
    /// Stats reader workers (each reads the stats of a queue of the run, REST only).
    #[arg(long, default_value_t = 0)]
    pub stats_readers: usize,
    /// Queues created beside the run's before it (PREFIX-extra-0, -1, ...; not used by
    /// the workers), to measure what the number of queues costs.
    #[arg(long, default_value_t = 0)]
    pub extra_queues: usize,
    /// Messages posted to each queue before the run (not measured).
    #[arg(long, default_value_t = 0)]
    pub prefill: usize,
    /// Of the prefilled messages of each queue, the oldest this many are claimed before
    /// the run, for 12 hours: they stay in flight at the head of the queue.
    #[arg(long, default_value_t = 0)]
    pub prefill_claimed: usize,
    /// Observers list the default way (without claimed messages) and always from the
    /// head of the queue: the listing whose cost a deep queue of claimed messages shows.
    #[arg(long)]
    pub list_from_head: bool,
    /// OS threads running the workers (default: one per CPU). Zaqar's zaqar-bench runs
    /// processes of workers to use several cores; here every worker is a task, and the
    /// threads carry the tasks of all roles.
    #[arg(long)]
    pub threads: Option<usize>,
    /// How long the load runs, e.g. 10s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Number of queues the workers spread over.
    #[arg(long, default_value_t = 4)]
    pub queues: usize,
    /// Queue names are PREFIX-0, PREFIX-1, ...
    #[arg(long, default_value = "zaqar-bench")]
    pub queue_prefix: String,
    /// Size in bytes of each message body (a JSON string of that many characters).
    #[arg(long, default_value_t = 256)]
    pub message_size: usize,
    /// Messages per post request.
    #[arg(long, default_value_t = 5)]
    pub batch: usize,
    /// TTL (seconds) of the posted messages.
    #[arg(long, default_value_t = 60)]
    pub message_ttl: u32,
    /// Messages asked for by each claim.
    #[arg(long, default_value_t = 5)]
    pub claim_limit: usize,
    /// Consumers delete what a claim took with one request (`DELETE
    /// .../messages?ids=...&claim_ids=...`, WebSocket `message_delete_many`) instead of
    /// one request per message. The server checks the claim ids only with Zaqar's
    /// `message_delete_with_claim_id` on (off by default).
    #[arg(long)]
    pub bulk_delete: bool,
    /// Messages asked for by each list request of an observer.
    #[arg(long, default_value_t = 5)]
    pub list_limit: usize,
    /// The tenant (X-Project-ID header of every request).
    #[arg(long, default_value = "zaqar-bench")]
    pub project: String,
    /// Bound on each request, connection included, e.g. 5s.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Write the report as JSON to this file as well.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// A name for this run in the report (e.g. the server under test).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Leave the queues (and their messages) in place after the run.
    #[arg(long)]
    pub keep_queues: bool,
    /// Use the queues as an earlier run with --keep-queues left them, instead of
    /// deleting and creating them first.
    #[arg(long)]
    pub reuse_queues: bool,
    /// Consumers' claims wait up to this many seconds for messages (long polling,
    /// zaqar-rs's `wait`); 0 claims without waiting, as Zaqar's zaqar-bench.
    #[arg(long, default_value_t = 0)]
    pub wait: u32,
    /// Requests held waiting for the whole run (claims with wait=20 on a queue nobody
    /// posts to, PREFIX-idle; zaqar-rs only), each on a connection of its own (a
    /// WebSocket one with --ws-url): what idle long-polling consumers cost the server.
    #[arg(long, default_value_t = 0)]
    pub idle_waiters: usize,
    /// Wake probes, one after the other: a claim with wait=10 on PREFIX-probe, then a
    /// post a second later through --post-url; each measures how long after the post's
    /// answer the claim answers (zaqar-rs only).
    #[arg(long, default_value_t = 0)]
    pub wake_probes: usize,
    /// Where wake probes post (another api-node, say) [default: --url].
    #[arg(long)]
    pub post_url: Option<String>,
}

impl Args {
    /// Checks what clap cannot: at least one worker, sane sizes, valid queue names.
    pub fn validated(mut self) -> Result<Self> {
        self.url = self.url.trim_end_matches('/').to_owned();
        if !self.url.starts_with("http://") {
            bail!(
                "--url must start with http:// (plain HTTP), got {:?}",
                self.url
            );
        }
        if let Some(url) = &mut self.ws_url {
            *url = url.trim_end_matches('/').to_owned();
            if !url.starts_with("ws://") {
                bail!("--ws-url must start with ws://, got {url:?}");
            }
        }
        if let Some(url) = &mut self.post_url {
            *url = url.trim_end_matches('/').to_owned();
        }
        let long_polls = self.idle_waiters + self.wake_probes;
        if Role::ALL.iter().all(|&role| self.workers(role) == 0) && long_polls == 0 {
            bail!("nothing to do: every role has 0 workers");
        }
        let rest_only = self.poppers + self.queue_listers + self.stats_readers;
        if rest_only > 0 && self.ws_url.is_some() {
            bail!(
                "--poppers, --queue-listers and --stats-readers speak REST only, not with --ws-url"
            );
        }
        if self.reuse_queues && self.prefill > 0 {
            bail!("--reuse-queues keeps the queues as they are: no --prefill with it");
        }
        if self.prefill_claimed > self.prefill {
            bail!("--prefill-claimed must not be more than --prefill");
        }
        for (flag, value) in [
            ("--queues", self.queues),
            ("--batch", self.batch),
            ("--claim-limit", self.claim_limit),
            ("--list-limit", self.list_limit),
        ] {
            if value == 0 {
                bail!("{flag} must be at least 1");
            }
        }
        if self.duration.is_zero() || self.timeout.is_zero() {
            bail!("--duration and --timeout must be more than 0");
        }
        if self.project.is_empty() {
            bail!("--project must not be empty");
        }
        let longest = match self.extra_queues {
            0 => format!("{}-{}", self.queue_prefix, self.queues - 1),
            extra => format!("{}-extra-{}", self.queue_prefix, extra - 1),
        };
        let valid_chars = self
            .queue_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if self.queue_prefix.is_empty() || !valid_chars || longest.len() > MAX_QUEUE_NAME {
            bail!(
                "--queue-prefix must be [a-zA-Z0-9_.-] and leave queue names of at most \
                 {MAX_QUEUE_NAME} characters, got {:?}",
                self.queue_prefix
            );
        }
        Ok(self)
    }

    /// How many workers `role` has.
    pub fn workers(&self, role: Role) -> usize {
        match role {
            Role::Producer => self.producers,
            Role::Consumer => self.consumers,
            Role::Observer => self.observers,
            Role::Popper => self.poppers,
            Role::Lister => self.queue_listers,
            Role::StatsReader => self.stats_readers,
        }
    }

    /// The names of the queues of this run.
    pub fn queue_names(&self) -> Vec<String> {
        (0..self.queues)
            .map(|i| format!("{}-{i}", self.queue_prefix))
            .collect()
    }
}

/// Parses `500ms`, `10s`, `2m`, `1h`, or a bare number of seconds (`1.5` allowed).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 10s, 2m"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {text:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args> {
        let argv = std::iter::once("zaqar-bench").chain(args.iter().copied());
        Args::try_parse_from(argv)?.validated()
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("10d").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn defaults_are_valid() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.url, "http://127.0.0.1:8888");
        assert_eq!(args.duration, Duration::from_secs(10));
        assert_eq!(args.queue_names().len(), 4);
        assert_eq!(args.queue_names()[3], "zaqar-bench-3");
    }

    #[test]
    fn flags_are_read() {
        let args = parse(&[
            "--url",
            "http://10.0.0.1:9999/",
            "--producers",
            "3",
            "--consumers",
            "0",
            "--observers",
            "1",
            "--duration",
            "5s",
            "--queues",
            "2",
            "--queue-prefix",
            "q",
            "--message-size",
            "1024",
            "--batch",
            "1",
            "--claim-limit",
            "10",
            "--project",
            "p1",
            "--json",
            "out.json",
        ])
        .unwrap();
        assert_eq!(args.url, "http://10.0.0.1:9999", "trailing slash dropped");
        assert_eq!((args.producers, args.consumers, args.observers), (3, 0, 1));
        assert_eq!(args.duration, Duration::from_secs(5));
        assert_eq!(args.queue_names(), ["q-0", "q-1"]);
        assert_eq!(
            (args.message_size, args.batch, args.claim_limit),
            (1024, 1, 10)
        );
        assert_eq!(args.project, "p1");
        assert_eq!(args.json, Some(PathBuf::from("out.json")));
    }

    #[test]
    fn invalid_settings_are_refused() {
        for bad in [
            &["--producers", "0", "--consumers", "0", "--observers", "0"][..],
            &["--batch", "0"],
            &["--queues", "0"],
            &["--duration", "0s"],
            &["--url", "127.0.0.1:8888"],
            &["--url", "https://127.0.0.1:8888"],
            &["--queue-prefix", "has space"],
            &["--queue-prefix", &"x".repeat(63)],
            &["--project", ""],
            &["--producers", "-1"],
            &["--prefill", "10", "--prefill-claimed", "11"],
            &["--prefill", "10", "--reuse-queues"],
            &["--poppers", "1", "--ws-url", "ws://127.0.0.1:9000"],
            &["--queue-listers", "1", "--ws-url", "ws://127.0.0.1:9000"],
            &["--queue-prefix", &"x".repeat(58), "--extra-queues", "10"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
