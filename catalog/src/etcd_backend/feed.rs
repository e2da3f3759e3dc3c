//! The etcd catalog's change feed: one etcd watch on the catalog's key prefix,
//! translated into [`CatalogEvent`]s, so that watchers hear of writes made through any
//! catalog process sharing the etcd.
//!
//! When the watch breaks (etcd unreachable, the watch cancelled or compacted away) it is
//! made again after a pause, and a `Reset` is published once it is back: events of the
//! gap may be lost, so watchers start over.

use std::time::Duration;

use etcd_client::{EventType, KeyValue, WatchClient, WatchOptions};
use tokio::sync::oneshot;

use super::keys::{unescape_project, Keys};
use super::{decode, StoredPlacement};
use crate::model::PoolSpec;
use crate::watch::{CatalogEvent, EventHub};

/// The first and the longest pause before the watch is made again.
const RETRY_PAUSES: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// Feeds `hub` from etcd until the task is aborted; sends on `ready` once the first
/// watch is established.
pub async fn run(
    mut client: WatchClient,
    keys: Keys,
    hub: EventHub,
    mut ready: Option<oneshot::Sender<()>>,
) {
    let mut pause = RETRY_PAUSES.0;
    loop {
        let options = WatchOptions::new().with_prefix();
        match client.watch(keys.root(), Some(options)).await {
            Ok((_watcher, mut stream)) => {
                pause = RETRY_PAUSES.0;
                hub.publish(CatalogEvent::Reset);
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                tracing::debug!(prefix = %keys.root(), "etcd catalog watch established");
                loop {
                    match stream.message().await {
                        Ok(Some(response)) if response.canceled() => {
                            tracing::warn!(
                                reason = response.cancel_reason(),
                                "etcd cancelled the catalog watch"
                            );
                            break;
                        }
                        Ok(Some(response)) => {
                            for event in response.events() {
                                let Some(kv) = event.kv() else { continue };
                                let put = event.event_type() == EventType::Put;
                                if let Some(event) = translate(&keys, kv, put) {
                                    hub.publish(event);
                                }
                            }
                        }
                        Ok(None) => break,
                        Err(err) => {
                            tracing::warn!(error = %err, "the etcd catalog watch broke");
                            break;
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot watch the etcd catalog"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_PAUSES.1);
    }
}

/// The event of a put (`put`) or delete of `kv`; `None` for keys watchers do not
/// care about (flavors) or values we did not write.
fn translate(keys: &Keys, kv: &KeyValue, put: bool) -> Option<CatalogEvent> {
    let key = std::str::from_utf8(kv.key()).ok()?;
    if let Some(name) = key.strip_prefix(&keys.pools()) {
        return Some(if put {
            CatalogEvent::PoolChanged(decode::<PoolSpec>(kv).ok()?)
        } else {
            CatalogEvent::PoolRemoved(name.to_string())
        });
    }
    let (project, queue) = key.strip_prefix(&keys.placements())?.split_once('/')?;
    let (project, queue) = (unescape_project(project)?, queue.to_string());
    Some(if put {
        let pool = decode::<StoredPlacement>(kv).ok()?.pool;
        CatalogEvent::Placed {
            project,
            queue,
            pool,
        }
    } else {
        CatalogEvent::Unplaced { project, queue }
    })
}
