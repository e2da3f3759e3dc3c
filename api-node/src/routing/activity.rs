//! Long polling's wake-ups: the requests of this api-node waiting for messages, by
//! queue, and the pool-nodes' activity streams (`PoolService::WatchQueues`) that say
//! which queues may have new ones.
//!
//! A request that waits takes a [`Ticket`] for its queue (bounded per api-node and per
//! project). The first ticket for a pool opens that pool's stream; its events wake the
//! tickets of the queues they name, which then try again. Listings all look again (each
//! wants to see what was posted), but claims one at a time: the event wakes one waiting
//! claim, and a claim that took as many messages as it asked for wakes the next, as
//! there may be more; so a post makes a claim or two try, not every claim waiting on
//! its queue. The stream is live from its
//! first (empty) event on; when it goes live every ticket is woken, since posts may have
//! been missed before. While a ticket's pool has no live stream (the pool-node is
//! unreachable or older, or the queue has no pool yet), its request looks again every
//! [`UNFOLLOWED_POLL`] instead. A stream nobody waited on for [`IDLE_STREAM`] is closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::{watch, Notify};
use tokio_stream::StreamExt;
use zaqar_proto::pb::pool_service_client::PoolServiceClient;
use zaqar_proto::pb::{QueueActivity, WatchQueuesRequest};
use zaqar_proto::{ErrorCode, QueueActivityStream, ZaqarError};

use super::placement_cache::{watch_channel, WatchTarget};
use super::InProcessPools;

/// How often a waiting request looks again while its pool's stream is not live.
pub const UNFOLLOWED_POLL: Duration = Duration::from_secs(1);
/// A pool's stream is closed when no request waited on the pool for this long.
const IDLE_STREAM: Duration = Duration::from_secs(300);
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(200);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// Pause before asking again a pool-node that has no `WatchQueues`.
const UNSUPPORTED_PAUSE: Duration = Duration::from_secs(60);

/// `[long_poll]`: how long and how many requests may wait for messages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LongPollConfig {
    /// Longest `wait` a request may ask for, in seconds (SQS's is 20).
    pub max_wait_seconds: u32,
    /// Requests waiting at once on this api-node; one more is answered 429.
    pub max_waiting: usize,
    /// Requests of one project waiting at once on this api-node; one more is answered 429.
    pub max_waiting_per_project: usize,
}

impl Default for LongPollConfig {
    fn default() -> Self {
        LongPollConfig {
            max_wait_seconds: 20,
            max_waiting: 10_000,
            max_waiting_per_project: 1_000,
        }
    }
}

/// The waiting requests of this api-node and the streams that wake them.
pub struct Activity {
    state: Arc<Mutex<State>>,
    config: LongPollConfig,
    /// How to open a stream: the channel settings of the router, its in-process pools.
    target: WatchTarget,
    in_process: InProcessPools,
    closed: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    queues: HashMap<(String, String), Slot>,
    projects: HashMap<String, usize>,
    waiting: usize,
    pools: HashMap<String, PoolStream>,
}

struct Slot {
    /// Wakes every waiting listing.
    listings: Arc<Notify>,
    /// Wakes one waiting claim at a time (see [`Ticket::pass_on`]).
    claims: Arc<Notify>,
    waiting: usize,
}

/// What a waiting request does with messages: whether one or every waiting request of
/// its kind is woken when a queue may have some.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiter {
    /// A claim takes what it finds: one is woken, and wakes the next when it took
    /// all it asked for.
    Claim,
    /// A listing leaves what it finds for the others: all are woken.
    Listing,
}

struct PoolStream {
    live: bool,
    last_wait: Instant,
    task: tokio::task::JoinHandle<()>,
}

/// One waiting request's place: woken when its queue may have messages. Dropping it
/// leaves.
pub struct Ticket {
    state: Arc<Mutex<State>>,
    project: String,
    queue: String,
    pool: Option<String>,
    wake: Arc<Notify>,
    waiter: Waiter,
    /// This ticket's request was woken and has not answered whether it found
    /// messages yet: if it goes away meanwhile (an error, a client gone), the
    /// wake-up goes to the next waiting claim instead of being lost.
    holds_wake: AtomicBool,
}

impl Activity {
    pub(crate) fn new(
        config: LongPollConfig,
        target: WatchTarget,
        in_process: InProcessPools,
    ) -> Activity {
        Activity {
            state: Arc::default(),
            config,
            target,
            in_process,
            closed: watch::channel(false).0,
        }
    }

