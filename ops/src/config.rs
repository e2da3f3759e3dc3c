//! The settings of each subcommand: defaults, an optional TOML file, then environment
//! variables and flags on top (clap merges those two), validated once.
//!
//! Every setting is documented in `docs/configuration.md`; keep the two in step.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use zaqar_api_node::ApiConfig;
use zaqar_catalog::raft::RaftConfig;
use zaqar_pool_node::notifier::trustee::TrusteeConfig;
use zaqar_pool_node::{MessageCipher, NotifierConfig};
use zaqar_proto::cluster_auth::ClusterToken;
use zaqar_proto::limits::is_valid_name;
use zaqar_proto::uri::{CatalogKind, StoreKind};

use crate::cluster_auth::{self, check_exposure, Listener};
use crate::grpc::{ensure_https_with_tls, validate_client_tls, validate_server_tls, GrpcServerTls};
use zaqar_proto::grpc_client::GrpcClientTls;

/// Reads `path` as TOML into `T`, or gives `T::default()` when there is no file.
pub fn load<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("in the config file {}", path.display()))
}

/// `zaqar catalog`: the gRPC `CatalogService` and `AdminService` over one catalog
/// backend: a raft node (the default), or the database named by `uri`.
///
/// The raft settings are options so that setting one together with `uri` is an error.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    /// Where the gRPC `CatalogService` and `AdminService` listen.
    pub listen: SocketAddr,
    /// A database instead of raft: `sqlite://path`, `postgres://user@host:port/db`,
    /// `etcd://host:port/prefix` or `mongodb://host[,host...]/database?replicaSet=name`.
    pub uri: Option<String>,
    /// The raft node's log and snapshot [default: ./zaqar-data/catalog-raft].
    pub data_dir: Option<PathBuf>,
    /// This raft node's id, unique in the cluster and never reused [default: 1].
    pub node_id: Option<u64>,
    /// Where the raft service listens for its peers [default: 127.0.0.1:7100].
    pub raft_listen: Option<SocketAddr>,
    /// `host:port` under which the peers reach this node [default: raft_listen].
    pub raft_advertise: Option<String>,
    /// The local address raft connections to the peers leave from, on a host with
    /// several [default: the one the system picks].
    pub raft_source_ip: Option<IpAddr>,
    /// The voters of a new cluster, `ID=HOST:PORT` each [default: this node alone].
    pub members: Option<Vec<String>>,
    /// Start empty and wait to be added with `zaqar admin nodes add`.
    pub join: bool,
    /// Cut a raft log damaged before its end at the damage (a copy is kept) instead
    /// of refusing to start.
    pub repair_log: bool,
    /// When set, every `AdminService` call must carry `authorization: Bearer TOKEN`.
    pub admin_token: Option<String>,
    /// `[tls]`: TLS of the gRPC listener; with `client_ca_file`, mTLS (every
    /// client, `zaqar admin` included, must show a certificate of that CA).
    pub tls: Option<GrpcServerTls>,
    /// The token every gRPC call (raft peers included) must carry; required
    /// beyond loopback unless `insecure_cluster`.
    pub cluster_token: Option<String>,
    /// Serve beyond loopback without the cluster token or mTLS.
    pub insecure_cluster: bool,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7000)),
            uri: None,
            data_dir: None,
            node_id: None,
            raft_listen: None,
            raft_advertise: None,
            raft_source_ip: None,
            members: None,
            join: false,
            repair_log: false,
            admin_token: None,
            tls: None,
            cluster_token: None,
            insecure_cluster: false,
        }
    }
}

