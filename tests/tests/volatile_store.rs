//! A pool whose store can lose what it acknowledged, with the real `zaqar`
//! binary: `zaqar standalone` on a Redis without an append-only file reports
//! its pool as `degraded: volatile store` in `/v2/health`, and refuses to start
//! on it with `--require-durable-store` (while it starts on a Redis with one).

use std::time::Duration;

use anyhow::{ensure, Result};
use zaqar_tests::catalog_cluster::eventually;
use zaqar_tests::{Client, Redis, Standalone};

#[tokio::test]
async fn a_redis_without_aof_is_a_degraded_pool_and_can_be_refused() -> Result<()> {
    let volatile = Redis::start_without_aof()?;
    let dir = tempfile::tempdir()?;
    let uri = volatile.uri(0);
    let standalone = Standalone::start_with(dir.path(), &["--pool-uri", &uri, "--admin-mode"])?;
    let mut admin = Client::new(standalone.port, "admin-project");
    admin.roles = Some("admin".into());
    admin.wait_ready(Duration::from_secs(30)).await?;
    let report = eventually(
        "a volatile-store health report",
        Duration::from_secs(30),
        || {
            let admin = &admin;
            async move {
                let health = admin.get("/v2/health").await?;
                let report = health.body["default"]["report"].clone();
                ensure!(report["status"] == "degraded", "{}", health.body);
                Ok(report)
            }
        },
    )
    .await?;
    let detail = report["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("volatile store: appendonly"), "{report}");
    drop(standalone);

    let refused_dir = tempfile::tempdir()?;
    let refused = Standalone::start_with(
        refused_dir.path(),
        &["--pool-uri", &uri, "--require-durable-store"],
    );
    let Err(err) = refused else {
        panic!("standalone started on a volatile store with --require-durable-store");
    };
    assert!(
        format!("{err:#}").contains("can lose acknowledged messages"),
        "{err:#}"
    );

    let durable = Redis::start()?;
    let durable_dir = tempfile::tempdir()?;
    Standalone::start_with(
        durable_dir.path(),
        &["--pool-uri", &durable.uri(0), "--require-durable-store"],
    )?;
    Ok(())
}
