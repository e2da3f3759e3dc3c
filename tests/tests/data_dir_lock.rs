//! One process per data directory, and a damaged raft log, with the real `zaqar`
//! binary: a second standalone or catalog node on a directory in use exits at once
//! with an error naming the lock; a raft log damaged before its end (a length field
//! that runs past the end, which once passed for a torn tail and was cut
//! silently) is refused at start, and `--repair-log` cuts it, keeps a copy and starts.

use std::ffi::OsStr;
use std::fmt::Debug;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use zaqar_tests::catalog_cluster::{caught_up, CatalogNode};
use zaqar_tests::{zaqar_bin, Standalone};

/// Runs `zaqar ARGS` to its end (at most 60 s); its success and its log.
fn run_to_exit(args: &[impl AsRef<OsStr> + Debug]) -> Result<(bool, String)> {
    let mut child = Command::new(zaqar_bin())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            child.kill()?;
            bail!("zaqar {args:?} still runs after 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), log))
}

#[test]
fn a_second_standalone_on_the_same_data_dir_exits_with_a_clear_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let _first = Standalone::start(dir.path())?;
    let data_dir = dir.path().join("data").display().to_string();
    let (ok, log) = run_to_exit(&[
        "standalone",
        "--listen",
        "127.0.0.1:0",
        "--ws-listen",
        "127.0.0.1:0",
        "--data-dir",
        &data_dir,
    ])?;
    assert!(!ok, "the second standalone ran: {log}");
    assert!(
        log.contains("another process uses the data directory"),
        "{log}"
    );
    Ok(())
}

/// Makes the length field of the first record of `log` run past the end of the file.
fn damage_first_length(log: &Path) -> Result<()> {
    let mut bytes = std::fs::read(log)?;
    assert!(bytes.len() > 64, "a raft log of {} bytes", bytes.len());
    bytes[3] = 0x7f;
    std::fs::write(log, &bytes)?;
    Ok(())
}

#[tokio::test]
async fn a_catalog_node_locks_its_directory_and_refuses_a_damaged_log() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let mut node = CatalogNode::new(1, d);
    node.start(d)?;
    // Initialized: its log holds the first entry (its membership), which the
    // damage below needs.
    caught_up(&node.endpoint(), 1, Duration::from_secs(30)).await?;
    // Node 1 again, on other ports: the same data directory.
    let second = CatalogNode::new(1, d).args;
    let (ok, log) = run_to_exit(&second)?;
    assert!(!ok, "a second node ran on the same directory: {log}");
    assert!(
        log.contains("another process uses the data directory"),
        "{log}"
    );

    node.kill();
    let raft_log = d.join("node-1").join("raft-log");
    damage_first_length(&raft_log)?;
    let (ok, log) = run_to_exit(&second)?;
    assert!(!ok, "a node started on a damaged log: {log}");
    assert!(log.contains("is corrupt at byte 0"), "{log}");
    assert!(log.contains("--repair-log"), "{log}");

    // Cut at byte 0, the node starts over: a single node initializes itself again.
    node.args.push("--repair-log".into());
    node.start(d)?;
    let copies = std::fs::read_dir(d.join("node-1"))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("raft-log.damaged-"))
        .count();
    assert_eq!(copies, 1, "no copy of the damaged log was kept");
    Ok(())
}
