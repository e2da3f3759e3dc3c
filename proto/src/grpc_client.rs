//! The client side of gRPC between roles: how a role checks the servers it calls
//! (`[grpc_tls]`), and a connected channel whose calls carry the cluster token.
//! The api-node calls catalogs and pool-nodes, a pool-node registers with the
//! catalog, `zaqar admin` calls the admin API: all through this.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::cluster_auth::{AuthChannel, ClusterToken};
use crate::ZaqarError;

/// `[grpc_tls]`: how a role checks the gRPC servers it calls (catalog,
/// pool-nodes) and, for mTLS, which certificate it shows them. Used on
/// `https://` endpoints; `http://` ones stay plain.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcClientTls {
    /// PEM file of the CA certificates the servers' certificates must chain to.
    pub ca_file: PathBuf,
    /// PEM file of this client's certificate (mTLS); with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub key_file: Option<PathBuf>,
    /// The name expected in the servers' certificates, instead of the host of
    /// each endpoint (when servers are reached by IP, for instance).
    pub domain: Option<String>,
}

/// A `[grpc_tls]` setting that cannot be used: which file, and why.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cert_file and key_file go together")]
    Unpaired { path: PathBuf },
    #[error("gRPC TLS setup: {0}")]
    Tonic(#[from] tonic::transport::Error),
}

impl GrpcClientTls {
    /// The tonic client TLS settings: files read now, so a bad path fails at start-up.
    pub fn client_config(&self) -> Result<ClientTlsConfig, ClientTlsError> {
        let mut config =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&self.ca_file)?));
        match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            (None, None) => {}
            (Some(path), None) | (None, Some(path)) => {
                return Err(ClientTlsError::Unpaired { path: path.clone() })
            }
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        Ok(config)
    }

    /// `endpoint` with these TLS settings (they apply when its scheme is https).
    pub fn apply(
        tls: Option<&GrpcClientTls>,
        endpoint: Endpoint,
    ) -> Result<Endpoint, ClientTlsError> {
        match tls {
            Some(tls) => Ok(endpoint.tls_config(tls.client_config()?)?),
            None => Ok(endpoint),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ClientTlsError> {
    std::fs::read(path).map_err(|source| ClientTlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// A connected channel to `endpoint` (TLS with `tls` when it is `https://`)
/// whose calls carry `token`; unavailable (503) when it cannot connect.
pub async fn connect(
    endpoint: &str,
    tls: Option<&GrpcClientTls>,
    token: &ClusterToken,
    connect_timeout: Duration,
    call_timeout: Duration,
) -> Result<AuthChannel, ZaqarError> {
    let parsed = Endpoint::from_shared(endpoint.to_string())
        .map_err(|err| ZaqarError::bad_request(format!("invalid endpoint {endpoint:?}: {err}")))?;
    let parsed = GrpcClientTls::apply(tls, parsed)
        .map_err(|err| ZaqarError::bad_request(format!("grpc_tls: {err}")))?;
    let channel = parsed
        .connect_timeout(connect_timeout)
        .timeout(call_timeout)
        .connect()
        .await
        .map_err(|err| ZaqarError::unavailable(format!("cannot connect: {}", error_chain(&err))))?;
    Ok(token.attach(channel))
}

/// The endpoints of a comma-separated list (several catalog nodes), trimmed,
/// without empty entries.
pub fn split_endpoints(endpoints: &str) -> Vec<String> {
    endpoints
        .split(',')
        .map(str::trim)
        .filter(|endpoint| !endpoint.is_empty())
        .map(String::from)
        .collect()
}

/// An error with its sources, which tonic's and reqwest's own messages leave out
/// (tonic says only "transport error").
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_lists_are_trimmed_and_skip_empty_entries() {
        assert_eq!(
            split_endpoints(" http://a:7000, ,http://b:7000 ,"),
            ["http://a:7000", "http://b:7000"]
        );
        assert!(split_endpoints(" , ").is_empty());
    }

    #[test]
    fn a_certificate_without_its_key_is_refused_by_name() {
        let dir = std::env::temp_dir();
        let ca = dir.join(format!("zaqar-grpc-client-ca-{}.pem", std::process::id()));
        std::fs::write(&ca, "").unwrap();
        let tls = GrpcClientTls {
            ca_file: ca.clone(),
            cert_file: Some(PathBuf::from("/etc/zaqar/client.pem")),
            key_file: None,
            domain: None,
        };
        let err = tls.client_config().unwrap_err().to_string();
        std::fs::remove_file(&ca).unwrap();
        assert_eq!(
            err,
            "/etc/zaqar/client.pem: cert_file and key_file go together"
        );
        let missing = GrpcClientTls {
            ca_file: PathBuf::from("/nonexistent/ca.pem"),
            cert_file: None,
            key_file: None,
            domain: None,
        };
        assert!(missing
            .client_config()
            .unwrap_err()
            .to_string()
            .starts_with("reading /nonexistent/ca.pem"));
    }

    #[tokio::test]
    async fn an_endpoint_nobody_listens_on_is_unavailable() {
        // Port 0 cannot be connected to: refused at once, whatever else runs here.
        let err = connect(
            "http://127.0.0.1:0",
            None,
            &ClusterToken::none(),
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code, crate::ErrorCode::Unavailable, "{err:?}");
        assert!(err.description.contains("cannot connect"), "{err:?}");
    }
}
