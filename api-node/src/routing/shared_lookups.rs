//! Concurrent lookups of one queue's placement share one question to the catalog.
//!
//! A queue whose placement is not cached (a fresh api-node, a placement the cache
//! dropped) may be asked for by many requests at once: 1,000 consumers long polling
//! one queue all start together. The first asks the catalog; the others wait for its
//! answer instead of asking too. If the one asking goes away (its client hung up),
//! one of those waiting asks in its place. A lookup joins only a question asked at
//! the same placement epoch (see `placement_cache.rs`): one asked before the catalog
//! said a placement changed may answer the old one.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use zaqar_proto::ZaqarError;

/// What the catalog answered: the queue's pool and its endpoint, `None` when the
/// queue has no placement.
pub type Answer = Result<Option<(String, String)>, ZaqarError>;

/// A question in flight and the placement epoch it was asked at.
#[derive(Default)]
struct Question {
    epoch: u64,
    answer: OnceCell<Answer>,
}

type Asking = HashMap<(String, String), Arc<Question>>;

/// The questions in flight, by project and queue.
#[derive(Default)]
pub struct SharedLookups {
    asking: Mutex<Asking>,
}

impl SharedLookups {
    /// The answer of `ask` for `queue` of `project`, or of the same question already
    /// in flight at placement `epoch`. Whether this call asked comes with it.
    pub async fn ask<F, Fut>(
        &self,
        project: &str,
        queue: &str,
        epoch: u64,
        ask: F,
    ) -> (Answer, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Answer>,
    {
        let key = (project.to_string(), queue.to_string());
        let question = {
            let mut asking = self.lock();
            let question = asking.entry(key.clone()).or_default();
            if question.epoch != epoch {
                *question = Arc::new(Question {
                    epoch,
                    answer: OnceCell::new(),
                });
            }
            question.clone()
        };
        let turn = Turn {
            lookups: self,
            key,
            question,
        };
        let mut asked = false;
        let answer = turn
            .question
            .answer
            .get_or_init(|| {
                asked = true;
                ask()
            })
            .await
            .clone();
        (answer, asked)
    }

    /// Forgets the question in flight about `queue` of `project`: later lookups ask
    /// anew (the queue was deleted, or its placement refreshed).
    pub fn forget(&self, project: &str, queue: &str) {
        self.lock()
            .remove(&(project.to_string(), queue.to_string()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Asking> {
        self.asking.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.lock().len()
    }
}

/// One caller's share of a question; the question goes once it is answered, or when
/// its last caller went away without an answer. (Two callers going away at once may
/// both see the other's share and leave it: the next lookup of the queue asks it.)
struct Turn<'a> {
    lookups: &'a SharedLookups,
    key: (String, String),
    question: Arc<Question>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut asking = self.lookups.lock();
        let ours = asking
            .get(&self.key)
            .is_some_and(|current| Arc::ptr_eq(current, &self.question));
        // Shared by the map and this turn only: nobody else waits for it.
        let last = Arc::strong_count(&self.question) == 2;
        if ours && (self.question.answer.initialized() || last) {
            asking.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::poll;
    use tokio::sync::oneshot;

    use super::*;

    fn placed() -> Answer {
        Ok(Some(("pool-a".to_string(), "http://a".to_string())))
    }

    /// A question answered with `answer` once `release` is sent (or dropped).
    fn gated(
        release: oneshot::Receiver<()>,
        answer: Answer,
    ) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Answer>>> {
        move || {
            Box::pin(async move {
                let _ = release.await;
                answer
            })
        }
    }

    #[tokio::test]
    async fn concurrent_lookups_of_a_queue_ask_once() {
        let lookups = SharedLookups::default();
        let asked = AtomicUsize::new(0);
        let ask = || async {
            asked.fetch_add(1, Ordering::SeqCst);
            tokio::task::yield_now().await;
            placed()
        };
        // All ten are polled once before the first answer exists.
        let answers =
            futures::future::join_all((0..10).map(|_| lookups.ask("p", "q", 0, ask))).await;
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert_eq!(answers.iter().filter(|(_, asked)| *asked).count(), 1);
        for (answer, _) in answers {
            assert_eq!(answer, placed());
        }
        assert_eq!(lookups.in_flight(), 0, "an answered question stays");

        // Another queue, or a later lookup, asks again.
        assert!(lookups.ask("p", "other", 0, ask).await.1);
        assert!(lookups.ask("p", "q", 0, ask).await.1);
        assert_eq!(asked.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn when_the_one_asking_goes_away_another_asks() {
        let lookups = SharedLookups::default();
        let (_never, never) = oneshot::channel();
        let mut first = Box::pin(lookups.ask("p", "q", 0, gated(never, Ok(None))));
        assert!(poll!(&mut first).is_pending());
        let mut second = Box::pin(lookups.ask("p", "q", 0, || async { placed() }));
        assert!(poll!(&mut second).is_pending(), "the second did not wait");
        drop(first);
        assert_eq!(
            second.await,
            (placed(), true),
            "the one waiting did not ask"
        );
        assert_eq!(lookups.in_flight(), 0);

        let (_never, never) = oneshot::channel();
        let mut alone = Box::pin(lookups.ask("p", "q", 0, gated(never, Ok(None))));
        assert!(poll!(&mut alone).is_pending());
        drop(alone);
        assert_eq!(lookups.in_flight(), 0, "a question nobody waits for stays");
    }

    #[tokio::test]
    async fn failures_are_not_kept_and_other_epochs_ask_anew() {
        let lookups = SharedLookups::default();
        let fails = || async { Err(ZaqarError::internal("the catalog failed")) };
        let (answer, asked) = lookups.ask("p", "q", 0, fails).await;
        assert!(asked && answer.is_err());
        let again = lookups.ask("p", "q", 0, || async { placed() }).await;
        assert_eq!(again, (placed(), true));

        // A lookup at a newer epoch does not join a question asked before it, and
        // the older question, answered, leaves the newer one in flight.
        let (release_old, old_gate) = oneshot::channel();
        let (release_new, new_gate) = oneshot::channel();
        let mut old = Box::pin(lookups.ask("p", "q", 0, gated(old_gate, Ok(None))));
        assert!(poll!(&mut old).is_pending());
        let mut new = Box::pin(lookups.ask("p", "q", 1, gated(new_gate, placed())));
        assert!(poll!(&mut new).is_pending());
        release_old.send(()).unwrap();
        assert_eq!(old.await, (Ok(None), true));
        let mut late = Box::pin(lookups.ask("p", "q", 1, || async { Ok(None) }));
        assert!(
            poll!(&mut late).is_pending(),
            "the newer question was dropped"
        );
        release_new.send(()).unwrap();
        assert_eq!(new.await, (placed(), true));
        assert_eq!(late.await, (placed(), false));

        let (_never, never) = oneshot::channel();
        let mut forgotten = Box::pin(lookups.ask("p", "q", 2, gated(never, Ok(None))));
        assert!(poll!(&mut forgotten).is_pending());
        lookups.forget("p", "q");
        assert_eq!(lookups.in_flight(), 0);
    }
}
