//! The fault suite's harness: a steady load with a ledger, and what it checks after a
//! fault.
//!
//! Producers post one message per request, its body naming the producer and a sequence
//! number, and keep every acknowledged (201) id with its body. Consumers claim up to 5
//! messages and delete each with its claim. Observers list messages, claimed ones
//! included. Workers are given every api-node's port and move to the next one when a
//! request gets no answer. [`Load::finish`] stops them, reads what the queue still
//! holds and returns an [`Outcome`]: acknowledged messages lost (neither in the queue
//! nor deleted by a consumer), messages held by two live claims at once, bodies that changed, failed requests, and how long after the
//! fault ended posts were acknowledged again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

use crate::catalog_cluster::eventually;
use crate::Client;

/// The queue every worker uses.
pub const QUEUE: &str = "ledger";
/// Creates the load's queue through `client`, once a pool has registered.
pub async fn create_ledger_queue(client: &Client) -> Result<()> {
    eventually("the queue created", Duration::from_secs(30), || async {
        let created = client
            .call("PUT", &format!("/v2/queues/{QUEUE}"), None)
            .await?;
        ensure!(created.status == 201, "{created:?}");
        Ok(())
    })
    .await
}

/// The claims' ttl: a message claimed again sooner was held by two live claims.
const CLAIM_TTL: Duration = Duration::from_secs(60);

/// A claim a consumer got: when, and the claim's id.
struct Claimed {
    at: Instant,
    claim: String,
}

/// Everything the workers saw, shared between them.
#[derive(Default)]
struct Ledger {
    /// Acknowledged posts: id → body.
    acked: BTreeMap<String, Value>,
    /// Messages a consumer sent a delete for (its answer may have been lost in the
    /// fault while the delete was done, so these are not counted as lost).
    delete_sent: BTreeSet<String>,
    /// Every claim of each message.
    claims: BTreeMap<String, Vec<Claimed>>,
    /// (id, body) of every message a claim or a listing returned.
    seen: Vec<(String, Value)>,
    /// When each post was acknowledged.
    posted_at: Vec<Instant>,
    /// When each message was acknowledged: id → instant.
    acked_at: BTreeMap<String, Instant>,
}

/// A running load; stop it with [`Load::finish`].
pub struct Load {
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    workers: Vec<tokio::task::JoinHandle<()>>,
    ports: Vec<u16>,
    project: String,
}

/// What a run under a fault gave.
#[derive(Debug)]
pub struct Outcome {
    pub acked: usize,
    pub lost: usize,
    pub double_claimed: usize,
    pub altered: usize,
    pub requests: u64,
    pub failed: u64,
    /// From the end of the fault to the first post acknowledged after it.
    pub recovered_after: Option<Duration>,
    /// When each lost message had been acknowledged.
    pub lost_acked_at: Vec<Instant>,
    /// The messages held by two live claims (as many as `double_claimed`).
    pub double_claims: Vec<DoubleClaim>,
}

/// A message held by two live claims.
#[derive(Debug)]
pub struct DoubleClaim {
    pub id: String,
    /// When the first of the two claims was answered.
    pub first_at: Instant,
    /// Every claim of the message, and when it was answered, in seconds from the
    /// fault's end (negative: before).
    pub claims: Vec<(String, f64)>,
}

/// Whether `at` lies outside `from..=to`.
fn is_outside(at: Instant, from: Instant, to: Instant) -> bool {
    at < from || at > to
}

impl Outcome {
    /// Fails unless nothing was lost, double-claimed or altered, and posts were
    /// acknowledged again within `within` of the fault's end.
    pub fn check(&self, within: Duration) -> Result<()> {
        ensure!(self.lost == 0, "acknowledged messages were lost: {self:?}");
        self.check_all_but_loss(within, false)
    }

