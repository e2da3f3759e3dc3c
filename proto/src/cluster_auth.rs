//! The shared cluster token of the control plane: every gRPC call between roles
//! (api-node → pool-node and catalog, pool-node → catalog, raft peers) carries it
//! in the `x-zaqar-cluster-token` header, and every role's gRPC services refuse a
//! call without it (`Unauthenticated`) when one is configured.
//!
//! Servers wrap each service with [`ClusterToken::require`]; clients wrap their
//! channel with [`ClusterToken::attach`]. Without a token both are pass-through,
//! which the roles allow only on loopback addresses or with `insecure_cluster`.

use std::sync::Arc;

use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// The gRPC metadata key of the cluster token.
pub const HEADER: &str = "x-zaqar-cluster-token";

/// A channel whose every call carries the cluster token (when there is one).
pub type AuthChannel = InterceptedService<Channel, Attach>;

/// The cluster token of this process, or none.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClusterToken(Option<Arc<str>>);

impl std::fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.is_set() { "Some(***)" } else { "None" };
        write!(f, "ClusterToken({shown})")
    }
}

impl ClusterToken {
    /// The token `token` (none when `None`), refused when it is not [`ClusterToken::check_format`]'s.
    pub fn new(token: Option<&str>) -> Result<Self, String> {
        if let Some(token) = token {
            Self::check_format(token)?;
        }
        Ok(ClusterToken(token.map(Arc::from)))
    }

    /// No token: calls are neither checked nor authenticated.
    pub fn none() -> Self {
        ClusterToken(None)
    }

    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// The token itself (empty when none), for a configuration that passes it on.
    pub fn secret(&self) -> &str {
        self.0.as_deref().unwrap_or_default()
    }

    /// A token must be at least 16 printable ASCII characters without spaces
    /// (it travels in a header), so that it cannot be guessed by trying.
    pub fn check_format(token: &str) -> Result<(), String> {
        if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "the cluster token must be at least 16 printable ASCII characters without spaces"
                    .to_string(),
            );
        }
        Ok(())
    }

    /// `service` refusing every call that does not carry this token.
    pub fn require<S>(&self, service: S) -> InterceptedService<S, Require> {
        InterceptedService::new(service, Require(self.0.clone()))
    }

    /// `channel` adding this token to every call.
    pub fn attach(&self, channel: Channel) -> AuthChannel {
        let value = self.0.as_deref().map(|token| {
            MetadataValue::try_from(token).expect("`new` checked that the token is header-safe")
        });
        InterceptedService::new(channel, Attach(value))
    }
}

/// The server side: checks the token of each call (constant time).
#[derive(Clone)]
pub struct Require(Option<Arc<str>>);

impl Interceptor for Require {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(expected) = &self.0 else {
            return Ok(request);
        };
        match request.metadata().get(HEADER).map(|value| value.as_bytes()) {
            Some(given) if constant_time_eq(given, expected.as_bytes()) => Ok(request),
            Some(_) => Err(refused("wrong cluster token")),
            None => Err(refused(
                "this zaqar-rs control plane requires the cluster token (x-zaqar-cluster-token)",
            )),
        }
    }
}

/// `Unauthenticated` without a Zaqar error code: a role that receives it sees the
/// other role as unavailable (HTTP 503 at an api-node, never a tenant's 401).
fn refused(reason: &str) -> Status {
    Status::unauthenticated(reason)
}

/// The client side: adds the token to each call.
#[derive(Clone)]
pub struct Attach(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for Attach {
    /// Adds the token, and the trace context of the calling span (`trace.rs`).
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert(HEADER, value.clone());
        }
        for (name, value) in crate::trace::outgoing() {
            if let Ok(value) = value.parse() {
                request.metadata_mut().insert(name, value);
            }
        }
        Ok(request)
    }
}

/// Equality whose time does not depend on where the inputs differ: every check
/// of a secret (cluster and admin tokens, URL signatures) compares with it.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(server: &ClusterToken, header: Option<&str>) -> Result<(), tonic::Code> {
        let mut request = Request::new(());
        if let Some(header) = header {
            request
                .metadata_mut()
                .insert(HEADER, header.parse().unwrap());
        }
        let mut check = Require(server.0.clone());
        check
            .call(request)
            .map(|_| ())
            .map_err(|status| status.code())
    }

    #[test]
    fn a_server_with_a_token_accepts_only_that_token() {
        let token = ClusterToken::new(Some("0123456789abcdef")).unwrap();
        assert_eq!(checked(&token, Some("0123456789abcdef")), Ok(()));
        let refused = Err(tonic::Code::Unauthenticated);
        assert_eq!(checked(&token, Some("0123456789abcdeF")), refused);
        assert_eq!(checked(&token, Some("0123456789abcdef0")), refused);
        assert_eq!(checked(&token, None), refused);
        assert_eq!(checked(&ClusterToken::none(), None), Ok(()));
        let status = Require(token.0.clone()).call(Request::new(())).unwrap_err();
        let seen = crate::ZaqarError::from(status);
        assert_eq!(seen.code, crate::ErrorCode::Unavailable, "{seen:?}");
    }

    #[test]
    fn the_client_side_adds_the_header() {
        let mut attach = Attach(Some("0123456789abcdef".parse().unwrap()));
        let request = attach.call(Request::new(())).unwrap();
        assert_eq!(request.metadata().get(HEADER).unwrap(), "0123456789abcdef");
        let mut none = Attach(None);
        assert!(none
            .call(Request::new(()))
            .unwrap()
            .metadata()
            .get(HEADER)
            .is_none());
    }

    #[test]
    fn short_or_spaced_tokens_are_refused() {
        assert!(ClusterToken::new(Some("short")).is_err());
        assert!(ClusterToken::check_format("0123456789 abcdef").is_err());
        assert!(ClusterToken::check_format("0123456789abcdef").is_ok());
        assert_eq!(
            format!("{:?}", ClusterToken::new(Some("0123456789abcdef")).unwrap()),
            "ClusterToken(Some(***))"
        );
    }
}
