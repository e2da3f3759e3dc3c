//! Shared pieces of the notifier tests: a pool server on a SQLite store with a
//! notifier, and a real HTTP receiver on a free loopback port.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tonic::Request;
use zaqar_pool_node::{MessageStore, Notifier, NotifierConfig, PoolServer};
use zaqar_proto::pb::pool_service_server::PoolService;
use zaqar_proto::pb::{CreateSubscriptionRequest, NewMessage, PostMessagesRequest, QueueRef};
use zaqar_tests::webhook::RequestReader;

/// A pool server with a notifier, on a fresh SQLite store.
pub struct Pool {
    pub store: Arc<dyn MessageStore>,
    pub server: PoolServer,
    pub notifier: Notifier,
    config: NotifierConfig,
    uri: String,
    /// The notifier's lease holder name, kept by a restart.
    holder: String,
    _dir: Arc<tempfile::TempDir>,
}

impl Pool {
    pub async fn start(config: NotifierConfig) -> Pool {
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("sqlite://{}/messages.db", dir.path().display());
        let holder = uuid::Uuid::new_v4().to_string();
        Pool::open(uri, config, holder, Arc::new(dir)).await
    }

    async fn open(
        uri: String,
        config: NotifierConfig,
        holder: String,
        dir: Arc<tempfile::TempDir>,
    ) -> Pool {
        let store = zaqar_pool_node::open_store(&uri).await.unwrap();
        let notifier = Notifier::spawn(store.clone(), &config, &holder).unwrap();
        let server = PoolServer::new(store.clone()).with_notifier(notifier.clone());
        Pool {
            store,
            server,
            notifier,
            config,
            uri,
            holder,
            _dir: dir,
        }
    }

    /// Stops this pool (server, notifier and store handle) and opens a new one on
    /// the same file, as a restarted pool-node would.
    pub async fn restart(self) -> Pool {
        let Pool {
            config,
            uri,
            holder,
            _dir,
            server,
            notifier,
            store,
        } = self;
        // As a pool-node stopping gracefully: its lanes flush their cursors first.
        drop((server, store));
        notifier.stopped().await;
        Pool::open(uri, config, holder, _dir).await
    }

    /// Another pool-node on this pool's store (its own server and notifier).
    pub async fn beside(&self) -> Pool {
        let holder = uuid::Uuid::new_v4().to_string();
        Pool::open(
            self.uri.clone(),
            self.config.clone(),
            holder,
            self._dir.clone(),
        )
        .await
    }

    /// Subscribes `subscriber` (confirmed) to `queue` with `options` through the
    /// gRPC handler; returns its id.
    pub async fn subscribe(
        &self,
        queue: &QueueRef,
        subscriber: &str,
        options: serde_json::Value,
    ) -> String {
        self.subscribe_for(queue, subscriber, options, 3600).await
    }

    /// [`Pool::subscribe`] with a ttl in seconds.
    pub async fn subscribe_for(
        &self,
        queue: &QueueRef,
        subscriber: &str,
        options: serde_json::Value,
        ttl: u32,
    ) -> String {
        let request = CreateSubscriptionRequest {
            queue: Some(queue.clone()),
            subscriber: subscriber.to_string(),
            ttl,
            options_json: options.to_string(),
            confirmed: true,
        };
        let reply = self
            .server
            .create_subscription(Request::new(request))
            .await
            .unwrap()
            .into_inner();
        assert!(reply.created);
        reply.id
    }

    /// Posts messages with these bodies (ttl 300) through the gRPC handler.
    pub async fn post(&self, queue: &QueueRef, bodies: &[serde_json::Value]) {
        let messages = bodies
            .iter()
            .map(|body| NewMessage {
                ttl: 300,
                delay: 0,
                body_json: body.to_string(),
            })
            .collect();
        let request = PostMessagesRequest {
            queue: Some(queue.clone()),
            client_id: "client-1".into(),
            messages,
            ..Default::default()
        };
        let reply = self
            .server
            .post_messages(Request::new(request))
            .await
            .unwrap();
        assert_eq!(reply.get_ref().ids.len(), bodies.len());
    }
}

pub fn queue(name: &str) -> QueueRef {
    QueueRef {
        project: "project-a".into(),
        queue: name.into(),
    }
}

/// The document Zaqar sends for a message posted with `body` and ttl 300.
pub fn document(queue: &str, body: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"ttl": 300, "body": body, "Message_Type": "Notification", "queue_name": queue})
}

/// One request as the receiver saw it, with the status it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// An HTTP/1.1 server answering the scripted statuses in turn, then 200.
pub struct Receiver {
    pub url: String,
    received: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    pub async fn start(path: &str, statuses: &[u16]) -> Receiver {
        Receiver::start_on(0, path, statuses).await
    }

    /// A receiver on `port` (0: any free port).
    pub async fn start_on(port: u16, path: &str, statuses: &[u16]) -> Receiver {
        Receiver::start_at("127.0.0.1", port, path, statuses).await
    }

    /// A receiver on `host` (a loopback address) and `port` (0: any free port).
    pub async fn start_at(host: &str, port: u16, path: &str, statuses: &[u16]) -> Receiver {
        let listener = TcpListener::bind((host, port)).await.unwrap();
        let url = format!("http://{}{path}", listener.local_addr().unwrap());
        let script = Arc::new(Mutex::new(
            statuses.iter().copied().collect::<VecDeque<_>>(),
        ));
        let (sender, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, script.clone(), sender.clone()));
            }
        });
        Receiver { url, received }
    }

    /// The next request, or a panic after `within`.
    pub async fn next(&mut self, within: Duration) -> Received {
        tokio::time::timeout(within, self.received.recv())
            .await
            .unwrap_or_else(|_| panic!("no request within {within:?}"))
            .unwrap()
    }

    /// Asserts that no request arrives for `during`.
    pub async fn nothing(&mut self, during: Duration) {
        if let Ok(request) = tokio::time::timeout(during, self.received.recv()).await {
            panic!("unexpected request {request:?}");
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    script: Arc<Mutex<VecDeque<u16>>>,
    sender: mpsc::UnboundedSender<Received>,
) {
    let mut requests = RequestReader::default();
    while let Some((head, body)) = requests.next(&mut stream).await {
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap_or_default().split(' ');
        let method = request_line.next().unwrap_or_default().to_string();
        let path = request_line.next().unwrap_or_default().to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
            .collect();
        let body = String::from_utf8_lossy(&body).into_owned();
        let status = script.lock().unwrap().pop_front().unwrap_or(200);
        let _ = sender.send(Received {
            method,
            path,
            headers,
            body,
            status,
        });
        let response = format!("HTTP/1.1 {status} Scripted\r\ncontent-length: 0\r\n\r\n");
        if stream.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A free loopback port, not listened on (connections to it are refused) until a
/// [`Receiver::start_on`] takes it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A port that accepts connections and never answers; held open until dropped.
pub struct BlackHole {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    pub async fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/never", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        BlackHole { url, task }
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Notifier settings for tests: short timeouts, and the receivers' loopback
/// addresses allowed (internal addresses are refused by default).
pub fn config() -> NotifierConfig {
    NotifierConfig {
        delivery_timeout_ms: 2_000,
        allowed_networks: loopback(),
        ..NotifierConfig::default()
    }
}

/// `allowed_networks` of the loopback receivers.
pub fn loopback() -> Vec<String> {
    vec!["127.0.0.0/8".to_string()]
}
