//! A minimal Zaqar v2 REST client for the benchmark: the four calls of the workload
//! plus queue setup, each answering `Ok` only for a 2xx status.
//!
//! It speaks HTTP/1.1 over one kept-alive connection with hyper's connection API
//! (no pool, no redirects, no middleware): the load generator shares the machine
//! with the server it measures, so every microsecond it spends is taken from that
//! server.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::IgnoredAny;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use zaqar_proto::grpc_client::error_chain;

/// Why a request did not succeed.
#[derive(Debug)]
pub enum CallError {
    /// The server answered with a non-2xx status.
    Status(StatusCode, String),
    /// No (complete) answer: connection refused, reset, timed out, bad body.
    Transport(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Status(status, body) => write!(f, "HTTP {status}: {body}"),
            CallError::Transport(error) => write!(f, "transport: {error}"),
        }
    }
}

/// A transport error with its source chain (which says *why*, e.g. "connection refused").
fn transport(context: &str, error: &dyn std::error::Error) -> CallError {
    CallError::Transport(format!("{context}: {}", error_chain(error)))
}

/// One client identity (its Client-ID) talking to one server over its own
/// connection; a clone keeps the identity and opens a connection of its own.
#[derive(Debug)]
pub struct ZaqarClient {
    /// `host:port` of the server.
    address: String,
    /// The same, as the `Host` header of every request.
    host: HeaderValue,
    project: HeaderValue,
    client_id: HeaderValue,
    timeout: Duration,
    /// The kept-alive connection, opened on first use and after a failure.
    connection: Arc<Mutex<Option<SendRequest<Full<Bytes>>>>>,
}

impl Clone for ZaqarClient {
    fn clone(&self) -> Self {
        ZaqarClient {
            address: self.address.clone(),
            host: self.host.clone(),
            project: self.project.clone(),
            client_id: self.client_id.clone(),
            timeout: self.timeout,
            connection: Arc::default(),
        }
    }
}

#[derive(Deserialize)]
struct Claimed {
    messages: Vec<ClaimedMessage>,
}

#[derive(Deserialize)]
struct ClaimedMessage {
    href: String,
}

#[derive(Deserialize)]
struct Listing {
    #[serde(default)]
    messages: Vec<IgnoredAny>,
    #[serde(default)]
    links: Vec<Link>,
}

#[derive(Deserialize)]
struct Link {
    rel: String,
    href: String,
}

/// A page of a message listing: how many messages, and the marker of the next page.
#[derive(Debug, PartialEq, Eq)]
pub struct Page {
    pub count: usize,
    pub next_marker: Option<String>,
}

impl ZaqarClient {
    /// A client for `base` (`http://host:port`, no trailing slash) sending `project`
    /// and a fresh Client-ID; every request is bounded by `timeout`.
    pub fn new(base: &str, project: &str, timeout: Duration) -> anyhow::Result<Self> {
        let Some(address) = base.strip_prefix("http://") else {
            anyhow::bail!("zaqar-bench speaks plain http only, not {base:?}");
        };
        anyhow::ensure!(
            !address.is_empty() && !address.contains('/'),
            "the server URL must be http://host:port, not {base:?}"
        );
        let client_id = uuid::Uuid::new_v4().to_string();
        Ok(Self {
            address: address.to_owned(),
            host: HeaderValue::from_str(address)?,
            project: HeaderValue::from_str(project)?,
            client_id: HeaderValue::from_str(&client_id)?,
            timeout,
            connection: Arc::default(),
        })
    }

    /// The same identity on the same connection (a clone opens one of its own).
    pub fn sharing_connection(&self) -> Self {
        ZaqarClient {
            connection: Arc::clone(&self.connection),
            ..self.clone()
        }
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, CallError> {
        let stream = TcpStream::connect(&self.address)
            .await
            .map_err(|e| transport(&format!("connecting to {}", self.address), &e))?;
        stream
            .set_nodelay(true)
            .map_err(|e| transport("TCP_NODELAY", &e))?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| transport("HTTP handshake", &e))?;
        tokio::spawn(connection);
        Ok(sender)
    }

