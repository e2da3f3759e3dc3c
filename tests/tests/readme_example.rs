//! The README's "Trying it" commands, run as written against `zaqar standalone`:
//! the server line is replaced by a server this test starts, and `localhost:8888` by
//! its port (tests never bind fixed ports). Every curl must get a success answer:
//! none may print Zaqar's error body, and the claim must hold the posted message.

use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use zaqar_tests::{Client, Standalone};

/// The first `sh` block after the README's "## Trying it".
fn trying_it() -> Result<Vec<String>> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))?;
    let section = readme
        .split("## Trying it")
        .nth(1)
        .context("no \"Trying it\" section")?;
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .context("no sh block")?;
    Ok(block.lines().map(str::to_string).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_example_works_as_written() -> Result<()> {
    let lines = trying_it()?;
    ensure!(
        lines[0] == "cargo run --release --bin zaqar -- standalone &",
        "the example no longer starts with the server: {lines:?}"
    );
    let dir = tempfile::tempdir()?;
    let server = Standalone::start(dir.path())?;
    Client::new(server.port, "demo")
        .wait_ready(Duration::from_secs(20))
        .await?;
    let script = lines[1..]
        .join("\n")
        .replace("localhost:8888", &format!("localhost:{}", server.port));
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .output()?;
    let printed = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(!printed.contains("\"title\""), "an error answer: {printed}");
    ensure!(
        printed.contains("\"resources\""),
        "no post answer: {printed}"
    );
    ensure!(
        printed.contains("\"task\":\"resize\"") || printed.contains("\"task\": \"resize\""),
        "the claim did not return the message: {printed}"
    );
    Ok(())
}
