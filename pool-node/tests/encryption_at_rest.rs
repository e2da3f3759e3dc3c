//! `_enable_encrypt_messages`: bodies posted through the `PoolService` are stored
//! encrypted (a dump of the store shows no plaintext), every read path gives the
//! plaintext back, and so does the notifier. Runs on SQLite (a temporary file) and
//! on the Redis at `ZAQAR_TEST_REDIS_URL` (skipped when unset, unless `CI` is set).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Code, Request};
use uuid::Uuid;
use zaqar_pool_node::{MessageCipher, MessageStore, Notifier, NotifierConfig, PoolServer};
use zaqar_proto::pb::pool_service_server::PoolService;
use zaqar_proto::pb::*;

const CLIENT: &str = "0b7b1dc4-a2c6-4d05-8d3a-7f3f6f0c4a11";
const ENCRYPTING: &str = r#"{"_enable_encrypt_messages": true}"#;

/// A body whose marker text must never reach the store in the clear.
fn secret_body(marker: &str) -> String {
    format!(r#"{{"event":"transfer","account":"{marker}"}}"#)
}

fn cipher() -> MessageCipher {
    MessageCipher::from_base64_key(&MessageCipher::generate_base64_key()).unwrap()
}

fn queue() -> QueueRef {
    QueueRef {
        project: Uuid::new_v4().to_string(),
        queue: "vault".to_string(),
    }
}

async fn create(server: &PoolServer, queue: &QueueRef, metadata: &str) {
    let request = CreateQueueRequest {
        queue: Some(queue.clone()),
        metadata_json: metadata.to_string(),
    };
    server.create_queue(Request::new(request)).await.unwrap();
}

async fn post(server: &PoolServer, queue: &QueueRef, bodies: &[String]) -> Vec<String> {
    post_result(server, queue, bodies).await.unwrap()
}

async fn post_result(
    server: &PoolServer,
    queue: &QueueRef,
    bodies: &[String],
) -> Result<Vec<String>, tonic::Status> {
    let messages = bodies
        .iter()
        .map(|body| NewMessage {
            ttl: 300,
            delay: 0,
            body_json: body.clone(),
        })
        .collect();
    let request = PostMessagesRequest {
        queue: Some(queue.clone()),
        client_id: CLIENT.to_string(),
        messages,
        ..Default::default()
    };
    let reply = server.post_messages(Request::new(request)).await?;
    Ok(reply.into_inner().ids)
}

async fn list(server: &PoolServer, queue: &QueueRef) -> Result<Vec<Message>, tonic::Status> {
    let request = ListMessagesRequest {
        queue: Some(queue.clone()),
        client_id: CLIENT.to_string(),
        limit: 20,
        echo: true,
        include_claimed: true,
        ..Default::default()
    };
    Ok(server
        .list_messages(Request::new(request))
        .await?
        .into_inner()
        .messages)
}

fn bodies(messages: &[Message]) -> Vec<&str> {
    messages.iter().map(|m| m.body_json.as_str()).collect()
}

fn md5_checksum(body: &str) -> String {
    use md5::{Digest, Md5};
    format!("MD5:{:x}", Md5::digest(body.as_bytes()))
}

/// Everything the store holds, as text, whatever its backend.
type Dump = Box<dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = String>>>>;

/// Posts to an encrypting queue and reads the messages back through every path.
async fn check_encryption_at_rest(store: Arc<dyn MessageStore>, dump: Dump) {
    let cipher = cipher();
    let server = PoolServer::new(store.clone()).with_encryption(cipher.clone());
    let queue = queue();
    create(&server, &queue, ENCRYPTING).await;
    let markers: Vec<String> = (0..3)
        .map(|n| format!("acct-{n}-{}", Uuid::new_v4()))
        .collect();
    let posted: Vec<String> = markers.iter().map(|m| secret_body(m)).collect();
    let ids = post(&server, &queue, &posted).await;

    // The store holds none of it in the clear, but does hold the envelopes.
    let stored = dump().await;
    for marker in &markers {
        assert!(
            !stored.contains(marker.as_str()),
            "plaintext {marker} in the store"
        );
    }
    assert!(
        stored.contains("zaqar-enc:v1:"),
        "no envelope in the store dump"
    );

    // Listing, with Zaqar's checksum of the plaintext body.
    let listed = list(&server, &queue).await.unwrap();
    assert_eq!(bodies(&listed), posted);
    assert_eq!(listed[0].checksum, md5_checksum(&posted[0]));

    // Get by ids.
    let request = GetMessagesRequest {
        queue: Some(queue.clone()),
        ids: vec![ids[2].clone(), ids[0].clone()],
    };
    let got = server.get_messages(Request::new(request)).await.unwrap();
    assert_eq!(bodies(&got.into_inner().messages), [&posted[2], &posted[0]]);

    // Stats: oldest and newest.
    let stats = server
        .queue_stats(Request::new(queue.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.oldest.unwrap().body_json, posted[0]);
    assert_eq!(stats.newest.unwrap().body_json, posted[2]);

    // Claims: create and get.
    let request = CreateClaimRequest {
        queue: Some(queue.clone()),
        ttl: 60,
        grace: 60,
        limit: 2,
    };
    let claim = server
        .create_claim(Request::new(request))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(bodies(&claim.messages), [&posted[0], &posted[1]]);
    let claim_ref = ClaimRef {
        queue: Some(queue.clone()),
        claim_id: claim.id.clone(),
    };
    let got = server.get_claim(Request::new(claim_ref)).await.unwrap();
    assert_eq!(bodies(&got.into_inner().messages), [&posted[0], &posted[1]]);

    // Pop takes the one free message.
    let request = PopMessagesRequest {
        queue: Some(queue.clone()),
        limit: 5,
    };
    let popped = server.pop_messages(Request::new(request)).await.unwrap();
    assert_eq!(bodies(&popped.into_inner().messages), [&posted[2]]);

    // Turning the flag off: old messages stay readable, new ones are stored as posted
    // (which also shows the dump would reveal plaintext if there were any).
    let request = SetQueueMetadataRequest {
        queue: Some(queue.clone()),
        metadata_json: "{}".to_string(),
    };
    server
        .set_queue_metadata(Request::new(request))
        .await
        .unwrap();
    let clear_marker = format!("clear-{}", Uuid::new_v4());
    post(&server, &queue, &[secret_body(&clear_marker)]).await;
    let listed = list(&server, &queue).await.unwrap();
    assert_eq!(
        bodies(&listed),
        [&posted[0], &posted[1], &secret_body(&clear_marker)]
    );
    let stored = dump().await;
    assert!(
        stored.contains(&clear_marker),
        "the dump misses a plaintext body"
    );
    assert!(!stored.contains(markers[0].as_str()));

    // Another key, or none, cannot read the encrypted messages: an internal error.
    let other_key = PoolServer::new(store.clone()).with_encryption(self::cipher());
    let err = list(&other_key, &queue).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(err.message().contains("cannot be decrypted"), "{err:?}");
    let no_key = PoolServer::new(store.clone());
    assert_eq!(
        list(&no_key, &queue).await.unwrap_err().code(),
        Code::Internal
    );

    // A pool-node without a key refuses posts to an encrypting queue, storing nothing.
    let locked = self::queue();
    create(&no_key, &locked, ENCRYPTING).await;
    let err = post_result(&no_key, &locked, &[secret_body("refused")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err
        .message()
        .contains("message encryption is not configured on this pool"));
    assert!(list(&server, &locked).await.unwrap().is_empty());

    // A client body that looks like an envelope reads back as posted.
    let plain = self::queue();
    let lookalike = r#""zaqar-enc:v1:AAAA""#.to_string();
    post(&server, &plain, std::slice::from_ref(&lookalike)).await;
    assert_eq!(bodies(&list(&server, &plain).await.unwrap()), [&lookalike]);
}

#[tokio::test]
async fn sqlite_store_keeps_encrypted_queues_encrypted_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messages.db");
    let store = zaqar_pool_node::open_store(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let dir_path = dir.path().to_path_buf();
    let dump: Dump = Box::new(move || {
        let dir_path = dir_path.clone();
        Box::pin(async move { sqlite_dump(&dir_path).await })
    });
    check_encryption_at_rest(store, dump).await;
}

/// The `messages` table read with its own connection, and the raw bytes of every
/// file of the database (main file, WAL, shared memory).
async fn sqlite_dump(dir: &Path) -> String {
    use sqlx::Connection;
    let url = format!("sqlite://{}", dir.join("messages.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let rows: Vec<(String,)> = sqlx::query_as("SELECT body FROM messages")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    let mut dump: String = rows.into_iter().map(|(body,)| body + "\n").collect();
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        dump.push_str(&String::from_utf8_lossy(&bytes));
    }
    dump
}

#[tokio::test]
async fn redis_store_keeps_encrypted_queues_encrypted_at_rest() {
    let Some(url) = zaqar_tests::test_server_url("ZAQAR_TEST_REDIS_URL") else {
        return;
    };
    let store = zaqar_pool_node::open_store(&url).await.unwrap();
    let dump: Dump = Box::new(move || {
        let url = url.clone();
        Box::pin(async move { redis_dump(&url).await })
    });
    check_encryption_at_rest(store, dump).await;
}

/// Every value of every key of the Redis database, read by type (values as
/// lossy UTF-8: a message is stored packed, in binary).
async fn redis_dump(url: &str) -> String {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut dump = String::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let values: Vec<Vec<u8>> = match kind.as_str() {
            "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut conn).await,
            "string" => redis::cmd("GET")
                .arg(&key)
                .query_async::<Option<Vec<u8>>>(&mut conn)
                .await
                .map(|value| value.into_iter().collect()),
            "zset" => {
                redis::cmd("ZRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut conn)
                    .await
            }
            "list" => {
                redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut conn)
                    .await
            }
            "set" => {
                redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
            }
            _ => Ok(Vec::new()),
        }
        .unwrap_or_default();
        dump.push_str(&key);
        for value in values {
            dump.push('\n');
            dump.push_str(&String::from_utf8_lossy(&value));
        }
        dump.push('\n');
    }
    dump
}

/// A webhook endpoint on a free port that hands over the body of the first request.
async fn webhook() -> (String, tokio::sync::oneshot::Receiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (sender, receiver) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        // Headers, then as many body bytes as Content-Length says.
        loop {
            let read = socket.read(&mut buf).await.unwrap();
            if read == 0 {
                break;
            }
            request.extend_from_slice(&buf[..read]);
            let text = String::from_utf8_lossy(&request).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    break;
                }
            }
        }
        let reply = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        let _ = socket.write_all(reply.as_bytes()).await;
        let _ = sender.send(String::from_utf8_lossy(&request).to_string());
    });
    (url, receiver)
}

