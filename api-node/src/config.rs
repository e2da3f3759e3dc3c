//! The api-node configuration, read once (file + env overlay done by ops) and then immutable.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use tonic::transport::ClientTlsConfig;
use zaqar_proto::cluster_auth::ClusterToken;
use zaqar_proto::limits::Limits;
use zaqar_proto::ZaqarError;

use crate::auth::AuthStrategy;
use crate::keystone::KeystoneConfig;
use crate::rate_limit::ProjectLimitsConfig;
use crate::tls::ListenerTls;
use zaqar_proto::grpc_client::GrpcClientTls;

/// Everything an api-node needs to serve; `ApiConfig::default()` gives Zaqar's defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Where the REST API listens.
    pub listen: SocketAddr,
    /// Where the WebSocket API listens; `None` serves no WebSocket API.
    pub ws_listen: Option<SocketAddr>,
    /// Largest WebSocket frame (and message) accepted; a larger one closes the
    /// connection with code 1009 (message too big).
    pub ws_max_frame_bytes: usize,
    /// A WebSocket connection that sends nothing (not even a pong) for this
    /// long is closed, in milliseconds.
    pub ws_idle_timeout_ms: u64,
    /// How often the server pings each WebSocket connection, in milliseconds;
    /// a live client answers with a pong, which keeps it from being idle.
    pub ws_ping_interval_ms: u64,
    /// Replies queued for one WebSocket connection; a client that does not
    /// read them fast enough is disconnected rather than buffered without bound.
    pub ws_send_queue: usize,
    /// Where the HTTP listener of websocket push subscriptions listens: a
    /// `subscription_create` without `subscriber` subscribes an URL on it, the
    /// pool-node's webhook notifier POSTs there, and the notification is sent
    /// down the connection. Port 0 picks a free port at start.
    pub ws_notification_listen: SocketAddr,
    /// The base URL under which pool-nodes reach that listener, e.g.
    /// `http://10.0.0.5:9001/`; `http://<ws_notification_listen>/` when unset.
    pub ws_notification_url: Option<String>,
    /// Most WebSocket connections holding push subscriptions at once; 0 turns
    /// push subscriptions (and their listener) off.
    pub ws_push_max_connections: usize,
    /// Most push subscriptions one WebSocket connection may hold.
    pub ws_push_max_subscriptions: usize,
    /// `[tls]`: certificate and key of the REST and WebSocket listeners, which
    /// then serve `https://` and `wss://`; `None` serves plain HTTP.
    pub tls: Option<ListenerTls>,
    /// `[grpc_tls]`: CA (and client certificate, for mTLS) of the `https://`
    /// catalog and pool-node endpoints.
    pub grpc_tls: Option<GrpcClientTls>,
    /// gRPC endpoint of the catalog, e.g. `http://127.0.0.1:7000`.
    pub catalog_endpoint: String,
    /// The catalog's admin token, sent as `authorization: Bearer TOKEN` on the
    /// AdminService calls behind `/v2/pools` and `/v2/flavors`.
    pub catalog_admin_token: Option<String>,
    /// Client connections (REST and WebSocket together) open at once; one more is
    /// answered 503 and closed.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, counted from the
    /// end of the previous response on a kept-alive connection (so also how long
    /// an idle connection stays open); then the connection is closed.
    pub header_read_timeout_ms: u64,
    /// How long a client may take to send a request's body; then 408.
    pub body_read_timeout_ms: u64,
    /// The cluster token carried by every gRPC call to the catalog and pool-nodes
    /// (`x-zaqar-cluster-token`), when they require one.
    pub cluster_token: Option<String>,
    /// Limits checked on every input (Zaqar's defaults).
    pub limits: Limits,
    /// `[project_limits]`: request rate per project, and per-project overrides
    /// of the rate and of the request-size limits.
    pub project_limits: ProjectLimitsConfig,
    /// How requests are authenticated: `noauth` or `keystone`.
    pub auth: AuthStrategy,
    /// Where Keystone is and how api-node logs in to it (`auth = "keystone"`).
    pub keystone: KeystoneConfig,
    /// Cross-Origin Resource Sharing (`[cors]`): off until `allowed_origin` is set.
    pub cors: crate::cors::CorsConfig,
    /// Longest wait for a TCP connection to the catalog or a pool-node, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Longest wait for one gRPC call to the catalog or a pool-node, in milliseconds.
    pub request_timeout_ms: u64,
    /// How long a queue placement learnt from the catalog is trusted, in milliseconds.
    pub placement_cache_ttl_ms: u64,
    /// Most placements kept in memory.
    pub placement_cache_size: usize,
    /// Zaqar's `require_confirmation`: webhook and email subscriptions must be
    /// confirmed (PUT .../confirm) before they are notified.
    pub require_subscription_confirmation: bool,
    /// Zaqar's `enable_checksum`: show the MD5 checksum of message bodies.
    pub enable_checksum: bool,
    /// Secret key of pre-signed URLs (`POST .../share`); without one, sharing
    /// is refused and signed requests are not accepted.
    pub signed_url_secret_key: Option<String>,
    /// Zaqar's `message_delete_with_claim_id`: a bulk delete must name the claims
    /// (`claim_ids`) of the messages it deletes.
    pub message_delete_with_claim_id: bool,
    /// Zaqar's `admin_mode`: serve the privileged routes and actions (`/v2/health`,
    /// `/v2/pools`, `/v2/flavors`, and their WebSocket actions) to callers with the
    /// admin role. Off, they do not exist, whatever roles a caller shows.
    pub admin_mode: bool,
    /// `[long_poll]`: the longest `wait` of a claim or a listing, and how many
    /// requests may wait at once.
    pub long_poll: crate::routing::LongPollConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8888)),
            ws_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9000))),
            ws_max_frame_bytes: 1 << 20,
            ws_idle_timeout_ms: 90_000,
            ws_ping_interval_ms: 30_000,
            ws_send_queue: 64,
            ws_notification_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ws_notification_url: None,
            ws_push_max_connections: 10_000,
            ws_push_max_subscriptions: 100,
            tls: None,
            grpc_tls: None,
            catalog_endpoint: "http://127.0.0.1:7000".to_string(),
            catalog_admin_token: None,
            cluster_token: None,
            max_connections: 10_000,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            limits: Limits::default(),
            project_limits: ProjectLimitsConfig::default(),
            auth: AuthStrategy::default(),
            keystone: KeystoneConfig::default(),
            cors: crate::cors::CorsConfig::default(),
            connect_timeout_ms: 2_000,
            request_timeout_ms: 5_000,
            placement_cache_ttl_ms: 5_000,
            placement_cache_size: 100_000,
            require_subscription_confirmation: false,
            message_delete_with_claim_id: false,
            long_poll: Default::default(),
            signed_url_secret_key: None,
            enable_checksum: false,
            admin_mode: false,
        }
    }
}