    /// Sends one request on the kept-alive connection (opening one if needed) and
    /// reads the whole answer.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let mut connection = self.connection.lock().await;
        let mut sender = match connection.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.connect().await?,
        };
        sender
            .ready()
            .await
            .map_err(|e| transport("connection", &e))?;
        let has_body = body.is_some();
        let mut request = Request::new(Full::new(body.unwrap_or_default()));
        *request.method_mut() = method;
        *request.uri_mut() = path
            .parse()
            .map_err(|e| transport(&format!("path {path:?}"), &e))?;
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert("X-Project-ID", self.project.clone());
        headers.insert("Client-ID", self.client_id.clone());
        if has_body {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| transport("request", &e))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| transport("answer body", &e))?
            .to_bytes();
        // Only a connection that delivered a whole answer is used again.
        *connection = Some(sender);
        Ok((status, bytes))
    }

    /// Sends one request; the body of a 2xx answer, or why not.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let (status, bytes) = tokio::time::timeout(self.timeout, self.exchange(method, path, body))
            .await
            .map_err(|_| CallError::Transport(format!("no answer within {:?}", self.timeout)))??;
        if status.is_success() {
            Ok((status, bytes))
        } else {
            let text = String::from_utf8_lossy(&bytes);
            let text: String = text.chars().take(200).collect();
            Err(CallError::Status(status, text))
        }
    }

    /// Posts `body` (a `{"messages": [...]}` document) to `queue`.
    pub async fn post(&self, queue: &str, body: Bytes) -> Result<(), CallError> {
        let path = format!("/v2/queues/{queue}/messages");
        self.call(Method::POST, &path, Some(body)).await.map(drop)
    }

    /// Claims up to `limit` messages of `queue`, waiting up to `wait` seconds for some
    /// (0: not at all); the hrefs (with claim_id) of those claimed, none when the
    /// server answers 204.
    pub async fn claim(
        &self,
        queue: &str,
        limit: usize,
        body: Bytes,
        wait: u32,
    ) -> Result<Vec<String>, CallError> {
        let mut path = format!("/v2/queues/{queue}/claims?limit={limit}");
        if wait > 0 {
            path.push_str(&format!("&wait={wait}"));
        }
        let (status, bytes) = self.call(Method::POST, &path, Some(body)).await?;
        if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            return Ok(Vec::new());
        }
        let claimed: Claimed = serde_json::from_slice(&bytes)
            .map_err(|e| CallError::Transport(format!("claim body: {e}")))?;
        Ok(claimed.messages.into_iter().map(|m| m.href).collect())
    }

    /// Deletes the message at `href` (a path as returned by a claim).
    pub async fn delete(&self, href: &str) -> Result<(), CallError> {
        self.call(Method::DELETE, href, None).await.map(drop)
    }

    /// Deletes the messages `ids` of `queue` that claim `claim_id` holds, in one request.
    pub async fn delete_claimed(
        &self,
        queue: &str,
        ids: &[&str],
        claim_id: &str,
    ) -> Result<(), CallError> {
        let ids = ids.join(",");
        let path = format!("/v2/queues/{queue}/messages?ids={ids}&claim_ids={claim_id}");
        self.call(Method::DELETE, &path, None).await.map(drop)
    }

    /// Lists up to `limit` messages of `queue` after `marker` (claimed ones too with
    /// `include_claimed`).
    pub async fn list(
        &self,
        queue: &str,
        limit: usize,
        marker: Option<&str>,
        include_claimed: bool,
    ) -> Result<Page, CallError> {
        let mut path = format!("/v2/queues/{queue}/messages?limit={limit}");
        if include_claimed {
            path.push_str("&include_claimed=true");
        }
        if let Some(marker) = marker {
            path.push_str("&marker=");
            path.push_str(marker);
        }
        let (_, bytes) = self.call(Method::GET, &path, None).await?;
        if bytes.is_empty() {
            return Ok(Page {
                count: 0,
                next_marker: None,
            });
        }
        let listing: Listing = serde_json::from_slice(&bytes)
            .map_err(|e| CallError::Transport(format!("list body: {e}")))?;
        let next_marker = listing
            .links
            .iter()
            .find(|link| link.rel == "next")
            .and_then(|link| marker_of(&link.href));
        Ok(Page {
            count: listing.messages.len(),
            next_marker,
        })
    }

    /// Pops up to `limit` messages of `queue`; how many it got.
    pub async fn pop(&self, queue: &str, limit: usize) -> Result<usize, CallError> {
        let path = format!("/v2/queues/{queue}/messages?pop={limit}");
        let (_, bytes) = self.call(Method::DELETE, &path, None).await?;
        if bytes.is_empty() {
            return Ok(0);
        }
        let popped: Listing = serde_json::from_slice(&bytes)
            .map_err(|e| CallError::Transport(format!("pop body: {e}")))?;
        Ok(popped.messages.len())
    }

    /// Creates `queue` (no error if it exists).
    pub async fn create_queue(&self, queue: &str) -> Result<(), CallError> {
        let path = format!("/v2/queues/{queue}");
        self.call(Method::PUT, &path, Some(Bytes::from_static(b"{}")))
            .await
            .map(drop)
    }

    /// Lists the first `limit` queues of the project; how many came.
    pub async fn list_queues(&self, limit: usize) -> Result<usize, CallError> {
        #[derive(Deserialize)]
        struct Queues {
            #[serde(default)]
            queues: Vec<IgnoredAny>,
        }
        let path = format!("/v2/queues?limit={limit}");
        let (_, bytes) = self.call(Method::GET, &path, None).await?;
        if bytes.is_empty() {
            return Ok(0);
        }
        let listed: Queues = serde_json::from_slice(&bytes)
            .map_err(|e| CallError::Transport(format!("queue list body: {e}")))?;
        Ok(listed.queues.len())
    }

    /// Reads `queue`'s stats; the total of messages they count.
    pub async fn stats(&self, queue: &str) -> Result<u64, CallError> {
        #[derive(Deserialize)]
        struct Stats {
            messages: Counts,
        }
        #[derive(Deserialize)]
        struct Counts {
            total: u64,
        }
        let path = format!("/v2/queues/{queue}/stats");
        let (_, bytes) = self.call(Method::GET, &path, None).await?;
        let stats: Stats = serde_json::from_slice(&bytes)
            .map_err(|e| CallError::Transport(format!("stats body: {e}")))?;
        Ok(stats.messages.total)
    }

    /// Deletes `queue` (and its messages, left from an earlier run), then creates it.
    pub async fn recreate_queue(&self, queue: &str) -> Result<(), CallError> {
        let path = format!("/v2/queues/{queue}");
        self.call(Method::DELETE, &path, None).await?;
        self.call(Method::PUT, &path, Some(Bytes::from_static(b"{}")))
            .await
            .map(drop)
    }

    /// Deletes `queue` and its messages.
    pub async fn delete_queue(&self, queue: &str) -> Result<(), CallError> {
        let path = format!("/v2/queues/{queue}");
        self.call(Method::DELETE, &path, None).await.map(drop)
    }
}

