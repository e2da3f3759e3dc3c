//! The fault suite on `zaqar standalone`: under a steady load with a ledger
//! (`zaqar_tests::faults`), its Redis is killed (kill -9) and restarted, or frozen
//! (SIGSTOP) for 10 s, or its MongoDB store (SecantusDB, writes on disk when
//! acknowledged) is killed and restarted, or standalone itself is killed mid-load on its embedded store
//! and restarted on the same data directory. Each time: no acknowledged message lost,
//! none held by two live claims, no body altered, posts acknowledged again within 5 s
//! of the fault's end (the restart of what was killed counts in that time). Each row goes to docs/reliability.md (scripts/faults-report.sh).

use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use zaqar_tests::faults::{Load, QUEUE};
use zaqar_tests::secantus::Secantus;
use zaqar_tests::{Client, Redis, Standalone};

/// Load before the fault, and after its end.
const BEFORE: Duration = Duration::from_secs(2);
const AFTER: Duration = Duration::from_secs(5);
/// The longest the service may take to acknowledge posts again after a fault.
const RECOVERY: Duration = Duration::from_secs(5);
const PROJECT: &str = "faults";

async fn create_queue(port: u16) -> Result<()> {
    let client = Client::new(port, PROJECT);
    client.wait_ready(Duration::from_secs(20)).await?;
    let created = client
        .call("PUT", &format!("/v2/queues/{QUEUE}"), None)
        .await?;
    ensure!(created.status == 201, "{created:?}");
    Ok(())
}

fn load(port: u16) -> Load {
    Load::start(&[port], PROJECT, 2, 2, 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_under_load_loses_nothing() -> Result<()> {
    let mut redis = Redis::start_with(&["--appendfsync", "always"])?;
    let dir = tempfile::tempdir()?;
    let server = Standalone::start_with(dir.path(), &["--pool-uri", &redis.uri(0)])?;
    create_queue(server.port).await?;
    let load = load(server.port);
    tokio::time::sleep(BEFORE).await;
    redis.kill();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ended = Instant::now();
    redis.restart()?;
    tokio::time::sleep(AFTER).await;
    let outcome = load.finish(ended).await?;
    outcome.report("kill -9 and restart of Redis (AOF, `appendfsync always`), standalone");
    outcome.check(RECOVERY)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_frozen_for_10_s_under_load_loses_nothing() -> Result<()> {
    let redis = Redis::start_with(&["--appendfsync", "always"])?;
    let dir = tempfile::tempdir()?;
    let server = Standalone::start_with(dir.path(), &["--pool-uri", &redis.uri(0)])?;
    create_queue(server.port).await?;
    let load = load(server.port);
    tokio::time::sleep(BEFORE).await;
    redis.pause()?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    redis.resume()?;
    let ended = Instant::now();
    tokio::time::sleep(AFTER).await;
    let outcome = load.finish(ended).await?;
    outcome.report("SIGSTOP of Redis for 10 s, standalone");
    outcome.check(RECOVERY)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_killed_on_its_embedded_store_loses_nothing() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = Standalone::start(dir.path())?;
    create_queue(server.port).await?;
    let load = load(server.port);
    tokio::time::sleep(BEFORE).await;
    server.kill();
    let ended = Instant::now();
    server.restart(dir.path(), &[])?;
    tokio::time::sleep(AFTER).await;
    let outcome = load.finish(ended).await?;
    outcome.report("kill -9 and restart of `zaqar standalone` on its embedded SQLite store");
    outcome.check(RECOVERY)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_killed_and_restarted_under_load_loses_nothing() -> Result<()> {
    let Some(mut mongo) = Secantus::start()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let server = Standalone::start_with(dir.path(), &["--pool-uri", &mongo.uri("zaqar")])?;
    create_queue(server.port).await?;
    let load = load(server.port);
    tokio::time::sleep(BEFORE).await;
    mongo.kill();
    mongo.restart()?;
    let ended = Instant::now();
    tokio::time::sleep(AFTER).await;
    let outcome = load.finish(ended).await?;
    outcome.report("kill -9 and restart of MongoDB (SecantusDB, writes journaled), standalone");
    outcome.check(RECOVERY)
}
