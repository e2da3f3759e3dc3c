//! api-node: Zaqar v2 REST and WebSocket in front of pool-nodes, placement through the catalog.
//!
//! `operations` holds every behaviour (validation, routing, Zaqar's answers)
//! as one async fn per API call; `rest` is the warp transport over them and
//! `websocket` the tokio-tungstenite one;
//! `routing` resolves queues to pool-nodes through the catalog, `admin` calls
//! its AdminService for `/v2/pools` and `/v2/flavors`; `auth` says
//! who is calling (`keystone` validates tokens for it).

pub mod admin_client;
pub mod auth;
pub mod config;
pub mod cors;
pub mod front_door;
pub mod keystone;
mod lru;
pub mod metrics;
pub mod operations;
pub mod project_quotas;
pub mod rate_limit;
pub mod request_id;
pub mod rest;
pub mod routing;
pub mod signed_url;
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

/// The listeners of an api-node, bound before it starts: `zaqar standalone` binds
/// them before its internal ports (free ports the system picks), so that none of
/// those takes the port asked for.
pub struct Listeners {
    rest: std::net::TcpListener,
    websocket: Option<std::net::TcpListener>,
    /// The listener of push subscriptions' notifications (`ws_notification_listen`).
    notifications: Option<std::net::TcpListener>,
}

impl Listeners {
    /// Binds `config.listen` and, when set, `config.ws_listen` and (with push
    /// subscriptions on, `ws_push_max_connections` > 0) `config.ws_notification_listen`.
    pub fn bind(config: &ApiConfig) -> io::Result<Listeners> {
        let open = |addr: SocketAddr| {
            let listener = std::net::TcpListener::bind(addr)?;
            listener.set_nonblocking(true)?;
            Ok::<_, io::Error>(listener)
        };
        Ok(Listeners {
            rest: open(config.listen)?,
            websocket: config.ws_listen.map(open).transpose()?,
            notifications: (config.ws_listen.is_some() && config.ws_push_max_connections > 0)
                .then(|| open(config.ws_notification_listen))
                .transpose()?,
        })
    }
}

/// The REST server on `listener`, over TLS when `acceptor` has a certificate.
async fn serve_rest_on(
    listener: tokio::net::TcpListener,
    config: &ApiConfig,
    services: Arc<Services>,
    acceptor: &tls::StreamAcceptor,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<(SocketAddr, Pin<Box<dyn Future<Output = ()> + Send>>)> {
    let addr = listener.local_addr()?;
    let shutdown = shutdown.boxed().shared();
    // Waiting requests (long polls) answer at once, so the graceful stop is not held.
    let waiting = Arc::downgrade(&services);
    let stopping = shutdown.clone();
    tokio::spawn(async move {
        stopping.await;
        if let Some(services) = waiting.upgrade() {
            services.router.activity().close();
        }
    });
    let slots = services.connections.clone();
    let service = warp::service(rest::routes(services));
    let header_timeout = config.header_read_timeout();
    let serving: Pin<Box<dyn Future<Output = ()> + Send>> = match acceptor.tls() {
        None => {
            let incoming = front_door::plain(listener, slots);
            Box::pin(serve_rest(incoming, service, header_timeout, shutdown))
        }
        Some(acceptor) => {
            let incoming = front_door::tls(listener, acceptor.clone(), slots);
            Box::pin(serve_rest(incoming, service, header_timeout, shutdown))
        }
    };
    tracing::info!(%addr, tls = acceptor.tls().is_some(), catalog = %config.catalog_endpoint,
        "api-node listening");
    Ok((addr, serving))
}

/// Serves the REST `service` on the connections of `incoming` until `shutdown`,
/// closing a connection whose client takes over `header_timeout` to send a
/// request's headers (or stays idle that long between requests).
async fn serve_rest<S, Io, Svc>(
    incoming: S,
    service: Svc,
    header_timeout: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    S: futures::Stream<Item = io::Result<Io>> + Send + 'static,
    Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    Svc: hyper014::service::Service<
            hyper014::Request<hyper014::Body>,
            Response = hyper014::Response<hyper014::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    Svc::Future: Send + 'static,
{
    let make_service = hyper014::service::make_service_fn(move |_| {
        let mut service = service.clone();
        // warp's service is always ready: poll_ready has nothing to wait for.
        let per_request = hyper014::service::service_fn(move |request| {
            service.call(rest::owned_head::detach(request))
        });
        async move { Ok::<_, std::convert::Infallible>(per_request) }
    });
    let served = hyper014::Server::builder(hyper014::server::accept::from_stream(incoming))
        .http1_header_read_timeout(header_timeout)
        .serve(make_service)
        .with_graceful_shutdown(shutdown)
        .await;
    if let Err(err) = served {
        tracing::error!(error = %err, "the REST server stopped");
    }
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
    let listeners = Listeners::bind(&config)?;
    bind_all_on(listeners, config, InProcessPools::new(), shutdown).await
}

/// [`bind_all`] on `listeners`, calling the pool-nodes of `in_process` (by registered
/// endpoint) directly instead of over gRPC.
pub async fn bind_all_on(
    listeners: Listeners,
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
    let rest_listener = tokio::net::TcpListener::from_std(listeners.rest)?;
    let (rest, rest_server) = serve_rest_on(
        rest_listener,
        &config,
        services.clone(),
        &acceptor,
        shutdown.clone(),
    )
    .await?;
    let Some(ws_listener) = listeners.websocket else {
        return Ok(Bound {
            rest,
            websocket: None,
            server: rest_server,
        });
    };
    let mut settings = websocket::Settings::from_config(&config);
    settings.tls = acceptor;
    let ws_listener = tokio::net::TcpListener::from_std(ws_listener)?;
    let notifications = listeners
        .notifications
        .map(tokio::net::TcpListener::from_std)
        .transpose()?;
    let (ws, ws_server) =
        websocket::bind(ws_listener, notifications, services, settings, shutdown).await?;
    Ok(Bound {
        rest,
        websocket: Some(ws),
        server: Box::pin(async move {
            futures::join!(rest_server, ws_server);
        }),
    })
}

/// Serves the REST API and the WebSocket API on `listeners` (bound to
/// `config.listen` and `config.ws_listen`) until `shutdown` completes, calling the
/// pool-nodes of `in_process` directly (see [`bind_all_on`]; empty for a separate
/// api-node).
pub async fn serve(
    listeners: Listeners,
    config: ApiConfig,
    in_process: InProcessPools,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    bind_all_on(listeners, config, in_process, shutdown)
        .await?
        .server
        .await;
    Ok(())
}
