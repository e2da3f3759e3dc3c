//! `zaqar-bench` drives `zaqar standalone` (embedded store) over REST and over the
//! WebSocket API: every role gets its work done, nothing fails, and the JSON report
//! says so (the WebSocket run on one thread); it fills a deep queue, pops, lists its
//! head and reuses a queue it kept; its consumers can delete a claim's messages with
//! one request. The rates are not looked at: they belong to benchmarks.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use serde_json::Value;
use zaqar_tests::{zaqar_bench_bin, Standalone};

/// Runs a 2-second mixed workload with `transport` flags; its JSON report.
fn bench(dir: &Path, name: &str, transport: &[&str]) -> Result<Value> {
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
    run_with_report(dir, name, &args)
}

/// Runs zaqar-bench with `args`, its JSON report written to `dir/name.json`; the
/// report.
fn run_with_report(dir: &Path, name: &str, args: &[&str]) -> Result<Value> {
    let report = dir.join(format!("{name}.json"));
    let output = Command::new(zaqar_bench_bin())
        .args(args)
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

/// Runs zaqar-bench with `args`; its output, which must say the idle waiters were held
/// `over` ("REST" or "WebSocket") without errors.
fn run_idle_waiters(args: &[&str], over: &str) -> Result<String> {
    let output = Command::new(zaqar_bench_bin())
        .args(args)
        .output()
        .context("running zaqar-bench")?;
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    ensure!(
        output.status.success(),
        "zaqar-bench: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        stdout.contains("idle waiters: 5 held for") && stdout.contains(&format!(" over {over}, ")),
        "{stdout}"
    );
    ensure!(stdout.contains(", 0 errors"), "{stdout}");
    Ok(stdout)
}

/// `zaqar standalone` on its embedded store, in a fresh directory.
fn started() -> Result<(tempfile::TempDir, Standalone)> {
    let dir = tempfile::tempdir()?;
    let standalone = Standalone::start(dir.path())?;
    Ok((dir, standalone))
}

#[test]
fn zaqar_bench_runs_the_workload_over_rest_and_websocket() -> Result<()> {
    let (dir, standalone) = started()?;
    let (url, ws_url) = (standalone.url(), standalone.ws_url());
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

#[test]
fn zaqar_bench_consumers_delete_what_a_claim_took_with_one_request() -> Result<()> {
    let (dir, standalone) = started()?;
    let (url, ws_url) = (standalone.url(), standalone.ws_url());
    for (name, transport) in [
        ("rest", vec!["--url", url.as_str()]),
        ("websocket", vec!["--url", &url, "--ws-url", &ws_url]),
    ] {
        let project = format!("bulk-{name}");
        let mut args = transport;
        args.extend([
            "--project",
            &project,
            "--queue-prefix",
            "bulk",
            "--queues",
            "1",
        ]);
        args.extend(["--keep-queues", "--prefill", "30", "--producers", "0"]);
        args.extend([
            "--observers",
            "0",
            "--consumers",
            "1",
            "--claim-limit",
            "10",
        ]);
        args.extend(["--bulk-delete", "--duration", "2s"]);
        let report = run_with_report(dir.path(), name, &args)?;
        ensure!(
            report["total"]["errors"] == 0,
            "{name}: errors in {report:#}"
        );
        ensure!(report["settings"]["bulk_delete"] == true, "{report:#}");
        // Three claims of ten, each deleted with one request.
        let deletes = role(&report, "consumer")["ops"]
            .as_array()
            .and_then(|ops| ops.iter().find(|op| op["op"] == "delete"))
            .cloned()
            .unwrap_or_default();
        ensure!(
            deletes["requests"] == 3 && deletes["messages"] == 30,
            "{name}: {report:#}"
        );
        let left = stats(standalone.port, &project, "bulk-0")?;
        ensure!(left["total"] == 0, "{name}: messages left {left:#}");
    }
    Ok(())
}

/// The queue's stats as the API shows them.
fn stats(port: u16, project: &str, queue: &str) -> Result<Value> {
    let url = format!("http://127.0.0.1:{port}/v2/queues/{queue}/stats");
    let output = Command::new("curl")
        .args(["-sf", "-H", &format!("X-Project-ID: {project}"), "-H"])
        .arg("Client-ID: 3381af92-2b9e-11e3-b191-71861300734c")
        .arg(&url)
        .output()?;
    ensure!(output.status.success(), "GET {url} failed");
    Ok(serde_json::from_slice::<Value>(&output.stdout)?["messages"].clone())
}

/// Runs zaqar-bench on the one queue `deep-0` of project `deep-test`, which it
/// keeps, without producers; `extra` says which other workers.
fn deep_bench(url: &str, extra: &[&str]) -> Result<()> {
    let output = Command::new(zaqar_bench_bin())
        .args([
            "--url",
            url,
            "--project",
            "deep-test",
            "--queue-prefix",
            "deep",
        ])
        .args(["--queues", "1", "--keep-queues", "--producers", "0"])
        .args(extra)
        .output()
        .context("running zaqar-bench")?;
    ensure!(
        output.status.success(),
        "zaqar-bench: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[test]
fn zaqar_bench_fills_a_deep_queue_then_pops_lists_its_head_and_reads_its_stats() -> Result<()> {
    let (dir, standalone) = started()?;
    let url = standalone.url();
    let report = dir.path().join("deep.json");
    let report_path = report.to_string_lossy();
    deep_bench(
        &url,
        &[
            "--duration",
            "2s",
            "--prefill",
            "2000",
            "--prefill-claimed",
            "120",
            "--consumers",
            "0",
            "--observers",
            "1",
            "--list-from-head",
            "--poppers",
            "1",
            "--stats-readers",
            "1",
            "--claim-limit",
            "1",
            "--json",
            &report_path,
        ],
    )?;
    let report: Value = serde_json::from_slice(&std::fs::read(&report)?)?;
    ensure!(report["total"]["errors"] == 0, "errors in {report:#}");
    ensure!(report["settings"]["prefill"] == 2000, "{report:#}");
    let popped = role(&report, "popper")["messages"].as_u64().unwrap_or(0);
    let listed = role(&report, "observer")["messages"].as_u64().unwrap_or(0);
    ensure!(
        popped > 0 && listed > 0,
        "nothing popped or listed: {report:#}"
    );
    // Every stats read counted the claimed head at least.
    let stats_reader = role(&report, "stats_reader");
    let reads = stats_reader["requests"].as_u64().unwrap_or(0);
    let counted = stats_reader["messages"].as_u64().unwrap_or(0);
    ensure!(
        reads > 0 && counted >= 120 * reads,
        "stats not read: {report:#}"
    );

    // The claimed head stayed claimed; only free messages were popped.
    let messages = stats(standalone.port, "deep-test", "deep-0")?;
    ensure!(messages["claimed"] == 120, "{messages:#}");
    // A pop cut by the deadline is not counted, though the server may have done it.
    let total = messages["total"].as_u64().unwrap_or(0);
    ensure!(
        (2000 - popped - 1..=2000 - popped).contains(&total),
        "{popped} popped: {messages:#}"
    );

    // A second run on the queue as it was left.
    deep_bench(
        &url,
        &[
            "--duration",
            "1s",
            "--reuse-queues",
            "--observers",
            "0",
            "--consumers",
            "1",
            "--claim-limit",
            "5",
        ],
    )?;
    let left = stats(standalone.port, "deep-test", "deep-0")?;
    ensure!(
        left["total"].as_u64() < messages["total"].as_u64(),
        "the reused queue was not drained: {left:#}"
    );
    Ok(())
}

#[test]
fn zaqar_bench_measures_long_polls() -> Result<()> {
    let (dir, standalone) = started()?;
    let url = standalone.url();
    let report = dir.path().join("long-poll.json");
    let report_path = report.to_string_lossy().to_string();
    let stdout = run_idle_waiters(
        &[
            "--url",
            &url,
            "--project",
            "long-poll-test",
            "--producers",
            "1",
            "--consumers",
            "2",
            "--observers",
            "0",
            "--batch",
            "1",
            "--wait",
            "2",
            "--duration",
            "3s",
            "--idle-waiters",
            "5",
            "--wake-probes",
            "2",
            "--post-url",
            &url,
            "--json",
            &report_path,
        ],
        "REST",
    )?;
    ensure!(
        stdout.contains("wake probes: 2 woken, 0 failed"),
        "{stdout}"
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&report)?)?;
    ensure!(report["total"]["errors"] == 0, "{report:#}");
    let consumed = role(&report, "consumer")["messages"].as_u64().unwrap_or(0);
    ensure!(
        consumed > 0,
        "consumers that wait claimed nothing: {report:#}"
    );

    // The idle waiters over WebSocket.
    let ws_url = standalone.ws_url();
    run_idle_waiters(
        &[
            "--url",
            &url,
            "--ws-url",
            &ws_url,
            "--project",
            "long-poll-test",
            "--producers",
            "0",
            "--consumers",
            "0",
            "--observers",
            "0",
            "--idle-waiters",
            "5",
            "--duration",
            "2s",
        ],
        "WebSocket",
    )?;
    Ok(())
}
