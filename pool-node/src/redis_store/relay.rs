//! The activity relay between the pool-nodes of one Redis store (replicas of a pool):
//! each publishes its batches of changed queues (see `crate::activity`) on the channel
//! `zaqar:activity:<db>` and subscribes to it, passing what the others published to
//! its own `WatchQueues` streams. So an api-node that follows one replica's stream
//! hears of posts made through every replica.
//!
//! The subscription is a connection of its own: to the server, to a node of a Redis
//! Cluster (which passes every publication to every node), or to the master the
//! sentinels name (a master demoted to a replica still passes on what the new master
//! publishes). When it breaks, the relay subscribes again after [`RESUBSCRIBE_AFTER`]
//! and passes on `everything`, since publications may have been missed meanwhile.
//! A publication that fails is dropped: the waits it would have ended end at their
//! time, and nothing is lost.

use std::time::Duration;

use redis::RedisError;

use serde::{Deserialize, Serialize};
use tokio_stream::StreamExt;
use zaqar_proto::pb::{QueueActivity, QueueRef};

use zaqar_proto::ZaqarError;

use super::{unavailable, RedisStore};
use crate::activity::Relay;
use crate::store::StoreResult;

/// Where the activity relay (`relay.rs`) subscribes.
pub(super) enum Listen {
    /// The one server.
    Server(redis::Client),
    /// Any node of a Redis Cluster, tried in order.
    Cluster(Vec<redis::Client>),
    /// The master the sentinels name.
    Sentinel,
}

/// Pause before subscribing again after the subscription broke or could not be made.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// One publication: who published it and which queues changed.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Publication {
    /// The publishing pool-node (a random number of its relay), to skip its own.
    from: u64,
    #[serde(default)]
    everything: bool,
    /// Project and queue of each changed queue.
    #[serde(default)]
    queues: Vec<(String, String)>,
}

impl Publication {
    fn of(from: u64, event: QueueActivity) -> Self {
        Publication {
            from,
            everything: event.everything,
            queues: event
                .queues
                .into_iter()
                .map(|q| (q.project, q.queue))
                .collect(),
        }
    }

    fn into_event(self) -> QueueActivity {
        QueueActivity {
            everything: self.everything,
            queues: self
                .queues
                .into_iter()
                .map(|(project, queue)| QueueRef { project, queue })
                .collect(),
        }
    }
}

/// Starts publishing `relay`'s changes and passing on the others', until the
/// pool-node whose changes it relays is gone. Needs a tokio runtime (none: nothing).
pub(super) fn spawn(store: RedisStore, relay: Relay) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let relay = std::sync::Arc::new(relay);
    let from = u64::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .unwrap_or_default(),
    );
    runtime.spawn(publish(store.clone(), relay.clone(), from));
    runtime.spawn(listen(store, relay, from));
}

async fn publish(store: RedisStore, relay: std::sync::Arc<Relay>, from: u64) {
    while let Some(event) = relay.next().await {
        let Ok(payload) = serde_json::to_string(&Publication::of(from, event)) else {
            continue;
        };
        if let Err(err) = store.publish(&store.activity_channel(), payload).await {
            tracing::debug!(error = %err, "queue activity not published to the other pool-nodes");
        }
    }
}

async fn listen(store: RedisStore, relay: std::sync::Arc<Relay>, from: u64) {
    let channel = store.activity_channel();
    while !relay.is_gone() {
        match store.activity_subscription(&channel).await {
            Ok(pubsub) => {
                // Publications may have been missed before the subscription.
                relay.heard(&QueueActivity {
                    everything: true,
                    queues: Vec::new(),
                });
                let mut messages = pubsub.into_on_message();
                loop {
                    let message = tokio::select! {
                        message = messages.next() => message,
                        () = tokio::time::sleep(RESUBSCRIBE_AFTER) => {
                            if relay.is_gone() {
                                return;
                            }
                            continue;
                        }
                    };
                    let Some(message) = message else {
                        tracing::info!(
                            "the activity subscription to redis broke; subscribing again"
                        );
                        break;
                    };
                    let heard = message
                        .get_payload::<String>()
                        .ok()
                        .and_then(|text| serde_json::from_str::<Publication>(&text).ok());
                    match heard {
                        Some(publication) if publication.from != from => {
                            relay.heard(&publication.into_event());
                        }
                        Some(_) => {}
                        None => tracing::debug!("an unreadable activity publication skipped"),
                    }
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, "no activity subscription to redis yet");
            }
        }
        tokio::time::sleep(RESUBSCRIBE_AFTER).await;
    }
}

impl RedisStore {
    /// The channel of the activity relay.
    fn activity_channel(&self) -> String {
        format!("zaqar:activity:{}", self.db)
    }

    /// A connection of its own subscribed to `channel`, made within the call timeout.
    async fn activity_subscription(&self, channel: &str) -> StoreResult<redis::aio::PubSub> {
        let clients = match &*self.listen {
            Listen::Server(client) => vec![client.clone()],
            Listen::Cluster(nodes) => nodes.clone(),
            Listen::Sentinel => vec![self.link.master_client().await?],
        };
        let limit = self.call_timeout;
        let mut failure = ZaqarError::unavailable("no redis node to subscribe to");
        for client in clients {
            let subscribing = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(channel).await?;
                Ok::<_, RedisError>(pubsub)
            };
            match tokio::time::timeout(limit, subscribing).await {
                Ok(Ok(pubsub)) => return Ok(pubsub),
                Ok(Err(err)) => failure = unavailable(err),
                Err(_) => {
                    failure = ZaqarError::unavailable(format!(
                        "no subscription to redis within {limit:?}"
                    ))
                }
            }
        }
        Err(failure)
    }

    /// Publishes `payload` on `channel` within the call timeout (no replica needs to
    /// have it: `min_replicas_ack` does not apply).
    async fn publish(&self, channel: &str, payload: String) -> StoreResult<()> {
        let current = self.link.connection().await?;
        let mut conn = current.conn.clone();
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(channel).arg(payload);
        let limit = self.call_timeout;
        match tokio::time::timeout(limit, publish.query_async::<i64>(&mut conn)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => {
                self.link.failed(&current, &err);
                Err(unavailable(err))
            }
            Err(_) => {
                self.link.forget(&current);
                Err(ZaqarError::unavailable(format!(
                    "no answer to a publication within {limit:?}"
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publications_carry_the_queues_and_who_sent_them() {
        let event = QueueActivity {
            everything: false,
            queues: vec![QueueRef {
                project: "p\t1".into(),
                queue: "orders".into(),
            }],
        };
        let text = serde_json::to_string(&Publication::of(7, event.clone())).unwrap();
        let back: Publication = serde_json::from_str(&text).unwrap();
        assert_eq!(back.from, 7);
        assert_eq!(back.into_event(), event);
    }
}
