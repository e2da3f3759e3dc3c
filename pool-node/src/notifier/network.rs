//! Where webhooks may go: a tenant's subscriber must not make pool-nodes call the
//! internal network (SSRF). Addresses in loopback, private, link-local (cloud
//! metadata at 169.254.169.254), shared (CGNAT), multicast, broadcast and
//! unspecified ranges are refused, unless the operator's `allowed_networks`
//! include them. The check runs when a subscription is made or changed, and again
//! at each delivery on the addresses the connection will use (a name that
//! resolved to a public address then may resolve to an internal one now: DNS
//! rebinding), through [`GuardedResolver`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tokio::net::lookup_host;

/// How long a subscription's check waits for its host name to resolve; a name
/// that does not resolve in time is accepted, and checked again at delivery.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// The networks a webhook may reach beyond the public internet.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    allowed: Vec<IpNet>,
}

impl NetworkPolicy {
    /// The policy of `allowed_networks` (CIDR blocks such as `10.1.0.0/16`, or
    /// single addresses).
    pub fn new(allowed_networks: &[String]) -> Result<NetworkPolicy, String> {
        let allowed = allowed_networks
            .iter()
            .map(|network| {
                network
                    .parse::<IpNet>()
                    .or_else(|_| network.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("allowed_networks: {network:?} is not a CIDR block"))
            })
            .collect::<Result<_, _>>()?;
        Ok(NetworkPolicy { allowed })
    }

    /// Whether a webhook may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.allowed.iter().any(|network| network.contains(&ip))
    }

    /// Checks the host of the webhook `url`: an address must be permitted, and a
    /// name must not resolve to any address that is not (a name that does not
    /// resolve now is checked again at delivery).
    pub async fn check_url(&self, url: &reqwest::Url) -> Result<(), String> {
        let port = url.port_or_known_default().unwrap_or(80);
        let Some(host) = url.host_str() else {
            return Err("the subscriber URL has no host".to_string());
        };
        let addresses: Vec<IpAddr> = match address_of(host) {
            Some(ip) => vec![ip],
            None => match tokio::time::timeout(LOOKUP_TIMEOUT, lookup_host((host, port))).await {
                Ok(Ok(found)) => found.map(|addr| addr.ip()).collect(),
                Ok(Err(_)) | Err(_) => Vec::new(),
            },
        };
        match addresses.into_iter().find(|ip| !self.permits(*ip)) {
            Some(ip) => Err(format!(
                "the subscriber's host {} is an internal address ({ip}), which this \
                 service does not notify",
                url.host_str().unwrap_or_default()
            )),
            None => Ok(()),
        }
    }

    /// The resolver of the webhook client: it answers only permitted addresses.
    pub fn resolver(&self) -> Arc<GuardedResolver> {
        Arc::new(GuardedResolver {
            policy: self.clone(),
        })
    }
}

/// The address of a URL's host when it is one (`[...]` around IPv6 ones), not a name.
pub fn address_of(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Resolves names with the system resolver and drops the addresses the policy
/// does not permit; a name left with none fails to resolve (the delivery fails).
pub struct GuardedResolver {
    policy: NetworkPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = lookup_host((host.as_str(), 0))
                .await?
                .filter(|addr| policy.permits(addr.ip()))
                .collect();
            if found.is_empty() {
                return Err(Box::new(RefusedAddress(host)) as _);
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// The resolver's refusal: the name resolves to internal addresses only.
#[derive(Debug, thiserror::Error)]
#[error("{0} resolves to no address this service may notify")]
pub struct RefusedAddress(String);

/// Whether `err` (a failed webhook request) is the resolver's refusal: another
/// attempt would be refused the same way.
pub fn is_refused(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if err.is::<RefusedAddress>() {
            return true;
        }
        cause = err.source();
    }
    false
}

/// Whether `ip` is in a range that is not the public internet.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_internal_v4(ip),
        IpAddr::V6(ip) => is_internal_v6(ip),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || a >= 240 // reserved
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_internal_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible,
/// NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let last = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified() {
        return Some(last);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(last);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_ranges_are_refused_and_public_ones_permitted() {
        let policy = NetworkPolicy::default();
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "ff02::1",
        ] {
            assert!(!policy.permits(ip(internal)), "{internal}");
        }
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "100.128.0.1"] {
            assert!(policy.permits(ip(public)), "{public}");
        }
    }

    #[test]
    fn allowed_networks_open_their_ranges_only() {
        let policy =
            NetworkPolicy::new(&["127.0.0.0/8".to_string(), "10.1.0.5".to_string()]).unwrap();
        assert!(policy.permits(ip("127.0.0.1")));
        assert!(policy.permits(ip("10.1.0.5")));
        assert!(!policy.permits(ip("10.1.0.6")));
        assert!(!policy.permits(ip("169.254.169.254")));
        assert!(NetworkPolicy::new(&["not-a-network".to_string()]).is_err());
    }

    #[tokio::test]
    async fn urls_are_checked_by_their_address_or_every_address_of_their_name() {
        let policy = NetworkPolicy::default();
        let url = |text: &str| reqwest::Url::parse(text).unwrap();
        let refused = policy
            .check_url(&url("http://169.254.169.254/latest/meta-data"))
            .await
            .unwrap_err();
        assert!(refused.contains("internal address"), "{refused}");
        assert!(policy.check_url(&url("http://[::1]:8080/")).await.is_err());
        assert!(policy
            .check_url(&url("http://localhost:8080/"))
            .await
            .is_err());
        assert!(policy.check_url(&url("http://8.8.8.8/hook")).await.is_ok());
        let open = NetworkPolicy::new(&["127.0.0.0/8".to_string(), "::1".to_string()]).unwrap();
        assert!(open.check_url(&url("http://localhost:8080/")).await.is_ok());
    }
}
