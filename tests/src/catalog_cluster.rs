//! A `zaqar catalog` raft node as a process, and helpers shared by the catalog cluster tests.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::{free_port, wait_for_port, zaqar_bin, Process};

/// One catalog node: its ports, its command line and its process while it runs.
pub struct CatalogNode {
    pub id: u64,
    pub grpc_port: u16,
    pub raft_port: u16,
    /// The command line; callers add `--members` or `--join` before starting.
    pub args: Vec<String>,
    pub process: Option<Process>,
}

impl CatalogNode {
    /// A node with its own ports and data directory under `dir`.
    pub fn new(id: u64, dir: &Path) -> CatalogNode {
        let (grpc_port, raft_port) = (free_port(), free_port());
        let args: Vec<String> = [
            "catalog",
            "--listen",
            &format!("127.0.0.1:{grpc_port}"),
            "--raft-listen",
            &format!("127.0.0.1:{raft_port}"),
            "--node-id",
            &id.to_string(),
            "--data-dir",
            &dir.join(format!("node-{id}")).display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        CatalogNode {
            id,
            grpc_port,
            raft_port,
            args,
            process: None,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn raft_addr(&self) -> String {
        format!("127.0.0.1:{}", self.raft_port)
    }

    pub fn start(&mut self, dir: &Path) -> Result<()> {
        let name = format!("catalog-{}-{}", self.id, free_port());
        self.process = Some(Process::spawn(&name, &zaqar_bin(), &self.args, dir)?);
        wait_for_port(self.grpc_port, Duration::from_secs(30))
    }

    /// kill -9, and wait for the process.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }
}

/// Starts `count` raft catalog nodes under `dir` as one group, each with the `extra`
/// arguments it gives for that node, and waits until the group has a leader. Returns
/// the nodes and their endpoints, comma-separated (a `--catalog` value).
pub async fn start_raft_group(
    dir: &Path,
    count: u64,
    extra: impl Fn(&CatalogNode) -> Vec<String>,
) -> Result<(Vec<CatalogNode>, String)> {
    let mut nodes: Vec<CatalogNode> = (1..=count).map(|id| CatalogNode::new(id, dir)).collect();
    let members: Vec<String> = nodes
        .iter()
        .map(|n| format!("{}={}", n.id, n.raft_addr()))
        .collect();
    for node in &mut nodes {
        let more = extra(node);
        node.args.extend(["--members".into(), members.join(",")]);
        node.args.extend(more);
        node.start(dir)?;
    }
    let endpoints: Vec<String> = nodes.iter().map(CatalogNode::endpoint).collect();
    eventually("a raft leader", Duration::from_secs(30), || async {
        let status = admin(&endpoints, &["status"]).await?;
        ensure!(status["leader_id"].is_u64(), "no leader: {status}");
        Ok(())
    })
    .await?;
    Ok((nodes, endpoints.join(",")))
}

/// Runs `zaqar admin --catalog ENDPOINTS --json ARGS` and parses what it prints.
pub async fn admin(endpoints: &[String], args: &[&str]) -> Result<Value> {
    admin_with_token(endpoints, None, args).await
}

/// [`admin`] with the cluster token `token` (none: `ZAQAR_CLUSTER_TOKEN` unset).
pub async fn admin_with_token(
    endpoints: &[String],
    token: Option<&str>,
    args: &[&str],
) -> Result<Value> {
    let mut command = tokio::process::Command::new(zaqar_bin());
    command
        .args(["admin", "--catalog", &endpoints.join(","), "--json"])
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("ZAQAR_CLUSTER_TOKEN")
        .kill_on_drop(true);
    if let Some(token) = token {
        command.env("ZAQAR_CLUSTER_TOKEN", token);
    }
    let run = command.output();
    let out = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .context("zaqar admin did not finish")??;
    ensure!(
        out.status.success(),
        "zaqar admin {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).context("zaqar admin printed no JSON")
}

/// Waits up to `timeout` for the catalog node at `endpoint` to know a leader and
/// to have applied the raft log up to `index`.
pub async fn caught_up(endpoint: &str, index: u64, timeout: Duration) -> Result<()> {
    let endpoints = [endpoint.to_string()];
    eventually("the node catching up", timeout, || async {
        let status = admin(&endpoints, &["status"]).await?;
        let applied = status["last_applied_index"].as_u64().unwrap_or(0);
        ensure!(applied >= index && status["leader_id"].is_u64(), "{status}");
        Ok(())
    })
    .await
}

/// Polls `check` every 200 ms until it passes or `timeout` passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return Ok(value),
            Err(err) if Instant::now() >= deadline => {
                bail!("{what} not reached within {timeout:?}: {err:#}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
