//! The layout version of a Redis store, and the move of an older store to layout 3.
//!
//! A store records its layout in `zq:layout`. One with no version whose
//! queues have layout 1 `ids` keys (written between 2026-11-26 and 2026-12-04)
//! is migrated at start-up, queue by queue in batches of [`BATCH`] messages, each
//! batch one script (atomic, so a pool-node stopped half-way resumes where it
//! stopped). Then (and for a store of layout 2) every queue's body bytes are
//! counted once, in batches too (`lua/migrate_bytes.lua`; a pool-node stopped
//! half-way counts its queue again); then the version is written. A store of a
//! layout this build does not know is refused. Pool-nodes of an older layout must be
//! stopped first: they would go on writing what this layout never reads (`ids` keys)
//! or writing messages without counting their bytes.

use zaqar_proto::ZaqarError;

use super::keys::{LAYOUT, LAYOUT_KEY};
use super::RedisStore;
use crate::store::StoreResult;

/// Messages moved per script call: a few milliseconds of Redis time at most.
const BATCH: u32 = 500;

impl RedisStore {
    /// Brings the store to [`LAYOUT`], migrating a layout 1 store; refuses another.
    pub(super) async fn ensure_layout(&self) -> StoreResult<()> {
        let mut get = redis::cmd("GET");
        get.arg(LAYOUT_KEY);
        match self.query::<Option<u32>>(&get).await? {
            Some(LAYOUT) => return Ok(()),
            Some(2) => return self.count_bytes_of_every_queue().await,
            Some(other) => {
                return Err(ZaqarError::unavailable(format!(
                    "the redis store has layout {other}, this build reads layout {LAYOUT} \
                     (see docs/configuration.md, \"Redis stores\")"
                )))
            }
            None => {}
        }
        let queues = self.queues_with_key("ids").await?;
        if !queues.is_empty() {
            tracing::warn!(
                queues = queues.len(),
                "migrating the redis store from layout 1 to layout {LAYOUT}"
            );
        }
        for queue in &queues {
            let keys = self.keys(queue);
            loop {
                let mut invocation = self.scripts.migrate.prepare_invoke();
                invocation
                    .key(keys.queue().to_vec())
                    .key(keys.layout_1_ids())
                    .arg(BATCH);
                if self.run::<u64>(&invocation).await? == 0 {
                    break;
                }
            }
        }
        self.count_bytes_of_every_queue().await
    }

    /// Counts the body bytes of every queue holding messages, then writes the layout.
    async fn count_bytes_of_every_queue(&self) -> StoreResult<()> {
        let queues = self.queues_with_key("exp").await?;
        if !queues.is_empty() {
            tracing::warn!(
                queues = queues.len(),
                "migrating the redis store to layout {LAYOUT}: counting each queue's bytes"
            );
        }
        let run = uuid::Uuid::new_v4().simple().to_string();
        for queue in &queues {
            let mut from = 0i64;
            while from >= 0 {
                let mut invocation = self.scripts.migrate_bytes.prepare_invoke();
                invocation
                    .key(self.keys(queue).queue().to_vec())
                    .arg(&run)
                    .arg(from)
                    .arg(BATCH);
                from = self.run::<i64>(&invocation).await?;
            }
        }
        let mut set = redis::cmd("SET");
        set.arg(LAYOUT_KEY).arg(LAYOUT);
        self.query::<()>(&set).await?;
        if !queues.is_empty() {
            tracing::warn!(
                queues = queues.len(),
                "redis store migrated to layout {LAYOUT}"
            );
        }
        Ok(())
    }
}
