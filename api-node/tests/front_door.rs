//! The front door against raw sockets: a connection over `max_connections` gets
//! 503 with Zaqar's body, a client that does not finish its headers (or stays
//! idle) is disconnected after `header_read_timeout_ms`, one that does not finish
//! its body gets 408, and a request that fails authentication is answered
//! without its body being read. WebSocket connections share the same limit.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Harness, CLIENT_ID};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WITHIN: Duration = Duration::from_secs(10);

async fn harness(max_connections: usize) -> Harness {
    Harness::start_with(|config| {
        config.max_connections = max_connections;
        config.header_read_timeout_ms = 300;
        config.body_read_timeout_ms = 300;
    })
    .await
}

fn addr(harness: &Harness) -> String {
    harness.base.trim_start_matches("http://").to_string()
}

/// Everything the server sends until it closes the connection (bounded in time).
async fn answer(stream: &mut TcpStream) -> String {
    let mut text = Vec::new();
    tokio::time::timeout(WITHIN, stream.read_to_end(&mut text))
        .await
        .expect("the server answered and closed")
        .expect("read");
    String::from_utf8_lossy(&text).into_owned()
}

/// The JSON body of an HTTP answer.
fn body(answer: &str) -> Value {
    let (_, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {answer}"))
}

#[tokio::test]
async fn connections_over_the_limit_get_503_until_idle_ones_are_closed() {
    let harness = harness(3).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(addr(&harness)).await.unwrap());
    }
    // Wait until the server has taken all three (it answers the fourth then).
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut fourth = TcpStream::connect(addr(&harness)).await.unwrap();
    let refused = answer(&mut fourth).await;
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert_eq!(body(&refused)["title"], "Service temporarily unavailable");
    // A WebSocket connection counts too.
    let ws = tokio_tungstenite::connect_async(format!("ws://{}/", harness.ws)).await;
    assert!(
        ws.is_err(),
        "a websocket connection over the limit was accepted"
    );

    // The idle connections are closed after the header read timeout...
    for mut connection in idle {
        let said = answer(&mut connection).await;
        assert!(said.is_empty(), "{said}");
    }
    // ...and their slots serve new clients.
    let ping = harness.get("/v2/ping").await;
    assert_eq!(ping.status, 204);
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408() {
    let harness = harness(100).await;
    let mut slow = TcpStream::connect(addr(&harness)).await.unwrap();
    let head = format!(
        "POST /v2/queues/slow/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Client-ID: {CLIENT_ID}\r\nX-Project-ID: {}\r\nContent-Length: 100\r\n\r\n{{\"messa",
        harness.project
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let said = answer(&mut slow).await;
    assert!(said.starts_with("HTTP/1.1 408"), "{said}");
    assert!(
        said.to_ascii_lowercase().contains("connection: close"),
        "{said}"
    );
    assert_eq!(body(&said)["title"], "Request timeout");
}

#[tokio::test]
async fn a_request_refused_by_authentication_is_answered_before_its_body() {
    let harness = harness(100).await;
    let mut client = TcpStream::connect(addr(&harness)).await.unwrap();
    // No X-Project-ID: refused from the headers, while 10 MB are announced.
    let head = format!(
        "POST /v2/queues/q/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Client-ID: {CLIENT_ID}\r\nContent-Length: 10000000\r\n\r\n"
    );
    client.write_all(head.as_bytes()).await.unwrap();
    let said = answer(&mut client).await;
    assert!(said.starts_with("HTTP/1.1 400"), "{said}");
    assert!(
        said.to_ascii_lowercase().contains("connection: close"),
        "{said}"
    );
    assert!(body(&said)["title"].is_string(), "{said}");
}
