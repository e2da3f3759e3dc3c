//! Multi-document transactions, retried on write conflicts until the call's time runs out.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use mongodb::error::{
    Error as MongoError, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT,
};
use mongodb::ClientSession;

use super::{error_code, is_duplicate_key, store_error, MongoStore};
use crate::store::StoreResult;

/// The server error code of a write conflict between transactions.
const WRITE_CONFLICT: i32 = 112;
/// Attempts at committing when the outcome of the commit is unknown (a failover).
const COMMIT_ATTEMPTS: u32 = 5;

/// What a transaction body returns: a driver failure (the transaction is
/// retried if it was a conflict), or the store's answer (a refusal aborts it).
pub(super) type Body<'s, R> = BoxFuture<'s, Result<StoreResult<R>, MongoError>>;

impl MongoStore {
    /// Runs `body` in a transaction and commits it; runs it again from the start
    /// after a write conflict (or a duplicate key: the body looks again and finds
    /// what the other transaction wrote). The caller bounds the whole in time.
    pub(super) async fn transaction<R, F>(&self, mut body: F) -> StoreResult<R>
    where
        F: FnMut(&mut ClientSession) -> Body<'_, R>,
    {
        let mut session = self.client.start_session().await.map_err(store_error)?;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            session.start_transaction().await.map_err(store_error)?;
            let failure = match body(&mut session).await {
                Ok(Ok(value)) => match commit(&mut session).await {
                    Ok(()) => return Ok(value),
                    Err(err) => err,
                },
                Ok(Err(refusal)) => {
                    abort(&mut session).await;
                    return Err(refusal);
                }
                Err(err) => {
                    abort(&mut session).await;
                    err
                }
            };
            if !is_conflict(&failure) {
                return Err(store_error(failure));
            }
            tracing::debug!(attempt, error = %failure, "mongodb transaction conflict, retrying");
            tokio::time::sleep(backoff(attempt)).await;
        }
    }
}

/// Commits, trying again while the server cannot say whether the commit happened.
async fn commit(session: &mut ClientSession) -> Result<(), MongoError> {
    let mut attempt = 1;
    loop {
        match session.commit_transaction().await {
            Err(err)
                if err.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
                    && attempt < COMMIT_ATTEMPTS =>
            {
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

/// Aborts a transaction the body gave up; the server aborts it anyway if this fails.
async fn abort(session: &mut ClientSession) {
    if let Err(err) = session.abort_transaction().await {
        tracing::debug!(error = %err, "mongodb transaction abort failed");
    }
}

fn is_conflict(err: &MongoError) -> bool {
    err.contains_label(TRANSIENT_TRANSACTION_ERROR)
        || error_code(err) == Some(WRITE_CONFLICT)
        || is_duplicate_key(err)
        || err.get_custom::<TakenMeanwhile>().is_some()
}

/// A message a transaction read as free was no longer free when it wrote it.
#[derive(Debug)]
struct TakenMeanwhile;

/// The error a claim or a pop gives when a message it read as free was no longer
/// free when it took it: a conflict, so the transaction starts again. A server with
/// snapshot isolation reports the conflict itself (a write conflict); the check
/// behind this error keeps two claims from ever holding one message on a server
/// whose isolation is weaker.
pub(super) fn taken_meanwhile() -> MongoError {
    MongoError::custom(TakenMeanwhile)
}

/// A random wait before the next attempt, growing with the attempts up to 100 ms.
fn backoff(attempt: u32) -> Duration {
    let cap_ms = (2u64 << attempt.min(6)).min(100);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_millis(1 + u64::from(nanos) % cap_ms)
}
