//! The workload's four calls over Zaqar's v2 WebSocket API: one connection per
//! worker, one request at a time, each answered by the next text frame, whose
//! `headers.status` says how it went (2xx: `Ok`).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::client::{CallError, Page};

type Connection = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A message taken by a claim, as the WebSocket API names it.
#[derive(Debug, Clone, Deserialize)]
pub struct Claimed {
    pub id: String,
    pub claim_id: String,
}

#[derive(Deserialize)]
struct Reply<B> {
    headers: ReplyHeaders,
    body: Option<B>,
}

#[derive(Deserialize)]
struct ReplyHeaders {
    status: u16,
}

#[derive(Deserialize)]
struct Messages<M> {
    #[serde(default = "Vec::new")]
    messages: Vec<M>,
}

/// One client identity (Client-ID) over its own WebSocket connection, opened on
/// first use and again after a failure.
pub struct WsClient {
    url: String,
    /// The `headers` object of every request.
    headers: serde_json::Value,
    timeout: Duration,
    connection: Mutex<Option<Connection>>,
}

impl WsClient {
    /// A client for `url` (`ws://host:port`) sending `project` and a fresh Client-ID.
    pub fn new(url: &str, project: &str, timeout: Duration) -> Self {
        let client_id = uuid::Uuid::new_v4().to_string();
        WsClient {
            url: url.to_owned(),
            headers: json!({"Client-ID": client_id, "X-Project-ID": project}),
            timeout,
            connection: Mutex::new(None),
        }
    }

    /// Sends `action` with `body` and reads its reply; the reply's body for a 2xx status.
    async fn call<B: serde::de::DeserializeOwned>(
        &self,
        action: &str,
        body: serde_json::Value,
    ) -> Result<Option<B>, CallError> {
        let request = json!({"action": action, "headers": self.headers, "body": body});
        let exchange = self.exchange(request.to_string());
        let text = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| CallError::Transport(format!("no answer within {:?}", self.timeout)))??;
        let reply: Reply<B> = serde_json::from_str(&text)
            .map_err(|e| CallError::Transport(format!("{action} reply: {e}")))?;
        if (200..300).contains(&reply.headers.status) {
            Ok(reply.body)
        } else {
            let text: String = text.chars().take(200).collect();
            Err(CallError::Status(
                hyper::StatusCode::from_u16(reply.headers.status)
                    .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR),
                text,
            ))
        }
    }

    /// Sends one frame and returns the next text frame; a connection that failed is
    /// dropped, so the next call opens a new one.
    async fn exchange(&self, request: String) -> Result<String, CallError> {
        let mut slot = self.connection.lock().await;
        let mut connection = match slot.take() {
            Some(connection) => connection,
            None => {
                let (connection, _) = tokio_tungstenite::connect_async(self.url.as_str())
                    .await
                    .map_err(|e| {
                        CallError::Transport(format!("connecting to {}: {e}", self.url))
                    })?;
                connection
            }
        };
        connection
            .send(Frame::text(request))
            .await
            .map_err(|e| CallError::Transport(format!("sending: {e}")))?;
        loop {
            match connection.next().await {
                Some(Ok(Frame::Text(text))) => {
                    *slot = Some(connection);
                    return Ok(text.to_string());
                }
                Some(Ok(Frame::Close(_))) | None => {
                    return Err(CallError::Transport(
                        "the server closed the connection".into(),
                    ))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(CallError::Transport(format!("receiving: {e}"))),
            }
        }
    }

    /// Posts `messages` (a JSON array of messages) to `queue`.
    pub async fn post(&self, queue: &str, messages: &serde_json::Value) -> Result<(), CallError> {
        let body = json!({"queue_name": queue, "messages": messages});
        self.call::<IgnoredAny>("message_post", body)
            .await
            .map(drop)
    }

    /// Claims up to `limit` messages of `queue` (ttl 300, grace 200).
    pub async fn claim(
        &self,
        queue: &str,
        limit: usize,
        wait: u32,
    ) -> Result<Vec<Claimed>, CallError> {
        let mut body = json!({"queue_name": queue, "limit": limit, "ttl": 300, "grace": 200});
        if wait > 0 {
            body["wait"] = json!(wait);
        }
        let claimed: Option<Messages<Claimed>> = self.call("claim_create", body).await?;
        Ok(claimed.map(|claimed| claimed.messages).unwrap_or_default())
    }

    /// Deletes a claimed message with its claim.
    pub async fn delete(&self, queue: &str, message: &Claimed) -> Result<(), CallError> {
        let body = json!({
            "queue_name": queue,
            "message_id": message.id,
            "claim_id": message.claim_id,
        });
        self.call::<IgnoredAny>("message_delete", body)
            .await
            .map(drop)
    }

    /// Deletes the messages `ids` of `queue` that claim `claim_id` holds, in one request.
    pub async fn delete_claimed(
        &self,
        queue: &str,
        ids: &[&str],
        claim_id: &str,
    ) -> Result<(), CallError> {
        let body = json!({"queue_name": queue, "message_ids": ids, "claim_ids": [claim_id]});
        self.call::<IgnoredAny>("message_delete_many", body)
            .await
            .map(drop)
    }

    /// Lists up to `limit` messages of `queue` from its head (the WebSocket listing has
    /// no next marker), claimed ones too with `include_claimed`.
    pub async fn list(
        &self,
        queue: &str,
        limit: usize,
        include_claimed: bool,
    ) -> Result<Page, CallError> {
        let body = json!({"queue_name": queue, "limit": limit, "include_claimed": include_claimed});
        let listed: Option<Messages<IgnoredAny>> = self.call("message_list", body).await?;
        Ok(Page {
            count: listed.map_or(0, |listed| listed.messages.len()),
            next_marker: None,
        })
    }
}
