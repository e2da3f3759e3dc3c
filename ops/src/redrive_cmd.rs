//! `zaqar redrive`: moves the messages of a dead letter queue to another queue through
//! the REST API (`POST /v2/queues/{queue}/redrive`, see docs/dead-letter-queues.md), a
//! batch per step and at most `--rate` messages a second, until none is left. Each
//! step is safe to repeat, so a run that stops (an error, ^C) is resumed by running
//! the command again.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

/// The most messages one redrive call moves (the API's default claim limit).
const MOST_PER_CALL: u64 = 20;
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of `zaqar redrive`.
#[derive(Debug, Args)]
pub struct RedriveArgs {
    /// The dead letter queue whose messages move.
    pub queue: String,
    /// The queue they move to [default: each message back to the queue it was
    /// dead-lettered from].
    #[arg(long)]
    pub to: Option<String>,
    /// The REST API's URL.
    #[arg(long, env = "ZAQAR_URL", default_value = "http://127.0.0.1:8888")]
    pub url: String,
    /// The project of both queues (`X-Project-ID`).
    #[arg(long, env = "ZAQAR_PROJECT")]
    pub project: String,
    /// A Keystone token (`X-Auth-Token`), for an API that checks identity.
    #[arg(long, env = "ZAQAR_AUTH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Messages moved per second at most.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: u64,
    /// Messages moved in all at most (0: until none is left).
    #[arg(long, default_value_t = 0)]
    pub max: u64,
}

/// Moves batches until the queue has no free message left (or `--max` moved),
/// printing each step's progress.
pub async fn run(args: RedriveArgs) -> Result<()> {
    let http = reqwest::Client::builder().timeout(CALL_TIMEOUT).build()?;
    let url = format!(
        "{}/v2/queues/{}/redrive",
        args.url.trim_end_matches('/'),
        args.queue
    );
    let client_id = uuid::Uuid::new_v4().to_string();
    let mut total = 0;
    loop {
        let started = Instant::now();
        let mut batch = MOST_PER_CALL.min(args.rate);
        if args.max > 0 {
            batch = batch.min(args.max - total);
        }
        // Without --to, `"destination": null`: each message to its source.
        let mut request = http
            .post(&url)
            .header("X-Project-ID", &args.project)
            .header("Client-ID", &client_id)
            .json(&json!({"destination": args.to, "limit": batch}));
        if let Some(token) = &args.token {
            request = request.header("X-Auth-Token", token);
        }
        let response = request.send().await.context("calling the API")?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != 200 {
            bail!("{status}: {body}");
        }
        let moved = body["moved"]
            .as_u64()
            .context("no \"moved\" in the answer")?;
        let remaining = body["remaining"].as_u64().unwrap_or(0);
        total += moved;
        println!("moved {moved} ({total} in all), {remaining} left");
        if remaining == 0 || moved == 0 || (args.max > 0 && total >= args.max) {
            return Ok(());
        }
        let step = Duration::from_secs_f64(moved as f64 / args.rate as f64);
        tokio::time::sleep(step.saturating_sub(started.elapsed())).await;
    }
}