    /// As [`Self::check`], but a setting the docs name may lose what was acknowledged
    /// around the fault: only messages acknowledged between `from` and `to` may be
    /// lost.
    pub fn check_loss_bounded(&self, within: Duration, from: Instant, to: Instant) -> Result<()> {
        self.check_lost_between(from, to)?;
        self.check_all_but_loss(within, false)
    }

    fn check_lost_between(&self, from: Instant, to: Instant) -> Result<()> {
        let outside = self
            .lost_acked_at
            .iter()
            .filter(|at| is_outside(**at, from, to))
            .count();
        ensure!(
            outside == 0,
            "{outside} lost messages were acknowledged outside the {:?} from {from:?} to {to:?}: {self:?}",
            to - from
        );
        Ok(())
    }

    /// As [`Self::check_loss_bounded`], where lost writes include claims: a message
    /// may also be held by two live claims if the first of them was answered
    /// between `from` and `to` (that claim was lost, and the message claimed again).
    pub fn check_writes_lost_between(
        &self,
        within: Duration,
        from: Instant,
        to: Instant,
    ) -> Result<()> {
        let outside = self
            .double_claims
            .iter()
            .filter(|double| is_outside(double.first_at, from, to))
            .count();
        ensure!(
            outside == 0,
            "{outside} messages were claimed twice, first outside the {:?} from {from:?} to {to:?}: {self:?}",
            to - from
        );
        self.check_lost_between(from, to)?;
        self.check_all_but_loss(within, true)
    }

    fn check_all_but_loss(&self, within: Duration, claimed_twice_allowed: bool) -> Result<()> {
        ensure!(self.acked > 0, "nothing was acknowledged: {self:?}");
        ensure!(
            self.double_claimed == 0 || claimed_twice_allowed,
            "messages were claimed twice: {self:?}"
        );
        ensure!(self.altered == 0, "message bodies changed: {self:?}");
        let recovered = self
            .recovered_after
            .context("posts never succeeded again")?;
        ensure!(
            recovered <= within,
            "recovered after {recovered:?}: {self:?}"
        );
        Ok(())
    }

    /// One row of the fault table: fault, lost, double-claimed, seconds to recover,
    /// requests failed (of all).
    pub fn row(&self, fault: &str) -> String {
        format!(
            "| {fault} | {} of {} | {} | {} | {} of {} |",
            self.lost,
            self.acked,
            self.double_claimed,
            self.recovered_after
                .map_or("never".to_string(), |d| format!("{:.1}", d.as_secs_f64())),
            self.failed,
            self.requests
        )
    }

    /// Prints the row, and appends it to the file `ZAQAR_FAULTS_REPORT` names (the
    /// table of docs/reliability.md, made by scripts/faults-report.sh).
    pub fn report(&self, fault: &str) {
        let row = self.row(fault);
        eprintln!("{row}");
        if let Some(path) = std::env::var_os("ZAQAR_FAULTS_REPORT") {
            use std::io::Write;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path);
            if let Ok(mut file) = file {
                let _ = writeln!(file, "{row}");
            }
        }
    }
}

/// The body of message `n` of producer `p`.
fn body(p: usize, n: u64) -> Value {
    json!({"producer": p, "n": n, "text": format!("message {n} of producer {p}")})
}

impl Load {
    /// Starts `producers`, `consumers` and `observers` workers on queue [`QUEUE`] of
    /// `project`, through the api-nodes on `ports` (the queue must exist).
    pub fn start(
        ports: &[u16],
        project: &str,
        producers: usize,
        consumers: usize,
        observers: usize,
    ) -> Load {
        let mut load = Load {
            ledger: Arc::default(),
            stop: Arc::default(),
            requests: Arc::default(),
            failed: Arc::default(),
            workers: Vec::new(),
            ports: ports.to_vec(),
            project: project.to_string(),
        };
        for p in 0..producers {
            let worker = load.worker(p);
            load.workers
                .push(tokio::spawn(async move { worker.produce(p).await }));
        }
        for c in 0..consumers {
            let worker = load.worker(producers + c);
            load.workers
                .push(tokio::spawn(async move { worker.consume().await }));
        }
        for o in 0..observers {
            let worker = load.worker(producers + consumers + o);
            load.workers
                .push(tokio::spawn(async move { worker.observe().await }));
        }
        load
    }

