//! Keystone v3 token validation (`auth = "keystone"`): a user's `X-Auth-Token`
//! is checked with `GET /v3/auth/tokens` (`X-Subject-Token`), authorised by a
//! service token that api-node gets by password and renews before it expires.
//! Valid answers are cached for `cache_ttl_ms` (never past the token's expiry),
//! so a revoked token keeps working until its cache entry ends; invalid answers
//! for `invalid_cache_ttl_ms`, in a cache of their own: a flood of bogus tokens
//! only churns that one and never pushes a valid token out. Both are bounded
//! and drop their least recently used entry when full.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use zaqar_proto::{ErrorCode, ZaqarError};

use crate::lru::Lru;
use zaqar_proto::timefmt::parse_iso8601;

mod trust;

pub use trust::Trustor;

/// The service token is renewed this long before it expires (or halfway, if sooner).
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// `[keystone]`: where Keystone is and the service user api-node validates tokens as.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct KeystoneConfig {
    /// Keystone's identity endpoint, e.g. `http://keystone:5000/v3` (`/v3` is added if missing).
    pub auth_url: String,
    /// The service user (it needs the `service` or `admin` role to validate tokens).
    pub username: String,
    pub password: String,
    /// The project the service token is scoped to.
    pub project_name: String,
    pub user_domain_name: String,
    pub project_domain_name: String,
    /// How long a valid token's validation is trusted, in milliseconds.
    pub cache_ttl_ms: u64,
    /// Most valid tokens remembered.
    pub cache_size: usize,
    /// How long a token Keystone refused stays refused without asking again, in
    /// milliseconds (at most `cache_ttl_ms`).
    pub invalid_cache_ttl_ms: u64,
    /// Most refused tokens remembered.
    pub invalid_cache_size: usize,
}

impl Default for KeystoneConfig {
    fn default() -> Self {
        KeystoneConfig {
            auth_url: String::new(),
            username: String::new(),
            password: String::new(),
            project_name: String::new(),
            user_domain_name: "Default".to_string(),
            project_domain_name: "Default".to_string(),
            cache_ttl_ms: 300_000,
            cache_size: 100_000,
            invalid_cache_ttl_ms: 10_000,
            invalid_cache_size: 10_000,
        }
    }
}

impl fmt::Debug for KeystoneConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeystoneConfig")
            .field("auth_url", &self.auth_url)
            .field("username", &self.username)
            .field("password", &"***")
            .field("project_name", &self.project_name)
            .field("user_domain_name", &self.user_domain_name)
            .field("project_domain_name", &self.project_domain_name)
            .field("cache_ttl_ms", &self.cache_ttl_ms)
            .field("cache_size", &self.cache_size)
            .field("invalid_cache_ttl_ms", &self.invalid_cache_ttl_ms)
            .field("invalid_cache_size", &self.invalid_cache_size)
            .finish()
    }
}

/// What a valid token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    /// The bearer's user id.
    pub user: String,
    /// The project the token is scoped to (`None` for an unscoped token).
    pub project: Option<String>,
    /// Role names, implied roles included (Keystone expands them).
    pub roles: Vec<String>,
    /// When the token expires.
    pub expires_at: Instant,
}

/// 401 as keystonemiddleware words it, in Zaqar's `{"title", "description"}` form.
pub fn unauthorized() -> ZaqarError {
    ZaqarError::titled(
        ErrorCode::Unauthorized,
        "Unauthorized",
        "The request you have made requires authentication.",
    )
}

struct ServiceToken {
    token: String,
    /// The service user's id (the trustee of the trusts api-node creates).
    user_id: String,
    renew_at: Instant,
}

struct Cached {
    info: TokenInfo,
    until: Instant,
}

/// Validates user tokens against one Keystone, with a cache.
pub struct Keystone {
    http: reqwest::Client,
    auth_url: String,
    tokens_url: String,
    credentials: Value,
    ttl: Duration,
    invalid_ttl: Duration,
    service: tokio::sync::Mutex<Option<ServiceToken>>,
    /// Valid tokens (by SHA-256 of the token).
    valid: Mutex<Lru<[u8; 32], Cached>>,
    /// Refused tokens, until when.
    invalid: Mutex<Lru<[u8; 32], Instant>>,
}

