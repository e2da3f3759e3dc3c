//! A websocket client for tests of the WebSocket API.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{Harness, CLIENT_ID};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A websocket client speaking for the harness' project.
pub struct Ws {
    pub socket: Socket,
    pub headers: Value,
}

impl Ws {
    pub async fn connect(h: &Harness) -> Ws {
        Ws::with_headers(
            h,
            json!({"Client-ID": CLIENT_ID, "X-Project-ID": h.project}),
        )
        .await
    }

    pub async fn with_headers(h: &Harness, headers: Value) -> Ws {
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/", h.ws))
            .await
            .unwrap();
        Ws { socket, headers }
    }

    /// Sends a raw frame and returns the whole reply document.
    pub async fn raw(&mut self, message: Message) -> Value {
        self.socket.send(message).await.unwrap();
        loop {
            match self.socket.next().await.unwrap().unwrap() {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Binary(bytes) => return rmp_serde::from_slice(&bytes).unwrap(),
                _ => continue,
            }
        }
    }

    /// Runs an action and returns its status and body.
    pub async fn call(&mut self, action: &str, body: Value) -> (u64, Value) {
        let request = json!({"action": action, "headers": self.headers, "body": body});
        let reply = self.raw(Message::text(request.to_string())).await;
        assert_eq!(reply["request"]["action"], action, "{reply}");
        assert_eq!(reply["request"]["api"], "v2");
        (
            reply["headers"]["status"].as_u64().unwrap(),
            reply["body"].clone(),
        )
    }

    /// Runs an action that must answer `status`, and returns its body.
    pub async fn ok(&mut self, action: &str, body: Value, status: u64) -> Value {
        let (got, body) = self.call(action, body).await;
        assert_eq!(got, status, "{action}: {body}");
        body
    }
}

pub fn ids(messages: &Value) -> Vec<String> {
    let list = messages.as_array().unwrap();
    list.iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

/// Reads until the server closes and returns the close code, if it sent one.
pub async fn close_code(ws: &mut Socket) -> Option<CloseCode> {
    let wait = async {
        while let Some(frame) = ws.next().await {
            match frame {
                Ok(Message::Close(frame)) => return frame.map(|f| f.code),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap()
}

/// Every action of Zaqar's WebSocket API, written out independently of the server's table.
pub const WS_ACTIONS: &[&str] = &[
    "get_home_doc",
    "authenticate",
    "ping_node",
    "check_node_health",
    "queue_list",
    "queue_create",
    "queue_get",
    "queue_delete",
    "queue_get_stats",
    "queue_purge",
    "message_list",
    "message_get",
    "message_get_many",
    "message_post",
    "message_delete",
    "message_delete_many",
    "claim_create",
    "claim_get",
    "claim_update",
    "claim_delete",
    "subscription_list",
    "subscription_create",
    "subscription_get",
    "subscription_delete",
    "pool_list",
    "pool_get",
    "pool_create",
    "pool_update",
    "pool_delete",
    "flavor_list",
    "flavor_get",
    "flavor_create",
    "flavor_update",
    "flavor_delete",
];