    fn clients(&self) -> Vec<Client> {
        self.ports
            .iter()
            .map(|port| Client::new(*port, &self.project))
            .collect()
    }

    fn worker(&self, index: usize) -> Worker {
        Worker {
            clients: self.clients(),
            current: index % self.ports.len(),
            ledger: self.ledger.clone(),
            stop: self.stop.clone(),
            requests: self.requests.clone(),
            failed: self.failed.clone(),
        }
    }

    /// Stops the workers, reads every message the queue still holds (through the
    /// first api-node on `ports` that answers), and judges the run; the fault ended
    /// at `fault_ended`.
    pub async fn finish(mut self, fault_ended: Instant) -> Result<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        for worker in std::mem::take(&mut self.workers) {
            worker.await?;
        }
        let worker = Worker {
            clients: self.clients(),
            current: 0,
            ledger: self.ledger.clone(),
            stop: Arc::default(),
            requests: Arc::default(),
            failed: Arc::default(),
        };
        let present = worker.everything_left().await?;
        let ledger = self.ledger.lock().expect("ledger");
        let lost_acked_at: Vec<Instant> = ledger
            .acked
            .keys()
            .filter(|id| !ledger.delete_sent.contains(*id) && !present.contains_key(*id))
            .filter_map(|id| ledger.acked_at.get(id).copied())
            .collect();
        let lost = lost_acked_at.len();
        let from_fault = |at: Instant| {
            if at >= fault_ended {
                at.duration_since(fault_ended).as_secs_f64()
            } else {
                -fault_ended.duration_since(at).as_secs_f64()
            }
        };
        let double_claims: Vec<DoubleClaim> = ledger
            .claims
            .iter()
            .filter_map(|(id, claims)| {
                let pair = claims.windows(2).find(|pair| {
                    pair[1].at < pair[0].at + CLAIM_TTL && pair[1].claim != pair[0].claim
                })?;
                Some(DoubleClaim {
                    id: id.clone(),
                    first_at: pair[0].at,
                    claims: claims
                        .iter()
                        .map(|c| (c.claim.clone(), from_fault(c.at)))
                        .collect(),
                })
            })
            .collect();
        let double_claimed = double_claims.len();
        let listed = present.iter().map(|(id, body)| (id.clone(), body.clone()));
        let altered = ledger
            .seen
            .iter()
            .cloned()
            .chain(listed)
            .filter(|(id, body)| ledger.acked.get(id).is_some_and(|acked| acked != body))
            .count();
        let recovered_after = ledger
            .posted_at
            .iter()
            .find(|at| **at >= fault_ended)
            .map(|at| at.duration_since(fault_ended));
        Ok(Outcome {
            acked: ledger.acked.len(),
            lost,
            double_claimed,
            altered,
            requests: self.requests.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            recovered_after,
            lost_acked_at,
            double_claims,
        })
    }
}

/// One worker's view: the api-nodes, the one it uses now, the shared ledger.
struct Worker {
    /// A client per api-node.
    clients: Vec<Client>,
    current: usize,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl Worker {
    /// Sends one request; `None` (and the next api-node for the next request) when no
    /// answer came, `Some` with the status and body otherwise. Counts failures.
    async fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        match self.clients[self.current].call(method, path, body).await {
            Ok(reply) => {
                if reply.status >= 300 {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                }
                Some((reply.status, reply.body))
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.current = (self.current + 1) % self.clients.len();
                None
            }
        }
    }

