//! TLS everywhere, with the real `zaqar` binary: a catalog with mTLS, a
//! pool-node (embedded store) serving mTLS and registering over mTLS, an
//! api-node serving https and calling both over mTLS, and `zaqar admin`,
//! which is refused without its client certificate. The test makes its own
//! CA and certificates (rcgen).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};
use zaqar_tests::pki::make_pki;
use zaqar_tests::{free_port, wait_for_port, zaqar_bin, Process};

const CLIENT_ID: &str = "3381af92-2b9e-11e3-b191-71861300734c";

fn server_tls(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "[tls]\ncert_file = \"{d}/server.pem\"\nkey_file = \"{d}/server.key\"\n\
         client_ca_file = \"{d}/ca.pem\"\n"
    )
}

fn client_tls(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "[grpc_tls]\nca_file = \"{d}/ca.pem\"\ncert_file = \"{d}/client.pem\"\n\
         key_file = \"{d}/client.key\"\n"
    )
}

fn start(name: &str, role: &str, config: String, dir: &Path) -> Result<Process> {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config)?;
    Process::spawn(
        name,
        &zaqar_bin(),
        &[role, "--config", path.to_str().unwrap()],
        dir,
    )
}

/// `zaqar admin --json pools list` against the catalog, showing the client
/// certificate `cert` (`client`, `rogue`) if any; its exit status and output.
fn admin_pools(catalog: &str, dir: &Path, cert: Option<&str>) -> Result<(bool, String)> {
    let ca = dir.join("ca.pem");
    let mut command = Command::new(zaqar_bin());
    command.args(["admin", "--json", "--catalog", catalog, "--ca-file"]);
    command.arg(&ca);
    if let Some(cert) = cert {
        command
            .arg("--cert-file")
            .arg(dir.join(format!("{cert}.pem")));
        command
            .arg("--key-file")
            .arg(dir.join(format!("{cert}.key")));
    }
    command.args(["pools", "list"]);
    let output = command.output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
}

#[tokio::test]
async fn roles_talk_over_mtls_and_clients_over_https() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    make_pki(d)?;
    let (catalog_port, pool_port, api_port, ws_port) =
        (free_port(), free_port(), free_port(), free_port());
    let catalog = format!("https://localhost:{catalog_port}");
    let mut processes = vec![start(
        "catalog",
        "catalog",
        format!(
            "listen = \"127.0.0.1:{catalog_port}\"\nuri = \"sqlite://{}/catalog.db\"\n{}",
            d.display(),
            server_tls(d)
        ),
        d,
    )?];
    wait_for_port(catalog_port, Duration::from_secs(30))?;
    processes.push(start(
        "pool-node",
        "pool-node",
        format!(
            "listen = \"127.0.0.1:{pool_port}\"\nuri = \"sqlite://{}/messages.db\"\n\
             name = \"secure-pool\"\ncatalog = \"{catalog}\"\n\
             advertise = \"https://localhost:{pool_port}\"\n{}{}",
            d.display(),
            server_tls(d),
            client_tls(d)
        ),
        d,
    )?);
    processes.push(start(
        "api-node",
        "api-node",
        format!(
            "listen = \"127.0.0.1:{api_port}\"\nws_listen = \"127.0.0.1:{ws_port}\"\n\
             catalog_endpoint = \"{catalog}\"\n\
             [tls]\ncert_file = \"{0}/server.pem\"\nkey_file = \"{0}/server.key\"\n{1}",
            d.display(),
            client_tls(d)
        ),
        d,
    )?);
    wait_for_port(api_port, Duration::from_secs(30))?;

    // The admin CLI with its certificate sees the pool registered over mTLS.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, output) = admin_pools(&catalog, d, Some("client"))?;
        if ok && output.contains("secure-pool") {
            let pools: Value = serde_json::from_str(output.trim())?;
            assert_eq!(
                pools[0]["endpoint"],
                format!("https://localhost:{pool_port}")
            );
            break;
        }
        if Instant::now() > deadline {
            bail!("the pool never registered: {output}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Without a client certificate, or with one of another CA, the catalog
    // refuses the operator.
    let (ok, output) = admin_pools(&catalog, d, None)?;
    assert!(
        !ok,
        "admin call without a client certificate succeeded: {output}"
    );
    let (ok, output) = admin_pools(&catalog, d, Some("rogue"))?;
    assert!(
        !ok,
        "admin call with a certificate of another CA succeeded: {output}"
    );

    // A tenant over https: api-node -> catalog and pool-node over mTLS.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(d.join("ca.pem"))?)?;
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .add_root_certificate(ca)
        .build()?;
    let base = format!("https://localhost:{api_port}");
    let posted = http
        .post(format!("{base}/v2/queues/tls-q/messages"))
        .header("Client-ID", CLIENT_ID)
        .header("X-Project-ID", "tls-project")
        .json(&json!({"messages": [{"body": {"secret": true}, "ttl": 300}]}))
        .send()
        .await?;
    assert_eq!(posted.status(), 201, "{}", posted.text().await?);
    let listed: Value = http
        .get(format!("{base}/v2/queues/tls-q/messages?echo=true"))
        .header("Client-ID", CLIENT_ID)
        .header("X-Project-ID", "tls-project")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(listed["messages"][0]["body"], json!({"secret": true}));
    // Plain HTTP on the https port gets no answer.
    let plain = reqwest::Client::new()
        .get(format!("http://localhost:{api_port}/v2/"))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    for process in &mut processes {
        process.kill();
    }
    Ok(())
}
