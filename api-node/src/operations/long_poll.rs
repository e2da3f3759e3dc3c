//! Long polling: a claim or a listing with `wait` (seconds) that finds nothing is held
//! until its queue may have messages or the wait ends, then tried again.
//!
//! What wakes it is the queue's pool-node saying a message was posted (or a claim
//! released) through any api-node (see `routing/activity.rs`); no store is polled
//! while the pool's activity stream is live. Messages that become free without a
//! call (a claim or a delay ran out) are found by the last try, when the wait ends.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use zaqar_proto::ZaqarError;

use super::{invalid_api, Context};
use crate::routing::activity::{Waiter, UNFOLLOWED_POLL};

/// Hears that the client of a request went away while it waits. A WebSocket
/// connection says so when it closes; a REST request is dropped by the HTTP server
/// instead, and its `HangUp` never hears anything.
#[derive(Clone, Debug, Default)]
pub struct HangUp(Option<watch::Receiver<bool>>);

impl HangUp {
    /// Hears when `gone` turns true (or its sender goes).
    pub fn on(gone: watch::Receiver<bool>) -> Self {
        HangUp(Some(gone))
    }

    /// Completes once the client is gone; never for a request without a connection.
    async fn heard(&self) {
        match &self.0 {
            Some(gone) => {
                let _ = gone.clone().wait_for(|gone| *gone).await;
            }
            None => std::future::pending().await,
        }
    }
}

/// What an attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Nothing: the request waits (while it may).
    Nothing,
    /// Fewer messages than it asked for: the queue had no more.
    Some,
    /// As many messages as it asked for: the queue may have more, so a claim wakes
    /// the next waiting claim.
    AllAsked,
}

/// The `wait` of a request, checked against `0..=max_wait_seconds`; `None` for none.
pub fn checked_wait(ctx: &Context, wait: Option<i64>) -> Result<Option<Duration>, ZaqarError> {
    let max = ctx.router().activity().max_wait().as_secs();
    match wait {
        None | Some(0) => Ok(None),
        Some(seconds) if (1..=max as i64).contains(&seconds) => {
            Ok(Some(Duration::from_secs(seconds as u64)))
        }
        Some(_) => Err(invalid_api(format!(
            "The wait may not exceed {max} seconds, and must be at least 0."
        ))),
    }
}

/// Runs `attempt` once, and while `found` says it found nothing, again each time
/// `queue` may have messages, until `wait` has passed (then once more) or the
/// api-node stops or the client hangs up. Over the bounds on waiting requests, an
/// empty answer is 429. `waiter` says how waiting requests of its kind are woken (a
/// claim that took all it asked for wakes the next waiting claim).
///
/// The attempts and the lookup run boxed: a future keeps room for its largest step,
/// and a call to a pool is several KiB that a waiting request would otherwise hold
/// for its whole wait (1,000 waiting claims: see docs/benchmarks.md).
pub async fn poll<T, F, Fut>(
    ctx: &Context,
    queue: &str,
    wait: Option<Duration>,
    waiter: Waiter,
    attempt: F,
    found: impl Fn(&T) -> Found,
) -> Result<T, ZaqarError>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, ZaqarError>>,
{
    let Some(wait) = wait else {
        return Box::pin(attempt()).await;
    };
    let deadline = Instant::now() + wait;
    let activity = ctx.router().activity();
    let place = {
        let pool = Box::pin(ctx.router().lookup(ctx.project(), queue))
            .await
            .ok()
            .flatten();
        activity.wait_on(
            ctx.project(),
            queue,
            pool.as_ref().map(|p| p.endpoint.as_str()),
            waiter,
        )
    };
    let ticket = match place {
        Ok(ticket) => ticket,
        Err(too_many) => {
            let answer = Box::pin(attempt()).await?;
            return if found(&answer) == Found::Nothing {
                Err(too_many)
            } else {
                Ok(answer)
            };
        }
    };
    loop {
        let woken = ticket.woken();
        tokio::pin!(woken);
        woken.as_mut().enable();
        // A wake-up taken below is passed on if this attempt fails or is dropped.
        let answer = Box::pin(attempt()).await?;
        ticket.looked();
        match found(&answer) {
            Found::AllAsked => {
                ticket.pass_on();
                return Ok(answer);
            }
            Found::Some => return Ok(answer),
            Found::Nothing if Instant::now() >= deadline || activity.is_closed() => {
                return Ok(answer)
            }
            Found::Nothing => {}
        }
        let next_look = if ticket.is_followed() {
            deadline
        } else {
            deadline.min(Instant::now() + UNFOLLOWED_POLL)
        };
        tokio::select! {
            () = woken => ticket.took_wake(),
            () = sleep_until(next_look) => {}
            () = activity.closing() => {}
            () = ctx.hang_up.heard() => return Ok(answer),
        }
    }
}
