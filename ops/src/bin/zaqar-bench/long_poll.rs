//! Long-polling measurements (zaqar-rs's `wait`): idle waiters held open for the run,
//! and wake probes, which time how soon a waiting claim answers after a post.

use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::args::Args;
use crate::client::{post_body, CallError, ZaqarClient};
use crate::histogram::Histogram;
use crate::ws_client::WsClient;

/// The wait of an idle waiter's claims: the longest zaqar-rs allows by default.
const IDLE_WAIT: u32 = 20;
/// The wait of a probe's claim, and how long after the claim the probe posts.
const PROBE_WAIT: u32 = 10;
const PROBE_DELAY: Duration = Duration::from_secs(1);
const CLAIM_BODY: &[u8] = br#"{"ttl":60}"#;

/// The queue idle waiters wait on, and the queue of the probes.
pub fn queue_names(args: &Args) -> Vec<String> {
    let mut names = Vec::new();
    if args.idle_waiters > 0 {
        names.push(format!("{}-idle", args.queue_prefix));
    }
    if args.wake_probes > 0 {
        names.push(format!("{}-probe", args.queue_prefix));
    }
    names
}

/// What the idle waiters saw: answers (each a wait that ended empty) and errors.
#[derive(Debug, Default)]
pub struct Idle {
    pub answers: u64,
    pub errors: u64,
}

/// An idle waiter's connection: REST, or WebSocket with --ws-url.
enum Waiter {
    Rest(ZaqarClient),
    WebSocket(Box<WsClient>),
}

impl Waiter {
    /// A claim of one message of `queue` with the longest wait.
    async fn claim(&self, queue: &str) -> Result<(), CallError> {
        match self {
            Waiter::Rest(client) => {
                let body = Bytes::from_static(CLAIM_BODY);
                client.claim(queue, 1, body, IDLE_WAIT).await.map(drop)
            }
            Waiter::WebSocket(client) => client.claim(queue, 1, IDLE_WAIT).await.map(drop),
        }
    }
}

/// Keeps `args.idle_waiters` claims waiting on PREFIX-idle, each on its own
/// connection (WebSocket with --ws-url), asking again whenever one answers, until
/// `deadline`.
pub fn hold_idle_waiters(args: &Args, deadline: Instant) -> anyhow::Result<JoinSet<Idle>> {
    let queue = format!("{}-idle", args.queue_prefix);
    let timeout = Duration::from_secs(u64::from(IDLE_WAIT)) + args.timeout;
    let mut waiters = JoinSet::new();
    for _ in 0..args.idle_waiters {
        let client = match &args.ws_url {
            Some(url) => Waiter::WebSocket(Box::new(WsClient::new(url, &args.project, timeout))),
            None => Waiter::Rest(ZaqarClient::new(&args.url, &args.project, timeout)?),
        };
        let queue = queue.clone();
        waiters.spawn(async move {
            let mut idle = Idle::default();
            loop {
                let claim = client.claim(&queue);
                match tokio::time::timeout_at(deadline, claim).await {
                    Err(_) => return idle,
                    Ok(Ok(_)) => idle.answers += 1,
                    Ok(Err(_)) => {
                        idle.errors += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    Ok(waiters)
}

/// Runs the wake probes one after the other; the delays from each post's answer to
/// its claim's answer, and how many probes failed (the claim did not get the message).
pub async fn wake_probes(args: &Args) -> anyhow::Result<(Histogram, u64)> {
    let queue = format!("{}-probe", args.queue_prefix);
    let timeout = Duration::from_secs(u64::from(PROBE_WAIT)) + args.timeout;
    let consumer = ZaqarClient::new(&args.url, &args.project, timeout)?;
    let post_url = args.post_url.as_deref().unwrap_or(&args.url);
    let producer = ZaqarClient::new(post_url, &args.project, args.timeout)?;
    let message = post_body(1, 16, 60);
    let mut delays = Histogram::default();
    let mut failed = 0;
    for _ in 0..args.wake_probes {
        let claim = {
            let consumer = consumer.clone();
            let queue = queue.clone();
            tokio::spawn(async move {
                let body = Bytes::from_static(CLAIM_BODY);
                let claimed = consumer.claim(&queue, 1, body, PROBE_WAIT).await;
                (claimed, Instant::now())
            })
        };
        tokio::time::sleep(PROBE_DELAY).await;
        if producer.post(&queue, message.clone()).await.is_err() {
            failed += 1;
            let _ = claim.await;
            continue;
        }
        let posted = Instant::now();
        match claim.await? {
            (Ok(hrefs), answered) if !hrefs.is_empty() => {
                delays.record(answered.saturating_duration_since(posted));
                for href in hrefs {
                    let _ = consumer.delete(&href).await;
                }
            }
            _ => failed += 1,
        }
    }
    Ok((delays, failed))
}