impl CatalogConfig {
    pub fn validated(self) -> Result<Self> {
        if let Some(uri) = &self.uri {
            CatalogKind::of(uri).map_err(|err| anyhow::anyhow!("{}", err.description))?;
            let raft_settings = [
                ("data_dir", self.data_dir.is_some()),
                ("node_id", self.node_id.is_some()),
                ("raft_listen", self.raft_listen.is_some()),
                ("raft_advertise", self.raft_advertise.is_some()),
                ("raft_source_ip", self.raft_source_ip.is_some()),
                ("members", self.members.is_some()),
                ("join", self.join),
                ("repair_log", self.repair_log),
            ];
            for (name, set) in raft_settings {
                ensure!(!set, "{name} is a raft setting: it cannot be used with uri");
            }
        } else {
            self.raft_config()?
                .validate()
                .context("invalid raft settings")?;
        }
        validate_server_tls(self.tls.as_ref())?;
        let token = cluster_auth::token(self.cluster_token.as_deref())?;
        let mut listeners = vec![Listener {
            setting: "listen",
            addr: self.listen,
            mutual_tls: self.tls.as_ref().is_some_and(GrpcServerTls::mutual),
        }];
        if self.uri.is_none() {
            listeners.push(Listener {
                setting: "raft_listen",
                addr: self.raft_config()?.listen_addr,
                mutual_tls: false,
            });
        }
        check_exposure("catalog", &listeners, &token, self.insecure_cluster)?;
        if let Some(token) = &self.admin_token {
            ensure!(
                !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()),
                "admin_token must be non-empty printable ASCII without spaces"
            );
        }
        Ok(self)
    }

    /// The raft node to run (meaningful when `uri` is unset).
    pub fn raft_config(&self) -> Result<RaftConfig> {
        let node_id = self.node_id.unwrap_or(1);
        let listen = self
            .raft_listen
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7100)));
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./zaqar-data/catalog-raft"));
        let mut config = RaftConfig::new(node_id, listen, data_dir);
        config.cluster_token = cluster_auth::token(self.cluster_token.as_deref())?;
        config.repair_log = self.repair_log;
        config.source_ip = self.raft_source_ip;
        match &self.raft_advertise {
            Some(advertise) => config.advertise_addr = advertise.clone(),
            None => ensure!(
                !listen.ip().is_unspecified(),
                "raft_listen is {listen} (every interface): set raft_advertise to the address peers should use"
            ),
        }
        config.initial_members = match (&self.members, self.join) {
            (Some(_), true) => bail!("join and members exclude each other"),
            (None, true) => Vec::new(),
            (None, false) => vec![(node_id, config.advertise_addr.clone())],
            (Some(members), false) => {
                let members = members
                    .iter()
                    .map(|member| parse_member(member))
                    .collect::<Result<Vec<_>>>()?;
                ensure!(
                    members.iter().any(|(id, _)| *id == node_id),
                    "members must include this node ({node_id}); use join to add it to a running cluster"
                );
                members
            }
        };
        Ok(config)
    }
}

/// Parses `ID=HOST:PORT`.
fn parse_member(member: &str) -> Result<(u64, String)> {
    let (id, addr) = member
        .split_once('=')
        .with_context(|| format!("member {member:?} is not ID=HOST:PORT"))?;
    let id = id
        .trim()
        .parse()
        .with_context(|| format!("member {member:?}: {id:?} is not a node id"))?;
    Ok((id, addr.trim().to_string()))
}

/// `zaqar pool-node`: the gRPC `PoolService` over one message store, registered
/// with the catalog as one pool.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolNodeConfig {
    /// Where the gRPC `PoolService` listens.
    pub listen: SocketAddr,
    /// The message store: `redis://host:port/db`, `sqlite://path/to/messages.db` or
    /// `mongodb://host[,host...]/database?replicaSet=name`.
    pub uri: String,
    /// The pool's name in the catalog.
    pub name: String,
    /// The pool's share of new queues; 0 takes none.
    pub weight: u32,
    /// The pool's flavor: queues of flavor `F` go to pools of flavor `F`; empty for the
    /// default. The file's key is `group` (or `flavor`).
    #[serde(rename = "group", alias = "flavor")]
    pub flavor: String,
    /// gRPC endpoint of the catalog to register with, or of several catalog nodes,
    /// comma-separated.
    pub catalog: String,
    /// The endpoint api-nodes use to reach this pool-node; `http://<listen>` when unset.
    pub advertise: Option<String>,
    /// Webhook and email delivery of posted messages (`[notifier]`).
    pub notifier: NotifierConfig,
    /// Key of message bodies encrypted at rest (`_enable_encrypt_messages`): base64 of
    /// 32 bytes. Without one, posts to encrypting queues are refused.
    pub encryption_key: Option<String>,
    /// `[tls]`: TLS (or mTLS, with `client_ca_file`) of the gRPC listener.
    pub tls: Option<GrpcServerTls>,
    /// `[grpc_tls]`: CA (and client certificate) for the `https://` catalog.
    pub grpc_tls: Option<GrpcClientTls>,
    /// Seconds between two health reports to each catalog node (1 to 3600).
    pub health_report_interval_secs: u32,
    /// The token every gRPC call to and from this pool-node carries; required
    /// beyond loopback unless `insecure_cluster`.
    pub cluster_token: Option<String>,
    /// Serve beyond loopback without the cluster token or mTLS.
    pub insecure_cluster: bool,
    /// Refuse to start on a store that can lose acknowledged messages.
    pub require_durable_store: bool,
    /// With `--metrics-listen`: how many of the most recently used queues have their
    /// depth in the metrics (0: none).
    pub metrics_queues: u32,
}

