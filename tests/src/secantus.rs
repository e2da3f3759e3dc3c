//! A SecantusDB server (MongoDB-compatible, a single-node replica set `secantus`)
//! of its own, on 127.0.0.1, with `--sync-on-commit` (a `j: true` write is on disk),
//! that a test can kill and start again on the same data directory. The binary is
//! `ZAQAR_TEST_SECANTUSD` (exported by scripts/test-servers.sh).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::{free_port, wait_for_port, Process};

pub struct Secantus {
    pub port: u16,
    binary: PathBuf,
    dir: tempfile::TempDir,
    process: Option<Process>,
}

impl Secantus {
    /// Starts the server; `None` when `ZAQAR_TEST_SECANTUSD` is unset (the test is
    /// skipped), unless `CI` is set.
    pub fn start() -> Result<Option<Secantus>> {
        let Some(binary) = std::env::var_os("ZAQAR_TEST_SECANTUSD") else {
            anyhow::ensure!(
                std::env::var_os("CI").is_none(),
                "ZAQAR_TEST_SECANTUSD must be set when CI is set"
            );
            eprintln!("skipped: ZAQAR_TEST_SECANTUSD not set");
            return Ok(None);
        };
        let mut server = Secantus {
            port: free_port(),
            binary: binary.into(),
            dir: tempfile::tempdir()?,
            process: None,
        };
        server.restart()?;
        Ok(Some(server))
    }

    /// The pool URI of database `db`.
    pub fn uri(&self, db: &str) -> String {
        format!("mongodb://127.0.0.1:{}/{db}?replicaSet=secantus", self.port)
    }

    /// Kills the server (SIGKILL, as a crash would).
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// Starts the server again, on the same port and data directory.
    pub fn restart(&mut self) -> Result<()> {
        self.process = None;
        let port = self.port.to_string();
        let data = self.dir.path().join("data").to_string_lossy().to_string();
        let args = [
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--storage-path",
            &data,
            "--cache-size",
            "64M",
            "--log-file-max",
            "16MB",
            "--sync-on-commit",
        ];
        self.process = Some(Process::spawn(
            &format!("secantus-{port}"),
            &self.binary,
            &args,
            self.dir.path(),
        )?);
        wait_for_port(self.port, Duration::from_secs(30))
    }
}
