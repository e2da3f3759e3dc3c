//! api-node: Zaqar v2 REST in front of pool-nodes, placement through the catalog.
//!
//! `operations` holds every behaviour (validation, routing, Zaqar's answers)
//! as one async fn per API call; `rest` is the warp transport over them;
//! `routing` resolves queues to pool-nodes through the catalog; `auth` says
//! who is calling.

pub mod auth;
pub mod config;
pub mod operations;
pub mod rest;
pub mod routing;
pub mod signed_url;
mod timefmt;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

pub use config::ApiConfig;

use operations::Services;

/// Binds the REST listener and returns its address and the server future,
/// which runs until `shutdown` completes. Port 0 picks a free port.
pub async fn bind(
    config: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<(SocketAddr, impl Future<Output = ()>)> {
    let services = Services::new(&config)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err.to_string()))?;
    let routes = rest::routes(Arc::new(services));
    let (addr, server) = warp::serve(routes)
        .try_bind_with_graceful_shutdown(config.listen, shutdown)
        .map_err(|err| io::Error::new(io::ErrorKind::AddrNotAvailable, err.to_string()))?;
    tracing::info!(%addr, catalog = %config.catalog_endpoint, "api-node listening");
    Ok((addr, server))
}

/// Serves the REST API on `config.listen` until `shutdown` completes.
pub async fn serve(
    config: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (_, server) = bind(config, shutdown).await?;
    server.await;
    Ok(())
}
