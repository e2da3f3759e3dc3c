//! Helpers for cluster tests: free ports, real Redis servers and `zaqar` role
//! processes that stop when dropped, and a small Zaqar REST client.

pub mod catalog_cluster;
pub mod docs;
pub mod faults;
pub mod keystone;
pub mod messages;
pub mod otlp;
pub mod pki;
pub mod pools_on_redis;
pub mod prometheus;
pub mod proxy;
pub mod redis_cluster;
pub mod secantus;
pub mod sentinel;
pub mod stores;
pub mod webhook;
pub mod ws;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

/// The ports [`free_port`] picks from: below Linux's ephemeral range (32768 and
/// up), which the kernel hands out to `bind(0)` and outgoing connections. A port
/// picked from that range and bound later by a role process could meanwhile be
/// taken by any process's connection or listener; one below it cannot.
const PICKED_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port on 127.0.0.1 that was free a moment ago, outside the ephemeral range
/// (see [`PICKED_PORTS`]); ports already picked by this process are skipped.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(PICKED_PORTS.end - PICKED_PORTS.start);
    // Test processes start at different places, so that two of them rarely meet.
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = PICKED_PORTS.start + offset as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {PICKED_PORTS:?}")
}

/// The URL of a test server (Redis, MongoDB, PostgreSQL, etcd...) in the environment
/// variable `var`, as scripts/test-servers.sh exports them. `None` when it is unset:
/// the test is then skipped, unless `CI` is set, where a missing server fails it.
pub fn test_server_url(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) => Some(url),
        Err(_) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{var} must be set when CI is set"
            );
            eprintln!("skipped: {var} not set");
            None
        }
    }
}

/// The `zaqar` binary: `ZAQAR_BIN`, or the workspace's debug build.
pub fn zaqar_bin() -> PathBuf {
    match std::env::var_os("ZAQAR_BIN") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/zaqar"),
    }
}

/// The `zaqar-bench` load generator: beside the `zaqar` of [`zaqar_bin`].
pub fn zaqar_bench_bin() -> PathBuf {
    zaqar_bin().with_file_name("zaqar-bench")
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("nothing listens on 127.0.0.1:{port} after {timeout:?}")
}

/// A child process killed (and reaped) when dropped.
pub struct Process {
    pub name: String,
    child: Child,
}

