//! Creating and deleting the run's queues before and after it, over a bounded number
//! of connections however many queues there are (`--queues`, `--extra-queues`).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::client::{CallError, ZaqarClient};

/// Connections that create or delete queues at once.
const CONNECTIONS: usize = 16;

/// Runs `call` on every name, at most [`CONNECTIONS`] at a time, each connection a
/// clone of `admin`; failures are printed (the run then shows them as errors), not
/// fatal. With `progress`, a line on stderr at every tenth of the way.
pub async fn on_each<F, Fut>(
    admin: &ZaqarClient,
    names: Vec<String>,
    what: &'static str,
    progress: bool,
    call: F,
) where
    F: Fn(ZaqarClient, String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), CallError>> + Send + 'static,
{
    let names = Arc::new(names);
    let next = Arc::new(AtomicUsize::new(0));
    let call = Arc::new(call);
    let mut workers = JoinSet::new();
    for _ in 0..CONNECTIONS.min(names.len()) {
        let (client, names, next, call) = (
            admin.clone(),
            Arc::clone(&names),
            Arc::clone(&next),
            Arc::clone(&call),
        );
        workers.spawn(async move {
            let total = names.len();
            let tenth = (total / 10).max(1);
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(name) = names.get(index) else { return };
                if let Err(e) = call(client.sharing_connection(), name.clone()).await {
                    eprintln!("warning: could not {what} queue {name}: {e}");
                }
                if progress && (index + 1) % tenth == 0 {
                    eprintln!("{what}: {}/{total} queues", index + 1);
                }
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

/// The names of `count` queues beside the run's: `PREFIX-extra-0`, `-1`, ...
pub fn extra_names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-extra-{i}")).collect()
}