impl Default for PoolNodeConfig {
    fn default() -> Self {
        PoolNodeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7001)),
            uri: "redis://127.0.0.1:6379/0".to_string(),
            name: "pool1".to_string(),
            weight: 100,
            flavor: String::new(),
            catalog: "http://127.0.0.1:7000".to_string(),
            advertise: None,
            notifier: NotifierConfig::default(),
            encryption_key: None,
            tls: None,
            grpc_tls: None,
            health_report_interval_secs: 5,
            cluster_token: None,
            insecure_cluster: false,
            require_durable_store: false,
            metrics_queues: DEFAULT_METRICS_QUEUES,
        }
    }
}

impl PoolNodeConfig {
    pub fn validated(self) -> Result<Self> {
        validate_pool_uri(&self.uri)?;
        ensure!(
            is_valid_name(&self.name, 256),
            "pool name {:?} must be 1 to 256 characters of [a-zA-Z0-9_.-]",
            self.name
        );
        ensure!(
            self.flavor.is_empty() || is_valid_name(&self.flavor, 256),
            "pool flavor {:?} must be empty or characters of [a-zA-Z0-9_.-]",
            self.flavor
        );
        validate_endpoints("catalog", &self.catalog)?;
        match &self.advertise {
            Some(advertise) => validate_endpoint("advertise", advertise)?,
            None => ensure!(
                !self.listen.ip().is_unspecified(),
                "listen is {} (every interface): set advertise to the endpoint api-nodes should use",
                self.listen
            ),
        }
        cipher_of(self.encryption_key.as_deref())?;
        validate_server_tls(self.tls.as_ref())?;
        validate_client_tls(self.grpc_tls.as_ref())?;
        ensure_https_with_tls("catalog", &self.catalog, self.grpc_tls.is_some())?;
        ensure!(
            (1..=3600).contains(&self.health_report_interval_secs),
            "health_report_interval_secs must be 1 to 3600, not {}",
            self.health_report_interval_secs
        );
        let listener = Listener {
            setting: "listen",
            addr: self.listen,
            mutual_tls: self.tls.as_ref().is_some_and(GrpcServerTls::mutual),
        };
        check_exposure(
            "pool-node",
            &[listener],
            &self.cluster_token()?,
            self.insecure_cluster,
        )?;
        Ok(self)
    }

    /// The cluster token of `cluster_token`, checked.
    pub fn cluster_token(&self) -> Result<ClusterToken> {
        cluster_auth::token(self.cluster_token.as_deref())
    }

    /// The cipher of encrypted message bodies, when a key is set.
    pub fn cipher(&self) -> Result<Option<MessageCipher>> {
        cipher_of(self.encryption_key.as_deref())
    }

    /// The endpoint registered with the catalog: `https://<listen>` with TLS.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.advertise
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", self.listen))
    }
}

/// `zaqar api-node`: api-node's own settings ([`ApiConfig`], whose keys its crate
/// documents), checked where ops sets them.
pub fn validate_api(config: ApiConfig) -> Result<ApiConfig> {
    validate_endpoints("catalog", &config.catalog_endpoint)?;
    let tls = config.grpc_tls.is_some();
    ensure_https_with_tls("catalog_endpoint", &config.catalog_endpoint, tls)?;
    validate_client_tls(config.grpc_tls.as_ref())?;
    config.cluster_token().context("cluster_token")?;
    if let Some(listener) = &config.tls {
        listener.acceptor().context("tls")?;
    }
    validate_ws_notification(&config)?;
    validate_long_poll(&config)?;
    Ok(config)
}

/// The longest `[long_poll] max_wait_seconds`: a request held longer would outlive the
/// idle timeouts of the proxies and load balancers in front of api-nodes.
const MAX_LONG_POLL_WAIT: u32 = 3600;

