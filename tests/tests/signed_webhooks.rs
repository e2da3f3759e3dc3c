//! Signed webhooks, driven as a tenant would against `zaqar standalone`: the
//! subscription command of docs/webhooks.md runs as written (its subscriber replaced
//! by this test's receiver, `localhost:8888` by the server's port), a posted message
//! arrives with `X-Zaqar-Signature`, and the document's Python verifier accepts it
//! and refuses it once the body, the secret or the timestamp is changed. A
//! subscription without the option gets no signature, and a bad secret is refused
//! with Zaqar's 400 body.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use serde_json::json;
use zaqar_tests::webhook::{
    check_refused_options, standalone_notifying_loopback, Received, Webhook,
};
use zaqar_tests::Client;

const PROJECT: &str = "demo";

/// The text of docs/webhooks.md.
fn doc() -> Result<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/webhooks.md");
    std::fs::read_to_string(path).context("reading docs/webhooks.md")
}

/// The first fenced block of `language` in `text`.
fn block<'a>(text: &'a str, language: &str) -> Result<&'a str> {
    text.split(&format!("```{language}\n"))
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .with_context(|| format!("no {language} block"))
}

/// Whether the document's `verify` accepts `header` for `body` with `secret`.
fn doc_verifies(secret: &str, header: &str, body: &[u8]) -> Result<bool> {
    let text = doc()?;
    let verifier = block(&text, "python")?;
    let program = format!(
        "{verifier}\nimport os, sys\n\
         sys.exit(0 if verify(os.environ['SECRET'], os.environ['SIGNATURE'], sys.stdin.buffer.read()) else 1)\n"
    );
    let mut child = Command::new("python3")
        .args(["-c", &program])
        .env("SECRET", secret)
        .env("SIGNATURE", header)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running python3")?;
    child.stdin.take().context("stdin")?.write_all(body)?;
    let out = child.wait_with_output()?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => anyhow::bail!(
            "the verifier failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// A signature header for `body` at `timestamp`, made independently of zaqar (Python's
/// hmac), for timestamps the service would not send.
fn sign(secret: &str, timestamp: u64, body: &[u8]) -> Result<String> {
    let program = "import hashlib, hmac, os, sys\n\
        signed = os.environ['STAMP'].encode() + b'.' + sys.stdin.buffer.read()\n\
        print(hmac.new(os.environ['SECRET'].encode(), signed, hashlib.sha256).hexdigest())\n";
    let mut child = Command::new("python3")
        .args(["-c", program])
        .env("SECRET", secret)
        .env("STAMP", timestamp.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running python3")?;
    child.stdin.take().context("stdin")?.write_all(body)?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "python3 failed");
    let hex = String::from_utf8(out.stdout)?;
    Ok(format!("t={timestamp},v1={}", hex.trim()))
}

/// Posts one message to queue `orders` and returns what `hook` received for it.
async fn post_and_receive(client: &Client, hook: &mut Webhook, text: &str) -> Result<Received> {
    let posted = json!({"messages": [{"body": {"order": text}, "ttl": 300}]});
    let posted = client.post("/v2/queues/orders/messages", posted).await?;
    ensure!(posted.status == 201, "{posted:?}");
    hook.next_received().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_with_a_signing_secret_are_signed_as_the_docs_say() -> Result<()> {
    let mut signed_hook = Webhook::start().await?;
    let mut plain_hook = Webhook::start().await?;
    let dir = tempfile::tempdir()?;
    let (server, client) = standalone_notifying_loopback(dir.path(), PROJECT).await?;
    let bad = ["short", "with spaces in it, long enough"]
        .map(|secret| json!({ "_signing_secret": secret }));
    let not_a_string = json!({"_signing_secret": 7});
    check_refused_options(&client, "orders", &plain_hook.url, &bad).await?;
    check_refused_options(&client, "orders", &plain_hook.url, &[not_a_string]).await?;

    let text = doc()?;
    let command = block(&text, "sh")?
        .replace("https://hooks.example.com/zaqar", &signed_hook.url)
        .replace("localhost:8888", &format!("localhost:{}", server.port));
    let secret = "a-long-random-string-only-you-know";
    ensure!(command.contains(secret), "the example's secret changed");
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &command])
        .env("P", format!("X-Project-ID: {PROJECT}"))
        .env("C", "Client-ID: 3381af92-2b9e-11e3-b191-71861300734c")
        .output()?;
    let printed = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success() && printed.contains("subscription_id"),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = json!({"subscriber": plain_hook.url, "ttl": 3600});
    let created = client
        .post("/v2/queues/orders/subscriptions", plain)
        .await?;
    ensure!(created.status == 201, "{created:?}");

    let received = post_and_receive(&client, &mut signed_hook, "signed").await?;
    let header = received
        .header("x-zaqar-signature")
        .context("no X-Zaqar-Signature")?
        .to_string();
    ensure!(
        doc_verifies(secret, &header, &received.body)?,
        "the docs' verifier refused {header}"
    );
    let mut altered = received.body.clone();
    altered.extend_from_slice(b" ");
    ensure!(!doc_verifies(secret, &header, &altered)?, "altered body");
    ensure!(
        !doc_verifies("another-secret-0123456789", &header, &received.body)?,
        "another secret"
    );
    let stamped: u64 = header
        .strip_prefix("t=")
        .and_then(|rest| rest.split(',').next())
        .context("no timestamp")?
        .parse()?;
    let fresh = sign(secret, stamped - 60, &received.body)?;
    ensure!(
        doc_verifies(secret, &fresh, &received.body)?,
        "a minute old"
    );
    let replayed = sign(secret, stamped - 600, &received.body)?;
    ensure!(
        !doc_verifies(secret, &replayed, &received.body)?,
        "a signature ten minutes old"
    );

    let unsigned = plain_hook.next_received().await?;
    ensure!(
        unsigned.header("x-zaqar-signature").is_none(),
        "a subscription without a secret was signed: {}",
        unsigned.head
    );
    Ok(())
}
