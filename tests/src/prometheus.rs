//! A real Prometheus (Debian's `prometheus`) scraping zaqar roles on loopback every
//! second, and its query API.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::Value;

use crate::{free_port, wait_for_port, Process};

/// One scrape target: a job name, the metrics port, and labels given to its series.
pub struct Target {
    pub job: String,
    pub port: u16,
    pub labels: Vec<(String, String)>,
}

/// A running Prometheus; stops when dropped.
pub struct Prometheus {
    pub url: String,
    _process: Process,
}

impl Prometheus {
    /// Starts Prometheus with its data in `dir`, scraping `targets` every second.
    pub fn start(dir: &Path, targets: &[Target]) -> Result<Prometheus> {
        let mut config = String::from("global:\n  scrape_interval: 1s\nscrape_configs:\n");
        for (index, target) in targets.iter().enumerate() {
            let labels: Vec<String> = target
                .labels
                .iter()
                .map(|(name, value)| format!("{name}: '{value}'"))
                .collect();
            config.push_str(&format!(
                "  - job_name: {}-{index}\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n        labels: {{{}}}\n",
                target.job,
                target.port,
                labels.join(", ")
            ));
        }
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config)?;
        let port = free_port();
        let process = Process::spawn(
            "prometheus",
            &PathBuf::from("prometheus"),
            &[
                &format!("--config.file={}", config_file.display()),
                &format!(
                    "--storage.tsdb.path={}",
                    dir.join("prometheus-data").display()
                ),
                &format!("--web.listen-address=127.0.0.1:{port}"),
            ],
            dir,
        )?;
        wait_for_port(port, Duration::from_secs(30))?;
        Ok(Prometheus {
            url: format!("http://127.0.0.1:{port}"),
            _process: process,
        })
    }

    /// The whole answer of PromQL `query`.
    pub async fn answer(&self, query: &str) -> Result<Value> {
        Ok(reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query)])
            .send()
            .await?
            .json()
            .await?)
    }

    /// The value of the first series `query` answers, `None` without any.
    pub async fn value(&self, query: &str) -> Result<Option<f64>> {
        let answer = self.answer(query).await?;
        Ok(answer["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok()))
    }

    /// Waits (60 s at most: scrapes every second, and Prometheus's own start) until
    /// `query` answers `want`.
    pub async fn eventually_equals(&self, query: &str, want: f64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        while Instant::now() < deadline {
            last = self.value(query).await.ok().flatten();
            if last == Some(want) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!("{query} did not become {want} (last {last:?})")
    }
}
