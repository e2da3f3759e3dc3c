//! The Keystone session of one WebSocket connection (keystone mode), as Zaqar
//! keeps it: `authenticate` binds the token in its `X-Auth-Token` header to
//! the connection (200 `Authentified.`, or 401 `Authentication failed.`);
//! before that every other action is 403 `Not authentified.`; after it, a
//! request must name the token's project in `X-Project-ID` (else 403
//! `Not authenticated.`) and runs as that token. The token is checked again
//! whenever its cache entry has ended; once Keystone refuses it, or it expires,
//! the connection is closed with 4003 `Authentication expired.`.

use serde_json::json;
use tokio::time::Instant;
use zaqar_proto::ErrorCode;

use super::protocol::{Reply, Request};
use super::render;
use crate::operations::Services;

/// What to do with a request that passed its schema.
pub enum Gate {
    /// Run it, with the bound token (if any).
    Run,
    /// Answer it with this, without running it.
    Answer(Reply),
    /// The bound token is no longer valid: answer with this, then close.
    Expired(Reply),
}

/// The token bound to a connection and when it expires.
#[derive(Default)]
pub struct Session {
    token: Option<String>,
    expires_at: Option<Instant>,
}

impl Session {
    /// The bound token, passed to the operations as the request's credentials.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// When the bound token expires (the connection is closed then).
    pub fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }

    /// Decides about `request`; binds a token when it is `authenticate`.
    pub async fn admit(&mut self, services: &Services, request: &Request) -> Gate {
        let Some(keystone) = services.auth.keystone() else {
            return Gate::Run;
        };
        if request.known == Some(super::Action::Authenticate) {
            let token = request.header("X-Auth-Token").unwrap_or_default();
            return match keystone.validate(token).await {
                Ok(info) => {
                    self.token = Some(token.to_string());
                    self.expires_at = Some(Instant::from_std(info.expires_at));
                    Gate::Answer(Reply::new(200, json!({"message": "Authentified."})))
                }
                // Zaqar keeps an earlier binding when a new one fails.
                Err(err) if err.code == ErrorCode::Unauthorized => {
                    Gate::Answer(Reply::error(401, "Authentication failed."))
                }
                Err(err) => Gate::Answer(render::failure(&err, None)),
            };
        }
        let Some(token) = &self.token else {
            return Gate::Answer(Reply::error(403, "Not authentified."));
        };
        match keystone.validate(token).await {
            Ok(info) => {
                let project = request.header("X-Project-ID");
                if info.project.is_none() || info.project.as_deref() != project {
                    return Gate::Answer(Reply::error(403, "Not authenticated."));
                }
                Gate::Run
            }
            Err(err) if err.code == ErrorCode::Unauthorized => {
                self.token = None;
                self.expires_at = None;
                Gate::Expired(Reply::error(401, "Authentication expired."))
            }
            Err(err) => Gate::Answer(render::failure(&err, None)),
        }
    }
}
