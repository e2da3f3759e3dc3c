//! WebSocket connection hygiene: the frame size cap (1009), idle timeout and
//! pings, slow readers, shutdown, and many concurrent connections.

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::ws::{close_code, Ws};
use support::{Harness, CLIENT_ID};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn frames_over_the_cap_close_with_1009() {
    let h = Harness::start_with(|c| c.ws_max_frame_bytes = 4096).await;
    let mut ws = Ws::connect(&h).await;
    ws.ok("queue_list", json!({}), 200).await;
    let big = "x".repeat(5000);
    ws.socket.send(Message::text(big)).await.unwrap();
    assert_eq!(close_code(&mut ws.socket).await, Some(CloseCode::Size));
}

#[tokio::test]
async fn silent_connections_time_out_and_answering_ones_stay() {
    let h = Harness::start_with(|c| {
        c.ws_idle_timeout_ms = 300;
        c.ws_ping_interval_ms = 100;
    })
    .await;
    // A client that reads (and so answers pings) stays past the idle timeout.
    let mut alive = Ws::connect(&h).await;
    let mut pings = 0;
    let reading = async {
        while let Some(frame) = alive.socket.next().await {
            match frame {
                Ok(Message::Ping(_)) => pings += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        panic!("the connection closed");
    };
    assert!(tokio::time::timeout(Duration::from_millis(900), reading)
        .await
        .is_err());
    assert!(pings >= 3, "{pings} pings");
    alive.ok("queue_list", json!({}), 200).await;

    // One that never reads never pongs, and is closed.
    let h = Harness::start_with(|c| {
        c.ws_idle_timeout_ms = 300;
        c.ws_ping_interval_ms = 60_000;
    })
    .await;
    let mut silent = Ws::connect(&h).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(close_code(&mut silent.socket).await, Some(CloseCode::Away));
}

#[tokio::test]
async fn shutdown_closes_connections() {
    let h = Harness::start().await;
    let mut ws = Ws::connect(&h).await;
    ws.ok("queue_list", json!({}), 200).await;
    drop(h);
    assert_eq!(close_code(&mut ws.socket).await, Some(CloseCode::Away));
}

#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected() {
    let h = Harness::start_with(|c| c.ws_send_queue = 2).await;
    let body = "z".repeat(60_000);
    let messages: Vec<Value> = (0..4).map(|_| json!({"body": body})).collect();
    h.post_messages("big", json!(messages)).await;
    let mut ws = Ws::connect(&h).await;
    let request = json!({
        "action": "message_list",
        "headers": ws.headers,
        "body": {"queue_name": "big", "echo": true},
    });
    // ~240 KB per reply: the socket buffers fill, then the reply queue.
    let mut sent = 0;
    for _ in 0..150 {
        let send = ws.socket.send(Message::text(request.to_string()));
        match tokio::time::timeout(Duration::from_secs(2), send).await {
            Ok(Ok(())) => sent += 1,
            _ => break,
        }
    }
    // A slow reader: nothing read for a while.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut replies = 0;
    let read_all = async {
        while let Some(Ok(frame)) = ws.socket.next().await {
            if frame.is_text() {
                replies += 1;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read_all)
        .await
        .unwrap();
    assert!(replies < sent, "{replies} replies to {sent} requests");
}

/// How many connections the concurrency test holds at once (two descriptors
/// each, client and server, in this one process; `ulimit -n` is 20,000 here).
const CONNECTIONS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_connections_each_do_a_request() {
    let h = Harness::start().await;
    h.post_messages("shared", json!([{"body": 1}])).await;
    // Connect in waves (the listen backlog is finite), holding every connection.
    let connecting = std::sync::Arc::new(tokio::sync::Semaphore::new(200));
    let all_done = std::sync::Arc::new(tokio::sync::Barrier::new(CONNECTIONS));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (connecting, all_done) = (connecting.clone(), all_done.clone());
        let (addr, project) = (h.ws, h.project.clone());
        tasks.spawn(async move {
            let permit = connecting.acquire().await.unwrap();
            let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
                .await
                .unwrap();
            drop(permit);
            let headers = json!({"Client-ID": CLIENT_ID, "X-Project-ID": project});
            let mut ws = Ws { socket, headers };
            let stats = ws
                .ok("queue_get_stats", json!({"queue_name": "shared"}), 200)
                .await;
            assert_eq!(stats["messages"]["total"], 1);
            // Every connection stays open until all have been answered.
            all_done.wait().await;
            ws.socket.close(None).await.unwrap();
        });
    }
    let finish = async {
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(120), finish)
        .await
        .unwrap();
}