    /// The longest wait a request may ask for.
    pub fn max_wait(&self) -> Duration {
        Duration::from_secs(u64::from(self.config.max_wait_seconds))
    }

    /// A place among the requests (of the kind `waiter`) waiting on `queue` of
    /// `project`, whose pool-node is at `pool` (`None` when the queue has no pool yet).
    /// 429 over the bounds.
    pub fn wait_on(
        &self,
        project: &str,
        queue: &str,
        pool: Option<&str>,
        waiter: Waiter,
    ) -> Result<Ticket, ZaqarError> {
        let mut state = lock(&self.state);
        let of_project = state.projects.get(project).copied().unwrap_or(0);
        if state.waiting >= self.config.max_waiting
            || of_project >= self.config.max_waiting_per_project
        {
            return Err(ZaqarError::titled(
                ErrorCode::TooManyRequests {
                    retry_after_secs: 1,
                },
                "Too many waiting requests",
                "Too many requests are waiting for messages; ask again without wait, or later.",
            ));
        }
        state.waiting += 1;
        *state.projects.entry(project.to_string()).or_default() += 1;
        let slot = state
            .queues
            .entry((project.to_string(), queue.to_string()))
            .or_insert_with(|| Slot {
                listings: Arc::default(),
                claims: Arc::default(),
                waiting: 0,
            });
        slot.waiting += 1;
        let wake = match waiter {
            Waiter::Claim => slot.claims.clone(),
            Waiter::Listing => slot.listings.clone(),
        };
        crate::metrics::record_long_polls(state.waiting);
        if let Some(pool) = pool {
            self.follow(&mut state, pool);
        }
        Ok(Ticket {
            state: self.state.clone(),
            project: project.to_string(),
            queue: queue.to_string(),
            pool: pool.map(str::to_string),
            wake,
            waiter,
            holds_wake: AtomicBool::new(false),
        })
    }

    /// Wakes every waiting request, and makes later ones answer without waiting
    /// (the api-node is stopping).
    pub fn close(&self) {
        self.closed.send_replace(true);
        wake_all(&lock(&self.state));
    }

    /// Whether [`Activity::close`] was called.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Completes once [`Activity::close`] is called.
    pub async fn closing(&self) {
        let mut closed = self.closed.subscribe();
        let _ = closed.wait_for(|closed| *closed).await;
    }

    /// Opens the stream of `pool` unless it is open.
    fn follow(&self, state: &mut State, pool: &str) {
        if let Some(stream) = state.pools.get_mut(pool) {
            stream.last_wait = Instant::now();
            return;
        }
        let source = match self.in_process.get(pool) {
            Some(service) => Source::InProcess(service.clone()),
            None => Source::Grpc(self.target.clone()),
        };
        let task = tokio::spawn(follow_pool(
            pool.to_string(),
            source,
            Arc::downgrade(&self.state),
        ));
        state.pools.insert(
            pool.to_string(),
            PoolStream {
                live: false,
                last_wait: Instant::now(),
                task,
            },
        );
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        for stream in lock(&self.state).pools.values() {
            stream.task.abort();
        }
    }
}

impl Ticket {
    /// Completes when the queue may have messages (create it before looking, so that
    /// a post in between is not missed).
    pub fn woken(&self) -> tokio::sync::futures::Notified<'_> {
        self.wake.notified()
    }

    /// Called when this ticket's request took as many messages as it asked for: a
    /// claim wakes the next waiting claim, since there may be more (a listing leaves
    /// them for everyone, who were all woken).
    pub fn pass_on(&self) {
        self.holds_wake.store(false, Ordering::Relaxed);
        if self.waiter == Waiter::Claim {
            self.wake.notify_one();
        }
    }

    /// Called when [`Self::woken`] completed: the request looks again, and until it
    /// says what it found ([`Self::looked`]) its going away passes the wake-up on.
    pub fn took_wake(&self) {
        self.holds_wake.store(true, Ordering::Relaxed);
    }

    /// Called when the request looked after a wake-up and found something or nothing:
    /// the wake-up was used.
    pub fn looked(&self) {
        self.holds_wake.store(false, Ordering::Relaxed);
    }

    /// Whether a live stream of the queue's pool will wake this ticket; when not, the
    /// request looks again every [`UNFOLLOWED_POLL`].
    pub fn is_followed(&self) -> bool {
        let state = lock(&self.state);
        self.pool
            .as_ref()
            .and_then(|pool| state.pools.get(pool))
            .is_some_and(|stream| stream.live)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if *self.holds_wake.get_mut() {
            self.pass_on();
        }
        let mut state = lock(&self.state);
        state.waiting -= 1;
        if let Some(count) = state.projects.get_mut(&self.project) {
            *count -= 1;
            if *count == 0 {
                state.projects.remove(&self.project);
            }
        }
        let key = (
            std::mem::take(&mut self.project),
            std::mem::take(&mut self.queue),
        );
        if let Some(slot) = state.queues.get_mut(&key) {
            slot.waiting -= 1;
            if slot.waiting == 0 {
                state.queues.remove(&key);
            }
        }
        crate::metrics::record_long_polls(state.waiting);
    }
}

