//! A pool on `rediss://`: a Redis that serves TLS only, with a certificate of a CA the
//! test makes (rcgen). The store connects when the URI names that CA (`ssl_ca_certs`),
//! and refuses a server it cannot verify.

use std::path::Path;

use zaqar_proto::ErrorCode;

use super::{everything, free_port, message, queue, TestRedis};
use crate::redis_store::RedisStore;
use crate::store::MessageStore;

/// `ca.pem`, and the server's `server.pem` and `server.key` (for 127.0.0.1), in `dir`.
fn make_certificates(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "zaqar test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    server.distinguished_name.push(DnType::CommonName, "redis");
    let cert = server.signed_by(&key, &ca_cert, &ca_key).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
}

#[tokio::test]
async fn a_tls_redis_is_used_through_its_ca_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    make_certificates(dir.path());
    let file = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let port = free_port();
    let tls_port = port.to_string();
    let (cert, key, ca) = (file("server.pem"), file("server.key"), file("ca.pem"));
    // TLS only: the plain port is off.
    let extra = [
        "--port",
        "0",
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ];
    let Some(_redis) = TestRedis::start_with(port, &extra) else {
        return;
    };

    let url = format!("rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}");
    let store = RedisStore::connect(&url)
        .await
        .expect("a verified TLS server");
    let q = queue("over-tls");
    let ids = store.post_messages(&q, "c", &[message(60)]).await.unwrap();
    let (listed, _) = store.list_messages(&q, &everything()).await.unwrap();
    assert_eq!(
        listed.iter().map(|m| &m.id).collect::<Vec<_>>(),
        vec![&ids[0]]
    );

    // Without the CA, the server's certificate is not trusted: no connection.
    let unverified = format!("rediss://127.0.0.1:{port}/0");
    let err = RedisStore::connect(&unverified)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
    // Nor does plain TCP reach it.
    let plain = format!("redis://127.0.0.1:{port}/0");
    let err = RedisStore::connect(&plain).await.err().expect("refused");
    assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
    // A CA file that is not there is a bad URI.
    let missing = format!("rediss://127.0.0.1:{port}/0?ssl_ca_certs=/no/such/ca.pem");
    let err = RedisStore::connect(&missing).await.err().expect("refused");
    assert_eq!(err.code, ErrorCode::BadRequest, "{err}");
}
