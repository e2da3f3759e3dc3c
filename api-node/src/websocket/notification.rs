//! The HTTP listener of websocket push subscriptions (Zaqar's
//! `notification_bind` / `notification_port`): `POST /<connection id>` with a
//! notification as its body sends that body down the connection (see `push`).
//! It answers 200 once the frame is queued, 404 for a connection it does not
//! know, 410 for one that is closing or too slow to read, 400 for a body that
//! cannot be framed, so that the pool-node's webhook notifier stops retrying
//! (it retries only on 408, 429 and 5xx).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::net::TcpListener;
use warp::http::StatusCode;
use warp::path::Tail;
use warp::{Filter, Rejection, Reply as _};

use super::push::{Delivery, Registry};

/// What the listener is told at start.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    pub listen: SocketAddr,
    /// The base URL pool-nodes use; `http://<bound address>/` when unset.
    pub url: Option<String>,
    pub max_connections: usize,
    pub max_subscriptions: usize,
    /// Largest notification accepted, in bytes.
    pub max_body_bytes: u64,
}

/// Serves notifications on `listener` (bound to `settings.listen`) and returns the
/// registry it delivers to and the server future, which runs until `shutdown`
/// completes.
pub fn serve(
    listener: TcpListener,
    settings: &ListenerSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<(Arc<Registry>, impl Future<Output = ()>)> {
    let addr = listener.local_addr()?;
    let url = match &settings.url {
        Some(url) => url.clone(),
        None if addr.ip().is_unspecified() => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "ws_notification_listen is {addr} (every interface): set ws_notification_url \
                     to the URL pool-nodes should use"
                ),
            ))
        }
        None => format!("http://{addr}/"),
    };
    let registry = Arc::new(Registry::new(
        url,
        settings.max_connections,
        settings.max_subscriptions,
    ));
    let delivering = registry.clone();
    let routes = warp::post()
        .and(warp::path::tail())
        .and(warp::body::content_length_limit(settings.max_body_bytes))
        .and(warp::body::bytes())
        .map(move |tail: Tail, body: Bytes| deliver(&delivering, tail.as_str(), body))
        .recover(refused);
    let incoming = futures::stream::unfold(listener, |listener| async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    return Some((Ok::<_, io::Error>(stream), listener));
                }
                Err(err) => {
                    // Out of file descriptors, most likely: wait instead of spinning.
                    tracing::warn!(error = %err, "notification listener accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    let server = warp::serve(routes).serve_incoming_with_graceful_shutdown(incoming, shutdown);
    tracing::info!(%addr, url = registry.base_url(), "websocket notification listener listening");
    Ok((registry, server))
}

/// The answer to one notification for connection `path` (its last segment).
fn deliver(registry: &Registry, path: &str, body: Bytes) -> warp::reply::Response {
    let id = path.rsplit('/').next().unwrap_or_default();
    let (status, description) = match registry.deliver(id, body) {
        Delivery::Sent => {
            tracing::debug!(connection = id, "notification pushed");
            return warp::reply::with_status(warp::reply(), StatusCode::OK).into_response();
        }
        Delivery::Unknown => (
            StatusCode::NOT_FOUND,
            format!("No websocket connection {id} here."),
        ),
        Delivery::Closed => (
            StatusCode::GONE,
            format!("The websocket connection {id} is closed."),
        ),
        Delivery::Unreadable(reason) => (
            StatusCode::BAD_REQUEST,
            format!("The notification cannot be sent: {reason}."),
        ),
    };
    tracing::debug!(connection = id, status = status.as_u16(), %description, "notification not pushed");
    error(status, &description)
}

/// Zaqar's error body for the requests no route takes.
async fn refused(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
    let (status, description) = if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "The notification is too large.",
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        (StatusCode::LENGTH_REQUIRED, "Content-Length is required.")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (StatusCode::METHOD_NOT_ALLOWED, "Notifications are POSTed.")
    } else {
        (StatusCode::NOT_FOUND, "No such resource.")
    };
    Ok(error(status, description))
}

fn error(status: StatusCode, description: &str) -> warp::reply::Response {
    let title = status.canonical_reason().unwrap_or("Error");
    let body = json!({"title": title, "description": description});
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}
