//! 2,000 slow clients against `zaqar standalone`, each sending its request
//! headers one byte a second: a normal client's requests all succeed meanwhile,
//! and every slow connection is closed once the header read timeout has passed.
//! Bounded: the slow clients stop trickling after the timeout, and the whole
//! test ends within a minute. (Latency figures are in the note of issue 15.)

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zaqar_tests::{Client, Standalone};

const SLOW_CLIENTS: usize = 2_000;
const HEADER_TIMEOUT_MS: u64 = 3_000;

/// One slow client: sends a request head a byte a second until the server
/// closes the connection; true when it was closed within `limit`.
async fn trickle(port: u16, limit: Duration) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return false;
    };
    let head = b"GET /v2/queues HTTP/1.1\r\nHost: slow\r\nX-Project-ID: slow\r\n";
    let started = Instant::now();
    for byte in head.iter().cycle() {
        if started.elapsed() > limit {
            return false;
        }
        if stream.write_all(&[*byte]).await.is_err() {
            return true;
        }
        let mut answer = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut answer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => return false,
            Err(_) => {}
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_do_not_hold_up_the_others_and_are_disconnected() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("zaqar.toml");
    std::fs::write(
        &config,
        format!("[api]\nheader_read_timeout_ms = {HEADER_TIMEOUT_MS}\n"),
    )?;
    let config = config.to_string_lossy();
    let standalone = Standalone::start_with(dir.path(), &["--config", &config])?;
    let client = Client::new(standalone.port, "fast-project");
    client.wait_ready(Duration::from_secs(30)).await?;

    let limit = Duration::from_millis(HEADER_TIMEOUT_MS) + Duration::from_secs(20);
    let slow: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| tokio::spawn(trickle(standalone.port, limit)))
        .collect();
    // Meanwhile a normal client posts and lists.
    let mut answered = 0;
    let deadline = Instant::now() + Duration::from_millis(HEADER_TIMEOUT_MS);
    while Instant::now() < deadline {
        let body = json!({"messages": [{"body": answered, "ttl": 300}]});
        let posted = client.post("/v2/queues/fast/messages", body).await?;
        ensure!(
            posted.status == 201,
            "post during the slow clients: {posted:?}"
        );
        let listed = client.get("/v2/queues/fast/messages?echo=true").await?;
        ensure!(
            listed.status == 200,
            "list during the slow clients: {listed:?}"
        );
        answered += 1;
    }
    ensure!(answered > 0, "no request was answered");
    let mut closed = 0;
    for task in slow {
        closed += usize::from(task.await?);
    }
    assert_eq!(
        closed, SLOW_CLIENTS,
        "slow connections left open past the timeout"
    );
    Ok(())
}