/// Where a pool's stream comes from.
enum Source {
    InProcess(Arc<zaqar_proto::DynPoolService>),
    Grpc(WatchTarget),
}

/// Why following a stream stopped.
enum Ended {
    /// Nobody waited on the pool for [`IDLE_STREAM`]: the stream is closed for good.
    Idle,
    /// The stream was live, then ended or broke.
    Broke,
    /// It could not be opened.
    Refused(tonic::Status),
}

/// Keeps the stream of `pool` open (reopening it with a growing pause) until nobody
/// waited on the pool for [`IDLE_STREAM`] or the [`Activity`] is gone.
async fn follow_pool(pool: String, source: Source, state: Weak<Mutex<State>>) {
    let mut pause = FIRST_RETRY_PAUSE;
    loop {
        let ended = follow_once(&pool, &source, &state).await;
        let Some(shared) = state.upgrade() else {
            return;
        };
        {
            let mut state = lock(&shared);
            let Some(stream) = state.pools.get_mut(&pool) else {
                return;
            };
            if stream.live {
                stream.live = false;
                crate::metrics::record_activity_stream(false);
            }
            if matches!(ended, Ended::Idle) {
                // A request may have come since the stream decided it was idle.
                if stream.last_wait.elapsed() > IDLE_STREAM {
                    state.pools.remove(&pool);
                    return;
                }
                continue;
            }
        }
        pause = match ended {
            Ended::Idle => continue,
            Ended::Broke => FIRST_RETRY_PAUSE,
            Ended::Refused(status) if status.code() == tonic::Code::Unimplemented => {
                tracing::info!(pool = %pool,
                    "the pool-node has no activity stream: long polls look again every second");
                UNSUPPORTED_PAUSE
            }
            Ended::Refused(status) => {
                tracing::debug!(pool = %pool, error = %status.message(),
                    "no activity stream from the pool-node");
                pause
            }
        };
        tokio::time::sleep(pause).await;
        if pause < MAX_RETRY_PAUSE {
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
        }
    }
}

async fn follow_once(pool: &str, source: &Source, state: &Weak<Mutex<State>>) -> Ended {
    let opened = match source {
        Source::InProcess(service) => service
            .watch_queues(tonic::Request::new(WatchQueuesRequest {}))
            .await
            .map(tonic::Response::into_inner),
        Source::Grpc(target) => match watch_channel(pool, target) {
            Ok(channel) => PoolServiceClient::new(channel)
                .watch_queues(WatchQueuesRequest {})
                .await
                .map(|stream| Box::pin(stream.into_inner()) as QueueActivityStream),
            Err(status) => Err(status),
        },
    };
    let mut stream = match opened {
        Ok(stream) => stream,
        Err(status) => return Ended::Refused(status),
    };
    let mut idle_check = tokio::time::interval(IDLE_STREAM / 10);
    let mut live = false;
    loop {
        let event = tokio::select! {
            event = stream.next() => event,
            _ = idle_check.tick() => {
                let Some(shared) = state.upgrade() else { return Ended::Idle };
                let state = lock(&shared);
                let idle = state.pools.get(pool).is_none_or(|s| s.last_wait.elapsed() > IDLE_STREAM);
                if idle && state.waiting == 0 {
                    return Ended::Idle;
                }
                continue;
            }
        };
        let event = match event {
            Some(Ok(event)) => event,
            Some(Err(status)) if !live => return Ended::Refused(status),
            Some(Err(status)) => {
                tracing::warn!(pool = %pool, error = %status.message(), "the pool-node's activity stream broke");
                return Ended::Broke;
            }
            None if !live => return Ended::Refused(tonic::Status::unavailable("ended at once")),
            None => return Ended::Broke,
        };
        let Some(shared) = state.upgrade() else {
            return Ended::Idle;
        };
        let mut state = lock(&shared);
        if !live {
            live = true;
            if let Some(stream) = state.pools.get_mut(pool) {
                stream.live = true;
                crate::metrics::record_activity_stream(true);
            }
            tracing::debug!(pool = %pool, "following the pool-node's activity stream");
            wake_all(&state);
        } else {
            wake(&state, &event);
        }
    }
}

