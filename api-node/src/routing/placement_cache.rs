//! The api-node's placement cache, `(project, queue) → pool`, kept fresh by the
//! catalog's watch stream.
//!
//! While a watch stream is live, cached placements do not expire: the stream's events
//! evict an entry whose queue was removed or placed elsewhere, and move the entries of
//! a pool whose endpoint changed. A `reset` event (sent first on every subscription, and
//! whenever the catalog says events were missed) makes every entry untrusted: the
//! catalog is asked again, and the old entry only serves while it cannot answer. While no
//! stream is live (the catalog is unreachable, or its backend has no feed), entries
//! expire after `placement_cache_ttl`: the catalog is asked again, and while it cannot
//! answer (no quorum, no node reachable) the expired entry is used all the same, since
//! placements only change through the catalog.
//!
//! A lookup answered by the catalog may race an event about the same queue: the
//! answer is then kept only if no event arrived between the question and the answer
//! (see [`PlacementCache::epoch`]), so an entry evicted by an event is never put back
//! by an older answer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::{ClientTlsConfig, Endpoint};
use zaqar_proto::cluster_auth::{AuthChannel, ClusterToken};
use zaqar_proto::pb::catalog_event::Event;
use zaqar_proto::pb::catalog_service_client::CatalogServiceClient;
use zaqar_proto::pb::{self, WatchRequest};

/// First pause after a watch stream failed on every catalog node; it doubles up to
/// [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(200);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(5);
/// HTTP/2 pings on the watch connection, so a catalog node that vanished without
/// closing it is noticed.
const KEEPALIVE: Duration = Duration::from_secs(5);

/// A placement the api-node learnt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedPlacement {
    pub pool: String,
    pub endpoint: String,
    learnt: Instant,
    /// Which insertion put it here (its place in the cache's `order`).
    stamp: u64,
    /// The cache's `resets` when it was learnt: an entry from before the last reset
    /// is not trusted any more, only kept for when the catalog cannot answer.
    resets: u64,
}

/// The cached placements and whether a watch stream keeps them fresh.
///
/// At most `capacity` entries; a new one beyond that pushes out the oldest, found
/// in `order` (insertion order, so also the order of age) in constant time per insert.
#[derive(Debug)]
pub struct PlacementCache {
    entries: HashMap<(String, String), CachedPlacement>,
    /// The keys in the order they were inserted, with the stamp of that insertion; a
    /// key removed or inserted again since (another stamp) is skipped when it comes
    /// up. Compacted when it grows past twice the capacity.
    order: VecDeque<((String, String), u64)>,
    /// The stamp of the next insertion.
    next_stamp: u64,
    /// A watch stream is live: entries do not expire.
    watched: bool,
    /// Changes with every event that may make an answer in flight stale.
    epoch: u64,
    /// `reset` events so far.
    resets: u64,
    ttl: Duration,
    capacity: usize,
    /// Entries dropped so far, by reason (see [`PlacementCache::dropped`]).
    dropped: HashMap<&'static str, u64>,
}

/// A cache shared between the router and its watch task.
pub type SharedCache = Arc<Mutex<PlacementCache>>;

impl PlacementCache {
    pub fn new(ttl: Duration, capacity: usize) -> PlacementCache {
        PlacementCache {
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_stamp: 0,
            watched: false,
            epoch: 0,
            resets: 0,
            ttl,
            capacity: capacity.max(1),
            dropped: HashMap::new(),
        }
    }

    /// Counts `count` entries dropped for `reason` (`capacity`, `event`, `forgotten`),
    /// here and in `zaqar_placement_cache_evictions_total`.
    fn dropped(&mut self, reason: &'static str, count: usize) {
        *self.dropped.entry(reason).or_default() += count as u64;
        crate::metrics::record_evictions(reason, count, self.entries.len());
    }

    /// The placement of a queue, if cached and still trusted.
    pub fn get(&self, project: &str, queue: &str) -> Option<CachedPlacement> {
        self.get_even_expired(project, queue).filter(|entry| {
            entry.resets == self.resets && (self.watched || entry.learnt.elapsed() < self.ttl)
        })
    }

    /// The placement of a queue as last learnt, even when it expired: what the
    /// router falls back on while the catalog cannot answer. An expired entry stays
    /// until an event, a newer answer or the capacity pushes it out.
    pub fn get_even_expired(&self, project: &str, queue: &str) -> Option<CachedPlacement> {
        self.entries
            .get(&(project.to_string(), queue.to_string()))
            .cloned()
    }

