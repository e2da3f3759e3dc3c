//! Email notifications through a real SMTP sink: aiosmtpd with its Mailbox handler,
//! from the project's venv (scripts/setup-deps.sh installs it), on a free port.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{document, queue, Pool};
use tokio::process::{Child, Command};
use zaqar_pool_node::NotifierConfig;

/// The venv's python (or `ZAQAR_TEST_PYTHON`), if it has aiosmtpd.
fn python() -> Option<PathBuf> {
    let python = std::env::var_os("ZAQAR_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    let found = std::process::Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    found.then_some(python)
}

/// aiosmtpd storing every message in `maildir`; killed when dropped.
async fn smtp_sink(python: &Path, maildir: &Path) -> (Child, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(python)
        .args([
            "-u",
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "aiosmtpd did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, port)
}

/// The emails in the maildir, oldest first, parsed by Python's email package:
/// `{"from": [name, address], "to", "subject", "content_type", "body"}`.
async fn mails(python: &Path, maildir: &Path, count: usize) -> Vec<Value> {
    let new = maildir.join("new");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut files = loop {
        let files: Vec<PathBuf> = std::fs::read_dir(&new)
            .map(|dir| dir.map(|entry| entry.unwrap().path()).collect())
            .unwrap_or_default();
        if files.len() >= count {
            break files;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} emails arrived",
            files.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    files.sort_by_key(|file| std::fs::metadata(file).unwrap().modified().unwrap());
    let script = "import email, email.utils, json, sys\n\
        for path in sys.argv[1:]:\n\
        \x20   m = email.message_from_binary_file(open(path, 'rb'))\n\
        \x20   print(json.dumps({'from': email.utils.parseaddr(m['From']), 'to': m['To'], 'subject': m['Subject'],\n\
        \x20       'content_type': m.get_content_type(), 'body': m.get_payload(decode=True).decode()}))\n";
    let output = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(&files)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test]
async fn emails_carry_zaqars_subject_sender_and_body_in_posting_order() {
    let Some(python) = python() else {
        eprintln!(
            "skipped: no python with aiosmtpd (run scripts/setup-deps.sh or set ZAQAR_TEST_PYTHON)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("maildir");
    let (mut sink, port) = smtp_sink(&python, &maildir).await;
    let config = NotifierConfig {
        smtp_host: "127.0.0.1".into(),
        smtp_port: port,
        smtp_from: "Zaqar Notifications <no-reply@openstack.org>".into(),
        delivery_timeout_ms: 5_000,
        ..NotifierConfig::default()
    };
    let pool = Pool::start(config).await;
    let alerts = queue("alerts");
    pool.subscribe(
        &alerts,
        "mailto:ops@example.org?subject=Queue%20alert",
        json!({"from": "zaqar@example.org"}),
    )
    .await;

    pool.post(
        &alerts,
        &[json!({"n": 1}), json!({"n": 2, "text": "x".repeat(200)})],
    )
    .await;
    let received = mails(&python, &maildir, 2).await;
    for (mail, body) in received
        .iter()
        .zip([json!({"n": 1}), json!({"n": 2, "text": "x".repeat(200)})])
    {
        assert_eq!(mail["from"], json!(["", "zaqar@example.org"]));
        assert_eq!(mail["to"], "ops@example.org");
        assert_eq!(mail["subject"], "Queue alert");
        assert_eq!(mail["content_type"], "text/plain");
        let sent: Value = serde_json::from_str(mail["body"].as_str().unwrap().trim_end()).unwrap();
        assert_eq!(sent, document("alerts", body));
    }

    // Without `from`, the configured sender; the subject option when the URI has none.
    let digest = queue("digest");
    pool.subscribe(
        &digest,
        "mailto:team@example.org",
        json!({"subject": "Digest"}),
    )
    .await;
    pool.post(&digest, &[json!("hello")]).await;
    let received = mails(&python, &maildir, 3).await;
    let last = &received[2];
    assert_eq!(
        last["from"],
        json!(["Zaqar Notifications", "no-reply@openstack.org"])
    );
    assert_eq!(
        (last["to"].as_str(), last["subject"].as_str()),
        (Some("team@example.org"), Some("Digest"))
    );
    assert_eq!(pool.notifier.missed_wakes(), 0);
    sink.kill().await.unwrap();
}
