//! Serving a tonic router on a TCP listener until shutdown.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tonic::transport::server::{Router, TcpIncoming};

use crate::shutdown::Shutdown;

/// Binds `addr` (port 0 for an ephemeral port); the error names the address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

/// Serves `router` on `listener` until `shutdown` is triggered, then lets in-flight
/// calls finish. Accepted connections get TCP_NODELAY: gRPC writes small frames,
/// and Nagle's algorithm against delayed ACKs would add ~40 ms to calls.
pub async fn serve(router: Router, listener: TcpListener, shutdown: Shutdown) -> Result<()> {
    let addr = listener.local_addr()?;
    let incoming = TcpIncoming::from_listener(listener, true, None)
        .map_err(|err| anyhow::anyhow!("configuring {addr}: {err}"))?;
    router
        .serve_with_incoming_shutdown(incoming, shutdown.wait())
        .await
        .with_context(|| format!("serving gRPC on {addr}"))
}
