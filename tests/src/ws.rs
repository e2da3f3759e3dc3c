//! A client of the Zaqar v2 WebSocket API for tests: one connection, requests sent as
//! JSON text frames with the client's headers, replies read in order.

use std::time::Duration;

use anyhow::{Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long [`WsClient::call`] waits for a reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// One WebSocket connection of one client (`Client-ID`) of one project.
pub struct WsClient {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    headers: Value,
}

impl WsClient {
    /// Connects to the WebSocket API on `port` as `project`, with `client_id`.
    pub async fn connect(port: u16, project: &str, client_id: &str) -> Result<WsClient> {
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/"))
            .await
            .with_context(|| format!("connecting to the WebSocket API on port {port}"))?;
        Ok(WsClient {
            socket,
            headers: json!({"Client-ID": client_id, "X-Project-ID": project}),
        })
    }

    /// Sends `value` as the header `name` with every later request (e.g. the
    /// `X-Auth-Token` of an `authenticate`).
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers[name] = Value::String(value.to_string());
    }

    /// Sends `action` with `body`, without reading its reply.
    pub async fn send(&mut self, action: &str, body: Value) -> Result<()> {
        let request = json!({"action": action, "headers": self.headers, "body": body});
        self.socket
            .send(Message::Text(request.to_string().into()))
            .await?;
        Ok(())
    }

    /// Sends a ping frame (the api-node answers it with a pong, which is not a reply).
    pub async fn ping(&mut self) -> Result<()> {
        self.socket.send(Message::Ping(Default::default())).await?;
        Ok(())
    }

    /// The next reply, within `timeout`.
    pub async fn reply(&mut self, timeout: Duration) -> Result<Value> {
        loop {
            let frame = tokio::time::timeout(timeout, self.socket.next())
                .await
                .context("no reply in time")?
                .context("the connection closed")??;
            if frame.is_text() {
                return Ok(serde_json::from_str(frame.to_text()?)?);
            }
        }
    }

    /// Sends `action` with `body` and reads its reply.
    pub async fn call(&mut self, action: &str, body: Value) -> Result<Value> {
        self.send(action, body).await?;
        self.reply(REPLY_TIMEOUT).await
    }
}
