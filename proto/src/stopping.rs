//! The stop signal of a gRPC server's long-lived streams (the catalog's `Watch`, the
//! pool-node's `WatchQueues`): a graceful stop of a tonic server waits for every open
//! stream, and the clients of these never hang up, so each stream ends itself once its
//! server stops.

use std::future::Future;

use tokio::sync::watch;

/// Whether the server is stopping; cheap to clone, one per stream.
#[derive(Clone, Debug)]
pub struct Stopping(watch::Receiver<bool>);

impl Stopping {
    /// A signal that never comes (a server without a shutdown signal).
    pub fn never() -> Stopping {
        Stopping(watch::channel(false).1)
    }

    /// A signal that comes once `shutdown` completes (a task waits for it).
    pub fn on(shutdown: impl Future<Output = ()> + Send + 'static) -> Stopping {
        let (stop, stopping) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
            // Keep the sender so that receivers see `true`, not a closed channel.
            stop.closed().await;
        });
        Stopping(stopping)
    }

    /// Completes once the server stops; never for [`Stopping::never`].
    pub async fn stopped(&mut self) {
        if self.0.wait_for(|stopping| *stopping).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_signal_comes_after_the_shutdown_and_never_without_one() {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut stopping = Stopping::on(async move {
            let _ = stopped.await;
        });
        let early = tokio::time::timeout(Duration::from_millis(50), stopping.stopped()).await;
        assert!(early.is_err(), "not before the shutdown");
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), stopping.clone().stopped())
            .await
            .expect("after the shutdown");
        let mut never = Stopping::never();
        let waited = tokio::time::timeout(Duration::from_millis(50), never.stopped()).await;
        assert!(waited.is_err());
    }
}