impl Process {
    /// Starts `program args`, logging to `log_dir/name.log`.
    pub fn spawn(
        name: &str,
        program: &PathBuf,
        args: &[impl AsRef<std::ffi::OsStr> + std::fmt::Debug],
        log_dir: &std::path::Path,
    ) -> Result<Self> {
        let log = std::fs::File::create(log_dir.join(format!("{name}.log")))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}: {program:?} {args:?}"))?;
        Ok(Process {
            name: name.to_string(),
            child,
        })
    }

    /// Sends `signal` (a `kill -s` name: `STOP`, `CONT`, `TERM`, ...) to the process.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let status = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -s {signal} {} failed", self.name);
        Ok(())
    }

    /// The exit status, once the process has ended.
    pub fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Kills the process at once (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `zaqar catalog` on the catalog store `uri` (`sqlite://...`, `mongodb://...`)
/// and a free port; returns it and its endpoint once its gRPC port listens.
pub fn spawn_catalog(dir: &std::path::Path, uri: &str) -> Result<(Process, String)> {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let args = ["catalog", "--listen", &listen, "--uri", uri];
    let process = Process::spawn("catalog", &zaqar_bin(), &args, dir)?;
    wait_for_port(port, Duration::from_secs(30))?;
    Ok((process, format!("http://{listen}")))
}

/// A SQLite catalog in `dir` (see [`spawn_catalog`]).
pub fn spawn_sqlite_catalog(dir: &std::path::Path) -> Result<(Process, String)> {
    spawn_catalog(dir, &format!("sqlite://{}/catalog.db", dir.display()))
}

/// Where the catalog at `catalog` placed the queues of `project` (its first 100).
pub async fn placements(catalog: &str, project: &str) -> Result<Vec<zaqar_proto::pb::Placement>> {
    let mut client =
        zaqar_proto::pb::catalog_service_client::CatalogServiceClient::connect(catalog.to_string())
            .await?;
    let request = zaqar_proto::pb::ListQueuesRequest {
        project: project.into(),
        marker: String::new(),
        limit: 100,
        name_filter: String::new(),
        with_count: false,
    };
    Ok(client.list_queues(request).await?.into_inner().queues)
}

/// Starts `zaqar pool-node` named `name` on the store `uri` (weight 100), registering
/// with `catalogs`, with `extra` arguments; returns it once its gRPC port listens.
pub fn spawn_pool_node(
    dir: &std::path::Path,
    name: &str,
    uri: &str,
    catalogs: &str,
    extra: &[&str],
) -> Result<Process> {
    let port = free_port();
    let mut args = pool_node_args(name, port, uri, 100, catalogs);
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let process = Process::spawn(name, &zaqar_bin(), &args, dir)?;
    wait_for_port(port, Duration::from_secs(30))?;
    Ok(process)
}

/// The command line of `zaqar pool-node` named `name` on the store `uri`, listening on
/// `port` of 127.0.0.1, with `weight`, registering with `catalogs`.
pub fn pool_node_args(
    name: &str,
    port: u16,
    uri: &str,
    weight: u32,
    catalogs: &str,
) -> Vec<String> {
    [
        "pool-node",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--uri",
        uri,
        "--name",
        name,
        "--weight",
        &weight.to_string(),
        "--catalog",
        catalogs,
    ]
    .map(String::from)
    .to_vec()
}

/// Starts `zaqar api-node` (REST on a free port, returned; WebSocket on another) for
/// `catalogs`, with `extra` arguments, without waiting for it (see [`spawn_api_node`]).
pub fn start_api_node(
    dir: &std::path::Path,
    name: &str,
    catalogs: &str,
    extra: &[&str],
) -> Result<(Process, u16)> {
    let (process, port, _) = start_api_node_with_ws(dir, name, catalogs, extra)?;
    Ok((process, port))
}

/// [`start_api_node`], returning its WebSocket port too.
pub fn start_api_node_with_ws(
    dir: &std::path::Path,
    name: &str,
    catalogs: &str,
    extra: &[&str],
) -> Result<(Process, u16, u16)> {
    let (port, ws_port) = (free_port(), free_port());
    let listen = format!("127.0.0.1:{port}");
    let ws_listen = format!("127.0.0.1:{ws_port}");
    let mut args = vec![
        "api-node",
        "--listen",
        &listen,
        "--ws-listen",
        &ws_listen,
        "--catalog",
        catalogs,
    ];
    args.extend_from_slice(extra);
    Ok((
        Process::spawn(name, &zaqar_bin(), &args, dir)?,
        port,
        ws_port,
    ))
}

/// Starts `zaqar api-node` (REST on a free port, returned) for `catalogs`, with `extra`
/// arguments, and waits until it answers `/v2/ping`.
pub async fn spawn_api_node(
    dir: &std::path::Path,
    name: &str,
    catalogs: &str,
    extra: &[&str],
) -> Result<(Process, u16)> {
    let (process, port, _) = spawn_api_node_with_ws(dir, name, catalogs, extra).await?;
    Ok((process, port))
}

/// [`spawn_api_node`], returning its WebSocket port too (ready when REST is: both
/// listeners are bound before the api-node serves either).
pub async fn spawn_api_node_with_ws(
    dir: &std::path::Path,
    name: &str,
    catalogs: &str,
    extra: &[&str],
) -> Result<(Process, u16, u16)> {
    let (process, port, ws_port) = start_api_node_with_ws(dir, name, catalogs, extra)?;
    Client::new(port, "probe")
        .wait_ready(Duration::from_secs(30))
        .await?;
    wait_for_port(ws_port, Duration::from_secs(10))?;
    Ok((process, port, ws_port))
}

/// `zaqar standalone` on its embedded store in `dir`, REST and WebSocket on ports
/// it picks; stopped when dropped.
pub struct Standalone {
    pub port: u16,
    pub ws_port: u16,
    process: Option<Process>,
}

impl Standalone {
    /// Its REST API, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its WebSocket API, `ws://127.0.0.1:PORT`.
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.ws_port)
    }

    /// Starts it and waits until both listeners accept connections.
    pub fn start(dir: &std::path::Path) -> Result<Standalone> {
        Standalone::start_with(dir, &[])
    }

    /// [`Standalone::start`] with more arguments (`--config FILE`, `--pool-uri URI`, ...).
    ///
    /// The server binds port 0 and the ports it got are read from its log: a port
    /// picked here and bound later could be taken in between by another test's
    /// process (the ephemeral ports of a standalone's internal listeners included).
    pub fn start_with(dir: &std::path::Path, extra: &[&str]) -> Result<Standalone> {
        Standalone::spawn(dir, "127.0.0.1:0", "127.0.0.1:0", extra)
    }

    /// Kills the process (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// Starts a killed server again on the same data directory and the same ports
    /// (just freed by the kill), with `extra` arguments as at its first start.
    pub fn restart(&mut self, dir: &std::path::Path, extra: &[&str]) -> Result<()> {
        self.process = None;
        let listen = format!("127.0.0.1:{}", self.port);
        let ws_listen = format!("127.0.0.1:{}", self.ws_port);
        *self = Standalone::spawn(dir, &listen, &ws_listen, extra)?;
        Ok(())
    }

    fn spawn(
        dir: &std::path::Path,
        listen: &str,
        ws_listen: &str,
        extra: &[&str],
    ) -> Result<Standalone> {
        let data_dir = dir.join("data");
        let data_dir = data_dir.to_string_lossy();
        let mut args = vec![
            "standalone",
            "--listen",
            listen,
            "--ws-listen",
            ws_listen,
            "--data-dir",
            &data_dir,
        ];
        args.extend_from_slice(extra);
        let mut process = Process::spawn("standalone", &zaqar_bin(), &args, dir)?;
        let log = dir.join("standalone.log");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let port = listening_port(&text, "api-node listening");
            let ws_port = listening_port(&text, "websocket api listening");
            if let (Some(port), Some(ws_port)) = (port, ws_port) {
                wait_for_port(port, Duration::from_secs(10))?;
                return Ok(Standalone {
                    port,
                    ws_port,
                    process: Some(process),
                });
            }
            if let Some(status) = process.exited()? {
                bail!("zaqar standalone exited ({status}):\n{text}");
            }
            ensure!(
                Instant::now() < deadline,
                "zaqar standalone did not listen in 60 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The port of the `addr` field of the first log line that says `what` (a text
/// line's `addr=`, or a JSON line's `"addr":"`).
fn listening_port(log: &str, what: &str) -> Option<u16> {
    let line = without_colours(log.lines().find(|line| line.contains(what))?);
    let addr = line
        .split("addr=")
        .nth(1)
        .or_else(|| line.split("\"addr\":\"").nth(1))?;
    let addr: String = addr
        .trim_start_matches(|c: char| !c.is_ascii_digit())
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.rsplit_once(':')?.1.parse().ok()
}

/// `line` without its ANSI colour sequences (`ESC [ ... m`).
fn without_colours(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}

/// A private Redis server on a free port, stopped when dropped; with an
/// append-only file (`appendfsync everysec`), so what it acknowledged survives
/// a restart, as on a durable pool.
pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    process: Option<Process>,
    /// `yes`, or `no` for a server that loses what it acknowledged when it restarts.
    appendonly: &'static str,
    /// More arguments, after the usual ones (`--replicaof HOST PORT`, ...).
    extra: Vec<String>,
}

impl Redis {
    pub fn start() -> Result<Self> {
        Redis::start_with_appendonly("yes")
    }

    /// A server without an append-only file: a volatile store.
    pub fn start_without_aof() -> Result<Self> {
        Redis::start_with_appendonly("no")
    }

    /// A server with an append-only file and `extra` arguments.
    pub fn start_with(extra: &[&str]) -> Result<Self> {
        Redis::start_server("yes", extra)
    }

    fn start_with_appendonly(appendonly: &'static str) -> Result<Self> {
        Redis::start_server(appendonly, &[])
    }

    fn start_server(appendonly: &'static str, extra: &[&str]) -> Result<Self> {
        let mut redis = Redis {
            port: free_port(),
            dir: tempfile::tempdir()?,
            process: None,
            appendonly,
            extra: extra.iter().map(|arg| arg.to_string()).collect(),
        };
        redis.restart()?;
        Ok(redis)
    }

    /// The URI of database `db` of this server.
    pub fn uri(&self, db: u8) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// Kills the server (as a crash would).
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// Whether the server was started and not killed since.
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Freezes the server (SIGSTOP): it keeps its connections and answers nothing.
    pub fn pause(&self) -> Result<()> {
        self.process
            .as_ref()
            .context("redis is not running")?
            .signal("STOP")
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) -> Result<()> {
        self.process
            .as_ref()
            .context("redis is not running")?
            .signal("CONT")
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) -> Result<()> {
        self.process = None;
        let port = self.port.to_string();
        let dir = self.dir.path().to_string_lossy().to_string();
        let args = [
            "--bind",
            "127.0.0.1",
            "--port",
            &port,
            "--dir",
            &dir,
            "--save",
            "",
            "--appendonly",
            self.appendonly,
        ];
        let args: Vec<&str> = args
            .into_iter()
            .chain(self.extra.iter().map(String::as_str))
            .collect();
        let program = PathBuf::from("redis-server");
        self.process = Some(Process::spawn(
            &format!("redis-{port}"),
            &program,
            &args,
            self.dir.path(),
        )?);
        wait_for_port(self.port, Duration::from_secs(10))
    }

    /// The number of keys of queues (`zq:{...}`, not the store's own `zq:layout`) in
    /// database `db`, through redis-cli.
    pub fn queue_key_count(&self, db: u8) -> Result<u64> {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "-n", &db.to_string()])
            .args(["--scan", "--pattern", "zq:{*"])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).lines().count() as u64)
    }
}

