//! Group commit: concurrent calls of one kind on one queue become one script call.
//!
//! Redis runs one script at a time, and most of what a small script costs is
//! fixed (the round trip, starting the script, each command's glue), not per
//! message. So while a call of one kind (posts, deletes) on a queue is in
//! flight, the next calls of that kind on that queue wait, and go together as
//! one call as soon as it has ended. A call that finds nothing in flight runs at
//! once: an idle queue waits for nothing, and a busy one sends larger batches.
//!
//! A batch is cut at [`MAX_BATCH`] calls or [`MAX_BATCH_WEIGHT`] (roughly the
//! bytes it sends), so that no one script keeps Redis busy for long. The first
//! call of a burst runs in the caller's task; the batches after it run in a
//! task of their own, so a caller that goes away (a client disconnecting)
//! never cancels the calls of others.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use zaqar_proto::ZaqarError;

use super::RedisStore;
use crate::store::StoreResult;

/// The most calls one batch carries.
pub(super) const MAX_BATCH: usize = 32;
/// The most weight (see [`Batched::weight`]) one batch carries, unless its
/// first call alone weighs more.
pub(super) const MAX_BATCH_WEIGHT: usize = 1 << 20;

/// A call that can join a batch: all the calls of one batch share a key.
pub(super) trait Batched: Sized + Send + 'static {
    /// What one call answers.
    type Answer: Send + 'static;

    /// Roughly the bytes this call sends to the store.
    fn weight(&self) -> usize;

    /// Runs `calls` as one store call, answering each in order.
    fn run(
        store: RedisStore,
        calls: Vec<Self>,
    ) -> impl Future<Output = Vec<StoreResult<Self::Answer>>> + Send;
}

/// A call waiting for the batch in flight to end, with where its answer goes.
struct Waiter<R: Batched> {
    call: R,
    reply: oneshot::Sender<StoreResult<R::Answer>>,
}

/// The calls waiting per key; a key is present while a call for it is in flight.
pub(super) struct GroupCommit<K, R: Batched> {
    waiting: Mutex<HashMap<K, Vec<Waiter<R>>>>,
}

impl<K, R: Batched> Default for GroupCommit<K, R> {
    fn default() -> Self {
        GroupCommit {
            waiting: Mutex::new(HashMap::new()),
        }
    }
}

impl<K, R> GroupCommit<K, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    R: Batched,
{
    /// Runs `call` for `key`, alone when nothing is in flight for it, else in
    /// the next batch after the one in flight.
    pub(super) async fn submit(
        self: &Arc<Self>,
        key: K,
        call: R,
        store: &RedisStore,
    ) -> StoreResult<R::Answer> {
        let queued = {
            let mut waiting = self.lock();
            match waiting.get_mut(&key) {
                Some(queue) => {
                    let (reply, answer) = oneshot::channel();
                    queue.push(Waiter { call, reply });
                    Err(answer)
                }
                None => {
                    waiting.insert(key.clone(), Vec::new());
                    Ok(call)
                }
            }
        };
        match queued {
            Ok(call) => {
                // Hands the key on when this call ends, or when its caller goes away.
                let _next = HandOver {
                    commit: self.clone(),
                    key: Some(key),
                    store: store.clone(),
                };
                let mut answers = R::run(store.clone(), vec![call]).await;
                answers.pop().unwrap_or_else(|| Err(abandoned()))
            }
            Err(answer) => answer.await.unwrap_or_else(|_| Err(abandoned())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Vec<Waiter<R>>>> {
        // A panic elsewhere while holding the lock leaves the map consistent.
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next batch for `key`, or `None` (and the key is free) when no call waits.
    fn next_batch(&self, key: &K) -> Option<Vec<Waiter<R>>> {
        let mut waiting = self.lock();
        let queue = waiting.get_mut(key)?;
        if queue.is_empty() {
            waiting.remove(key);
            return None;
        }
        let mut weight = 0;
        let mut take = 0;
        for waiter in queue.iter() {
            weight += waiter.call.weight();
            if take == MAX_BATCH || (take > 0 && weight > MAX_BATCH_WEIGHT) {
                break;
            }
            take += 1;
        }
        Some(queue.drain(..take).collect())
    }

    /// Runs the waiting batches of `key` one after the other until none waits.
    async fn drain(self: Arc<Self>, key: K, store: RedisStore) {
        while let Some(batch) = self.next_batch(&key) {
            let (calls, replies): (Vec<R>, Vec<_>) = batch
                .into_iter()
                .map(|waiter| (waiter.call, waiter.reply))
                .unzip();
            let mut answers = R::run(store.clone(), calls).await.into_iter();
            for reply in replies {
                let answer = answers.next().unwrap_or_else(|| Err(abandoned()));
                // A caller that went away no longer wants its answer.
                let _ = reply.send(answer);
            }
        }
    }
}

/// The error of a call whose batch never answered it.
fn abandoned() -> ZaqarError {
    ZaqarError::unavailable("the redis store call was abandoned before it answered")
}

/// Passes a key on when its first call ends: to a task running the calls that
/// waited meanwhile, or frees it when none did.
struct HandOver<K, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    R: Batched,
{
    commit: Arc<GroupCommit<K, R>>,
    key: Option<K>,
    store: RedisStore,
}

impl<K, R> Drop for HandOver<K, R>
where
    K: Hash + Eq + Clone + Send + 'static,
    R: Batched,
{
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        {
            let mut waiting = self.commit.lock();
            if waiting.get(&key).is_some_and(Vec::is_empty) {
                waiting.remove(&key);
                return;
            }
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(self.commit.clone().drain(key, self.store.clone()));
            }
            // No runtime left (shutting down): the waiters are answered with an error.
            Err(_) => {
                self.commit.lock().remove(&key);
            }
        }
    }
}