fn validate_long_poll(config: &ApiConfig) -> Result<()> {
    let max_wait = config.long_poll.max_wait_seconds;
    ensure!(
        max_wait <= MAX_LONG_POLL_WAIT,
        "long_poll.max_wait_seconds is {max_wait}: at most {MAX_LONG_POLL_WAIT}"
    );
    Ok(())
}

/// The notification listener of websocket push subscriptions must be reachable
/// under a URL the pool-nodes can use.
fn validate_ws_notification(config: &ApiConfig) -> Result<()> {
    match &config.ws_notification_url {
        Some(url) => validate_endpoint("ws_notification_url", url),
        None => {
            ensure!(
                !config.ws_notification_listen.ip().is_unspecified(),
                "ws_notification_listen is {} (every interface): set ws_notification_url to the URL pool-nodes should use",
                config.ws_notification_listen
            );
            Ok(())
        }
    }
}

/// `zaqar standalone`: catalog, one pool-node and an api-node in one process.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StandaloneConfig {
    /// Where the catalog (and the embedded message store) keep their files.
    pub data_dir: PathBuf,
    /// The message store of the one pool; `sqlite://<data_dir>/messages.db` when unset.
    pub pool_uri: Option<String>,
    /// The api-node: REST `listen`, limits and the rest of its settings. Its
    /// `catalog_endpoint` is the in-process catalog and may not be set.
    pub api: ApiConfig,
    /// Webhook and email delivery of posted messages (`[notifier]`).
    pub notifier: NotifierConfig,
    /// Key of message bodies encrypted at rest; generated once into
    /// `<data_dir>/encryption-key` when unset.
    pub encryption_key: Option<String>,
    /// Refuse to start on a store that can lose acknowledged messages.
    pub require_durable_store: bool,
    /// As the pool-node's `metrics_queues`.
    pub metrics_queues: u32,
}

/// The default `metrics_queues`: bounded, so that a pool of 100,000 queues does not
/// make 100,000 series.
pub const DEFAULT_METRICS_QUEUES: u32 = 1000;

impl Default for StandaloneConfig {
    fn default() -> Self {
        StandaloneConfig {
            data_dir: PathBuf::from("./zaqar-data"),
            pool_uri: None,
            api: ApiConfig::default(),
            notifier: NotifierConfig::default(),
            encryption_key: None,
            require_durable_store: false,
            metrics_queues: DEFAULT_METRICS_QUEUES,
        }
    }
}

impl StandaloneConfig {
    /// The configuration checked, with `[notifier.trustee]` taken from
    /// `[api.keystone]` when unset in keystone mode: in one process the trusts of
    /// `trust+` subscribers are made for, and redeemed by, the same service user.
    pub fn validated(mut self) -> Result<Self> {
        if self.api.auth == zaqar_api_node::auth::AuthStrategy::Keystone
            && self.notifier.trustee.auth_url.is_empty()
        {
            let keystone = &self.api.keystone;
            self.notifier.trustee = TrusteeConfig {
                auth_url: keystone.auth_url.clone(),
                username: keystone.username.clone(),
                password: keystone.password.clone(),
                user_domain_name: keystone.user_domain_name.clone(),
            };
        }
        ensure!(
            !self.data_dir.as_os_str().is_empty(),
            "data_dir may not be empty"
        );
        if let Some(uri) = &self.pool_uri {
            validate_pool_uri(uri)?;
        }
        ensure!(
            self.api.catalog_endpoint == ApiConfig::default().catalog_endpoint,
            "api.catalog_endpoint may not be set: standalone runs its own catalog"
        );
        cipher_of(self.encryption_key.as_deref())?;
        validate_ws_notification(&self.api)?;
        validate_long_poll(&self.api)?;
        Ok(self)
    }

    /// The directory of the single-node raft catalog.
    pub fn catalog_dir(&self) -> PathBuf {
        self.data_dir.join("catalog-raft")
    }

    /// The URI of the pool's message store.
    pub fn pool_uri(&self) -> String {
        match &self.pool_uri {
            Some(uri) => uri.clone(),
            None => format!("sqlite://{}", self.data_dir.join("messages.db").display()),
        }
    }
}

pub use zaqar_proto::uri::redact;

/// The cipher of an `encryption_key` setting (base64 of 32 bytes), checked.
pub fn cipher_of(key: Option<&str>) -> Result<Option<MessageCipher>> {
    key.map(|key| {
        MessageCipher::from_base64_key(key).map_err(|err| {
            anyhow::anyhow!(
                "encryption_key: {} (generate one with `openssl rand -base64 32`)",
                err.description
            )
        })
    })
    .transpose()
}