    async fn pause_after_failure(&self) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    async fn produce(mut self, p: usize) {
        let path = format!("/v2/queues/{QUEUE}/messages");
        let mut n = 0;
        while !self.stop.load(Ordering::Relaxed) {
            let message = body(p, n);
            n += 1;
            let posted = json!({"messages": [{"ttl": 3600, "body": message.clone()}]});
            match self.call("POST", &path, Some(posted)).await {
                Some((201, reply)) => {
                    let href = reply["resources"][0].as_str().unwrap_or_default();
                    let id = href.rsplit('/').next().unwrap_or_default().to_string();
                    let mut ledger = self.ledger.lock().expect("ledger");
                    ledger.acked.insert(id.clone(), message);
                    ledger.acked_at.insert(id, Instant::now());
                    ledger.posted_at.push(Instant::now());
                }
                _ => self.pause_after_failure().await,
            }
        }
    }

    async fn consume(mut self) {
        let claim_path = format!("/v2/queues/{QUEUE}/claims?limit=5");
        let claim_body = json!({"ttl": CLAIM_TTL.as_secs(), "grace": 60});
        while !self.stop.load(Ordering::Relaxed) {
            let claimed = self
                .call("POST", &claim_path, Some(claim_body.clone()))
                .await;
            let Some((201, reply)) = claimed else {
                if !matches!(claimed, Some((204, _))) {
                    self.pause_after_failure().await;
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                continue;
            };
            let messages = reply["messages"].as_array().cloned().unwrap_or_default();
            for message in messages {
                let Some(href) = message["href"].as_str() else {
                    continue;
                };
                let id = href
                    .split('?')
                    .next()
                    .and_then(|path| path.rsplit('/').next())
                    .unwrap_or_default()
                    .to_string();
                let claim = href
                    .rsplit("claim_id=")
                    .next()
                    .unwrap_or_default()
                    .to_string();
                {
                    let mut ledger = self.ledger.lock().expect("ledger");
                    ledger.seen.push((id.clone(), message["body"].clone()));
                    ledger.claims.entry(id.clone()).or_default().push(Claimed {
                        at: Instant::now(),
                        claim,
                    });
                }
                self.ledger.lock().expect("ledger").delete_sent.insert(id);
                self.call("DELETE", href, None).await;
            }
        }
    }

    async fn observe(mut self) {
        let path = format!("/v2/queues/{QUEUE}/messages?echo=true&include_claimed=true&limit=10");
        while !self.stop.load(Ordering::Relaxed) {
            match self.call("GET", &path, None).await {
                Some((200, reply)) => {
                    let mut ledger = self.ledger.lock().expect("ledger");
                    for message in reply["messages"].as_array().into_iter().flatten() {
                        if let Some(id) = message["id"].as_str() {
                            ledger.seen.push((id.to_string(), message["body"].clone()));
                        }
                    }
                }
                Some((204, _)) => {}
                _ => self.pause_after_failure().await,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every message the queue holds, claimed ones included: id → body.
    async fn everything_left(mut self) -> Result<BTreeMap<String, Value>> {
        let mut left = BTreeMap::new();
        let mut path =
            format!("/v2/queues/{QUEUE}/messages?echo=true&include_claimed=true&limit=20");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            ensure!(
                Instant::now() < deadline,
                "the queue could not be read in 30 s"
            );
            match self.call("GET", &path, None).await {
                Some((200, reply)) => {
                    let messages = reply["messages"].as_array().cloned().unwrap_or_default();
                    if messages.is_empty() {
                        return Ok(left);
                    }
                    for message in messages {
                        if let Some(id) = message["id"].as_str() {
                            left.insert(id.to_string(), message["body"].clone());
                        }
                    }
                    let next = reply["links"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|link| link["rel"] == "next")
                        .and_then(|link| link["href"].as_str())
                        .context("a page without a next link")?;
                    path = next.to_string();
                }
                Some((204, _)) => return Ok(left),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}
