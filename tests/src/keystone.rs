//! The real Keystone of the test setup (`ZAQAR_TEST_KEYSTONE_URL`,
//! `ZAQAR_TEST_KEYSTONE_PASSWORD`, started by scripts/test-servers.sh; users and
//! projects from scripts/keystone-users.py): where it is and how its users log in.

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

/// Logins and revocations write to Keystone's sqlite database, which refuses
/// concurrent writers ("database is locked"): they are made one at a time.
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Where the test setup's Keystone answers, and the password of its users.
pub struct KeystoneEnv {
    /// The identity v3 URL, without a trailing slash.
    pub url: String,
    pub password: String,
    http: reqwest::Client,
}

/// The test setup's Keystone; `None`, with a note that the test is skipped, when it
/// is not set up. Under `CI` a missing Keystone fails the test instead.
pub fn keystone_env() -> Option<KeystoneEnv> {
    let (Ok(url), Ok(password)) = (
        std::env::var("ZAQAR_TEST_KEYSTONE_URL"),
        std::env::var("ZAQAR_TEST_KEYSTONE_PASSWORD"),
    ) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "ZAQAR_TEST_KEYSTONE_URL is not set (scripts/test-servers.sh starts Keystone)"
        );
        eprintln!("skipped: ZAQAR_TEST_KEYSTONE_URL is not set (scripts/test-servers.sh)");
        return None;
    };
    Some(KeystoneEnv {
        url: url.trim_end_matches('/').to_string(),
        password,
        http: reqwest::Client::new(),
    })
}

impl KeystoneEnv {
    /// A token of `user` (default domain) scoped to `project`, and the project's id.
    pub async fn token(&self, user: &str, project: &str) -> Result<(String, String)> {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": user, "domain": {"id": "default"}, "password": self.password}}},
            "scope": {"project": {"name": project, "domain": {"id": "default"}}},
        }});
        let _write = WRITES.lock().await;
        let response = self
            .http
            .post(format!("{}/auth/tokens", self.url))
            .json(&body)
            .send()
            .await?;
        ensure!(
            response.status() == 201,
            "login of {user}: {}",
            response.status()
        );
        let token = response
            .headers()
            .get("X-Subject-Token")
            .context("no X-Subject-Token")?
            .to_str()?
            .to_string();
        let body: Value = response.json().await?;
        let project = body["token"]["project"]["id"]
            .as_str()
            .context("no project id")?;
        Ok((token, project.to_string()))
    }

    /// Revokes `token` (with itself as the caller's token).
    pub async fn revoke(&self, token: &str) -> Result<()> {
        let _write = WRITES.lock().await;
        let response = self
            .http
            .delete(format!("{}/auth/tokens", self.url))
            .header("X-Auth-Token", token)
            .header("X-Subject-Token", token)
            .send()
            .await?;
        ensure!(
            response.status() == 204,
            "revocation: {}",
            response.status()
        );
        Ok(())
    }
}