    /// Taken before asking the catalog; hand it to [`insert`](Self::insert).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Caches an answer of the catalog asked at `epoch`, unless an event came since.
    pub fn insert(&mut self, project: &str, queue: &str, pool: &str, endpoint: &str, epoch: u64) {
        if epoch != self.epoch {
            return;
        }
        let key = (project.to_string(), queue.to_string());
        if !self.entries.contains_key(&key) {
            while self.entries.len() >= self.capacity {
                self.evict_oldest();
                self.dropped("capacity", 1);
            }
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.entries.insert(
            key.clone(),
            CachedPlacement {
                pool: pool.to_string(),
                endpoint: endpoint.to_string(),
                learnt: Instant::now(),
                stamp,
                resets: self.resets,
            },
        );
        self.order.push_back((key, stamp));
        crate::metrics::record_cached_placements(self.entries.len());
        if self.order.len() > 2 * self.capacity {
            let entries = &self.entries;
            self.order
                .retain(|(key, stamp)| Self::is_current(entries, key, *stamp));
        }
    }

    fn is_current(
        entries: &HashMap<(String, String), CachedPlacement>,
        key: &(String, String),
        stamp: u64,
    ) -> bool {
        entries.get(key).is_some_and(|entry| entry.stamp == stamp)
    }

    /// Drops the entry inserted first that is still cached.
    fn evict_oldest(&mut self) {
        while let Some((key, stamp)) = self.order.pop_front() {
            if Self::is_current(&self.entries, &key, stamp) {
                self.entries.remove(&key);
                return;
            }
        }
        // Every entry's key and stamp are in `order`: not reached with entries left.
        self.entries.clear();
    }

    /// Drops the placement of a queue deleted, or that its pool-node did not know.
    pub fn remove(&mut self, project: &str, queue: &str) {
        let removed = self
            .entries
            .remove(&(project.to_string(), queue.to_string()));
        self.dropped("forgotten", usize::from(removed.is_some()));
    }

    /// Whether a watch stream keeps the cache fresh.
    #[cfg(test)]
    fn is_watched(&self) -> bool {
        self.watched
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// The watch stream ended: entries expire by age again.
    fn unwatched(&mut self) {
        if self.watched {
            self.watched = false;
            self.epoch += 1;
            crate::metrics::record_watch_connected(false);
        }
    }

    /// Applies one event of the watch stream. Every event but `placed` changes the
    /// epoch: a placement can only replace one whose removal came (and changed the
    /// epoch) before it, so it cannot make an answer in flight stale by itself.
    pub fn apply(&mut self, event: Event) {
        if !matches!(event, Event::Placed(_)) {
            self.epoch += 1;
        }
        let before = self.entries.len();
        self.apply_event(event);
        self.dropped("event", before.saturating_sub(self.entries.len()));
    }

    fn apply_event(&mut self, event: Event) {
        match event {
            Event::Reset(_) => {
                self.resets += 1;
                self.watched = true;
                crate::metrics::record_watch_connected(true);
            }
            Event::Placed(placement) => {
                let Some(queue) = placement.queue else { return };
                let key = (queue.project, queue.queue);
                if self
                    .entries
                    .get(&key)
                    .is_some_and(|entry| entry.pool != placement.pool)
                {
                    self.entries.remove(&key);
                }
            }
            Event::Unplaced(queue) => {
                self.entries.remove(&(queue.project, queue.queue));
            }
            Event::PoolChanged(pool) => {
                for entry in self.entries.values_mut() {
                    if entry.pool == pool.name {
                        entry.endpoint.clone_from(&pool.endpoint);
                    }
                }
            }
            Event::PoolRemoved(name) => self.entries.retain(|_, entry| entry.pool != name),
        }
    }
}

/// Where the watch task subscribes: the catalog nodes, tried in turn.
#[derive(Clone)]
pub struct WatchTarget {
    pub endpoints: Vec<String>,
    pub connect_timeout: Duration,
    pub tls: Option<ClientTlsConfig>,
    pub token: ClusterToken,
}

/// Keeps `cache` subscribed to a catalog node's watch stream, moving to the next node
/// when one fails, with a growing pause after a round where none answered. Runs until
/// aborted.
pub async fn watch_catalog(target: WatchTarget, cache: SharedCache) {
    let mut pause = FIRST_RETRY_PAUSE;
    let mut unsupported_logged = false;
    loop {
        let mut subscribed = false;
        for endpoint in &target.endpoints {
            match watch_node(endpoint, &target, &cache).await {
                Ok(()) => subscribed = true,
                Err(status) if status.code() == tonic::Code::Unimplemented => {
                    if !unsupported_logged {
                        tracing::info!(catalog = %endpoint,
                            "the catalog has no watch stream; cached placements expire by age");
                        unsupported_logged = true;
                    }
                }
                Err(status) => {
                    tracing::debug!(catalog = %endpoint, error = %status.message(),
                        "no catalog watch stream from this node");
                }
            }
            lock(&cache).unwatched();
        }
        if subscribed {
            pause = FIRST_RETRY_PAUSE;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_RETRY_PAUSE);
    }
}

/// Follows the watch stream of one catalog node until it ends; `Ok` when a stream was
/// live for a while (it then ended), the refusal otherwise.
async fn watch_node(
    endpoint: &str,
    target: &WatchTarget,
    cache: &SharedCache,
) -> Result<(), tonic::Status> {
    let channel = watch_channel(endpoint, target)?;
    let mut stream = CatalogServiceClient::new(channel)
        .watch(WatchRequest {})
        .await?
        .into_inner();
    let mut live = false;
    loop {
        match stream.message().await {
            Ok(Some(pb::CatalogEvent { event: Some(event) })) => {
                if !live && matches!(event, Event::Reset(_)) {
                    live = true;
                    tracing::info!(catalog = %endpoint, "placement cache follows the catalog's watch stream");
                }
                if live {
                    lock(cache).apply(event);
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => {
                tracing::warn!(catalog = %endpoint, "the catalog's watch stream ended");
                break;
            }
            Err(status) => {
                tracing::warn!(catalog = %endpoint, error = %status.message(),
                    "the catalog's watch stream broke");
                if !live {
                    return Err(status);
                }
                break;
            }
        }
    }
    Ok(())
}

/// A channel for one long-lived stream: no call timeout, keepalive pings instead.
pub(crate) fn watch_channel(
    endpoint: &str,
    target: &WatchTarget,
) -> Result<AuthChannel, tonic::Status> {
    let invalid =
        |err| tonic::Status::invalid_argument(format!("invalid gRPC endpoint {endpoint:?}: {err}"));
    let mut channel = Endpoint::from_shared(endpoint.to_string()).map_err(invalid)?;
    if let Some(tls) = &target.tls {
        channel = channel.tls_config(tls.clone()).map_err(invalid)?;
    }
    Ok(target.token.attach(
        channel
            .connect_timeout(target.connect_timeout)
            .http2_keep_alive_interval(KEEPALIVE)
            .keep_alive_timeout(KEEPALIVE)
            .keep_alive_while_idle(true)
            .connect_lazy(),
    ))
}

/// The cache, even if a panicking holder poisoned its lock.
pub fn lock(cache: &SharedCache) -> std::sync::MutexGuard<'_, PlacementCache> {
    cache.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(project: &str, queue: &str) -> pb::QueueRef {
        pb::QueueRef {
            project: project.into(),
            queue: queue.into(),
        }
    }

    fn reset() -> Event {
        Event::Reset(pb::Empty {})
    }

    fn watched_cache() -> PlacementCache {
        let mut cache = PlacementCache::new(Duration::ZERO, 10);
        cache.apply(reset());
        cache
    }

    #[test]
    fn without_a_stream_entries_expire_by_age() {
        let mut cache = PlacementCache::new(Duration::ZERO, 10);
        cache.insert("p", "q", "a", "http://a", cache.epoch());
        assert_eq!(cache.get("p", "q"), None);
        // Kept for when the catalog cannot answer.
        assert_eq!(cache.get_even_expired("p", "q").unwrap().pool, "a");
        let mut cache = PlacementCache::new(Duration::from_secs(60), 10);
        cache.insert("p", "q", "a", "http://a", cache.epoch());
        assert_eq!(cache.get("p", "q").unwrap().pool, "a");
    }

    #[test]
    fn while_watched_entries_stay_until_an_event_evicts_them() {
        let mut cache = watched_cache();
        for q in ["q1", "q2", "q3"] {
            cache.insert("p", q, "a", "http://a", cache.epoch());
        }
        assert_eq!(cache.get("p", "q1").unwrap().endpoint, "http://a");

        cache.apply(Event::Unplaced(queue("p", "q1")));
        assert_eq!(cache.get("p", "q1"), None);

        cache.apply(Event::Placed(pb::Placement {
            queue: Some(queue("p", "q2")),
            pool: "a".into(),
            endpoint: String::new(),
        }));
        assert!(cache.get("p", "q2").is_some(), "same pool: kept");
        cache.apply(Event::Placed(pb::Placement {
            queue: Some(queue("p", "q2")),
            pool: "b".into(),
            endpoint: String::new(),
        }));
        assert_eq!(cache.get("p", "q2"), None, "another pool: evicted");

        cache.apply(Event::PoolChanged(pb::Pool {
            name: "a".into(),
            endpoint: "http://a2".into(),
            ..Default::default()
        }));
        assert_eq!(cache.get("p", "q3").unwrap().endpoint, "http://a2");
        cache.apply(Event::PoolRemoved("a".into()));
        assert_eq!(cache.get("p", "q3"), None);
    }

    #[test]
    fn a_reset_distrusts_everything_and_the_end_of_the_stream_restores_expiry() {
        let mut cache = watched_cache();
        cache.insert("p", "q", "a", "http://a", cache.epoch());
        cache.apply(reset());
        assert_eq!(cache.get("p", "q"), None);
        assert_eq!(cache.get_even_expired("p", "q").unwrap().pool, "a");
        cache.insert("p", "q", "a", "http://a", cache.epoch());
        assert!(cache.get("p", "q").is_some());
        cache.unwatched();
        assert!(!cache.is_watched());
        assert_eq!(cache.get("p", "q"), None, "ttl 0 applies again");
    }

    #[test]
    fn an_answer_older_than_an_event_is_not_cached() {
        let mut cache = watched_cache();
        let asked = cache.epoch();
        cache.apply(Event::Unplaced(queue("p", "q")));
        cache.insert("p", "q", "a", "http://a", asked);
        assert_eq!(cache.get("p", "q"), None);
    }

    #[test]
    fn dropped_entries_are_counted_by_reason() {
        let mut cache = watched_cache();
        for i in 0..12 {
            cache.insert("p", &format!("q{i}"), "a", "http://a", cache.epoch());
        }
        cache.apply(Event::Unplaced(queue("p", "q11")));
        cache.apply(Event::Unplaced(queue("p", "never-cached")));
        cache.insert("p", "b1", "b", "http://b", cache.epoch());
        cache.insert("p", "b2", "b", "http://b", cache.epoch());
        cache.apply(Event::PoolRemoved("b".into()));
        cache.remove("p", "q10");
        cache.remove("p", "q10");
        let counts: HashMap<&str, u64> = cache.dropped.clone();
        assert_eq!(
            counts,
            HashMap::from([("capacity", 3), ("event", 3), ("forgotten", 1)])
        );
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let mut cache = watched_cache();
        for i in 0..25 {
            cache.insert("p", &format!("q{i}"), "a", "http://a", cache.epoch());
            assert!(cache.len() <= 10);
        }
        assert!(cache.get("p", "q24").is_some());
    }

    #[test]
    fn the_oldest_placement_goes_first_and_the_order_stays_bounded() {
        let mut cache = watched_cache();
        for i in 0..10 {
            cache.insert("p", &format!("q{i}"), "a", "http://a", cache.epoch());
        }
        // q0 leaves by an event and comes back: it is now the newest.
        cache.apply(Event::Unplaced(queue("p", "q0")));
        cache.insert("p", "q0", "a", "http://a", cache.epoch());
        cache.insert("p", "q10", "a", "http://a", cache.epoch());
        assert!(cache.get("p", "q1").is_none(), "the oldest went");
        assert!(cache.get("p", "q0").is_some() && cache.get("p", "q2").is_some());
        for round in 0..1000 {
            let name = format!("r{}", round % 3);
            cache.apply(Event::Unplaced(queue("p", &name)));
            cache.insert("p", &name, "a", "http://a", cache.epoch());
            assert!(cache.order.len() <= 2 * cache.capacity + 1);
        }
        assert_eq!(cache.len(), 10);
    }
}
