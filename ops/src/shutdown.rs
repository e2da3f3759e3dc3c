//! Graceful shutdown: one switch, flipped by SIGINT/SIGTERM or by a role that failed,
//! that every server of the process waits on.

use std::future::Future;

use tokio::sync::watch;

/// A shutdown switch shared by the servers of one process.
#[derive(Clone)]
pub struct Shutdown {
    sender: watch::Sender<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            sender: watch::channel(false).0,
        }
    }
}

impl Shutdown {
    /// A switch flipped by SIGINT or SIGTERM (or [`trigger`](Self::trigger)).
    pub fn on_signals() -> Self {
        let shutdown = Shutdown::default();
        let switch = shutdown.clone();
        tokio::spawn(async move {
            let signal = wait_for_signal().await;
            tracing::info!(signal, "shutting down");
            switch.trigger();
        });
        shutdown
    }

    /// Asks every server to stop.
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    /// Completes once shutdown was asked for.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.sender.subscribe();
        async move {
            // An error means the switch is gone, which only happens when shutting down.
            let _ = receiver.wait_for(|stop| *stop).await;
        }
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot listen for signals; stop the process with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    if tokio::signal::ctrl_c().await.is_err() {
        tracing::error!("cannot listen for ctrl-c; stop the process with the task manager");
        return std::future::pending().await;
    }
    "ctrl-c"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_waiter_wakes_on_trigger_even_if_it_came_late() {
        let shutdown = Shutdown::default();
        let early = tokio::spawn(shutdown.wait());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!early.is_finished());
        shutdown.trigger();
        early.await.unwrap();
        tokio::time::timeout(Duration::from_secs(1), shutdown.wait())
            .await
            .unwrap();
    }
}