/// Runs a whole test, failing it if it does not finish within `limit`.
pub async fn within<T>(
    limit: Duration,
    test: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(limit, test)
        .await
        .context("the test did not finish in time")?
}

/// A response of the REST API: status and JSON body (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

/// What `redis-cli -p port args...` prints (empty when it fails).
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).to_string())
        .unwrap_or_default()
}

/// A Zaqar v2 REST client for one project and client id.
pub struct Client {
    pub base: String,
    pub project: String,
    pub client_id: String,
    /// `X-Roles` sent with every request (noauth), e.g. `admin`.
    pub roles: Option<String>,
    http: reqwest::Client,
}

impl Client {
    pub fn new(port: u16, project: &str) -> Self {
        Client {
            base: format!("http://127.0.0.1:{port}"),
            project: project.to_string(),
            client_id: uuid::Uuid::new_v4().to_string(),
            roles: None,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("http client"),
        }
    }

    /// Sends `method path` with an optional JSON body.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Reply> {
        self.call_with_headers(method, path, body, &[]).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Result<Reply> {
        self.call("GET", path, None).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str) -> Result<Reply> {
        self.call("DELETE", path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Result<Reply> {
        self.call("POST", path, Some(body)).await
    }

    /// Posts `messages` (message documents) to `queue` and checks they were stored
    /// (201); the reply's body lists their hrefs.
    pub async fn post_messages(&self, queue: &str, messages: Vec<Value>) -> Result<Reply> {
        let path = format!("/v2/queues/{queue}/messages");
        let posted = self.post(&path, json!({ "messages": messages })).await?;
        anyhow::ensure!(posted.status == 201, "post to {queue}: {posted:?}");
        Ok(posted)
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, body: Value) -> Result<Reply> {
        self.call("PUT", path, Some(body)).await
    }

    /// `PATCH path` with a JSON body (pools and flavors; queues take JSON patch,
    /// see [`Self::call_with_headers`]).
    pub async fn patch(&self, path: &str, body: Value) -> Result<Reply> {
        self.call("PATCH", path, Some(body)).await
    }

    /// [`Self::call`] with more `headers`.
    pub async fn call_with_headers(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("X-Project-ID", &self.project)
            .header("Client-ID", &self.client_id);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(roles) = &self.roles {
            request = request.header("X-Roles", roles);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        };
        Ok(Reply { status, body })
    }

    /// Polls `GET /v2/ping` until it answers 204.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(reply) = self.get("/v2/ping").await {
                if reply.status == 204 {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("{} not ready after {timeout:?}", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_read_from_plain_and_coloured_log_lines() {
        let coloured =
            "\u{1b}[2mzaqar_api_node\u{1b}[0m: api-node listening \u{1b}[3maddr\u{1b}[0m\
                        \u{1b}[2m=\u{1b}[0m127.0.0.1:36773 \u{1b}[3mtls\u{1b}[0m=false";
        assert_eq!(listening_port(coloured, "api-node listening"), Some(36773));
        let plain = "INFO websocket api listening addr=127.0.0.1:45789";
        assert_eq!(
            listening_port(plain, "websocket api listening"),
            Some(45789)
        );
        assert_eq!(listening_port(plain, "api-node listening"), None);
    }
}
