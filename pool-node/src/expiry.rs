//! The expiry sweep: a pool-node removes the messages whose ttl ran out and counts
//! them (`zaqar_messages_total{event="expired"}`), one bounded step of
//! [`MessageStore::remove_expired_messages`] every [`SWEEP_INTERVAL`]. Reads never
//! wait for it: every store already ignores expired messages.

use std::sync::Arc;
use std::time::Duration;

use crate::store::MessageStore;

/// How often the sweep takes a step.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// A step that counts this many goes on at once (the store has more to remove),
/// up to [`STEPS_PER_TICK`] steps.
const BUSY_STEP: u64 = 1000;
const STEPS_PER_TICK: usize = 10;

/// Sweeps `store` until it is dropped.
pub fn spawn_expiry_sweep(store: &Arc<dyn MessageStore>) -> tokio::task::JoinHandle<()> {
    let store = Arc::downgrade(store);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(store) = store.upgrade() else { return };
            for _ in 0..STEPS_PER_TICK {
                match store.remove_expired_messages().await {
                    Ok(counted) if counted >= BUSY_STEP => continue,
                    Ok(_) => break,
                    Err(err) => {
                        // A store that is down is reported by the health checks.
                        tracing::debug!(error = %err, "an expiry sweep step failed");
                        break;
                    }
                }
            }
        }
    })
}