#[tokio::test]
async fn subscribers_are_notified_with_the_plaintext_body() {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("sqlite://{}", dir.path().join("messages.db").display());
    let store = zaqar_pool_node::open_store(&uri).await.unwrap();
    let notifier = Notifier::spawn(store.clone(), &loopback_allowed(), "encryption").unwrap();
    let server = PoolServer::new(store)
        .with_encryption(cipher())
        .with_notifier(notifier);
    let queue = queue();
    create(&server, &queue, ENCRYPTING).await;
    let (url, received) = webhook().await;
    let request = CreateSubscriptionRequest {
        queue: Some(queue.clone()),
        subscriber: url,
        ttl: 300,
        options_json: "{}".to_string(),
        confirmed: true,
    };
    server
        .create_subscription(Request::new(request))
        .await
        .unwrap();
    let marker = format!("acct-{}", Uuid::new_v4());
    post(&server, &queue, &[secret_body(&marker)]).await;
    let delivered = tokio::time::timeout(Duration::from_secs(10), received)
        .await
        .expect("the webhook was called")
        .unwrap();
    assert!(delivered.contains(&marker), "{delivered}");
    assert!(!delivered.contains("zaqar-enc:"), "{delivered}");
}

/// The notifier's defaults, with the loopback test webhook allowed.
fn loopback_allowed() -> NotifierConfig {
    NotifierConfig {
        allowed_networks: vec!["127.0.0.0/8".to_string()],
        ..NotifierConfig::default()
    }
}
