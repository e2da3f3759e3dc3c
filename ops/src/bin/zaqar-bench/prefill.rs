//! Fills a queue before a run (`--prefill`, `--prefill-claimed`): a deep queue whose
//! head is in flight, the state in which a task queue matters most.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinSet;

use crate::client::{post_body, CallError, ZaqarClient};

/// Messages per post while filling (Zaqar's default page size).
const POST_BATCH: usize = 10;
/// Messages per claim while filling (Zaqar's largest claim).
const CLAIM_BATCH: usize = 20;
/// Connections that fill one queue at once.
const CONNECTIONS: usize = 8;
/// TTL of the prefilled messages and of their claims: the longest claim Zaqar allows,
/// so that both outlast any run.
const LONG_TTL: u32 = 43_200;

/// What to put in each queue.
#[derive(Debug, Clone, Copy)]
pub struct Fill {
    pub messages: usize,
    pub claimed: usize,
    pub message_size: usize,
}

/// Posts `fill.messages` messages to `queue`, then claims the oldest `fill.claimed`.
pub async fn fill(admin: ZaqarClient, queue: String, fill: Fill) -> Result<(), CallError> {
    let posted = Arc::new(AtomicUsize::new(0));
    let body = post_body(POST_BATCH, fill.message_size, LONG_TTL);
    let mut posters = JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (client, queue, posted, body) = (
            admin.clone(),
            queue.clone(),
            Arc::clone(&posted),
            body.clone(),
        );
        let total = fill.messages;
        posters.spawn(async move {
            loop {
                let start = posted.fetch_add(POST_BATCH, Ordering::Relaxed);
                if start >= total {
                    return Ok(());
                }
                let body = if total - start < POST_BATCH {
                    post_body(total - start, fill.message_size, LONG_TTL)
                } else {
                    body.clone()
                };
                client.post(&queue, body).await?;
                report(&queue, "posted", start + POST_BATCH, total, POST_BATCH);
            }
        });
    }
    join_all(posters).await?;

    let claim_body = Bytes::from(format!(r#"{{"ttl":{LONG_TTL},"grace":60}}"#));
    let mut claimed = 0;
    while claimed < fill.claimed {
        let limit = CLAIM_BATCH.min(fill.claimed - claimed);
        let taken = admin.claim(&queue, limit, claim_body.clone(), 0).await?;
        if taken.is_empty() {
            return Err(CallError::Transport(format!(
                "queue {queue} had no more messages to claim after {claimed}"
            )));
        }
        claimed += taken.len();
        report(&queue, "claimed", claimed, fill.claimed, CLAIM_BATCH);
    }
    Ok(())
}

/// A line on stderr at every tenth of the way.
fn report(queue: &str, what: &str, done: usize, total: usize, step: usize) {
    let tenth = (total / 10).max(1);
    if done / tenth != done.saturating_sub(step) / tenth || done >= total {
        eprintln!("prefill {queue}: {what} {}/{total}", done.min(total));
    }
}

async fn join_all(mut tasks: JoinSet<Result<(), CallError>>) -> Result<(), CallError> {
    while let Some(done) = tasks.join_next().await {
        done.map_err(|e| CallError::Transport(format!("a filling task failed: {e}")))??;
    }
    Ok(())
}