impl Keystone {
    /// A validator for `config`; checks that every needed setting is there.
    pub fn new(
        config: &KeystoneConfig,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Keystone, ZaqarError> {
        for (key, value) in [
            ("auth_url", &config.auth_url),
            ("username", &config.username),
            ("password", &config.password),
            ("project_name", &config.project_name),
        ] {
            if value.trim().is_empty() {
                return Err(ZaqarError::titled(
                    ErrorCode::BadRequest,
                    "Invalid configuration",
                    format!("auth = \"keystone\" needs keystone.{key}"),
                ));
            }
        }
        let base = config.auth_url.trim().trim_end_matches('/');
        let auth_url = if base.ends_with("/v3") {
            base.to_string()
        } else {
            format!("{base}/v3")
        };
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .build()
            .map_err(|err| ZaqarError::internal(format!("keystone client: {err}")))?;
        let credentials = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": config.username,
                "domain": {"name": config.user_domain_name},
                "password": config.password,
            }}},
            "scope": {"project": {
                "name": config.project_name,
                "domain": {"name": config.project_domain_name},
            }},
        }});
        Ok(Keystone {
            http,
            tokens_url: format!("{auth_url}/auth/tokens"),
            auth_url,
            credentials,
            ttl: Duration::from_millis(config.cache_ttl_ms),
            invalid_ttl: Duration::from_millis(
                config.invalid_cache_ttl_ms.min(config.cache_ttl_ms),
            ),
            service: tokio::sync::Mutex::new(None),
            valid: Mutex::new(Lru::new(config.cache_size)),
            invalid: Mutex::new(Lru::new(config.invalid_cache_size)),
        })
    }

    /// Keystone's identity endpoint (what `WWW-Authenticate` points clients to).
    pub fn auth_url(&self) -> &str {
        &self.auth_url
    }

    /// What `token` says about its bearer; 401 when Keystone does not know it
    /// (bad, revoked or expired), 503 when Keystone cannot be asked.
    pub async fn validate(&self, token: &str) -> Result<TokenInfo, ZaqarError> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(answer) = self.cached(&key) {
            crate::metrics::record_keystone_validation("cached");
            return answer.ok_or_else(unauthorized);
        }
        let started = Instant::now();
        let fetched = self.fetch(token).await;
        crate::metrics::record_keystone_request(started.elapsed());
        let info = fetched.inspect_err(|_| crate::metrics::record_keystone_validation("error"))?;
        let result = if info.is_some() { "valid" } else { "invalid" };
        crate::metrics::record_keystone_validation(result);
        self.remember(key, info.clone());
        info.ok_or_else(unauthorized)
    }

    /// The remembered answer for the token of `key`: `Some(None)` when refused.
    fn cached(&self, key: &[u8; 32]) -> Option<Option<TokenInfo>> {
        let now = Instant::now();
        let mut valid = self.valid.lock().unwrap_or_else(|e| e.into_inner());
        match valid.get(key) {
            Some(entry) if entry.until > now => return Some(Some(entry.info.clone())),
            Some(_) => valid.remove(key),
            None => {}
        }
        drop(valid);
        let mut invalid = self.invalid.lock().unwrap_or_else(|e| e.into_inner());
        match invalid.get(key) {
            Some(until) if *until > now => Some(None),
            Some(_) => {
                invalid.remove(key);
                None
            }
            None => None,
        }
    }

    fn remember(&self, key: [u8; 32], info: Option<TokenInfo>) {
        let now = Instant::now();
        match info {
            Some(info) => {
                let until = (now + self.ttl).min(info.expires_at);
                let mut valid = self.valid.lock().unwrap_or_else(|e| e.into_inner());
                valid.insert(key, Cached { info, until });
            }
            None => {
                let mut invalid = self.invalid.lock().unwrap_or_else(|e| e.into_inner());
                invalid.insert(key, now + self.invalid_ttl);
            }
        }
    }

    /// Asks Keystone; `Ok(None)` when the token is not valid.
    async fn fetch(&self, token: &str) -> Result<Option<TokenInfo>, ZaqarError> {
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Ok(None);
        }
        for attempt in 0..2 {
            let service = self.service_token(attempt > 0).await?;
            let response = self
                .http
                .get(&self.tokens_url)
                .header("X-Auth-Token", service)
                .header("X-Subject-Token", token)
                .send()
                .await
                .map_err(unreachable)?;
            match response.status().as_u16() {
                200 => {
                    let body: TokenBody = response.json().await.map_err(unreachable)?;
                    return Ok(body.token.info());
                }
                400 | 404 => return Ok(None),
                // The service token expired or was revoked: renew it once.
                401 if attempt == 0 => continue,
                status => {
                    tracing::error!(status, "keystone refused to validate a token");
                    break;
                }
            }
        }
        Err(unavailable())
    }

    /// The service token, renewed when due (or when `renew` says it was refused).
    async fn service_token(&self, renew: bool) -> Result<String, ZaqarError> {
        self.service_login(renew).await.map(|(token, _)| token)
    }

    /// The service token and the service user's id, renewed as [`Self::service_token`].
    async fn service_login(&self, renew: bool) -> Result<(String, String), ZaqarError> {
        let mut service = self.service.lock().await;
        if let Some(current) = service.as_ref() {
            if !renew && current.renew_at > Instant::now() {
                return Ok((current.token.clone(), current.user_id.clone()));
            }
        }
        let response = self
            .http
            .post(&self.tokens_url)
            .json(&self.credentials)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status().as_u16();
        let token = response
            .headers()
            .get("X-Subject-Token")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let (201, Some(token)) = (status, token) else {
            tracing::error!(status, "keystone refused the service credentials");
            return Err(unavailable());
        };
        let body: TokenBody = response.json().await.map_err(unreachable)?;
        let lifetime = body.token.lifetime().unwrap_or_default();
        let renew_at = Instant::now() + lifetime - RENEW_BEFORE.min(lifetime / 2);
        tracing::debug!(
            lifetime_s = lifetime.as_secs(),
            "keystone service token obtained"
        );
        let user_id = body.token.user.map(|user| user.id).unwrap_or_default();
        *service = Some(ServiceToken {
            token: token.clone(),
            user_id: user_id.clone(),
            renew_at,
        });
        Ok((token, user_id))
    }
}

