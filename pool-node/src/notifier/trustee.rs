//! `trust+http(s)` subscribers: the notifier logs in to Keystone as the trustee
//! (`[notifier.trustee]`, the service user the api-node created the trust for),
//! scoped to the subscription's trust (`options.trust_id`), and sends the token it
//! gets as `X-Auth-Token`, as Zaqar's trust notifier does. A token serves every
//! notification of its trust until shortly before it expires.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use zaqar_proto::timefmt::parse_iso8601;
use zaqar_proto::ZaqarError;

use super::deliver::Failure;

/// A token is not used in its last minute (or last half of its life, if shorter).
const RENEW_BEFORE: Duration = Duration::from_secs(60);

/// Most trusts whose tokens are remembered.
const MAX_CACHED: usize = 10_000;

/// `[notifier.trustee]`: how the notifier logs in to Keystone for trusted
/// subscribers. Unset (no `auth_url`): `trust+` subscribers are not delivered.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrusteeConfig {
    /// Keystone's identity endpoint, e.g. `http://keystone:5000/v3` (`/v3` is added if missing).
    pub auth_url: String,
    /// The trustee: the service user the api-nodes log in as (their `[keystone]` user).
    pub username: String,
    pub password: String,
    /// The trustee's domain (`Default` when empty).
    pub user_domain_name: String,
}

impl fmt::Debug for TrusteeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrusteeConfig")
            .field("auth_url", &self.auth_url)
            .field("username", &self.username)
            .field("password", &"***")
            .field("user_domain_name", &self.user_domain_name)
            .finish()
    }
}

struct CachedToken {
    token: String,
    renew_at: Instant,
}

/// Trust-scoped tokens from one Keystone, cached per trust.
pub struct Trustee {
    http: reqwest::Client,
    tokens_url: String,
    user: Value,
    tokens: Mutex<HashMap<String, CachedToken>>,
}

impl Trustee {
    /// The trustee of `config`; `None` when it has no `auth_url`, an error when
    /// it has one but no user or password.
    pub fn new(config: &TrusteeConfig, timeout: Duration) -> Result<Option<Trustee>, ZaqarError> {
        let base = config.auth_url.trim().trim_end_matches('/');
        if base.is_empty() {
            return Ok(None);
        }
        if config.username.is_empty() || config.password.is_empty() {
            return Err(ZaqarError::bad_request(
                "[notifier.trustee] needs username and password with its auth_url",
            ));
        }
        let auth_url = if base.ends_with("/v3") {
            base.to_string()
        } else {
            format!("{base}/v3")
        };
        let domain = match config.user_domain_name.as_str() {
            "" => "Default",
            name => name,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|err| ZaqarError::internal(format!("keystone client: {err}")))?;
        Ok(Some(Trustee {
            http,
            tokens_url: format!("{auth_url}/auth/tokens"),
            user: json!({
                "name": config.username,
                "domain": {"name": domain},
                "password": config.password,
            }),
            tokens: Mutex::new(HashMap::new()),
        }))
    }

    /// A token of the trust `trust_id`: the trustor's roles on the trust's project.
    /// Keystone unreachable or failing is transient; a refused login or trust
    /// (deleted, expired, not this trustee's) is final.
    pub async fn token(&self, trust_id: &str) -> Result<String, Failure> {
        if let Some(token) = self.cached(trust_id) {
            return Ok(token);
        }
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": self.user}},
            "scope": {"OS-TRUST:trust": {"id": trust_id}},
        }});
        let response = self
            .http
            .post(&self.tokens_url)
            .json(&body)
            .send()
            .await
            .map_err(|err| Failure::Transient(format!("keystone unreachable: {err}")))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(Failure::Transient(format!("keystone answered {status}")));
        }
        let token = response
            .headers()
            .get("X-Subject-Token")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string);
        let (201, Some(token)) = (status.as_u16(), token) else {
            return Err(Failure::Permanent(format!(
                "keystone refused a token for trust {trust_id}: {status}"
            )));
        };
        let lifetime = response
            .json::<TokenBody>()
            .await
            .ok()
            .and_then(|body| lifetime(&body.token.expires_at))
            .unwrap_or_default();
        self.remember(trust_id, &token, lifetime);
        Ok(token)
    }

    fn cached(&self, trust_id: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(trust_id)
            .filter(|cached| cached.renew_at > Instant::now())
            .map(|cached| cached.token.clone())
    }

    fn remember(&self, trust_id: &str, token: &str, lifetime: Duration) {
        let now = Instant::now();
        let renew_at = now + lifetime - RENEW_BEFORE.min(lifetime / 2);
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if tokens.len() >= MAX_CACHED {
            tokens.retain(|_, cached| cached.renew_at > now);
            if tokens.len() >= MAX_CACHED {
                tokens.clear();
            }
        }
        tokens.insert(
            trust_id.to_string(),
            CachedToken {
                token: token.to_string(),
                renew_at,
            },
        );
    }
}

#[derive(Deserialize)]
struct TokenBody {
    token: TokenExpiry,
}

#[derive(Deserialize)]
struct TokenExpiry {
    expires_at: String,
}

/// How long a token expiring at `expires_at` has left (`None` if expired or unreadable).
fn lifetime(expires_at: &str) -> Option<Duration> {
    let expires = parse_iso8601(expires_at)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs() as i64;
    (expires > now).then(|| Duration::from_secs((expires - now) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(auth_url: &str) -> TrusteeConfig {
        TrusteeConfig {
            auth_url: auth_url.into(),
            username: "zaqar".into(),
            password: "secret".into(),
            user_domain_name: String::new(),
        }
    }

    #[test]
    fn no_auth_url_is_no_trustee_and_a_half_config_is_an_error() {
        let timeout = Duration::from_secs(1);
        assert!(Trustee::new(&config(""), timeout).unwrap().is_none());
        let half = TrusteeConfig {
            password: String::new(),
            ..config("http://127.0.0.1:5000")
        };
        assert!(Trustee::new(&half, timeout).is_err());
        let trustee = Trustee::new(&config("http://127.0.0.1:5000/"), timeout)
            .unwrap()
            .unwrap();
        assert_eq!(trustee.tokens_url, "http://127.0.0.1:5000/v3/auth/tokens");
        assert_eq!(trustee.user["domain"]["name"], "Default");
        assert!(!format!("{:?}", config("x")).contains("secret"));
    }

    #[test]
    fn tokens_are_reused_until_shortly_before_they_expire() {
        let trustee = Trustee::new(&config("http://127.0.0.1:9"), Duration::from_secs(1))
            .unwrap()
            .unwrap();
        trustee.remember("t1", "token-1", Duration::from_secs(3600));
        trustee.remember("t2", "token-2", Duration::ZERO);
        assert_eq!(trustee.cached("t1").as_deref(), Some("token-1"));
        assert_eq!(trustee.cached("t2"), None);
        assert_eq!(lifetime("2001-01-01T00:00:00.000000Z"), None);
        assert!(lifetime("2999-01-01T00:00:00.000000Z").is_some());
    }

    #[tokio::test]
    async fn an_unreachable_keystone_is_a_transient_failure() {
        let trustee = Trustee::new(&config("http://127.0.0.1:9"), Duration::from_secs(1))
            .unwrap()
            .unwrap();
        assert!(matches!(
            trustee.token("t1").await,
            Err(Failure::Transient(_))
        ));
    }
}
