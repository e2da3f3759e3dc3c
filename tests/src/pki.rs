//! A test PKI made with rcgen, as PEM files in a directory: a CA, a server
//! certificate for `localhost` and `127.0.0.1`, a client certificate, and a client
//! certificate of another CA that servers must refuse.

use std::path::Path;

use anyhow::Result;
use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

/// Writes `ca.pem`, `server.pem`/`server.key`, `client.pem`/`client.key` and
/// `rogue.pem`/`rogue.key` (a client certificate of another CA) in `dir`.
pub fn make_pki(dir: &Path) -> Result<()> {
    let (ca_cert, ca_key) = authority()?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    let server_names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    issue(dir, "server", server_names, (&ca_cert, &ca_key))?;
    issue(dir, "client", Vec::new(), (&ca_cert, &ca_key))?;
    let (rogue_cert, rogue_key) = authority()?;
    issue(dir, "rogue", Vec::new(), (&rogue_cert, &rogue_key))
}

/// A self-signed CA.
fn authority() -> Result<(Certificate, KeyPair)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "zaqar test CA");
    Ok((params.self_signed(&key)?, key))
}

/// `dir/NAME.pem` and `dir/NAME.key`: a certificate for `names` signed by `ca`.
fn issue(dir: &Path, name: &str, names: Vec<String>, ca: (&Certificate, &KeyPair)) -> Result<()> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.signed_by(&key, ca.0, ca.1)?;
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem())?;
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem())?;
    Ok(())
}
