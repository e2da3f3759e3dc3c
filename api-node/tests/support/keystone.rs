//! The real Keystone of the test setup (`ZAQAR_TEST_KEYSTONE_URL`,
//! `ZAQAR_TEST_KEYSTONE_PASSWORD`; users and projects from
//! scripts/keystone-users.py): logins, revocations, and api-nodes validating
//! tokens there.

use serde_json::{json, Value};
use zaqar_api_node::auth::AuthStrategy;
use zaqar_api_node::keystone::KeystoneConfig;

use super::Harness;

/// Logins and revocations write to Keystone's sqlite database, which refuses
/// concurrent writers ("database is locked"): the tests make them one at a time.
static WRITES: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Keystone {
    url: String,
    password: String,
    http: reqwest::Client,
}

/// A user's project-scoped token and its project id.
pub struct Token {
    pub token: String,
    pub project: String,
}

pub fn keystone() -> Option<Keystone> {
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
    Some(Keystone {
        url: url.trim_end_matches('/').to_string(),
        password,
        http: reqwest::Client::new(),
    })
}

impl Keystone {
    pub async fn token(&self, user: &str, project: &str) -> Token {
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
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "token of {user}");
        let token = response.headers()["X-Subject-Token"]
            .to_str()
            .unwrap()
            .to_string();
        let body: Value = response.json().await.unwrap();
        let project = body["token"]["project"]["id"].as_str().unwrap().to_string();
        Token { token, project }
    }

    pub async fn revoke(&self, token: &str) {
        let _write = WRITES.lock().await;
        let response = self
            .http
            .delete(format!("{}/auth/tokens", self.url))
            .header("X-Auth-Token", token)
            .header("X-Subject-Token", token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }

    /// An api-node validating tokens here as the service user `zaqar`.
    pub async fn harness(&self, cache_ttl_ms: u64) -> Harness {
        let keystone = KeystoneConfig {
            auth_url: self.url.clone(),
            username: "zaqar".into(),
            password: self.password.clone(),
            project_name: "service".into(),
            cache_ttl_ms,
            ..KeystoneConfig::default()
        };
        Harness::start_with(move |config| {
            config.auth = AuthStrategy::Keystone;
            config.keystone = keystone;
        })
        .await
    }
}
