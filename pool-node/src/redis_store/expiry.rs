//! The redis store's expiry sweep: each step visits the next queues of the store
//! (a `SCAN` over the queue records of every node, resumed where the last step
//! ended) and runs `lua/expired.lua` on each, which removes its expired messages
//! and takes the count of those the other scripts removed meanwhile. A full round
//! must end before a forgotten queue's message keys expire (an hour after its last
//! message, `KEEP` in `lua/prelude.lua`), which at one step a second allows about
//! 1,800,000 queues per pool.

use std::sync::Mutex;

use zaqar_proto::pb::QueueRef;

use super::keys::QueueKeys;
use super::RedisStore;
use crate::store::StoreResult;

/// Queues one step visits at most (one script each), besides the `SCAN` pages
/// that find them.
const QUEUES_PER_STEP: usize = 500;
/// The `COUNT` hint of each `SCAN` page.
const SCAN_COUNT: usize = 1000;
/// Expired messages one queue's visit removes at most; the rest wait for the next round.
const REMOVED_PER_QUEUE: u32 = 1000;

/// Where the sweep goes on: the node (in the order `nodes()` gives them) and its
/// `SCAN` cursor.
#[derive(Debug, Default)]
pub(super) struct SweepCursor {
    node: usize,
    cursor: u64,
}

impl RedisStore {
    /// One step of the expiry sweep; returns the messages counted as expired.
    pub(super) async fn remove_expired_messages(&self) -> StoreResult<u64> {
        let mut visited = Vec::new();
        let nodes = self.nodes().await?;
        let (mut node, mut cursor) = {
            let at = lock(&self.sweep);
            (at.node, at.cursor)
        };
        while visited.len() < QUEUES_PER_STEP {
            let Some(on) = nodes.get(node) else {
                (node, cursor) = (0, 0);
                break;
            };
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(QueueKeys::pattern("q", self.slots))
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let (next, keys): (u64, Vec<String>) = self.query_on(on, &scan).await?;
            visited.extend(
                keys.iter()
                    .filter_map(|key| QueueKeys::queue_of(key, "q", self.slots)),
            );
            cursor = next;
            if next == 0 {
                // This node's round is over: the next step starts on the next node.
                node = if node + 1 < nodes.len() { node + 1 } else { 0 };
                break;
            }
        }
        *lock(&self.sweep) = SweepCursor { node, cursor };
        let mut expired = 0;
        for queue in &visited {
            expired += self.take_expired(queue).await?;
        }
        crate::metrics::count_expired("redis", expired);
        Ok(expired)
    }

    /// Removes up to [`REMOVED_PER_QUEUE`] expired messages of `queue` and returns
    /// how many of its messages expired since the last call.
    pub(super) async fn take_expired(&self, queue: &QueueRef) -> StoreResult<u64> {
        let mut invocation = self.scripts.expired.prepare_invoke();
        invocation
            .key(self.keys(queue).queue().to_vec())
            .arg(REMOVED_PER_QUEUE);
        self.run(&invocation).await
    }
}

fn lock(cursor: &Mutex<SweepCursor>) -> std::sync::MutexGuard<'_, SweepCursor> {
    cursor.lock().unwrap_or_else(|e| e.into_inner())
}
