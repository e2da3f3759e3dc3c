//! Webhooks and the internal network (SSRF): internal addresses are refused when
//! a subscription is made and again at delivery (a name that resolves to one only
//! then), unless `allowed_networks` includes them; redirects are not followed.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{config, queue, Pool, Receiver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Request;
use zaqar_pool_node::NotifierConfig;
use zaqar_proto::pb::pool_service_server::PoolService;
use zaqar_proto::pb::{CreateSubscriptionRequest, QueueRef};

const WITHIN: Duration = Duration::from_secs(5);

/// The status code of a create_subscription of `subscriber` through the gRPC handler.
async fn subscribing(pool: &Pool, queue: &QueueRef, subscriber: &str) -> tonic::Code {
    let request = CreateSubscriptionRequest {
        queue: Some(queue.clone()),
        subscriber: subscriber.to_string(),
        ttl: 3600,
        options_json: "{}".to_string(),
        confirmed: true,
    };
    match pool.server.create_subscription(Request::new(request)).await {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test]
async fn internal_addresses_are_refused_unless_allowed() {
    let mut receiver = Receiver::start("/hook", &[]).await;
    let defaults = Pool::start(NotifierConfig::default()).await;
    let jobs = queue("internal");
    for subscriber in [
        receiver.url.as_str(),
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:9/hook",
        "http://[::1]:9/hook",
        "https://10.0.0.1/hook",
    ] {
        let code = subscribing(&defaults, &jobs, subscriber).await;
        assert_eq!(code, tonic::Code::InvalidArgument, "{subscriber}");
    }
    let listed = defaults.store.list_subscriptions(&jobs, "", 10).await;
    assert!(
        listed.unwrap().0.is_empty(),
        "a refused subscription was stored"
    );

    let allowed = Pool::start(config()).await;
    allowed.subscribe(&jobs, &receiver.url, json!({})).await;
    allowed.post(&jobs, &[json!("delivered")]).await;
    assert_eq!(receiver.next(WITHIN).await.json()["body"], "delivered");
}

#[tokio::test]
async fn a_name_resolving_to_an_internal_address_at_delivery_is_refused() {
    // Only 127.0.0.2 is allowed: `localhost` (127.0.0.1, ::1) is internal.
    let config = NotifierConfig {
        allowed_networks: vec!["127.0.0.2/32".to_string()],
        cursor_flush_ms: 0,
        ..config()
    };
    let pool = Pool::start(config).await;
    let jobs = queue("rebinding");
    let mut inside = Receiver::start("/hook", &[]).await;
    let port = inside
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/hook");
    // Stored as if the name had resolved to a public address when it was made.
    let rebinding = format!("http://localhost:{port}/hook");
    let (id, _) = pool
        .store
        .create_subscription(&jobs, &rebinding, 3600, "{}", true)
        .await
        .unwrap();
    let mut witness = Receiver::start_at("127.0.0.2", 0, "/hook", &[]).await;
    pool.subscribe(&jobs, &witness.url, json!({})).await;
    let before = pool.store.delivery_cursor(&jobs, &id).await.unwrap();

    pool.post(&jobs, &[json!("only outside")]).await;
    assert_eq!(witness.next(WITHIN).await.json()["body"], "only outside");
    // The refused notification is final: the subscription's cursor moves past it.
    let deadline = Instant::now() + WITHIN;
    while pool.store.delivery_cursor(&jobs, &id).await.unwrap() == before {
        assert!(
            Instant::now() < deadline,
            "the refused notification is still pending"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    inside.nothing(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let mut target = Receiver::start("/hook", &[]).await;
    let redirector = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirect_url = format!("http://{}/hook", redirector.local_addr().unwrap());
    let location = target.url.clone();
    let (asked, mut was_asked) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = redirector.accept().await {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request).await;
            let answer = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\n\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = asked.send(());
        }
    });
    let pool = Pool::start(config()).await;
    let jobs = queue("redirected");
    pool.subscribe(&jobs, &redirect_url, json!({})).await;
    pool.post(&jobs, &[json!("stay")]).await;
    tokio::time::timeout(WITHIN, was_asked.recv())
        .await
        .expect("the redirecting endpoint was called");
    target.nothing(Duration::from_millis(300)).await;
}
