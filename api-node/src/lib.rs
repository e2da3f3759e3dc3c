//! api-node: Zaqar v2 REST and WebSocket in front of pool-nodes, placement through the catalog.
//!
//! `operations` holds every behaviour (validation, routing, Zaqar's answers)
//! as one async fn per API call; `rest` is the warp transport over them and
//! `websocket` the tokio-tungstenite one;
//! `routing` resolves queues to pool-nodes through the catalog, `admin` calls
//! its AdminService for `/v2/pools` and `/v2/flavors`; `auth` says
//! who is calling (`keystone` validates tokens for it).

pub mod admin;
pub mod auth;
pub mod config;
pub mod keystone;
pub mod operations;
pub mod rest;
pub mod routing;
pub mod signed_url;
mod timefmt;
pub mod websocket;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

pub use config::ApiConfig;

use futures::FutureExt;
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

/// The listeners of an api-node once bound.
pub struct Bound {
    /// Where the REST API listens.
    pub rest: SocketAddr,
    /// Where the WebSocket API listens, when it is served.
    pub websocket: Option<SocketAddr>,
    /// Runs both until the shutdown completes (and connections are closed).
    pub server: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// Binds the REST listener and, when `config.ws_listen` is set, the WebSocket
/// one, over the same services and with the same shutdown.
pub async fn bind_all(
    config: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<Bound> {
    let services = Arc::new(
        Services::new(&config)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err.to_string()))?,
    );
    let shutdown = shutdown.boxed().shared();
    let (rest, rest_server) = warp::serve(rest::routes(services.clone()))
        .try_bind_with_graceful_shutdown(config.listen, shutdown.clone())
        .map_err(|err| io::Error::new(io::ErrorKind::AddrNotAvailable, err.to_string()))?;
    tracing::info!(addr = %rest, catalog = %config.catalog_endpoint, "api-node listening");
    let Some(ws_listen) = config.ws_listen else {
        return Ok(Bound {
            rest,
            websocket: None,
            server: Box::pin(rest_server),
        });
    };
    let settings = websocket::Settings::from_config(&config);
    let (ws, ws_server) = websocket::bind(ws_listen, services, settings, shutdown).await?;
    Ok(Bound {
        rest,
        websocket: Some(ws),
        server: Box::pin(async move {
            futures::join!(rest_server, ws_server);
        }),
    })
}

/// Serves the REST API on `config.listen` and the WebSocket API on
/// `config.ws_listen` until `shutdown` completes.
pub async fn serve(
    config: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    bind_all(config, shutdown).await?.server.await;
    Ok(())
}
