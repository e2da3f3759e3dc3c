//! The worker loops of the roles, as in Zaqar's own zaqar-bench: producers post,
//! consumers claim then delete what they claimed, observers page through messages
//! (or list the head of the queue again and again), poppers pop; over REST or over
//! the WebSocket API.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::client::{post_body, split_href, CallError, Page, ZaqarClient};
use crate::stats::{Live, Op, Role, Tally};
use crate::ws_client::{Claimed, WsClient};

/// Claim TTL and grace (seconds) used by consumers, the values of Zaqar's zaqar-bench.
const CLAIM_BODY: &[u8] = br#"{"ttl":300,"grace":200}"#;
/// How long a worker waits after a transport error before its next request.
const TRANSPORT_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// What every worker of a run shares.
#[derive(Debug)]
pub struct Plan {
    pub queues: Vec<String>,
    pub post_body: Bytes,
    /// The messages of a post, as the WebSocket API takes them.
    pub post_messages: serde_json::Value,
    /// Messages in each post.
    pub batch: u64,
    pub claim_limit: usize,
    /// Consumers delete a claim's messages with one request.
    pub bulk_delete: bool,
    /// How long consumers' claims wait for messages, in seconds (0: not at all).
    pub claim_wait: u32,
    pub list_limit: usize,
    /// Observers list without claimed messages, always from the head of the queue.
    pub list_from_head: bool,
    pub deadline: Instant,
    pub live: Live,
}

impl Plan {
    pub fn new(args: &crate::args::Args, deadline: Instant) -> Self {
        let post_body = post_body(args.batch, args.message_size, args.message_ttl);
        let post_messages = serde_json::from_slice::<serde_json::Value>(&post_body)
            .map(|mut document| document["messages"].take())
            .unwrap_or_default();
        Self {
            queues: args.queue_names(),
            post_body,
            post_messages,
            batch: args.batch as u64,
            claim_limit: args.claim_limit,
            bulk_delete: args.bulk_delete,
            claim_wait: args.wait,
            list_limit: args.list_limit,
            list_from_head: args.list_from_head,
            deadline,
            live: Live::default(),
        }
    }
}

/// How a worker talks to the server.
pub enum Client {
    Rest(ZaqarClient),
    WebSocket(Box<WsClient>),
}

/// A message a claim took, as each API names it for its deletion.
enum Taken {
    /// REST: the message's href, with its claim id.
    Href(String),
    WebSocket(Claimed),
}

impl Client {
    async fn post(&self, plan: &Plan, queue: &str) -> Result<(), CallError> {
        match self {
            Client::Rest(rest) => rest.post(queue, plan.post_body.clone()).await,
            Client::WebSocket(ws) => ws.post(queue, &plan.post_messages).await,
        }
    }

    async fn claim(&self, queue: &str, limit: usize, wait: u32) -> Result<Vec<Taken>, CallError> {
        match self {
            Client::Rest(rest) => {
                let body = Bytes::from_static(CLAIM_BODY);
                let hrefs = rest.claim(queue, limit, body, wait).await?;
                Ok(hrefs.into_iter().map(Taken::Href).collect())
            }
            Client::WebSocket(ws) => {
                let claimed = ws.claim(queue, limit, wait).await?;
                Ok(claimed.into_iter().map(Taken::WebSocket).collect())
            }
        }
    }

    async fn delete(&self, queue: &str, taken: &Taken) -> Result<(), CallError> {
        match (self, taken) {
            (Client::Rest(rest), Taken::Href(href)) => rest.delete(href).await,
            (Client::WebSocket(ws), Taken::WebSocket(message)) => ws.delete(queue, message).await,
            _ => Err(CallError::Transport(
                "a message claimed over the other API".into(),
            )),
        }
    }

    /// Deletes everything one claim took with one request.
    async fn delete_all(&self, queue: &str, taken: &[Taken]) -> Result<(), CallError> {
        let mut ids = Vec::with_capacity(taken.len());
        let mut claim_id = None;
        for message in taken {
            let (id, claim) = match message {
                Taken::Href(href) => split_href(href).ok_or_else(|| {
                    CallError::Transport(format!("a claimed message's href {href:?}"))
                })?,
                Taken::WebSocket(message) => (message.id.as_str(), message.claim_id.as_str()),
            };
            ids.push(id);
            claim_id = Some(claim);
        }
        let Some(claim_id) = claim_id else {
            return Ok(());
        };
        match self {
            Client::Rest(rest) => rest.delete_claimed(queue, &ids, claim_id).await,
            Client::WebSocket(ws) => ws.delete_claimed(queue, &ids, claim_id).await,
        }
    }