/// The (still URL-encoded) `marker` parameter of a `next` link.
pub fn marker_of(href: &str) -> Option<String> {
    let (_, query) = href.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("marker="))
        .filter(|marker| !marker.is_empty())
        .map(str::to_owned)
}

/// The message id and claim id of a claimed message's href
/// (`/v2/queues/{queue}/messages/{id}?claim_id={claim}`).
pub fn split_href(href: &str) -> Option<(&str, &str)> {
    let (path, query) = href.split_once('?')?;
    let (_, id) = path.rsplit_once('/')?;
    let claim = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("claim_id="))?;
    (!id.is_empty() && !claim.is_empty()).then_some((id, claim))
}

/// The body of a post: `batch` messages whose body is a string of `size` characters.
pub fn post_body(batch: usize, size: usize, ttl: u32) -> Bytes {
    let message = format!(r#"{{"ttl":{ttl},"body":"{}"}}"#, "x".repeat(size));
    let messages = vec![message; batch].join(",");
    Bytes::from(format!(r#"{{"messages":[{messages}]}}"#))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_come_from_the_next_link() {
        let href = "/v2/queues/q/messages?marker=12&limit=5&include_claimed=True";
        assert_eq!(marker_of(href).as_deref(), Some("12"));
        assert_eq!(
            marker_of("/v2/queues/q/messages?limit=5&marker=a%2Fb").as_deref(),
            Some("a%2Fb")
        );
        assert_eq!(marker_of("/v2/queues/q/messages?limit=5"), None);
        assert_eq!(marker_of("/v2/queues/q/messages?marker="), None);
        assert_eq!(marker_of("/v2/queues/q/messages"), None);
    }

    #[test]
    fn a_claimed_href_names_its_message_and_claim() {
        let href = "/v2/queues/q/messages/5f1c?claim_id=9a2b";
        assert_eq!(split_href(href), Some(("5f1c", "9a2b")));
        assert_eq!(split_href("/v2/queues/q/messages/5f1c"), None);
        assert_eq!(split_href("/v2/queues/q/messages/5f1c?claim_id="), None);
        assert_eq!(split_href("/v2/queues/q/messages/?claim_id=9a2b"), None);
    }

    #[test]
    fn post_bodies_are_valid_json_of_the_asked_size() {
        let body = post_body(3, 10, 60);
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let messages = doc["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0]["ttl"], 60);
        assert_eq!(messages[2]["body"].as_str().unwrap().len(), 10);
    }
}