impl ApiConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn placement_cache_ttl(&self) -> Duration {
        Duration::from_millis(self.placement_cache_ttl_ms)
    }

    /// The TLS of gRPC channels (`grpc_tls`), its files read.
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms.max(1))
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms.max(1))
    }

    /// The cluster token of `cluster_token`, checked.
    pub fn cluster_token(&self) -> Result<ClusterToken, ZaqarError> {
        ClusterToken::new(self.cluster_token.as_deref()).map_err(ZaqarError::internal)
    }

    pub fn grpc_client_tls(&self) -> Result<Option<ClientTlsConfig>, ZaqarError> {
        self.grpc_tls
            .as_ref()
            .map(|tls| tls.client_config())
            .transpose()
            .map_err(|err| ZaqarError::internal(format!("grpc_tls: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_interface() {
        let config = ApiConfig::default();
        assert_eq!(config.listen, "127.0.0.1:8888".parse().unwrap());
        assert_eq!(config.ws_listen, Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(config.catalog_endpoint, "http://127.0.0.1:7000");
        assert_eq!(config.limits, Limits::default());
    }

    #[test]
    fn unknown_keys_are_rejected_and_missing_keys_defaulted() {
        let config: ApiConfig =
            serde_json::from_str(r#"{"listen": "0.0.0.0:9999", "auth": "noauth"}"#).unwrap();
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.request_timeout_ms, 5_000);
        assert!(serde_json::from_str::<ApiConfig>(r#"{"lisen": "0.0.0.0:1"}"#).is_err());
    }
}