fn validate_pool_uri(uri: &str) -> Result<()> {
    StoreKind::of(uri)
        .map(drop)
        .map_err(|err| anyhow::anyhow!("{}", err.description))
}

/// A comma-separated list of at least one endpoint (the nodes of a catalog).
fn validate_endpoints(what: &str, endpoints: &str) -> Result<()> {
    let mut count = 0;
    for endpoint in endpoints.split(',').map(str::trim) {
        validate_endpoint(what, endpoint)?;
        count += 1;
    }
    ensure!(count > 0, "{what} names no endpoint");
    Ok(())
}

fn validate_endpoint(what: &str, endpoint: &str) -> Result<()> {
    let Some(rest) = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
    else {
        bail!("{what} {endpoint:?} must be an http:// or https:// endpoint");
    };
    ensure!(
        !rest.is_empty() && endpoint.parse::<tonic::transport::Uri>().is_ok(),
        "{what} {endpoint:?} is not a valid endpoint"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_defaults_and_unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.toml");
        std::fs::write(&path, "name = \"fast-1\"\ngroup = \"fast\"\nweight = 5\n").unwrap();
        let config: PoolNodeConfig = load(Some(&path)).unwrap();
        assert_eq!(
            (config.name.as_str(), config.flavor.as_str(), config.weight),
            ("fast-1", "fast", 5)
        );
        std::fs::write(&path, "flavor = \"gold\"\n").unwrap();
        let config: PoolNodeConfig = load(Some(&path)).unwrap();
        assert_eq!(config.flavor, "gold", "flavor is the same key as group");
        assert_eq!(config.listen, PoolNodeConfig::default().listen);

        std::fs::write(&path, "nmae = \"typo\"\n").unwrap();
        let err = load::<PoolNodeConfig>(Some(&path)).unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
        assert_eq!(
            load::<CatalogConfig>(None).unwrap(),
            CatalogConfig::default()
        );
    }

    #[test]
    fn standalone_reads_api_settings_from_its_api_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zaqar.toml");
        let text = "data_dir = \"/var/lib/zaqar\"\n[api]\nlisten = \"0.0.0.0:9000\"\n\
                    [api.limits]\nmax_messages_per_post = 5\n";
        std::fs::write(&path, text).unwrap();
        let config = load::<StandaloneConfig>(Some(&path))
            .unwrap()
            .validated()
            .unwrap();
        assert_eq!(config.api.listen.port(), 9000);
        assert_eq!(config.api.limits.max_messages_per_post, 5);
        assert_eq!(
            config.catalog_dir(),
            PathBuf::from("/var/lib/zaqar/catalog-raft")
        );
        assert_eq!(config.pool_uri(), "sqlite:///var/lib/zaqar/messages.db");

        std::fs::write(
            &path,
            "[api]\ncatalog_endpoint = \"http://10.0.0.1:7000\"\n",
        )
        .unwrap();
        let config = load::<StandaloneConfig>(Some(&path)).unwrap();
        assert!(config.validated().is_err());
    }

    #[test]
    fn standalone_in_keystone_mode_redeems_trusts_as_its_keystone_user() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zaqar.toml");
        let keystone = "[api]\nauth = \"keystone\"\n[api.keystone]\nauth_url = \"http://k:5000\"\n\
                        username = \"zaqar\"\npassword = \"p\"\nproject_name = \"service\"\n";
        std::fs::write(&path, keystone).unwrap();
        let config = load::<StandaloneConfig>(Some(&path))
            .unwrap()
            .validated()
            .unwrap();
        let trustee = &config.notifier.trustee;
        assert_eq!(
            (trustee.auth_url.as_str(), trustee.username.as_str()),
            ("http://k:5000", "zaqar")
        );
        assert_eq!(trustee.password, "p");
        // A trustee of its own is kept; without keystone there is none.
        let own = format!("{keystone}[notifier.trustee]\nauth_url = \"http://other:5000\"\n");
        std::fs::write(&path, own).unwrap();
        let config = load::<StandaloneConfig>(Some(&path)).unwrap();
        let config = config.validated().unwrap();
        assert_eq!(config.notifier.trustee.auth_url, "http://other:5000");
        assert_eq!(config.notifier.trustee.username, "");
        let plain = StandaloneConfig::default().validated().unwrap();
        assert_eq!(plain.notifier.trustee.auth_url, "");
    }

    #[test]
    fn pool_node_settings_are_checked() {
        let ok = PoolNodeConfig::default().validated().unwrap();
        assert_eq!(ok.endpoint(), "http://127.0.0.1:7001");
        let bad = [
            PoolNodeConfig {
                uri: "memcached://x".into(),
                ..Default::default()
            },
            PoolNodeConfig {
                name: "a b".into(),
                ..Default::default()
            },
            PoolNodeConfig {
                flavor: "a/b".into(),
                ..Default::default()
            },
            PoolNodeConfig {
                catalog: "127.0.0.1:7000".into(),
                ..Default::default()
            },
            PoolNodeConfig {
                advertise: Some("pool:7001".into()),
                ..Default::default()
            },
            PoolNodeConfig {
                listen: "0.0.0.0:7001".parse().unwrap(),
                ..Default::default()
            },
            PoolNodeConfig {
                encryption_key: Some("c2hvcnQ=".into()),
                ..Default::default()
            },
            PoolNodeConfig {
                encryption_key: Some("not base64!".into()),
                ..Default::default()
            },
        ];
        for config in bad {
            assert!(config.clone().validated().is_err(), "{config:?}");
        }
        let everywhere = PoolNodeConfig {
            listen: "0.0.0.0:7001".parse().unwrap(),
            advertise: Some("http://pool-1.internal:7001".into()),
            ..Default::default()
        };
        let unauthenticated = everywhere.clone().validated().unwrap_err();
        assert!(unauthenticated.to_string().contains("cluster_token"));
        let everywhere = PoolNodeConfig {
            cluster_token: Some("0123456789abcdef".into()),
            ..everywhere
        };
        assert_eq!(
            everywhere.validated().unwrap().endpoint(),
            "http://pool-1.internal:7001"
        );
        let encrypting = PoolNodeConfig {
            encryption_key: Some(MessageCipher::generate_base64_key()),
            ..Default::default()
        };
        assert!(encrypting.validated().unwrap().cipher().unwrap().is_some());
        assert!(PoolNodeConfig::default().cipher().unwrap().is_none());
    }

    #[test]
    fn catalog_and_api_settings_are_checked() {
        let default = CatalogConfig::default().validated().unwrap();
        let raft = default.raft_config().unwrap();
        assert_eq!(raft.initial_members, [(1, "127.0.0.1:7100".to_string())]);
        let postgres = CatalogConfig {
            uri: Some("postgres://zaqar@db:5432/zaqar".into()),
            ..Default::default()
        };
        assert!(postgres.validated().is_ok());
        let bad = [
            CatalogConfig {
                uri: Some("mysql://x".into()),
                ..Default::default()
            },
            CatalogConfig {
                uri: Some("sqlite://c.db".into()),
                node_id: Some(2),
                ..Default::default()
            },
            CatalogConfig {
                uri: Some("etcd://h:2379".into()),
                join: true,
                ..Default::default()
            },
            CatalogConfig {
                members: Some(vec!["2=127.0.0.1:7101".into()]),
                ..Default::default()
            },
            CatalogConfig {
                members: Some(vec!["1=127.0.0.1:7100".into(), "x=h:1".into()]),
                ..Default::default()
            },
            CatalogConfig {
                members: Some(vec!["1=127.0.0.1:7100".into()]),
                join: true,
                ..Default::default()
            },
            CatalogConfig {
                raft_listen: Some("0.0.0.0:7100".parse().unwrap()),
                ..Default::default()
            },
            CatalogConfig {
                admin_token: Some("has space".into()),
                ..Default::default()
            },
        ];
        for config in bad {
            assert!(config.clone().validated().is_err(), "{config:?}");
        }
        let cluster = CatalogConfig {
            node_id: Some(2),
            raft_listen: Some("0.0.0.0:7101".parse().unwrap()),
            raft_advertise: Some("catalog-2:7101".into()),
            members: Some(vec!["1=catalog-1:7100".into(), "2=catalog-2:7101".into()]),
            ..Default::default()
        };
        let unauthenticated = cluster.clone().validated().unwrap_err();
        assert!(unauthenticated.to_string().contains("raft_listen"));
        let insecure = CatalogConfig {
            insecure_cluster: true,
            ..cluster.clone()
        };
        assert!(insecure.validated().is_ok());
        let cluster = CatalogConfig {
            cluster_token: Some("0123456789abcdef".into()),
            ..cluster
        };
        let raft = cluster.validated().unwrap().raft_config().unwrap();
        assert_eq!(raft.initial_members.len(), 2);
        assert!(raft.cluster_token.is_set());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.toml");
        let text = "node_id = 2\nraft_listen = \"127.0.0.1:7101\"\n\
                    members = [\"1=127.0.0.1:7100\", \"2=127.0.0.1:7101\"]\n\
                    admin_token = \"t0k\"\nraft_source_ip = \"127.0.0.2\"\n";
        std::fs::write(&path, text).unwrap();
        let from_file = load::<CatalogConfig>(Some(&path)).unwrap().validated();
        let raft = from_file.unwrap().raft_config().unwrap();
        assert_eq!(raft.source_ip, Some("127.0.0.2".parse().unwrap()));
        assert_eq!((raft.node_id, raft.initial_members.len()), (2, 2));
        let joining = CatalogConfig {
            node_id: Some(4),
            join: true,
            ..Default::default()
        };
        assert!(joining.raft_config().unwrap().initial_members.is_empty());
        assert!(validate_api(ApiConfig::default()).is_ok());
        let api = ApiConfig {
            catalog_endpoint: "catalog:7000".into(),
            ..Default::default()
        };
        assert!(validate_api(api).is_err());
        let mut api = ApiConfig::default();
        api.long_poll.max_wait_seconds = 3601;
        let err = format!("{:#}", validate_api(api).unwrap_err());
        assert!(err.contains("long_poll.max_wait_seconds is 3601"), "{err}");
        for (endpoints, valid) in [
            ("http://catalog-1:7000,http://catalog-2:7000", true),
            ("http://catalog-1:7000, http://catalog-2:7000", true),
            ("http://catalog-1:7000,catalog-2:7000", false),
            ("http://catalog-1:7000,", false),
        ] {
            let api = ApiConfig {
                catalog_endpoint: endpoints.into(),
                ..Default::default()
            };
            assert_eq!(validate_api(api).is_ok(), valid, "{endpoints}");
        }
    }

    #[test]
    fn the_ws_notification_listener_needs_a_reachable_url() {
        let everywhere: SocketAddr = "0.0.0.0:9001".parse().unwrap();
        for (listen, url, valid) in [
            (everywhere, None, false),
            (everywhere, Some("http://10.0.0.5:9001/"), true),
            (SocketAddr::from(([127, 0, 0, 1], 0)), None, true),
            (everywhere, Some("10.0.0.5:9001"), false),
        ] {
            let api = ApiConfig {
                ws_notification_listen: listen,
                ws_notification_url: url.map(str::to_string),
                ..Default::default()
            };
            assert_eq!(validate_api(api).is_ok(), valid, "{listen} {url:?}");
        }
    }

    #[test]
    fn security_tables_of_the_api_node_parse_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.toml");
        let text = "catalog_endpoint = \"https://catalog:7000\"\n\
                    [grpc_tls]\nca_file = \"/nowhere/ca.pem\"\n\
                    [project_limits]\nrequests_per_second = 5.0\nburst = 10\n\
                    [project_limits.overrides.\"tenant-a\"]\nrequests_per_second = 50.0\n\
                    max_messages_post_size = 1048576\n";
        std::fs::write(&path, text).unwrap();
        let config: ApiConfig = load(Some(&path)).unwrap();
        assert_eq!(config.project_limits.burst, 10);
        let tenant = &config.project_limits.overrides["tenant-a"];
        assert_eq!(tenant.max_messages_post_size, Some(1 << 20));
        // The CA file does not exist: refused at start, naming the file.
        let err = format!("{:#}", validate_api(config.clone()).unwrap_err());
        assert!(err.contains("/nowhere/ca.pem"), "{err}");
        let plain = ApiConfig {
            catalog_endpoint: "http://catalog:7000".into(),
            ..config
        };
        let err = format!("{:#}", validate_api(plain).unwrap_err());
        assert!(err.contains("must be https://"), "{err}");
        std::fs::write(&path, "[tls]\ncert_file = \"c.pem\"\n").unwrap();
        assert!(
            load::<ApiConfig>(Some(&path)).is_err(),
            "key_file is required"
        );
    }
}
