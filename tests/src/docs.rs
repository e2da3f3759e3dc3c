//! The commands of a page of `docs/`, run as written by the tests of what it documents.

use std::process::Command;

use anyhow::{ensure, Context, Result};

use crate::zaqar_bin;

/// Runs the first `sh` block of `docs/<page>` with bash (stopping at the first
/// failing command) against a server whose REST API is on `port` (the block's
/// `localhost:8888` replaced), with the `zaqar` under test first on the `PATH`;
/// returns what it printed.
pub fn run_sh_block(page: &str, port: u16) -> Result<String> {
    run_sh_block_under(page, "", port)
}

/// [`run_sh_block`] for the first `sh` block after the line `heading` (a whole line,
/// e.g. `### [long_poll]`) of `docs/<page>`; the page's first block for `""`.
pub fn run_sh_block_under(page: &str, heading: &str, port: u16) -> Result<String> {
    run_sh_block_with_env(page, heading, port, &[])
}

/// [`run_sh_block_under`] with the environment variables `env` set for the block
/// (e.g. a token it names).
pub fn run_sh_block_with_env(
    page: &str,
    heading: &str,
    port: u16,
    env: &[(&str, &str)],
) -> Result<String> {
    let path = format!("{}/../docs/{page}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let section = if heading.is_empty() {
        text.as_str()
    } else {
        text.split_once(&format!("\n{heading}\n"))
            .with_context(|| format!("no line {heading:?} in docs/{page}"))?
            .1
    };
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .with_context(|| format!("no sh block in docs/{page}"))?;
    let script = block.replace("localhost:8888", &format!("localhost:{port}"));
    let bin = zaqar_bin();
    let path = format!(
        "{}:{}",
        bin.parent().context("the binary's directory")?.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -e\n{script}"))
        .env("PATH", path)
        .envs(env.iter().copied())
        .output()?;
    let stdout = String::from_utf8(out.stdout)?;
    ensure!(
        out.status.success(),
        "docs/{page}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}