    async fn list(
        &self,
        queue: &str,
        limit: usize,
        marker: Option<&str>,
        include_claimed: bool,
    ) -> Result<Page, CallError> {
        match self {
            Client::Rest(rest) => rest.list(queue, limit, marker, include_claimed).await,
            Client::WebSocket(ws) => ws.list(queue, limit, include_claimed).await,
        }
    }

    async fn pop(&self, queue: &str, limit: usize) -> Result<usize, CallError> {
        match self {
            Client::Rest(rest) => rest.pop(queue, limit).await,
            Client::WebSocket(_) => Err(CallError::Transport("poppers speak REST only".into())),
        }
    }

    async fn stats(&self, queue: &str) -> Result<u64, CallError> {
        match self {
            Client::Rest(rest) => rest.stats(queue).await,
            Client::WebSocket(_) => {
                Err(CallError::Transport("stats readers speak REST only".into()))
            }
        }
    }

    async fn list_queues(&self, limit: usize) -> Result<usize, CallError> {
        match self {
            Client::Rest(rest) => rest.list_queues(limit).await,
            Client::WebSocket(_) => {
                Err(CallError::Transport("queue listers speak REST only".into()))
            }
        }
    }
}

/// One worker: a role, a client identity, and the queue it starts at (workers of a role
/// start at different queues, then each takes the queues in turn).
pub struct Worker {
    pub role: Role,
    pub client: Client,
    pub first_queue: usize,
}

enum Timed<T> {
    Done(Duration, T),
    /// The deadline came first; the request is dropped and not counted.
    Cut,
}

/// Runs `request` unless the deadline passes first; how long it took.
async fn timed<T>(deadline: Instant, request: impl Future<Output = T>) -> Timed<T> {
    let start = Instant::now();
    tokio::select! {
        result = request => Timed::Done(start.elapsed(), result),
        _ = tokio::time::sleep_until(deadline) => Timed::Cut,
    }
}

/// Counts a failed request; after a transport error (e.g. connection refused) pauses
/// briefly, so that a dead server does not turn the workers into a busy loop.
async fn failed(plan: &Plan, tally: &mut Tally, op: Op, error: CallError) {
    let transport = matches!(error, CallError::Transport(_));
    tally.error(&plan.live, op, || error.to_string());
    if transport {
        let pause = Instant::now() + TRANSPORT_ERROR_PAUSE;
        tokio::time::sleep_until(pause.min(plan.deadline)).await;
    }
}

impl Worker {
    /// Loops until the deadline; the tally of what it did.
    pub async fn run(self, plan: Arc<Plan>) -> Tally {
        let mut tally = Tally::default();
        let mut next = self.first_queue;
        let mut markers: Vec<Option<String>> = vec![None; plan.queues.len()];
        while Instant::now() < plan.deadline {
            let index = next % plan.queues.len();
            next = next.wrapping_add(1);
            let queue = &plan.queues[index];
            let going = match self.role {
                Role::Producer => self.produce(&plan, &mut tally, queue).await,
                Role::Consumer => self.consume(&plan, &mut tally, queue).await,
                Role::Observer => {
                    self.observe(&plan, &mut tally, queue, &mut markers[index])
                        .await
                }
                Role::Popper => self.pop(&plan, &mut tally, queue).await,
                Role::Lister => self.list_queues(&plan, &mut tally).await,
                Role::StatsReader => self.read_stats(&plan, &mut tally, queue).await,
            };
            if !going {
                break;
            }
        }
        tally
    }

    /// Posts one batch; false once the deadline cut the request.
    async fn produce(&self, plan: &Plan, tally: &mut Tally, queue: &str) -> bool {
        let post = self.client.post(plan, queue);
        match timed(plan.deadline, post).await {
            Timed::Cut => false,
            Timed::Done(latency, Ok(())) => {
                tally.ok(&plan.live, Op::Post, latency, plan.batch);
                true
            }
            Timed::Done(_, Err(e)) => {
                failed(plan, tally, Op::Post, e).await;
                true
            }
        }
    }

