//! One HTTP request as the handlers see it, and the common steps of handling
//! it: OPTIONS, media-type checks, identity, method dispatch, error rendering.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes, BytesMut};
use futures::{FutureExt, Stream, StreamExt};
use tracing::Instrument;
use warp::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use warp::path::FullPath;
use warp::reply::Response;
use warp::{Filter, Rejection};
use zaqar_proto::{ErrorCode, ZaqarError};

use super::errors::{render, RestError};
use super::query::Query;
use crate::auth::Credentials;
use crate::operations::{Context, Payload, Services};
use crate::signed_url::SignatureHeaders;

type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, warp::Error>> + Send>>;

/// A request: method, headers, decoded query and body.
pub struct Request {
    pub services: Arc<Services>,
    pub method: Method,
    /// The path as requested (what a URL signature must cover).
    pub path: String,
    pub headers: HeaderMap,
    pub query: Query,
    /// In a mutex only to make the request `Sync`; taken once by [`Request::read_body`].
    body: Mutex<Option<BodyStream>>,
    payload: Payload,
    /// An oversized body was left partly unread (see [`DRAIN_LIMIT`]).
    unread: bool,
}

/// The most of an oversized body that is read and thrown away, so that the
/// 413 answer reaches the client (a socket closed with unread input is reset)
/// and the connection stays usable.
const DRAIN_LIMIT: u64 = 16 << 20;

/// The most of a refused request's body (authentication failed) that is read
/// and thrown away.
const DISCARD_LIMIT: u64 = 64 << 10;

/// Reads and drops the rest of `body`, of which `read` bytes were already
/// read; false if it goes past `limit` or fails.
async fn drain(mut body: BodyStream, mut read: u64, limit: u64) -> bool {
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => read += chunk.len() as u64,
            Err(_) => return false,
        }
        if read > limit {
            return false;
        }
    }
    true
}

fn boxed<S, B>(body: S) -> BodyStream
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    Box::pin(body.map(|chunk| chunk.map(|mut buf| buf.copy_to_bytes(buf.remaining()))))
}

/// Extracts a [`Request`]; matches every request.
pub fn request(
    services: Arc<Services>,
) -> impl Filter<Extract = (Request,), Error = Rejection> + Clone {
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();
    warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(raw_query)
        .and(warp::body::stream())
        .map(
            move |method, path: FullPath, headers, raw_query: String, body| Request {
                services: services.clone(),
                method,
                path: path.as_str().to_string(),
                headers,
                query: Query::parse(&raw_query),
                body: Mutex::new(Some(boxed(body))),
                payload: Payload::Absent,
                unread: false,
            },
        )
}

/// Handles a request of a route allowing `allowed` methods: answers OPTIONS,
/// checks media types and identity, answers 405 for other methods, then runs
/// `handler` and renders its error, if any.
pub async fn handle<F, Fut>(
    request: Request,
    allowed: &'static [&'static str],
    handler: F,
) -> Response
where
    F: FnOnce(Context, Request) -> Fut,
    Fut: Future<Output = Result<Response, RestError>>,
{
    // Every log line of the request carries its id, and so does the answer; with
    // tracing on, the span continues the client's trace (`traceparent`), and its
    // log lines carry the trace id.
    let id = crate::request_id::new();
    let span = zaqar_proto::trace::continue_trace(
        |name| {
            request
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
        },
        || {
            tracing::info_span!("request", id = %id, method = %request.method,
                path = %request.path, trace_id = tracing::field::Empty)
        },
    );
    let started = std::time::Instant::now();
    let route = crate::metrics::RouteOf::new(request.method.as_str(), &request.path);
    // Boxed: a route's future is otherwise as large as the largest handler of its
    // group of routes (6 KiB for the queues'), and a long poll holds it while it
    // waits; so each request takes only the room of its own handler.
    let mut response = Box::pin(handle_identified(request, allowed, handler))
        .instrument(span)
        .await;
    crate::request_id::set(&mut response, &id);
    route.record(response.status().as_u16(), started.elapsed());
    response
}

