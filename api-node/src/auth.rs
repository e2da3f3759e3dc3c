//! Who is calling: the identity of a request, taken from its headers in noauth
//! mode, or from its Keystone token (`X-Auth-Token`) in keystone mode.

use serde::Deserialize;
use zaqar_proto::{ErrorCode, ZaqarError};

use crate::config::ApiConfig;
use crate::keystone::{self, Keystone, Trustor};
use crate::signed_url::{self, SignatureHeaders};

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthStrategy {
    /// Trust `X-Project-ID` and `X-Roles` as sent (Zaqar's empty `auth_strategy`).
    #[default]
    NoAuth,
    /// Validate `X-Auth-Token` with Keystone (`[keystone]`); project and roles
    /// come from the token (Zaqar's `auth_strategy = keystone`).
    Keystone,
}

/// The identity headers of a request, as the transport received them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    pub client_id: Option<&'a str>,
    pub project: Option<&'a str>,
    pub roles: Option<&'a str>,
    /// The `X-Auth-Token` header (keystone mode).
    pub token: Option<&'a str>,
    /// The pre-signed URL headers, when the request carries a signature.
    pub signature: Option<SignatureHeaders<'a>>,
    /// The method and path the request wants (what a signature must cover).
    pub method: &'a str,
    pub path: &'a str,
}

/// The caller of one request, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub project: String,
    /// The `Client-ID` header: a UUID identifying the client instance (for `echo`).
    pub client_id: String,
    pub roles: Vec<String>,
    /// The Keystone user and token of the caller (keystone mode, not with a
    /// signed URL): what a `trust+` subscription's trust is created from.
    pub trustor: Option<Trustor>,
}

impl Identity {
    /// Whether the caller holds the `admin` role (health, pools, flavors).
    pub fn is_admin(&self) -> bool {
        self.roles
            .iter()
            .any(|role| role.eq_ignore_ascii_case("admin"))
    }
}

/// The authenticator of a running api-node: noauth, or a Keystone validator.
pub struct Auth {
    keystone: Option<Keystone>,
}

impl Auth {
    /// The authenticator `config.auth` asks for.
    pub fn new(config: &ApiConfig) -> Result<Auth, ZaqarError> {
        let keystone = match config.auth {
            AuthStrategy::NoAuth => None,
            AuthStrategy::Keystone => Some(Keystone::new(
                &config.keystone,
                config.connect_timeout(),
                config.request_timeout(),
            )?),
        };
        Ok(Auth { keystone })
    }

    /// Trusts the identity headers as sent.
    pub fn noauth() -> Auth {
        Auth { keystone: None }
    }

    /// The Keystone validator, in keystone mode.
    pub fn keystone(&self) -> Option<&Keystone> {
        self.keystone.as_ref()
    }

    /// Checks a request in Zaqar's order: a URL signature (with the server's
    /// `signing_key`) if there is one, which stands in for a token; else the
    /// Keystone token (keystone mode); then `Client-ID`, then the project.
    pub async fn authenticate(
        &self,
        credentials: &Credentials<'_>,
        signing_key: Option<&str>,
    ) -> Result<Identity, ZaqarError> {
        if let Some(signature) = &credentials.signature {
            let project = credentials.project.unwrap_or("None");
            let (method, path) = (credentials.method, credentials.path);
            if !signed_url::verify(signing_key, signature, method, path, project) {
                // Zaqar hides what a bad signature would have reached.
                return Err(ZaqarError::titled(ErrorCode::NotFound, "404 Not Found", ""));
            }
            if self.keystone.is_some() {
                // The signature covers the project, not roles: a signed request has none.
                return noauth(&Credentials {
                    roles: None,
                    ..*credentials
                });
            }
        }
        let Some(keystone) = &self.keystone else {
            return noauth(credentials);
        };
        let token = credentials.token.ok_or_else(keystone::unauthorized)?;
        let info = keystone.validate(token).await?;
        let mut identity = noauth(&Credentials {
            project: info.project.as_deref(),
            roles: None,
            ..*credentials
        })?;
        identity.roles = info.roles;
        identity.trustor = Some(Trustor {
            user_id: info.user,
            token: token.to_string(),
        });
        Ok(identity)
    }
}