    /// Claims, then deletes each claimed message (one request each, or one for all
    /// with --bulk-delete); false once the deadline cut a request.
    async fn consume(&self, plan: &Plan, tally: &mut Tally, queue: &str) -> bool {
        let claim = self.client.claim(queue, plan.claim_limit, plan.claim_wait);
        let taken = match timed(plan.deadline, claim).await {
            Timed::Cut => return false,
            Timed::Done(latency, Ok(taken)) => {
                tally.ok(&plan.live, Op::Claim, latency, taken.len() as u64);
                taken
            }
            Timed::Done(_, Err(e)) => {
                failed(plan, tally, Op::Claim, e).await;
                return true;
            }
        };
        if plan.bulk_delete && !taken.is_empty() {
            let count = taken.len() as u64;
            match timed(plan.deadline, self.client.delete_all(queue, &taken)).await {
                Timed::Cut => return false,
                Timed::Done(latency, Ok(())) => tally.ok(&plan.live, Op::Delete, latency, count),
                Timed::Done(_, Err(e)) => failed(plan, tally, Op::Delete, e).await,
            }
            return true;
        }
        for message in &taken {
            match timed(plan.deadline, self.client.delete(queue, message)).await {
                Timed::Cut => return false,
                Timed::Done(latency, Ok(())) => tally.ok(&plan.live, Op::Delete, latency, 1),
                Timed::Done(_, Err(e)) => failed(plan, tally, Op::Delete, e).await,
            }
        }
        true
    }

    /// Lists one page after this queue's marker and keeps the next marker when the page
    /// had messages; false once the deadline cut the request.
    async fn observe(
        &self,
        plan: &Plan,
        tally: &mut Tally,
        queue: &str,
        marker: &mut Option<String>,
    ) -> bool {
        let list = self.client.list(
            queue,
            plan.list_limit,
            marker.as_deref(),
            !plan.list_from_head,
        );
        match timed(plan.deadline, list).await {
            Timed::Cut => false,
            Timed::Done(latency, Ok(page)) => {
                tally.ok(&plan.live, Op::List, latency, page.count as u64);
                if page.count > 0 && page.next_marker.is_some() && !plan.list_from_head {
                    *marker = page.next_marker;
                }
                true
            }
            Timed::Done(_, Err(e)) => {
                failed(plan, tally, Op::List, e).await;
                true
            }
        }
    }

    /// Lists the first --list-limit queues; false once the deadline cut the request.
    async fn list_queues(&self, plan: &Plan, tally: &mut Tally) -> bool {
        match timed(plan.deadline, self.client.list_queues(plan.list_limit)).await {
            Timed::Cut => false,
            Timed::Done(latency, Ok(listed)) => {
                tally.ok(&plan.live, Op::ListQueues, latency, listed as u64);
                true
            }
            Timed::Done(_, Err(e)) => {
                failed(plan, tally, Op::ListQueues, e).await;
                true
            }
        }
    }

    /// Reads the queue's stats; false once the deadline cut the request.
    async fn read_stats(&self, plan: &Plan, tally: &mut Tally, queue: &str) -> bool {
        match timed(plan.deadline, self.client.stats(queue)).await {
            Timed::Cut => false,
            Timed::Done(latency, Ok(total)) => {
                tally.ok(&plan.live, Op::Stats, latency, total);
                true
            }
            Timed::Done(_, Err(e)) => {
                failed(plan, tally, Op::Stats, e).await;
                true
            }
        }
    }

    /// Pops up to --claim-limit messages; false once the deadline cut the request.
    async fn pop(&self, plan: &Plan, tally: &mut Tally, queue: &str) -> bool {
        match timed(plan.deadline, self.client.pop(queue, plan.claim_limit)).await {
            Timed::Cut => false,
            Timed::Done(latency, Ok(popped)) => {
                tally.ok(&plan.live, Op::Pop, latency, popped as u64);
                true
            }
            Timed::Done(_, Err(e)) => {
                failed(plan, tally, Op::Pop, e).await;
                true
            }
        }
    }
}
