//! Serving a tonic router on a TCP listener until shutdown, with optional TLS
//! or mTLS (`[tls]` of the catalog and pool-node); the client side is
//! `zaqar_proto::grpc_client`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use serde::Deserialize;
use tokio::net::TcpListener;
use tonic::transport::server::{Router, TcpIncoming};
use tonic::transport::{Certificate, Identity as TlsIdentity, Server, ServerTlsConfig};
use tower_layer::{Identity, Stack};
use zaqar_proto::grpc_client::GrpcClientTls;

use crate::grpc_metrics::CallMetricsLayer;
use crate::shutdown::Shutdown;

/// `[tls]` of a gRPC server: its certificate and, for mTLS, the CA that
/// client certificates must chain to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcServerTls {
    /// PEM file of the server certificate, followed by its intermediates.
    pub cert_file: PathBuf,
    /// PEM file of the certificate's private key.
    pub key_file: PathBuf,
    /// PEM file of the CA of client certificates; when set, every client must
    /// show a certificate it signed (mTLS).
    pub client_ca_file: Option<PathBuf>,
}

impl GrpcServerTls {
    /// Reads the files, so that a bad setting fails at start-up.
    pub fn server_config(&self) -> Result<ServerTlsConfig> {
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("tls: reading {}", path.display()))
        };
        // Parsed here (not only by tonic) for an error that names the file.
        zaqar_api_node::tls::certificates(&self.cert_file)?;
        zaqar_api_node::tls::private_key(&self.key_file)?;
        let identity = TlsIdentity::from_pem(read(&self.cert_file)?, read(&self.key_file)?);
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca_file {
            zaqar_api_node::tls::certificates(ca)?;
            config = config.client_ca_root(Certificate::from_pem(read(ca)?));
        }
        Ok(config)
    }

    /// Whether clients must show a certificate.
    pub fn mutual(&self) -> bool {
        self.client_ca_file.is_some()
    }
}

/// A gRPC server builder as [`server`] makes it.
pub type GrpcServer = Server<Stack<CallMetricsLayer, Identity>>;
/// Its services, ready to [`serve`].
pub type GrpcRouter = Router<Stack<CallMetricsLayer, Identity>>;

/// A server builder, with TLS when `tls` is set; each call is handled in a `grpc`
/// span, a child of the caller's span when the call carries its trace context, and
/// counted (`grpc_metrics`).
pub fn server(tls: Option<&GrpcServerTls>) -> Result<GrpcServer> {
    let builder = Server::builder().trace_fn(|request| {
        let headers = request.headers();
        zaqar_proto::trace::grpc_span(request.uri().path(), |name| {
            headers.get(name).and_then(|value| value.to_str().ok())
        })
    });
    let builder = match tls {
        None => builder,
        Some(tls) => builder
            .tls_config(tls.server_config()?)
            .context("tls: configuring the gRPC server")?,
    };
    Ok(builder.layer(CallMetricsLayer))
}

/// Checks the files of a client TLS setting once, at start-up.
pub fn validate_client_tls(tls: Option<&GrpcClientTls>) -> Result<()> {
    if let Some(tls) = tls {
        tls.client_config().context("grpc_tls")?;
    }
    Ok(())
}

/// A server TLS setting with readable certificates and key.
pub fn validate_server_tls(tls: Option<&GrpcServerTls>) -> Result<()> {
    if let Some(tls) = tls {
        tls.server_config()?;
    }
    Ok(())
}

/// Binds `addr` (port 0 for an ephemeral port); the error names the address.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

/// Serves `router` on `listener` until `shutdown` is triggered, then lets in-flight
/// calls finish. Accepted connections get TCP_NODELAY: gRPC writes small frames,
/// and Nagle's algorithm against delayed ACKs would add ~40 ms to calls. TLS, if
/// the router's server was built with it ([`server`]), is done by tonic per
/// connection.
pub async fn serve(router: GrpcRouter, listener: TcpListener, shutdown: Shutdown) -> Result<()> {
    let addr = listener.local_addr()?;
    let incoming = TcpIncoming::from_listener(listener, true, None)
        .map_err(|err| anyhow::anyhow!("configuring {addr}: {err}"))?;
    router
        .serve_with_incoming_shutdown(incoming, shutdown.wait())
        .await
        .with_context(|| format!("serving gRPC on {addr}"))
}

