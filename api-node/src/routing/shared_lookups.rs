//! Concurrent lookups of one queue's placement share one question to the catalog.
//!
//! A queue whose placement is not cached (a fresh api-node, a placement the cache
//! dropped) may be asked for by many requests at once: 1,000 consumers long polling
//! one queue all start together. The first asks the catalog; the others wait for its
//! answer instead of asking too. If the one asking goes away (its client hung up),
//! one of those waiting asks in its place.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;
use zaqar_proto::ZaqarError;

/// What the catalog answered: the queue's pool and its endpoint, `None` when the
/// queue has no placement.
pub type Answer = Result<Option<(String, String)>, ZaqarError>;

type Question = Arc<OnceCell<Answer>>;

/// The questions in flight, by project and queue.
#[derive(Default)]
pub struct SharedLookups {
    asking: Mutex<HashMap<(String, String), Question>>,
}

impl SharedLookups {
    /// The answer of `ask` for `queue` of `project`, or of the same question already
    /// in flight. Whether this call asked comes with it.
    pub async fn ask<F, Fut>(&self, project: &str, queue: &str, ask: F) -> (Answer, bool)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Answer>,
    {
        let key = (project.to_string(), queue.to_string());
        let question = self.lock().entry(key.clone()).or_default().clone();
        let turn = Turn {
            lookups: self,
            key,
            question: Some(question),
        };
        let Some(question) = &turn.question else {
            unreachable!("a turn holds its question until it is dropped");
        };
        let mut asked = false;
        let answer = question
            .get_or_init(|| {
                asked = true;
                ask()
            })
            .await
            .clone();
        (answer, asked)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Question>> {
        self.asking.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    fn in_flight(&self) -> usize {
        self.lock().len()
    }
}

/// One caller's share of a question; the question goes once it is answered, or when
/// its last caller went away without an answer.
struct Turn<'a> {
    lookups: &'a SharedLookups,
    key: (String, String),
    question: Option<Question>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut asking = self.lookups.lock();
        let Some(question) = self.question.take() else {
            return;
        };
        let answered = question.initialized();
        drop(question);
        let done = asking
            .get(&self.key)
            .is_some_and(|current| answered || Arc::strong_count(current) == 1);
        if done {
            asking.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_lookups_of_a_queue_ask_once() {
        let lookups = SharedLookups::default();
        let asked = AtomicUsize::new(0);
        let ask = || async {
            asked.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(Some(("pool-a".to_string(), "http://a".to_string())))
        };
        let answers = futures::future::join_all((0..10).map(|_| lookups.ask("p", "q", ask))).await;
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert_eq!(answers.iter().filter(|(_, asked)| *asked).count(), 1);
        for (answer, _) in answers {
            assert_eq!(answer, Ok(Some(("pool-a".into(), "http://a".into()))));
        }
        assert_eq!(lookups.in_flight(), 0, "an answered question stays");

        // Another queue, or a later lookup, asks again.
        assert!(lookups.ask("p", "other", ask).await.1);
        assert!(lookups.ask("p", "q", ask).await.1);
        assert_eq!(asked.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn when_the_one_asking_goes_away_another_asks() {
        let lookups = SharedLookups::default();
        let slow = || async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(None)
        };
        let quick = || async { Ok(None) };
        let first = lookups.ask("p", "q", slow);
        let waited = tokio::time::timeout(Duration::from_millis(20), first).await;
        assert!(waited.is_err(), "the slow question was answered");
        assert_eq!(lookups.in_flight(), 0, "a question nobody waits for stays");

        let errors = || async { Err(ZaqarError::internal("the catalog failed")) };
        let (answer, asked) = lookups.ask("p", "q", errors).await;
        assert!(asked && answer.is_err());
        let (answer, asked) = lookups.ask("p", "q", quick).await;
        assert!(asked, "a failed answer is not kept");
        assert_eq!(answer, Ok(None));
    }
}
