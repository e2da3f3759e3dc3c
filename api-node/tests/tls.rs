//! TLS of the api-node: REST over https and the WebSocket API over wss with
//! `[tls]`, and gRPC to the catalog and pool-node over mTLS with `[grpc_tls]`
//! (an api-node without the client certificate cannot reach them). The
//! certificates are made by the test (rcgen): a CA, a server certificate for
//! 127.0.0.1 and localhost, and a client certificate.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use support::{Harness, TestCatalog, TestPool, CLIENT_ID};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_tungstenite::tungstenite::Message;
use zaqar_api_node::tls::ListenerTls;
use zaqar_api_node::ApiConfig;
use zaqar_proto::grpc_client::GrpcClientTls;
use zaqar_tests::pki::make_pki;

/// PEM files of a test PKI in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        make_pki(dir.path()).unwrap();
        let ca_pem = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
        Pki { dir, ca_pem }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn listener(&self) -> ListenerTls {
        ListenerTls {
            cert_file: self.path("server.pem"),
            key_file: self.path("server.key"),
        }
    }

    fn grpc_client(&self, with_cert: bool) -> GrpcClientTls {
        GrpcClientTls {
            ca_file: self.path("ca.pem"),
            cert_file: with_cert.then(|| self.path("client.pem")),
            key_file: with_cert.then(|| self.path("client.key")),
            domain: None,
        }
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        let ca = rustls_pem_cert(&self.ca_pem);
        roots.add(ca).unwrap();
        roots
    }
}

fn rustls_pem_cert(pem: &str) -> tokio_rustls::rustls::pki_types::CertificateDer<'static> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    tokio_rustls::rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

/// The pool and the catalog served over gRPC with mTLS: every client must show a
/// certificate of the test CA.
async fn serve_backends_mtls(
    pki: &Pki,
    pool: &TestPool,
    catalog: &TestCatalog,
) -> (String, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let read = |name: &str| std::fs::read(pki.path(name)).unwrap();
    let tls = tonic::transport::ServerTlsConfig::new()
        .identity(tonic::transport::Identity::from_pem(
            read("server.pem"),
            read("server.key"),
        ))
        .client_ca_root(tonic::transport::Certificate::from_pem(read("ca.pem")));
    let (stop, stopped) = oneshot::channel::<()>();
    let router = tonic::transport::Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(pool.service());
    let server = catalog.add_services(router).serve_with_incoming_shutdown(
        TcpListenerStream::new(listener),
        async {
            let _ = stopped.await;
        },
    );
    tokio::spawn(server);
    (format!("https://localhost:{port}"), stop)
}

/// An api-node whose catalog and pool-node need mTLS; `client_cert` says
/// whether the api-node has the client certificate.
async fn harness(pki: &Pki, client_cert: bool) -> Harness {
    let catalog = TestCatalog::new().await;
    let pool = TestPool::new().await;
    let (endpoint, stop) = serve_backends_mtls(pki, &pool, &catalog).await;
    catalog
        .register(&zaqar_proto::pb::Pool {
            name: "pool-1".into(),
            weight: 100,
            uri: pool.uri.clone(),
            endpoint: endpoint.clone(),
            ..Default::default()
        })
        .await;
    let config = ApiConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        catalog_endpoint: endpoint,
        tls: Some(pki.listener()),
        grpc_tls: Some(pki.grpc_client(client_cert)),
        connect_timeout_ms: 1_000,
        request_timeout_ms: 3_000,
        ..ApiConfig::default()
    };
    Harness::over(config, catalog, Arc::new(pool), vec![stop]).await
}

fn https_client(pki: &Pki) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap()
}

async fn post_and_list(client: &reqwest::Client, base: &str, project: &str) -> (u16, Value) {
    let post = client
        .post(format!("{base}/v2/queues/secure/messages"))
        .header("Client-ID", CLIENT_ID)
        .header("X-Project-ID", project)
        .json(&json!({"messages": [{"body": "over tls", "ttl": 300}]}))
        .send()
        .await
        .unwrap();
    let status = post.status().as_u16();
    let body = post.json::<Value>().await.unwrap_or(Value::Null);
    if status != 201 {
        return (status, body);
    }
    let listed = client
        .get(format!("{base}/v2/queues/secure/messages?echo=true"))
        .header("Client-ID", CLIENT_ID)
        .header("X-Project-ID", project)
        .send()
        .await
        .unwrap();
    (
        listed.status().as_u16(),
        listed.json::<Value>().await.unwrap(),
    )
}

#[tokio::test]
async fn rest_over_https_reaches_the_pool_over_mtls() {
    let pki = Pki::new();
    let h = harness(&pki, true).await;
    let base = h.base.replace("http://", "https://");
    let (status, listed) = post_and_list(&https_client(&pki), &base, &h.project).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["messages"][0]["body"], "over tls");

    // Plain HTTP to the TLS listener gets no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!("{}/v2/queues", h.base))
        .header("Client-ID", CLIENT_ID)
        .header("X-Project-ID", &h.project)
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    // A client that does not trust the CA refuses the server.
    let untrusting = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(untrusting.get(format!("{base}/v2/")).send().await.is_err());
}

#[tokio::test]
async fn without_its_client_certificate_the_api_node_cannot_reach_the_catalog() {
    let pki = Pki::new();
    let h = harness(&pki, false).await;
    let base = h.base.replace("http://", "https://");
    let (status, body) = post_and_list(&https_client(&pki), &base, &h.project).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["title"], "Service temporarily unavailable");
}

#[tokio::test]
async fn websocket_over_wss() {
    let pki = Pki::new();
    let h = harness(&pki, true).await;
    let config = ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(pki.roots())
    .with_no_client_auth();
    let tcp = TcpStream::connect(h.ws).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut socket, _) =
        tokio_tungstenite::client_async(format!("wss://localhost:{}/", h.ws.port()), tls)
            .await
            .unwrap();
    let headers = json!({"Client-ID": CLIENT_ID, "X-Project-ID": h.project});
    let request =
        json!({"action": "queue_create", "headers": headers, "body": {"queue_name": "wsq"}});
    socket
        .send(Message::text(request.to_string()))
        .await
        .unwrap();
    let reply = loop {
        match socket.next().await.unwrap().unwrap() {
            Message::Text(text) => break serde_json::from_str::<Value>(&text).unwrap(),
            _ => continue,
        }
    };
    assert_eq!(reply["headers"]["status"], 201, "{reply}");

    // A plain WebSocket handshake on the TLS port fails.
    let plain = tokio_tungstenite::connect_async(format!("ws://{}/", h.ws)).await;
    assert!(plain.is_err());
}