/// A client TLS setting needs a `https://` endpoint to mean anything.
pub fn ensure_https_with_tls(what: &str, endpoints: &str, tls: bool) -> Result<()> {
    if tls {
        ensure!(
            endpoints
                .split(',')
                .map(str::trim)
                .all(|endpoint| endpoint.starts_with("https://")),
            "{what} {endpoints:?}: grpc_tls is set, so the endpoints must be https://"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use zaqar_catalog::{AdminServer, CatalogServer, SqlCatalog};
    use zaqar_proto::admin_pb::admin_service_client::AdminServiceClient;
    use zaqar_proto::admin_pb::Empty;
    use zaqar_proto::cluster_auth::ClusterToken;
    use zaqar_proto::grpc_client::connect;
    use zaqar_proto::pb::catalog_service_client::CatalogServiceClient;
    use zaqar_proto::pb::QueueRef;
    use zaqar_proto::{ErrorCode, ZaqarError};
    use zaqar_tests::pki::make_pki;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(3);

    fn server_tls(dir: &Path, mutual: bool) -> GrpcServerTls {
        GrpcServerTls {
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server.key"),
            client_ca_file: mutual.then(|| dir.join("ca.pem")),
        }
    }

    fn client_tls(dir: &Path, with_cert: bool) -> GrpcClientTls {
        GrpcClientTls {
            ca_file: dir.join("ca.pem"),
            cert_file: with_cert.then(|| dir.join("client.pem")),
            key_file: with_cert.then(|| dir.join("client.key")),
            domain: None,
        }
    }

    /// A catalog (SQLite) whose admin API requires a client certificate when
    /// `admin_cert` is set, served with `builder`; returns its https endpoint.
    async fn catalog(dir: &Path, builder: GrpcServer, admin_cert: bool) -> String {
        let uri = format!("sqlite://{}/catalog.db", dir.display());
        let backend = Arc::new(SqlCatalog::open(&uri).await.unwrap());
        let mut builder = builder;
        let router = builder
            .add_service(CatalogServer::new(backend.clone()).into_service())
            .add_service(AdminServer::new(backend, "sqlite").into_service_with(None, admin_cert));
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(serve(router, listener, Shutdown::default()));
        format!("https://localhost:{port}")
    }

    async fn list_pools(endpoint: &str, tls: Option<&GrpcClientTls>) -> Result<(), ZaqarError> {
        let channel = connect(endpoint, tls, &ClusterToken::none(), TIMEOUT, TIMEOUT).await?;
        AdminServiceClient::new(channel)
            .list_pools(Empty {})
            .await
            .map_err(ZaqarError::from)?;
        Ok(())
    }

    #[tokio::test]
    async fn with_mtls_admin_calls_need_the_client_certificate() {
        let dir = tempfile::tempdir().unwrap();
        make_pki(dir.path()).unwrap();
        let tls = server_tls(dir.path(), true);
        let endpoint = catalog(dir.path(), server(Some(&tls)).unwrap(), tls.mutual()).await;

        list_pools(&endpoint, Some(&client_tls(dir.path(), true)))
            .await
            .expect("a client with its certificate is served");
        let refused = list_pools(&endpoint, Some(&client_tls(dir.path(), false))).await;
        assert!(refused.is_err(), "no client certificate: {refused:?}");
        let plain = endpoint.replace("https://", "http://");
        assert!(list_pools(&plain, None).await.is_err(), "plain gRPC to TLS");
    }

    #[tokio::test]
    async fn the_admin_check_refuses_a_connection_without_a_certificate() {
        // A listener where the certificate is optional (not a zaqar setting):
        // the catalog API serves anyone, the admin API only certificate holders.
        let dir = tempfile::tempdir().unwrap();
        make_pki(dir.path()).unwrap();
        let optional = server_tls(dir.path(), true)
            .server_config()
            .unwrap()
            .client_auth_optional(true);
        let builder = Server::builder()
            .tls_config(optional)
            .unwrap()
            .layer(CallMetricsLayer);
        let endpoint = catalog(dir.path(), builder, true).await;

        let certless = client_tls(dir.path(), false);
        let err = list_pools(&endpoint, Some(&certless)).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Unauthorized, "{err}");
        assert!(err.description.contains("client certificate"), "{err}");
        let channel = connect(
            &endpoint,
            Some(&certless),
            &ClusterToken::none(),
            TIMEOUT,
            TIMEOUT,
        )
        .await
        .unwrap();
        let lookup = QueueRef {
            project: "p".into(),
            queue: "q".into(),
        };
        CatalogServiceClient::new(channel)
            .lookup(lookup)
            .await
            .expect("the catalog API itself needs no certificate here");
        list_pools(&endpoint, Some(&client_tls(dir.path(), true)))
            .await
            .expect("the interceptor sees the verified certificate");
    }

    #[test]
    fn bad_tls_files_fail_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        make_pki(dir.path()).unwrap();
        let mut tls = server_tls(dir.path(), false);
        tls.key_file = dir.path().join("missing.key");
        let err = format!("{:#}", tls.server_config().unwrap_err());
        assert!(err.contains("missing.key"), "{err}");
        let mut client = client_tls(dir.path(), true);
        client.key_file = None;
        assert!(validate_client_tls(Some(&client)).is_err());
        assert!(ensure_https_with_tls("catalog", "http://c:7000", true).is_err());
        assert!(ensure_https_with_tls("catalog", "https://c:7000", true).is_ok());
    }
}