async fn handle_identified<F, Fut>(
    mut request: Request,
    allowed: &'static [&'static str],
    handler: F,
) -> Response
where
    F: FnOnce(Context, Request) -> Fut,
    Fut: Future<Output = Result<Response, RestError>>,
{
    // Who is calling is settled from the headers before the body is read: the
    // body of a refused request is never buffered, only a small one drained
    // (a connection closed with unread input is reset, and the answer lost).
    // Boxed, as the attempts of a long poll: the request's future would otherwise
    // keep room for the identity check (KiB) while it waits.
    let context = if request.method == Method::OPTIONS {
        None
    } else {
        Some(Box::pin(request.context()).await)
    };
    let read = match &context {
        Some(Err(_)) => {
            request.discard_body().await;
            Ok(())
        }
        _ => request.read_body().await,
    };
    if let Err(err) = read {
        let mut response = render(err);
        if request.unread {
            close_after(&mut response);
        }
        return response;
    }
    let services = request.services.clone();
    let unread = request.unread;
    let result = match context {
        None => options(&request, allowed).await,
        Some(context) => match context {
            Ok(ctx) if allowed.contains(&request.method.as_str()) => {
                let (method, path) = (request.method.clone(), request.path.clone());
                // A bug that panics answers this request 500, not the whole connection.
                match AssertUnwindSafe(handler(ctx, request)).catch_unwind().await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::error!(%method, %path, "the handler of a request panicked");
                        Err(RestError::Zaqar(ZaqarError::internal(
                            "the request could not be handled",
                        )))
                    }
                }
            }
            Ok(_) => Err(RestError::MethodNotAllowed(allowed)),
            Err(err) => Err(err),
        },
    };
    let mut response = result.unwrap_or_else(|err| {
        let unauthorized =
            matches!(&err, RestError::Zaqar(err) if err.code == ErrorCode::Unauthorized);
        let mut response = render(err);
        // As keystonemiddleware: say where to get a token.
        if let (true, Some(keystone)) = (unauthorized, services.auth.keystone()) {
            let uri = format!("Keystone uri=\"{}\"", keystone.auth_url());
            if let Ok(value) = HeaderValue::from_str(&uri) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    });
    if unread {
        close_after(&mut response);
    }
    response
}

/// Hyper closes a connection whose request body was left unread; says so, so
/// that clients do not reuse it.
fn close_after(response: &mut Response) {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
}

