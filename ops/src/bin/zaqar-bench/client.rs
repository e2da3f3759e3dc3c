//! A minimal Zaqar v2 REST client for the benchmark: the four calls of the workload
//! plus queue setup, each answering `Ok` only for a 2xx status.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde::de::IgnoredAny;
use serde::Deserialize;

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

impl From<reqwest::Error> for CallError {
    fn from(error: reqwest::Error) -> Self {
        // The source chain says *why* (e.g. "connection refused"), the top level only where.
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        CallError::Transport(text)
    }
}

/// One client identity (its own Client-ID and connection) talking to one server.
#[derive(Debug, Clone)]
pub struct ZaqarClient {
    http: reqwest::Client,
    base: String,
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
    /// A client for `base` (no trailing slash) sending `project` and a fresh Client-ID.
    pub fn new(base: &str, project: &str, timeout: Duration) -> anyhow::Result<Self> {
        let mut headers = HeaderMap::new();
        headers.insert("X-Project-ID", HeaderValue::from_str(project)?);
        let client_id = uuid::Uuid::new_v4().to_string();
        headers.insert("Client-ID", HeaderValue::from_str(&client_id)?);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(1)
            .build()?;
        Ok(Self {
            http,
            base: base.to_owned(),
        })
    }

    /// Sends one request; the body of a 2xx answer, or why not.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), CallError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
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

    /// Claims up to `limit` messages of `queue`; the hrefs (with claim_id) of those
    /// claimed, none when the server answers 204.
    pub async fn claim(
        &self,
        queue: &str,
        limit: usize,
        body: Bytes,
    ) -> Result<Vec<String>, CallError> {
        let path = format!("/v2/queues/{queue}/claims?limit={limit}");
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

    /// Lists up to `limit` messages of `queue` (claimed ones too) after `marker`.
    pub async fn list(
        &self,
        queue: &str,
        limit: usize,
        marker: Option<&str>,
    ) -> Result<Page, CallError> {
        let mut path = format!("/v2/queues/{queue}/messages?limit={limit}&include_claimed=true");
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
    fn post_bodies_are_valid_json_of_the_asked_size() {
        let body = post_body(3, 10, 60);
        let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let messages = doc["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 3);
        assert_eq!(messages[0]["ttl"], 60);
        assert_eq!(messages[2]["body"].as_str().unwrap().len(), 10);
    }
}
