//! Who may call a role's gRPC services: the shared cluster token of every
//! control-plane call (`zaqar_proto::cluster_auth`), and the rule that a role
//! does not serve its gRPC port beyond loopback without authentication
//! (the cluster token, or mTLS on that port) unless `insecure_cluster` says so.

use std::net::SocketAddr;

use anyhow::{bail, Result};
use clap::Args;
use zaqar_proto::cluster_auth::ClusterToken;

/// The flags shared by the roles that serve or call the control plane.
#[derive(Debug, Clone, Default, Args)]
pub struct ClusterAuthArgs {
    /// Shared token every gRPC call between roles carries and requires
    /// (x-zaqar-cluster-token), at least 16 characters [default: none].
    #[arg(long, env = "ZAQAR_CLUSTER_TOKEN", hide_env_values = true)]
    pub cluster_token: Option<String>,
}

/// The flag of the roles that serve gRPC.
#[derive(Debug, Clone, Default, Args)]
pub struct InsecureClusterArgs {
    /// Serve gRPC beyond loopback without a cluster token or mTLS (anyone who
    /// reaches the port can change the catalog or read messages).
    #[arg(long, env = "ZAQAR_INSECURE_CLUSTER")]
    pub insecure_cluster: bool,
}

/// The token of `cluster_token`, checked.
pub fn token(cluster_token: Option<&str>) -> Result<ClusterToken> {
    ClusterToken::new(cluster_token).map_err(anyhow::Error::msg)
}

/// One gRPC listener of a role, for [`check_exposure`].
pub struct Listener {
    /// What it serves, as the settings name it (`listen`, `raft_listen`).
    pub setting: &'static str,
    pub addr: SocketAddr,
    /// Whether every client must show a certificate of the configured CA.
    pub mutual_tls: bool,
}

/// Refuses to serve `listeners` beyond loopback without authentication: each
/// needs the cluster token or mTLS, unless `insecure` (then a warning is logged).
pub fn check_exposure(
    role: &str,
    listeners: &[Listener],
    token: &ClusterToken,
    insecure: bool,
) -> Result<()> {
    for listener in listeners {
        let exposed = !listener.addr.ip().is_loopback();
        if !exposed || token.is_set() || listener.mutual_tls {
            continue;
        }
        if insecure {
            tracing::warn!(role, setting = listener.setting, addr = %listener.addr,
                "insecure_cluster: gRPC served beyond loopback without authentication");
            continue;
        }
        bail!(
            "{role}: {} is {}, beyond loopback, and calls to it would not be authenticated: \
             set cluster_token (ZAQAR_CLUSTER_TOKEN, the same on every role){}, \
             or pass --insecure-cluster to accept that anyone who reaches the port controls it",
            listener.setting,
            listener.addr,
            if listener.setting == "listen" {
                " or [tls] client_ca_file (mTLS)"
            } else {
                ""
            },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(addr: &str, mutual_tls: bool) -> Listener {
        Listener {
            setting: "listen",
            addr: addr.parse().unwrap(),
            mutual_tls,
        }
    }

    #[test]
    fn only_loopback_may_go_without_authentication() {
        let none = ClusterToken::none();
        let token = token(Some("0123456789abcdef")).unwrap();
        let loopback = [listener("127.0.0.1:7000", false)];
        let exposed = [listener("0.0.0.0:7000", false)];
        assert!(check_exposure("catalog", &loopback, &none, false).is_ok());
        let refused = check_exposure("catalog", &exposed, &none, false).unwrap_err();
        assert!(
            refused.to_string().contains("--insecure-cluster"),
            "{refused}"
        );
        assert!(check_exposure("catalog", &exposed, &token, false).is_ok());
        assert!(check_exposure("catalog", &exposed, &none, true).is_ok());
        let mutual = [listener("10.0.0.1:7000", true)];
        assert!(check_exposure("catalog", &mutual, &none, false).is_ok());
        assert!(check_exposure("catalog", &[listener("[::1]:7000", false)], &none, false).is_ok());
    }
}