/// Answers OPTIONS with the route's methods. In keystone mode only with a
/// valid token: Zaqar's keystonemiddleware runs before any route, OPTIONS too.
async fn options(request: &Request, allowed: &[&str]) -> Result<Response, RestError> {
    if let Some(keystone) = request.services.auth.keystone() {
        let token = request
            .header("x-auth-token")
            .ok_or_else(crate::keystone::unauthorized)?;
        keystone.validate(token).await?;
    }
    let mut response = super::empty(StatusCode::OK);
    if let Ok(allow) = HeaderValue::from_str(&allowed.join(", ")) {
        response.headers_mut().insert(header::ALLOW, allow);
    }
    Ok(response)
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The checks Zaqar runs before every v2 handler, in its order: the client
    /// must accept JSON, must not send a form, and must say who it is.
    pub async fn context(&self) -> Result<Context, RestError> {
        if !self.accepts_json() {
            return Err(RestError::NotAcceptable);
        }
        let form = self.header("content-type").is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
        if form && self.headers.contains_key(header::CONTENT_LENGTH) {
            return Err(ZaqarError::titled(
                zaqar_proto::ErrorCode::BadRequest,
                "Invalid Content-Type",
                "Endpoint does not accept `application/x-www-form-urlencoded` content; currently \
                 supported media type is `application/json`; specify proper client-side media type \
                 with the \"Content-Type\" header.",
            )
            .into());
        }
        let signature = self
            .header("url-signature")
            .map(|signature| SignatureHeaders {
                signature,
                expires: self.header("url-expires"),
                methods: self.header("url-methods"),
                paths: self.header("url-paths"),
            });
        let credentials = Credentials {
            client_id: self.header("client-id"),
            project: self.header("x-project-id"),
            roles: self.header("x-roles"),
            token: self.header("x-auth-token"),
            signature,
            method: self.method.as_str(),
            path: &self.path,
        };
        Ok(self.services.context(&credentials).await?)
    }

    fn accepts_json(&self) -> bool {
        let Some(accept) = self.header("accept") else {
            return true;
        };
        accept.split(',').any(|range| {
            let media = range
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            media.is_empty()
                || media == "*/*"
                || media == "application/*"
                || media == "application/json"
        })
    }

    /// The `Idempotency-Key` header of a post, if any (a value that is not text
    /// is an empty key, which the post refuses).
    pub fn idempotency_key(&self) -> Option<&str> {
        let value = self.headers.get("idempotency-key")?;
        Some(value.to_str().unwrap_or(""))
    }

    /// The exact `Content-Type` header, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type").map(str::trim)
    }

    /// The body, as read by [`handle`].
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// Reads the body, up to the largest size any request may have.
    pub async fn read_body(&mut self) -> Result<(), RestError> {
        self.payload = self.read_payload().await?;
        Ok(())
    }

    /// Throws the body of a refused request away: a small one is drained within
    /// the body read timeout, a larger one is left unread.
    async fn discard_body(&mut self) {
        let Some(body) = self.take_body() else {
            return;
        };
        let small = self
            .header("content-length")
            .and_then(|len| len.trim().parse::<u64>().ok())
            .is_some_and(|len| len <= DISCARD_LIMIT);
        self.unread = !small
            || !tokio::time::timeout(
                self.services.body_read_timeout,
                drain(body, 0, DISCARD_LIMIT),
            )
            .await
            .unwrap_or(false);
    }

    fn take_body(&mut self) -> Option<BodyStream> {
        self.body
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// The body, read within the body read timeout (else 408, and the
    /// connection is closed).
    async fn read_payload(&mut self) -> Result<Payload, RestError> {
        let within = self.services.body_read_timeout;
        match tokio::time::timeout(within, self.read_payload_untimed()).await {
            Ok(read) => read,
            Err(_) => {
                self.unread = true;
                Err(ZaqarError::titled(
                    ErrorCode::RequestTimeout,
                    "Request timeout",
                    format!(
                        "The request body did not arrive within {} ms.",
                        within.as_millis()
                    ),
                )
                .into())
            }
        }
    }

    async fn read_payload_untimed(&mut self) -> Result<Payload, RestError> {
        // The project is not known yet: the largest body any project may send.
        let cap = self.services.project_limits.largest_body() as u64;
        let declared = self
            .header("content-length")
            .and_then(|len| len.trim().parse::<u64>().ok());
        let chunked = self
            .header("transfer-encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
        match declared {
            Some(len) if len > cap => {
                self.unread = match self.take_body() {
                    Some(body) if len <= DRAIN_LIMIT => !drain(body, 0, DRAIN_LIMIT).await,
                    Some(_) => true,
                    None => false,
                };
                return Ok(Payload::TooLarge(len));
            }
            None if !chunked => return Ok(Payload::Absent),
            _ => {}
        }
        let Some(mut body) = self.take_body() else {
            return Ok(Payload::Absent);
        };
        let mut bytes = BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|err| {
                tracing::debug!(error = %err, "request body could not be read");
                ZaqarError::unavailable(
                    "Request body could not be read. Please try again in a few seconds.",
                )
            })?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > cap {
                self.unread = !drain(body, bytes.len() as u64, DRAIN_LIMIT).await;
                return Ok(Payload::TooLarge(bytes.len() as u64));
            }
        }
        Ok(Payload::Read(bytes.freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApiConfig;

    #[tokio::test]
    async fn a_handler_that_panics_answers_500_and_the_server_goes_on() {
        let services = Arc::new(Services::new(&ApiConfig::default()).unwrap());
        let routes = request(services).then(|req: Request| async move {
            handle(req, &["GET"], |_, req: Request| async move {
                if req.path == "/panic" {
                    panic!("a bug in a handler");
                }
                Ok(super::super::empty(StatusCode::NO_CONTENT))
            })
            .await
        });
        let call = |path: &'static str| {
            warp::test::request()
                .path(path)
                .header("X-Project-ID", "p")
                .header("Client-ID", "3381af92-2b9e-11e3-b191-71861300734c")
                .reply(&routes)
        };
        let answer = call("/panic").await;
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body: serde_json::Value = serde_json::from_slice(answer.body()).unwrap();
        assert!(
            body["title"].is_string() && body["description"].is_string(),
            "{body}"
        );
        assert_eq!(call("/fine").await.status(), StatusCode::NO_CONTENT);
    }
}