fn noauth(credentials: &Credentials<'_>) -> Result<Identity, ZaqarError> {
    let client_id = credentials.client_id.ok_or_else(|| {
        ZaqarError::titled(
            ErrorCode::BadRequest,
            "Missing header value",
            "The \"Client-Id\" header is required.",
        )
    })?;
    if !is_python_uuid(client_id) {
        return Err(ZaqarError::titled(
            ErrorCode::BadRequest,
            "Wrong UUID value",
            "Malformed hexadecimal UUID.",
        ));
    }
    let project = match credentials.project {
        None => {
            return Err(ZaqarError::titled(
                ErrorCode::BadRequest,
                "Project-Id Missing",
                "The header X-PROJECT-ID was missing",
            ))
        }
        Some("") => {
            return Err(ZaqarError::titled(
                ErrorCode::BadRequest,
                "Empty project header not allowed",
                "X-PROJECT-ID cannot be an empty string. Specify the right header X-PROJECT-ID and retry.",
            ))
        }
        Some(project) => project,
    };
    let roles = credentials
        .roles
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|role| !role.is_empty())
        .map(str::to_string)
        .collect();
    Ok(Identity {
        project: project.to_string(),
        client_id: client_id.to_string(),
        roles,
        trustor: None,
    })
}

/// Whether Python's `uuid.UUID(text)` accepts `text` (Zaqar's strict Client-ID
/// check): optional `urn:`/`uuid:` prefixes and braces, hyphens anywhere, 32 hex digits.
pub fn is_python_uuid(text: &str) -> bool {
    let text = text.replace("urn:", "").replace("uuid:", "");
    let hex: String = text
        .trim_matches(|c| c == '{' || c == '}')
        .chars()
        .filter(|&c| c != '-')
        .collect();
    hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds<'a>(client_id: Option<&'a str>, project: Option<&'a str>) -> Credentials<'a> {
        Credentials {
            client_id,
            project,
            roles: Some("member, admin"),
            ..Credentials::default()
        }
    }

    #[test]
    fn uuids_are_checked_like_python() {
        assert!(is_python_uuid("3381af92-2b9e-11e3-b191-71861300734c"));
        assert!(is_python_uuid("3381af922b9e11e3b19171861300734c"));
        assert!(is_python_uuid("{3381af92-2b9e-11e3-b191-71861300734c}"));
        assert!(is_python_uuid(
            "urn:uuid:3381af92-2b9e-11e3-b191-71861300734c"
        ));
        assert!(!is_python_uuid("not-a-uuid"));
        assert!(!is_python_uuid(""));
        assert!(!is_python_uuid("3381af92-2b9e-11e3-b191-71861300734"));
        assert!(!is_python_uuid("g381af92-2b9e-11e3-b191-71861300734c"));
    }

    #[tokio::test]
    async fn client_id_is_checked_before_the_project() {
        let auth = Auth::noauth();
        let err = auth
            .authenticate(&creds(None, None), None)
            .await
            .unwrap_err();
        assert_eq!(err.title, "Missing header value");
        let err = auth
            .authenticate(&creds(Some("x"), None), None)
            .await
            .unwrap_err();
        assert_eq!(err.title, "Wrong UUID value");
        let uuid = "3381af92-2b9e-11e3-b191-71861300734c";
        let err = auth
            .authenticate(&creds(Some(uuid), None), None)
            .await
            .unwrap_err();
        assert_eq!(err.title, "Project-Id Missing");
        let err = auth
            .authenticate(&creds(Some(uuid), Some("")), None)
            .await
            .unwrap_err();
        assert_eq!(err.title, "Empty project header not allowed");
        let identity = auth
            .authenticate(&creds(Some(uuid), Some("p")), None)
            .await
            .unwrap();
        assert_eq!(identity.project, "p");
        assert!(identity.is_admin());
    }

    #[tokio::test]
    async fn a_bad_signature_hides_the_resource() {
        let credentials = Credentials {
            signature: Some(SignatureHeaders {
                signature: "00",
                expires: Some("2030-01-01T00:00:00"),
                methods: Some("GET"),
                paths: Some("/v2/queues/q/messages"),
            }),
            method: "GET",
            path: "/v2/queues/q/messages",
            ..creds(Some("3381af92-2b9e-11e3-b191-71861300734c"), Some("p"))
        };
        let err = Auth::noauth()
            .authenticate(&credentials, Some("key"))
            .await
            .unwrap_err();
        assert_eq!(err.code.http_status(), 404);
        assert_eq!(err.title, "404 Not Found");
    }
}
