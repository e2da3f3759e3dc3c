//! A webhook receiver for notification tests: an HTTP/1.1 endpoint on a free
//! loopback port that answers 200 to every POST and hands over its JSON body (and
//! its head, lower-cased, and the body's bytes as sent).

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Writes `DIR/zaqar.toml` allowing webhooks on loopback (an internal address,
/// refused by default) and returns its path, for `zaqar standalone --config`.
pub fn loopback_allowed_config(dir: &std::path::Path) -> Result<String> {
    let config = dir.join("zaqar.toml");
    std::fs::write(
        &config,
        "[notifier]\nallowed_networks = [\"127.0.0.0/8\"]\n",
    )?;
    Ok(config.to_string_lossy().into_owned())
}

/// `zaqar standalone` under `dir`, allowed to notify webhooks on loopback, and a
/// client of project `project` once it is ready.
pub async fn standalone_notifying_loopback(
    dir: &std::path::Path,
    project: &str,
) -> Result<(crate::Standalone, crate::Client)> {
    let config = loopback_allowed_config(dir)?;
    let server = crate::Standalone::start_with(dir, &["--config", &config])?;
    let client = crate::Client::new(server.port, project);
    client.wait_ready(Duration::from_secs(30)).await?;
    Ok((server, client))
}

/// Checks that a subscription of `subscriber` to `queue` with each of `options` is
/// refused with Zaqar's 400 "Invalid API request".
pub async fn check_refused_options(
    client: &crate::Client,
    queue: &str,
    subscriber: &str,
    options: &[Value],
) -> Result<()> {
    for options in options {
        let body = json!({"subscriber": subscriber, "ttl": 3600, "options": options});
        let refused = client
            .post(&format!("/v2/queues/{queue}/subscriptions"), body)
            .await?;
        ensure!(refused.status == 400, "{options}: {refused:?}");
        ensure!(
            refused.body["title"] == "Invalid API request",
            "{refused:?}"
        );
    }
    Ok(())
}

/// Bound of every wait for a notification.
pub const DELIVERY_WAIT: Duration = Duration::from_secs(20);

/// A running receiver; stops when dropped.
pub struct Webhook {
    pub url: String,
    requests: mpsc::UnboundedReceiver<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    /// Starts a receiver at `http://127.0.0.1:PORT/hook`.
    pub async fn start() -> Result<Webhook> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let (sender, requests) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, sender.clone()));
            }
        });
        Ok(Webhook {
            url,
            requests,
            task,
        })
    }

    /// The next body received (`null` when it was not JSON), within [`DELIVERY_WAIT`].
    pub async fn next(&mut self) -> Result<Value> {
        Ok(self.next_request().await?.1)
    }

    /// The head (request line and headers, lower-cased) and body of the next
    /// request, within [`DELIVERY_WAIT`].
    pub async fn next_request(&mut self) -> Result<(String, Value)> {
        let received = self.next_received().await?;
        let body = serde_json::from_slice(&received.body).unwrap_or(Value::Null);
        Ok((received.head, body))
    }

    /// The next request as received, within [`DELIVERY_WAIT`].
    pub async fn next_received(&mut self) -> Result<Received> {
        tokio::time::timeout(DELIVERY_WAIT, self.requests.recv())
            .await
            .with_context(|| format!("no notification at {} within {DELIVERY_WAIT:?}", self.url))?
            .context("webhook stopped")
    }

    /// Panics if anything arrives within `during`.
    pub async fn nothing(&mut self, during: Duration) {
        if let Ok(received) = tokio::time::timeout(during, self.requests.recv()).await {
            panic!("unexpected notification {received:?}");
        }
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request the receiver got.
#[derive(Debug)]
pub struct Received {
    /// The request line and headers, lower-cased.
    pub head: String,
    /// The body's bytes as sent.
    pub body: Vec<u8>,
}

impl Received {
    /// The value of header `name` (lower-case), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key == name).then(|| value.trim())
        })
    }
}

/// Reads requests off one kept-alive connection, answering each with 200.
async fn serve(mut stream: TcpStream, sender: mpsc::UnboundedSender<Received>) {
    let mut requests = RequestReader::default();
    while let Some((head, body)) = requests.next(&mut stream).await {
        let head = head.to_ascii_lowercase();
        let _ = sender.send(Received { head, body });
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        if stream.write_all(ok).await.is_err() {
            return;
        }
    }
}

/// Reads the HTTP/1.1 requests a client sends one after the other on one
/// connection (bodies by `Content-Length`), for the receivers tests start.
#[derive(Default)]
pub struct RequestReader {
    buffer: Vec<u8>,
}

impl RequestReader {
    /// The next request's head (request line and headers, as sent) and body, or
    /// `None` when the connection ends first.
    pub async fn next(&mut self, stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
        let head_end = loop {
            if let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            self.read_more(stream).await?;
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then_some(value)
            })
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0);
        while self.buffer.len() < head_end + length {
            self.read_more(stream).await?;
        }
        let body = self.buffer[head_end..head_end + length].to_vec();
        self.buffer.drain(..head_end + length);
        Some((head, body))
    }

    async fn read_more(&mut self, stream: &mut TcpStream) -> Option<()> {
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                Some(())
            }
        }
    }
}
