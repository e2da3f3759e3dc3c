//! The real Keystone of the test setup (`ZAQAR_TEST_KEYSTONE_URL`,
//! `ZAQAR_TEST_KEYSTONE_PASSWORD`; users and projects from
//! scripts/keystone-users.py): logins, revocations, and api-nodes validating
//! tokens there.

use zaqar_api_node::auth::AuthStrategy;
use zaqar_api_node::keystone::KeystoneConfig;
use zaqar_tests::keystone::{keystone_env, KeystoneEnv};

use super::Harness;

pub struct Keystone(KeystoneEnv);

/// A user's project-scoped token and its project id.
pub struct Token {
    pub token: String,
    pub project: String,
}

pub fn keystone() -> Option<Keystone> {
    keystone_env().map(Keystone)
}

impl Keystone {
    pub async fn token(&self, user: &str, project: &str) -> Token {
        let (token, project) = self.0.token(user, project).await.unwrap();
        Token { token, project }
    }

    pub async fn revoke(&self, token: &str) {
        self.0.revoke(token).await.unwrap();
    }

    /// An api-node validating tokens here as the service user `zaqar`.
    pub async fn harness(&self, cache_ttl_ms: u64) -> Harness {
        let keystone = KeystoneConfig {
            auth_url: self.0.url.clone(),
            username: "zaqar".into(),
            password: self.0.password.clone(),
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
