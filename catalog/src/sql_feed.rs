//! The change feed between catalog processes that share one PostgreSQL catalog.
//!
//! Every write made through one process is announced with `pg_notify` on a channel
//! named after the catalog's schema, and every process LISTENs on that channel and
//! publishes what is announced, its own writes included, into its own
//! [`EventHub`]; so an api-node watching any of the processes hears of every
//! write, and every watcher hears them in the same order (PostgreSQL delivers
//! notifications in the order their transactions commit). Publishing a process's
//! own writes at once instead would let its watchers hear them before an earlier
//! write of another process. A pool is announced by name
//! and read back from the database, so that a notification stays small whatever the
//! pool's options. When the listening connection is lost, the notifications sent
//! meanwhile are lost with it: the feed publishes `Reset` (watchers forget what
//! they cached) and listens again.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::postgres::{PgListener, PgPool};
use tokio::task::JoinHandle;

use crate::model::PoolSpec;
use crate::watch::{CatalogEvent, EventHub};

/// Pause before listening again after the listener failed.
const RETRY: Duration = Duration::from_secs(1);

/// This process's side of the shared feed; stops listening when dropped.
pub struct PgFeed {
    channel: String,
    listener: JoinHandle<()>,
}

impl Drop for PgFeed {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

impl PgFeed {
    /// Listens on the channel of the catalog in `db`'s current schema, publishing
    /// the other processes' changes into `hub`; `read_pool` reads a pool back.
    pub async fn start(
        db: &PgPool,
        hub: EventHub,
        read_pool: fn(PgPool, String) -> PoolRead,
    ) -> Result<PgFeed, sqlx::Error> {
        let (schema,): (String,) = sqlx::query_as("SELECT COALESCE(current_schema(), '')")
            .fetch_one(db)
            .await?;
        let channel = channel_of(&schema);
        let mut listener = PgListener::connect_with(db).await?;
        listener.listen(&channel).await?;
        let task = Listening {
            db: db.clone(),
            hub,
            read_pool,
        };
        Ok(PgFeed {
            channel,
            listener: tokio::spawn(task.run(listener)),
        })
    }

    /// Tells every process of `event`, this one included; false when it could
    /// not (best effort: a watcher that misses it still refreshes a placement a
    /// pool-node disowns).
    pub async fn announce(&self, db: &PgPool, event: &CatalogEvent) -> bool {
        let payload = match event {
            CatalogEvent::Reset => return false,
            CatalogEvent::Placed {
                project,
                queue,
                pool,
            } => json!({"e": "placed", "p": project, "q": queue, "n": pool}),
            CatalogEvent::Unplaced { project, queue } => {
                json!({"e": "unplaced", "p": project, "q": queue})
            }
            CatalogEvent::PoolChanged(pool) => json!({"e": "pool", "n": pool.name}),
            CatalogEvent::PoolRemoved(name) => json!({"e": "pool_removed", "n": name}),
        };
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&self.channel)
            .bind(payload.to_string())
            .execute(db)
            .await;
        if let Err(err) = &sent {
            tracing::warn!(error = %err, "cannot announce a catalog change to the other catalog processes");
        }
        sent.is_ok()
    }
}

/// A pool read back from the database (`None` when it is gone).
pub type PoolRead = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Option<PoolSpec>, sqlx::Error>> + Send>,
>;

/// The channel of the catalog in `schema`: a hash keeps it within PostgreSQL's
/// 63-byte identifiers, and stable across builds (FNV-1a).
fn channel_of(schema: &str) -> String {
    let hash = schema
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
    format!("zaqar_catalog_{hash:016x}")
}

struct Listening {
    db: PgPool,
    hub: EventHub,
    read_pool: fn(PgPool, String) -> PoolRead,
}

impl Listening {
    async fn run(self, mut listener: PgListener) {
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    if let Some(event) = self.event_of(notification.payload()).await {
                        self.hub.publish(event);
                    }
                }
                // The connection was lost (the next call connects and listens again).
                Ok(None) => self.hub.publish(CatalogEvent::Reset),
                Err(err) => {
                    tracing::warn!(error = %err,
                        "catalog change feed from the other catalog processes interrupted");
                    self.hub.publish(CatalogEvent::Reset);
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// The event a process announced (`None` for a payload that is not one).
    async fn event_of(&self, payload: &str) -> Option<CatalogEvent> {
        let payload: Value = serde_json::from_str(payload).ok()?;
        let field = |name: &str| payload[name].as_str().map(str::to_string);
        match payload["e"].as_str()? {
            "placed" => Some(CatalogEvent::Placed {
                project: field("p")?,
                queue: field("q")?,
                pool: field("n")?,
            }),
            "unplaced" => Some(CatalogEvent::Unplaced {
                project: field("p")?,
                queue: field("q")?,
            }),
            "pool" => match (self.read_pool)(self.db.clone(), field("n")?).await {
                Ok(Some(pool)) => Some(CatalogEvent::PoolChanged(pool)),
                // Removed since: its removal is announced too.
                Ok(None) => None,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read a pool another catalog process changed");
                    Some(CatalogEvent::Reset)
                }
            },
            "pool_removed" => Some(CatalogEvent::PoolRemoved(field("n")?)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::channel_of;

    #[test]
    fn channels_are_short_stable_and_per_schema() {
        assert_eq!(channel_of("public"), channel_of("public"));
        assert_ne!(channel_of("public"), channel_of("catalog_test_1"));
        assert!(channel_of(&"s".repeat(200)).len() <= 63);
        assert_eq!(channel_of(""), "zaqar_catalog_cbf29ce484222325");
    }
}
