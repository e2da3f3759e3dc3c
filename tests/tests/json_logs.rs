//! `--log-format json`: every log line of `zaqar standalone` is one JSON object,
//! and a line written while a WebSocket request was handled carries the request
//! id its reply carries, in its span.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use zaqar_tests::Standalone;

#[tokio::test]
async fn json_log_lines_carry_the_request_id_of_their_request() -> Result<()> {
    // The only test of this binary: nothing else reads the environment meanwhile.
    std::env::set_var("RUST_LOG", "info,zaqar_api_node=debug");
    let dir = tempfile::tempdir()?;
    let standalone = Standalone::start_with(dir.path(), &["--log-format", "json"])?;
    let url = format!("ws://127.0.0.1:{}/", standalone.ws_port);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
    let frame = json!({"action": "queue_list", "body": {},
        "headers": {"Client-ID": "3381af92-2b9e-11e3-b191-71861300734c", "X-Project-ID": "logs"}});
    socket.send(Message::text(frame.to_string())).await?;
    let reply = loop {
        match socket.next().await.context("no reply")?? {
            Message::Text(text) => break serde_json::from_str::<Value>(&text)?,
            _ => continue,
        }
    };
    let id = reply["headers"]["X-Openstack-Request-Id"]
        .as_str()
        .context("no request id in the reply")?
        .to_string();

    let log = dir.path().join("standalone.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log)?;
        let lines: Vec<Value> = text
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .context("a log line that is not JSON")?;
        let of_request = lines.iter().find(|line| line["span"]["id"] == id.as_str());
        if let Some(line) = of_request {
            assert_eq!(line["fields"]["message"], "websocket request", "{line}");
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("no log line with the request id {id}:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
