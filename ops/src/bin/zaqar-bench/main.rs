//! `zaqar-bench`: a load generator for Zaqar v2 servers (zaqar-rs or OpenStack Zaqar),
//! over REST or WebSocket, with the workload mix of Zaqar's own zaqar-bench; prints a
//! live progress line, then a table per role, and optionally writes a JSON report.

mod args;
mod client;
mod histogram;
mod long_poll;
mod prefill;
mod queue_setup;
mod report;
mod stats;
mod workload;
mod ws_client;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::args::Args;
use crate::client::ZaqarClient;
use crate::report::{progress_line, Report};
use crate::stats::{Role, Tally};
use crate::workload::{Client, Plan, Worker};
use crate::ws_client::WsClient;

fn main() -> ExitCode {
    let args = Args::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads.max(1));
    }
    let result = runtime
        .enable_all()
        .build()
        .context("starting the runtime")
        .and_then(|runtime| runtime.block_on(run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zaqar-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prepares the queues, runs the workers until the deadline, reports, cleans up.
/// Request failures are counted in the report; only bad flags or an unwritable report
/// end the run with an error.
async fn run(args: Args) -> Result<()> {
    let args = args.validated()?;
    let admin = ZaqarClient::new(&args.url, &args.project, args.timeout)?;
    if !args.reuse_queues {
        let mut names = args.queue_names();
        names.extend(long_poll::queue_names(&args));
        queue_setup::on_each(&admin, names, "prepare", false, |admin, queue| async move {
            admin.recreate_queue(&queue).await
        })
        .await;
    }
    let extra = queue_setup::extra_names(&args.queue_prefix, args.extra_queues);
    if !extra.is_empty() {
        queue_setup::on_each(
            &admin,
            extra.clone(),
            "create",
            true,
            |admin, queue| async move { admin.create_queue(&queue).await },
        )
        .await;
    }
    if args.prefill > 0 {
        let fill = prefill::Fill {
            messages: args.prefill,
            claimed: args.prefill_claimed,
            message_size: args.message_size,
        };
        // A queue that could not be filled would make the figures lie: that ends the run.
        let mut fills = JoinSet::new();
        for queue in args.queue_names() {
            fills.spawn(prefill::fill(admin.clone(), queue, fill));
        }
        while let Some(done) = fills.join_next().await {
            done.context("a prefill task panicked")?
                .map_err(|e| anyhow::anyhow!("prefilling the queues: {e}"))?;
        }
    }

    let start = Instant::now();
    let plan = Arc::new(Plan::new(&args, start + args.duration));
    let mut workers = JoinSet::new();
    for role in Role::ALL {
        for i in 0..args.workers(role) {
            let client = match &args.ws_url {
                Some(url) => {
                    Client::WebSocket(Box::new(WsClient::new(url, &args.project, args.timeout)))
                }
                None => Client::Rest(ZaqarClient::new(&args.url, &args.project, args.timeout)?),
            };
            let worker = Worker {
                role,
                client,
                first_queue: i,
            };
            workers.spawn(worker.run(Arc::clone(&plan)));
        }
    }
    let progress = tokio::spawn(show_progress(Arc::clone(&plan), args.clone(), start));
    let mut idle_waiters = long_poll::hold_idle_waiters(&args, plan.deadline)?;
    let probes = (args.wake_probes > 0).then(|| {
        let args = args.clone();
        tokio::spawn(async move { long_poll::wake_probes(&args).await })
    });

    let mut tally = Tally::default();
    while let Some(done) = workers.join_next().await {
        tally.merge(&done.context("a worker panicked")?);
    }
    let mut idle = long_poll::Idle::default();
    while let Some(done) = idle_waiters.join_next().await {
        let done = done.context("an idle waiter panicked")?;
        idle.answers += done.answers;
        idle.errors += done.errors;
    }
    let elapsed = plan.deadline.saturating_duration_since(start);
    progress.abort();
    let _ = progress.await;

    let report = Report::new(&args, &tally, elapsed);
    if Role::ALL.iter().any(|&role| args.workers(role) > 0) {
        println!("{}", report.table());
    }
    if args.idle_waiters > 0 {
        let over = if args.ws_url.is_some() {
            "WebSocket"
        } else {
            "REST"
        };
        println!(
            "idle waiters: {} held for {elapsed:?} over {over}, {} waits ended empty, {} errors",
            args.idle_waiters, idle.answers, idle.errors
        );
    }
    if let Some(probes) = probes {
        let (delays, failed) = probes.await.context("the wake probes panicked")??;
        let ms = |us: u64| us as f64 / 1000.0;
        println!(
            "wake probes: {} woken, {failed} failed; from the post's answer to the claim's: \
             p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            delays.count(),
            ms(delays.percentile_us(50.0)),
            ms(delays.percentile_us(99.0)),
            ms(delays.max_us()),
        );
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    if !args.keep_queues {
        let mut all = args.queue_names();
        all.extend(long_poll::queue_names(&args));
        all.extend(extra);
        queue_setup::on_each(&admin, all, "delete", false, |admin, queue| async move {
            admin.delete_queue(&queue).await
        })
        .await;
    }
    Ok(())
}

/// Every second until aborted: requests/s of each role over the last second, and the
/// errors so far, on one line of stderr (rewritten in place on a terminal).
async fn show_progress(plan: Arc<Plan>, args: Args, start: Instant) {
    let tty = std::io::stderr().is_terminal();
    let roles: Vec<Role> = Role::ALL
        .into_iter()
        .filter(|&role| args.workers(role) > 0)
        .collect();
    let mut previous: Vec<u64> = vec![0; roles.len()];
    let mut last = start;
    let mut ticks =
        tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let end_line = EndLineOnDrop(tty);
    loop {
        let now = ticks.tick().await;
        if now > plan.deadline {
            break;
        }
        let secs = now.duration_since(last).as_secs_f64().max(f64::EPSILON);
        last = now;
        let mut errors = 0;
        let mut rates = Vec::with_capacity(roles.len());
        for (role, before) in roles.iter().zip(previous.iter_mut()) {
            let (requests, role_errors) = plan.live.get(*role);
            rates.push((*role, (requests - *before) as f64 / secs));
            *before = requests;
            errors += role_errors;
        }
        let line = progress_line(now.duration_since(start), args.duration, &rates, errors);
        let mut stderr = std::io::stderr().lock();
        let _ = if tty {
            write!(stderr, "\r{line}\x1b[K")
        } else {
            writeln!(stderr, "{line}")
        };
        let _ = stderr.flush();
    }
    drop(end_line);
}

/// Ends the in-place progress line on a terminal, however the progress task stops.
struct EndLineOnDrop(bool);

impl Drop for EndLineOnDrop {
    fn drop(&mut self) {
        if self.0 {
            eprintln!();
        }
    }
}