fn unavailable() -> ZaqarError {
    ZaqarError::unavailable(
        "Authentication service unavailable. Please try again in a few seconds.",
    )
}

fn unreachable(err: reqwest::Error) -> ZaqarError {
    tracing::warn!(error = %err, "keystone unreachable");
    unavailable()
}

#[derive(Deserialize)]
struct TokenBody {
    token: TokenData,
}

#[derive(Deserialize)]
struct TokenData {
    expires_at: String,
    #[serde(default)]
    user: Option<Named>,
    #[serde(default)]
    project: Option<Named>,
    #[serde(default)]
    roles: Vec<Named>,
}

#[derive(Deserialize)]
struct Named {
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
}

impl TokenData {
    /// How long the token has left (`None` when expired or unreadable).
    fn lifetime(&self) -> Option<Duration> {
        let expires = parse_iso8601(&self.expires_at)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
        (expires > now).then(|| Duration::from_secs((expires - now) as u64))
    }

    fn info(self) -> Option<TokenInfo> {
        Some(TokenInfo {
            expires_at: Instant::now() + self.lifetime()?,
            user: self.user.map(|user| user.id).unwrap_or_default(),
            project: self.project.map(|project| project.id),
            roles: self.roles.into_iter().map(|role| role.name).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_at: &str) -> TokenData {
        serde_json::from_value::<TokenBody>(json!({"token": {
            "expires_at": expires_at,
            "project": {"id": "p1", "name": "a", "domain": {"id": "default"}},
            "roles": [{"id": "r1", "name": "member"}, {"id": "r2", "name": "reader"}],
            "user": {"id": "u1"}
        }}))
        .unwrap()
        .token
    }

    #[test]
    fn a_token_gives_its_project_roles_and_expiry() {
        let info = token("2999-01-01T00:00:00.000000Z").info().unwrap();
        assert_eq!(info.user, "u1");
        assert_eq!(info.project.as_deref(), Some("p1"));
        assert_eq!(info.roles, ["member", "reader"]);
        assert!(info.expires_at > Instant::now() + Duration::from_secs(86_400));
        assert_eq!(token("2001-01-01T00:00:00Z").info(), None);
    }

    #[test]
    fn config_needs_its_keys_and_hides_the_password() {
        let timeout = Duration::from_secs(1);
        assert!(Keystone::new(&KeystoneConfig::default(), timeout, timeout).is_err());
        let config = KeystoneConfig {
            auth_url: "http://127.0.0.1:5000/".into(),
            username: "zaqar".into(),
            password: "secret".into(),
            project_name: "service".into(),
            ..KeystoneConfig::default()
        };
        let keystone = Keystone::new(&config, timeout, timeout).unwrap();
        assert_eq!(keystone.auth_url(), "http://127.0.0.1:5000/v3");
        assert!(!format!("{config:?}").contains("secret"));
    }

    #[test]
    fn the_keystone_section_is_read_with_defaults() {
        let config: crate::ApiConfig = serde_json::from_str(
            r#"{"auth": "keystone", "keystone": {"auth_url": "http://k:5000",
                "username": "zaqar", "password": "p", "project_name": "service"}}"#,
        )
        .unwrap();
        assert_eq!(config.auth, crate::auth::AuthStrategy::Keystone);
        assert_eq!(config.keystone.user_domain_name, "Default");
        assert_eq!(config.keystone.cache_ttl_ms, 300_000);
        let unknown = r#"{"keystone": {"url": "http://k:5000"}}"#;
        assert!(serde_json::from_str::<crate::ApiConfig>(unknown).is_err());
    }

    #[tokio::test]
    async fn malformed_tokens_are_refused_without_asking() {
        let config = KeystoneConfig {
            auth_url: "http://127.0.0.1:9/v3".into(),
            username: "u".into(),
            password: "p".into(),
            project_name: "p".into(),
            ..KeystoneConfig::default()
        };
        let timeout = Duration::from_secs(1);
        let keystone = Keystone::new(&config, timeout, timeout).unwrap();
        let err = keystone.validate("bad token\n").await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Unauthorized);
        // A well-formed one needs Keystone, which is not there: 503, not cached.
        let err = keystone.validate("gAAAA").await.unwrap_err();
        assert_eq!(err.code, ErrorCode::Unavailable);
    }
}
