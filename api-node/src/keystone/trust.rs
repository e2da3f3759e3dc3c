//! Keystone trusts for `trust+http(s)` subscribers, as Zaqar's trust notifier makes
//! them: when such a subscription is created with a Keystone token, the caller (the
//! trustor) delegates its roles on the project to api-node's service user (the
//! trustee), with impersonation, until the subscription's ttl ends. The pool-node's
//! notifier logs in as the trustee with that trust to call the subscriber.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::json;
use zaqar_proto::timefmt::format_utc;
use zaqar_proto::{ErrorCode, ZaqarError};

use super::{unreachable, Keystone};

/// The caller of a request authenticated by a Keystone token: who may delegate.
#[derive(Clone, PartialEq, Eq)]
pub struct Trustor {
    pub user_id: String,
    /// The caller's own token: Keystone creates a trust only for the token's user.
    pub token: String,
}

impl fmt::Debug for Trustor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trustor")
            .field("user_id", &self.user_id)
            .field("token", &"***")
            .finish()
    }
}

#[derive(Deserialize)]
struct TrustBody {
    trust: TrustId,
}

#[derive(Deserialize)]
struct TrustId {
    id: String,
}

impl Keystone {
    /// Creates a trust from `trustor` to the service user on `project` with
    /// `roles`, ending `ttl` seconds from now; its id. 503 when Keystone cannot be
    /// asked, 403 when it refuses (e.g. a role the caller does not hold).
    pub async fn create_trust(
        &self,
        trustor: &Trustor,
        project: &str,
        roles: &[String],
        ttl: u32,
    ) -> Result<String, ZaqarError> {
        let (_, trustee) = self.service_login(false).await?;
        if trustee.is_empty() {
            return Err(ZaqarError::internal(
                "keystone did not name api-node's service user",
            ));
        }
        // To the microsecond, as Zaqar sends it: Keystone refuses a second trust with
        // the same trustor, trustee, project and end.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let ends = now.as_secs() as i64 + i64::from(ttl);
        let roles: Vec<_> = roles.iter().map(|name| json!({"name": name})).collect();
        let body = json!({"trust": {
            "trustor_user_id": trustor.user_id,
            "trustee_user_id": trustee,
            "project_id": project,
            "impersonation": true,
            "roles": roles,
            "expires_at": format!("{}.{:06}Z", format_utc(ends), now.subsec_micros()),
        }});
        let response = self
            .http
            .post(format!("{}/OS-TRUST/trusts", self.auth_url))
            .header("X-Auth-Token", &trustor.token)
            .json(&body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        if status.as_u16() == 201 {
            let body: TrustBody = response.json().await.map_err(unreachable)?;
            return Ok(body.trust.id);
        }
        let answer = response.text().await.unwrap_or_default();
        tracing::warn!(%status, answer = %answer.chars().take(300).collect::<String>(),
            "keystone refused to create a trust for a subscription");
        if status.is_server_error() {
            return Err(super::unavailable());
        }
        Err(ZaqarError::titled(
            ErrorCode::Forbidden,
            "Trust not created",
            format!("Keystone refused to create the trust of this subscriber ({status})."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trustor_hides_its_token() {
        let trustor = Trustor {
            user_id: "u1".into(),
            token: "gAAAAsecret".into(),
        };
        let shown = format!("{trustor:?}");
        assert!(shown.contains("u1") && !shown.contains("secret"));
    }
}
