//! TLS with rustls (ring provider): the server side of the REST and WebSocket
//! listeners (`[tls]`). The client side of gRPC (`[grpc_tls]`) is
//! `zaqar_proto::grpc_client`.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Longest wait for a client to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TLS setting that cannot be used: which file, and why.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("TLS setup: {0}")]
    Rustls(#[from] tokio_rustls::rustls::Error),
}

impl From<TlsError> for io::Error {
    fn from(err: TlsError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, err.to_string())
    }
}

/// `[tls]`: the certificate chain and key of the REST and WebSocket listeners,
/// which then serve `https://` and `wss://` only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// PEM file of the server certificate, followed by its intermediates.
    pub cert_file: PathBuf,
    /// PEM file of the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The certificates of a PEM file, at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::Pem {
            path: path.to_path_buf(),
            reason: err.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            reason: "no CERTIFICATE in the file".to_string(),
        });
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|err| TlsError::Pem {
        path: path.to_path_buf(),
        reason: format!("no usable private key: {err}"),
    })
}

impl ListenerTls {
    /// The acceptor of an HTTP/1.1 listener (REST, WebSocket) with this certificate.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let certs = certificates(&self.cert_file)?;
        let key = private_key(&self.key_file)?;
        let mut config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// The server side of a TLS handshake on `stream`, bounded in time.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> io::Result<TlsStream<TcpStream>> {
    let _ = stream.set_nodelay(true);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "tls handshake timed out",
        )),
    }
}

/// Turns accepted TCP connections into [`MaybeTls`] ones: a TLS handshake
/// when the listener has a certificate, nothing otherwise.
#[derive(Clone, Default)]
pub struct StreamAcceptor {
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for StreamAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.tls.is_some() { "tls" } else { "plain" })
    }
}

impl StreamAcceptor {
    /// The acceptor of a listener with `tls` (plain without).
    pub fn new(tls: Option<&ListenerTls>) -> Result<StreamAcceptor, TlsError> {
        Ok(StreamAcceptor {
            tls: tls.map(ListenerTls::acceptor).transpose()?,
        })
    }

    /// The rustls acceptor, when the listener serves TLS.
    pub fn tls(&self) -> Option<&TlsAcceptor> {
        self.tls.as_ref()
    }

    /// `stream` (TCP_NODELAY set) after the TLS handshake, if any.
    pub async fn accept(&self, stream: TcpStream) -> io::Result<MaybeTls> {
        match &self.tls {
            None => {
                let _ = stream.set_nodelay(true);
                Ok(MaybeTls::Plain(stream))
            }
            Some(acceptor) => Ok(MaybeTls::Tls(Box::new(handshake(acceptor, stream).await?))),
        }
    }
}

/// An accepted connection, with TLS or without.
pub enum MaybeTls {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            MaybeTls::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            MaybeTls::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(stream) => Pin::new(stream).poll_flush(cx),
            MaybeTls::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            MaybeTls::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}
