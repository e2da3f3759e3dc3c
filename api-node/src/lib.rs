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
mod lru;
pub mod operations;
pub mod rate_limit;
pub mod rest;
pub mod routing;
pub mod signed_url;
mod timefmt;
pub mod tls;
pub mod websocket;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

pub use config::ApiConfig;

use futures::FutureExt;
use operations::Services;
use routing::InProcessPools;

/// Binds the REST listener and returns its address and the server future,
/// which runs until `shutdown` completes. Port 0 picks a free port.
pub async fn bind(
    config: ApiConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<(SocketAddr, impl Future<Output = ()>)> {
    let services = Services::new(&config)
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err.to_string()))?;
    let acceptor = tls::StreamAcceptor::new(config.tls.as_ref())?;
    bind_rest(&config, Arc::new(services), &acceptor, shutdown).await
}

/// The REST server on `config.listen`, over TLS when `acceptor` has a certificate.
async fn bind_rest(
    config: &ApiConfig,
    services: Arc<Services>,
    acceptor: &tls::StreamAcceptor,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<(SocketAddr, Pin<Box<dyn Future<Output = ()> + Send>>)> {
    let server = warp::serve(rest::routes(services));
    let (addr, serving): (_, Pin<Box<dyn Future<Output = ()> + Send>>) = match acceptor.tls() {
        None => {
            let (addr, serving) = server
                .try_bind_with_graceful_shutdown(config.listen, shutdown)
                .map_err(|err| io::Error::new(io::ErrorKind::AddrNotAvailable, err.to_string()))?;
            (addr, Box::pin(serving))
        }
        Some(acceptor) => {
            let listener = tokio::net::TcpListener::bind(config.listen).await?;
            let addr = listener.local_addr()?;
            let incoming = tls::incoming(listener, acceptor.clone());
            let serving = server.serve_incoming_with_graceful_shutdown(incoming, shutdown);
            (addr, Box::pin(serving))
        }
    };
    tracing::info!(%addr, tls = acceptor.tls().is_some(), catalog = %config.catalog_endpoint,
        "api-node listening");
    Ok((addr, serving))
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
    bind_all_with(config, InProcessPools::new(), shutdown).await
}

/// [`bind_all`], calling the pool-nodes of `in_process` (by registered endpoint)
/// directly instead of over gRPC.
pub async fn bind_all_with(
    config: ApiConfig,
    in_process: InProcessPools,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<Bound> {
    let services = Arc::new(
        Services::with_in_process_pools(&config, in_process)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err.to_string()))?,
    );
    let shutdown = shutdown.boxed().shared();
    let acceptor = tls::StreamAcceptor::new(config.tls.as_ref())?;
    let (rest, rest_server) =
        bind_rest(&config, services.clone(), &acceptor, shutdown.clone()).await?;
    let Some(ws_listen) = config.ws_listen else {
        return Ok(Bound {
            rest,
            websocket: None,
            server: rest_server,
        });
    };
    let mut settings = websocket::Settings::from_config(&config);
    settings.tls = acceptor;
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
/// `config.ws_listen` until `shutdown` completes, calling the pool-nodes of
/// `in_process` directly (see [`bind_all_with`]; empty for a separate api-node).
pub async fn serve(
    config: ApiConfig,
    in_process: InProcessPools,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    bind_all_with(config, in_process, shutdown)
        .await?
        .server
        .await;
    Ok(())
}
