//! `zaqar api-node`: the REST front door, served by the `zaqar-api-node` crate.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use zaqar_api_node::routing::InProcessPools;
use zaqar_api_node::{ApiConfig, Listeners};

use crate::cluster_auth::ClusterAuthArgs;
use crate::config::{load, validate_api};
use crate::shutdown::Shutdown;

/// Flags (and their environment variables) of `zaqar api-node`; unset ones keep the
/// value of the config file, then the default.
#[derive(Debug, Args)]
pub struct ApiNodeArgs {
    /// TOML file with the api-node settings (listen, catalog_endpoint, [limits], ...).
    #[arg(long, env = "ZAQAR_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub front_door: FrontDoorArgs,
    /// gRPC endpoint of the catalog, or of several catalog nodes, comma-separated, tried in
    /// turn while one is unreachable [default: http://127.0.0.1:7000].
    #[arg(long, env = "ZAQAR_CATALOG")]
    pub catalog: Option<String>,
    #[command(flatten)]
    pub cluster: ClusterAuthArgs,
}

/// The api-node's own flags, shared by `zaqar api-node` and `zaqar standalone`: where
/// it listens and whether it serves the privileged routes.
#[derive(Debug, Args)]
pub struct FrontDoorArgs {
    /// Where the REST API listens [default: 127.0.0.1:8888].
    #[arg(long, env = "ZAQAR_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Where the WebSocket API listens [default: 127.0.0.1:9000].
    #[arg(long, env = "ZAQAR_WS_LISTEN")]
    pub ws_listen: Option<SocketAddr>,
    /// Where the listener of websocket push subscriptions listens: pool-nodes POST
    /// their notifications there [default: 127.0.0.1:0, a free port].
    #[arg(long, env = "ZAQAR_WS_NOTIFICATION_LISTEN")]
    pub ws_notification_listen: Option<SocketAddr>,
    /// The URL under which pool-nodes reach that listener
    /// [default: http://WS_NOTIFICATION_LISTEN/].
    #[arg(long, env = "ZAQAR_WS_NOTIFICATION_URL")]
    pub ws_notification_url: Option<String>,
    /// Serve the privileged routes and actions (/v2/health, /v2/pools, /v2/flavors) to
    /// callers with the admin role (Zaqar's admin_mode; off by default).
    #[arg(long, env = "ZAQAR_ADMIN_MODE")]
    pub admin_mode: bool,
}

impl FrontDoorArgs {
    /// Sets in `config` what these flags set.
    pub fn apply(self, config: &mut ApiConfig) {
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(ws_listen) = self.ws_listen {
            config.ws_listen = Some(ws_listen);
        }
        if let Some(listen) = self.ws_notification_listen {
            config.ws_notification_listen = listen;
        }
        if let Some(url) = self.ws_notification_url {
            config.ws_notification_url = Some(url);
        }
        config.admin_mode |= self.admin_mode;
    }
}

impl ApiNodeArgs {
    /// The validated settings: defaults, then the file, then env and flags.
    pub fn config(self) -> Result<ApiConfig> {
        let mut config: ApiConfig = load(self.config.as_deref())?;
        self.front_door.apply(&mut config);
        if let Some(token) = self.cluster.cluster_token {
            config.cluster_token = Some(token);
        }
        if let Some(catalog) = self.catalog {
            config.catalog_endpoint = catalog;
        }
        validate_api(config)
    }
}

/// Serves the REST API until shutdown.
pub async fn run(config: ApiConfig, shutdown: Shutdown) -> Result<()> {
    tracing::info!(listen = %config.listen, catalog = %config.catalog_endpoint, "api-node serving");
    let listeners = bind_api_node(&config)?;
    serve_api_node(listeners, config, InProcessPools::new(), shutdown).await
}

/// Binds the api-node's listeners (`listen`, and `ws_listen` with the notification
/// listener of push subscriptions when set), shared by `zaqar api-node` and
/// `zaqar standalone`.
pub fn bind_api_node(config: &ApiConfig) -> Result<Listeners> {
    Listeners::bind(config).with_context(|| match config.ws_listen {
        Some(ws) => format!(
            "binding the REST API on {}, the WebSocket API on {ws} or its notification \
             listener on {}",
            config.listen, config.ws_notification_listen
        ),
        None => format!("binding the REST API on {}", config.listen),
    })
}

/// Serves the api-node on `listeners` (`zaqar_api_node::serve`), shared by
/// `zaqar api-node` and `zaqar standalone` (which calls its own pool-node directly).
pub async fn serve_api_node(
    listeners: Listeners,
    config: ApiConfig,
    in_process: InProcessPools,
    shutdown: Shutdown,
) -> Result<()> {
    let listen = config.listen;
    zaqar_api_node::serve(listeners, config, in_process, shutdown.wait())
        .await
        .with_context(|| format!("serving the REST API on {listen}"))
}