/// Wakes the tickets of the queues `event` names (all of them when it says so).
fn wake(state: &State, event: &QueueActivity) {
    if event.everything {
        return wake_all(state);
    }
    for queue in &event.queues {
        // A lookup by borrowed parts would need a custom key; the clone is per event.
        if let Some(slot) = state
            .queues
            .get(&(queue.project.clone(), queue.queue.clone()))
        {
            wake_slot(slot);
        }
    }
}

fn wake_all(state: &State) {
    for slot in state.queues.values() {
        slot.listings.notify_waiters();
        slot.claims.notify_waiters();
    }
}

/// Wakes the waiting listings of a queue, and one of its waiting claims (or the next
/// claim to wait, when none does now).
fn wake_slot(slot: &Slot) {
    slot.listings.notify_waiters();
    slot.claims.notify_one();
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use futures::task::noop_waker_ref;
    use zaqar_proto::pb::QueueRef;

    use super::*;

    fn activity() -> Activity {
        let target = WatchTarget {
            endpoints: Vec::new(),
            connect_timeout: Duration::from_secs(1),
            tls: None,
            token: Default::default(),
        };
        Activity::new(LongPollConfig::default(), target, InProcessPools::default())
    }

    fn claim(activity: &Activity) -> Ticket {
        activity.wait_on("p", "q", None, Waiter::Claim).unwrap()
    }

    /// A post to queue `q` of project `p`, as a pool's stream says it.
    fn posted(activity: &Activity) {
        let event = QueueActivity {
            queues: vec![QueueRef {
                project: "p".into(),
                queue: "q".into(),
            }],
            everything: false,
        };
        wake(&lock(&activity.state), &event);
    }

    /// Polls `woken` once: whether it completed.
    fn is_ready<F: Future<Output = ()>>(woken: &mut Pin<Box<F>>) -> bool {
        woken
            .as_mut()
            .poll(&mut Context::from_waker(noop_waker_ref()))
            == Poll::Ready(())
    }

    #[test]
    fn a_post_wakes_every_listing_and_one_claim() {
        let activity = activity();
        let claims: Vec<Ticket> = (0..3).map(|_| claim(&activity)).collect();
        let listings: Vec<Ticket> = (0..3)
            .map(|_| activity.wait_on("p", "q", None, Waiter::Listing).unwrap())
            .collect();
        let mut claims_woken: Vec<_> = claims.iter().map(|t| Box::pin(t.woken())).collect();
        let mut listings_woken: Vec<_> = listings.iter().map(|t| Box::pin(t.woken())).collect();
        for woken in claims_woken.iter_mut().chain(listings_woken.iter_mut()) {
            assert!(!is_ready(woken));
        }
        posted(&activity);
        let ready =
            |all: &mut Vec<Pin<Box<_>>>| all.iter_mut().map(is_ready).filter(|r| *r).count();
        assert_eq!(ready(&mut claims_woken), 1);
        assert_eq!(ready(&mut listings_woken), 3);
    }

    /// Two claims wait, a post wakes the first, which takes the wake-up and then
    /// `after` says what it did; whether the second was woken.
    fn second_woken_after(after: impl FnOnce(Ticket)) -> bool {
        let activity = activity();
        let (first, second) = (claim(&activity), claim(&activity));
        let mut second_woken = Box::pin(second.woken());
        {
            let mut first_woken = Box::pin(first.woken());
            assert!(!is_ready(&mut first_woken));
            assert!(!is_ready(&mut second_woken));
            posted(&activity);
            assert!(is_ready(&mut first_woken), "the first to wait is woken");
            assert!(!is_ready(&mut second_woken));
        }
        first.took_wake();
        after(first);
        is_ready(&mut second_woken)
    }

    #[test]
    fn a_claim_woken_passes_the_wake_up_on_when_it_goes_away_before_looking() {
        assert!(second_woken_after(drop), "the wake-up was lost");
    }

    #[test]
    fn a_claim_woken_that_looked_passes_it_on_only_when_it_took_all_it_asked_for() {
        assert!(!second_woken_after(|first| {
            first.looked();
            drop(first);
        }));
        assert!(second_woken_after(|first| {
            first.looked();
            first.pass_on();
        }));
    }
}
