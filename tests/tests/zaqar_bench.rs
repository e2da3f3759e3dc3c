//! `zaqar-bench` drives `zaqar standalone` (embedded store) over REST and over the
//! WebSocket API: every role gets its work done, nothing fails, and the JSON report
//! says so (the WebSocket run on one thread). The rates are not looked at: they belong
//! to benchmarks.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use zaqar_tests::{zaqar_bench_bin, Standalone};

/// Runs a 2-second mixed workload with `transport` flags; its JSON report.
fn bench(dir: &Path, name: &str, transport: &[&str]) -> Result<Value> {
    let report = dir.join(format!("{name}.json"));
    let mut args = vec![
        "--producers",
        "2",
        "--consumers",
        "2",
        "--observers",
        "1",
        "--duration",
        "2s",
        "--queues",
        "2",
        "--batch",
        "3",
        "--timeout",
        "10s",
        "--project",
        "bench-test",
    ];
    args.extend_from_slice(transport);
    let output = Command::new(zaqar_bench_bin())
        .args(&args)
        .arg("--json")
        .arg(&report)
        .output()
        .context("running zaqar-bench (cargo build --bin zaqar-bench)")?;
    ensure!(
        output.status.success(),
        "zaqar-bench {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&std::fs::read(&report)?)?)
}

/// The report of `role`.
fn role<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["roles"]
        .as_array()
        .and_then(|roles| roles.iter().find(|role| role["role"] == name))
        .unwrap_or(&Value::Null)
}

#[test]
fn zaqar_bench_runs_the_workload_over_rest_and_websocket() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let standalone = Standalone::start(dir.path())?;
    let url = format!("http://127.0.0.1:{}", standalone.port);
    let ws_url = format!("ws://127.0.0.1:{}", standalone.ws_port);
    for (name, transport) in [
        ("rest", vec!["--url", url.as_str()]),
        (
            "websocket",
            vec!["--url", &url, "--ws-url", &ws_url, "--threads", "1"],
        ),
    ] {
        let report = bench(dir.path(), name, &transport)?;
        ensure!(
            report["total"]["errors"] == 0,
            "{name}: errors in {report:#}"
        );
        let named = if name == "rest" { &url } else { &ws_url };
        ensure!(
            report["url"].as_str() == Some(named.as_str()),
            "{name}: the report names {}",
            report["url"]
        );
        for (who, what) in [
            ("producer", "posted"),
            ("consumer", "deleted"),
            ("observer", "listed"),
        ] {
            let messages = role(&report, who)["messages"].as_u64().unwrap_or(0);
            ensure!(messages > 0, "{name}: no message {what}: {report:#}");
        }
    }
    Ok(())
}
