//! Redis pool URIs, parsed once into a [`RedisUri`], in every form Zaqar 23
//! accepts (`zaqar.storage.redis.driver.ConnectionURI`), so that an operator's
//! existing pool definitions mean the same here:
//!
//! - `redis://[[user]:password@]host[:port][/db][?dbid=N&socket_timeout=S]`: one
//!   server (port 6379); `dbid` wins over the `/db` path of the redis crate's form;
//! - `redis:/path/to/redis.sock[?dbid=N]` (or `redis+unix://` + path): a Unix socket;
//! - `redis://host1:26379,host2[:port]?master=NAME[&sentinel_username=U&sentinel_password=P]`
//!   (or `redis+sentinel://`): a Sentinel group (port 26379) watching master `NAME`
//!   (`rediss://`: the sentinels and the master over TLS);
//! - `rediss://...[?ssl_ca_certs=PATH]`: one server over TLS, its certificate checked
//!   against the system's roots or the PEM file `ssl_ca_certs` (redis-py's name);
//! - `redis+cluster://[[user]:password@]host1[:port],host2[:port],...`: a Redis
//!   Cluster (not Zaqar's form), reached through any of the nodes named; it has
//!   one database only, so `dbid` must be 0.
//!
//! `socket_timeout` (seconds) bounds every call to the store. `min_replicas_ack=N`
//! (not Zaqar's; 0 by default) makes every call wait until N replicas have what it
//! wrote (Redis `WAIT`), so that an acknowledged write survives a failover.

use std::time::Duration;

/// Where a Redis pool's server is, and how to use it.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisUri {
    pub target: RedisTarget,
    /// The database number (`dbid`, default 0).
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The longest wait for one call (`socket_timeout`); the store's default when unset.
    pub socket_timeout: Option<Duration>,
    /// How many replicas must have a write before it is acknowledged (`min_replicas_ack`).
    pub min_replicas_ack: u32,
    /// A PEM file of the certificates that sign a TLS server's (`ssl_ca_certs`); the
    /// system's roots when unset.
    pub ssl_ca_certs: Option<String>,
}

/// How the server is reached.
#[derive(Debug, Clone, PartialEq)]
pub enum RedisTarget {
    Tcp {
        host: String,
        port: u16,
        tls: bool,
    },
    Unix {
        path: String,
    },
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master: String,
        username: Option<String>,
        password: Option<String>,
        /// `rediss://`: the sentinels and the master are reached over TLS.
        tls: bool,
    },
    /// A Redis Cluster, found through any of `nodes`.
    Cluster {
        nodes: Vec<(String, u16)>,
    },
}

const REDIS_PORT: u16 = 6379;

/// Whether `uri` is a Redis pool URI (of any form, well formed or not).
pub fn is_redis(uri: &str) -> bool {
    uri.split_once(':').is_some_and(|(scheme, _)| {
        [
            "redis",
            "rediss",
            "redis+sentinel",
            "redis+cluster",
            "redis+unix",
        ]
        .contains(&scheme)
    })
}
const SENTINEL_PORT: u16 = 26379;

impl RedisUri {
    /// Parses `uri`; the error says what is wrong (never with the password).
    pub fn parse(uri: &str) -> Result<RedisUri, String> {
        let (scheme, rest) = uri
            .split_once(':')
            .ok_or("a Redis URI starts with redis:, rediss:, redis+sentinel: or redis+cluster:")?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let params = query_params(query)?;
        let param = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        };
        let (authority, path) = match rest.strip_prefix("//") {
            Some(rest) => rest.split_at(rest.find('/').unwrap_or(rest.len())),
            None => ("", rest),
        };
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, pass) = info.split_once(':').unwrap_or((info, ""));
                let nonempty = |text: &str| -> Result<Option<String>, String> {
                    let text = percent_decode(text)?;
                    Ok((!text.is_empty()).then_some(text))
                };
                (nonempty(user)?, nonempty(pass)?)
            }
        };
        if username.is_some() && password.is_none() {
            return Err("a Redis URI with a user name needs a password".to_string());
        }
        let master = param("master");
        let target = match scheme {
            "redis+sentinel" | "redis" | "rediss"
                if master.is_some() || scheme == "redis+sentinel" =>
            {
                let master = master.filter(|m| !m.is_empty()).ok_or(
                    "a Sentinel Redis URI needs master=NAME, the master's name in the sentinels' configuration",
                )?;
                let sentinels = hosts
                    .split(',')
                    .map(|host| host_port(host, SENTINEL_PORT))
                    .collect::<Result<Vec<_>, _>>()?;
                RedisTarget::Sentinel {
                    sentinels,
                    master,
                    username: param("sentinel_username"),
                    password: param("sentinel_password"),
                    tls: scheme == "rediss",
                }
            }
            "redis+cluster" => {
                if master.is_some() {
                    return Err("a Redis Cluster URI takes no master=NAME".to_string());
                }
                if hosts.is_empty() {
                    return Err("a Redis Cluster URI names at least one node".to_string());
                }
                let nodes = hosts
                    .split(',')
                    .map(|host| host_port(host, REDIS_PORT))
                    .collect::<Result<Vec<_>, _>>()?;
                RedisTarget::Cluster { nodes }
            }
            "redis" | "rediss" if !hosts.is_empty() => {
                if hosts.contains(',') {
                    return Err("the Redis URI names several hosts but no master=NAME: \
                                set master to the name of the Redis master the sentinels watch"
                        .to_string());
                }
                let (host, port) = host_port(hosts, REDIS_PORT)?;
                RedisTarget::Tcp {
                    host,
                    port,
                    tls: scheme == "rediss",
                }
            }
            "redis" | "redis+unix" | "unix" => {
                if path.is_empty() {
                    return Err("the Redis URI has neither a host nor a socket path".to_string());
                }
                RedisTarget::Unix {
                    path: percent_decode(path)?,
                }
            }
            other => {
                return Err(format!(
                "unsupported Redis URI scheme {other:?}: expected redis, rediss, redis+sentinel or redis+cluster"
            ))
            }
        };
        let path_db = match (&target, path.trim_start_matches('/')) {
            (RedisTarget::Tcp { .. } | RedisTarget::Cluster { .. }, db) if !db.is_empty() => {
                Some(db.to_string())
            }
            _ => None,
        };
        let db = match param("dbid").or(path_db) {
            None => 0,
            Some(db) => db
                .parse::<i64>()
                .ok()
                .filter(|db| *db >= 0)
                .ok_or_else(|| format!("the Redis database {db:?} is not a number >= 0"))?,
        };
        let socket_timeout = match param("socket_timeout") {
            None => None,
            Some(seconds) => Some(
                seconds
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                    .map(Duration::from_secs_f64)
                    .ok_or_else(|| {
                        format!(
                            "socket_timeout {seconds:?} is not a number of seconds in (0, 3600]"
                        )
                    })?,
            ),
        };
        if matches!(target, RedisTarget::Cluster { .. }) && db != 0 {
            return Err("a Redis Cluster has only database 0".to_string());
        }
        let min_replicas_ack = match param("min_replicas_ack") {
            None => 0,
            Some(count) => count
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= 16)
                .ok_or_else(|| {
                    format!("min_replicas_ack {count:?} is not a number of replicas in [0, 16]")
                })?,
        };
        let ssl_ca_certs = param("ssl_ca_certs").filter(|path| !path.is_empty());
        let tls = matches!(
            target,
            RedisTarget::Tcp { tls: true, .. } | RedisTarget::Sentinel { tls: true, .. }
        );
        if ssl_ca_certs.is_some() && !tls {
            return Err("ssl_ca_certs is for a rediss:// server or Sentinel group".to_string());
        }
        Ok(RedisUri {
            target,
            db,
            username,
            password,
            socket_timeout,
            min_replicas_ack,
            ssl_ca_certs,
        })
    }
}

/// `host[:port]`, `[v6]:port` or `[v6]`, with `default` as the port.
fn host_port(text: &str, default: u16) -> Result<(String, u16), String> {
    let bad = || format!("invalid Redis host {text:?}");
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, rest) = v6.split_once(']').ok_or_else(bad)?;
        (host, rest.strip_prefix(':'))
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = match port {
        None => default,
        Some(port) => port.parse().map_err(|_| bad())?,
    };
    Ok((host.to_string(), port))
}

/// The `key=value` pairs of a query string, percent-decoded (`+` is a space).
fn query_params(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((
                percent_decode(&key.replace('+', " "))?,
                percent_decode(&value.replace('+', " "))?,
            ))
        })
        .collect()
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or("a bad %-escape in the Redis URI")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the Redis URI is not UTF-8 once decoded".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> RedisTarget {
        RedisTarget::Tcp {
            host: host.into(),
            port,
            tls: false,
        }
    }

    #[test]
    fn zaqar_forms_parse_as_zaqar_reads_them() {
        let uri = RedisUri::parse("redis://127.0.0.1:6380?dbid=3&socket_timeout=0.5").unwrap();
        assert_eq!(uri.target, tcp("127.0.0.1", 6380));
        assert_eq!(uri.db, 3);
        assert_eq!(uri.socket_timeout, Some(Duration::from_millis(500)));
        let uri = RedisUri::parse("redis://:s%40cret@redis.internal").unwrap();
        assert_eq!(uri.target, tcp("redis.internal", 6379));
        assert_eq!(uri.password.as_deref(), Some("s@cret"));
        assert_eq!(uri.username, None);
        let uri = RedisUri::parse("redis:/var/run/redis/redis.sock?dbid=2").unwrap();
        assert_eq!(
            uri.target,
            RedisTarget::Unix {
                path: "/var/run/redis/redis.sock".into()
            }
        );
        assert_eq!(uri.db, 2);
        let uri = RedisUri::parse(
            "redis://s1:26380,s2,[::1]:26381?master=dumbo&sentinel_password=p&dbid=1",
        )
        .unwrap();
        assert_eq!(
            uri.target,
            RedisTarget::Sentinel {
                sentinels: vec![
                    ("s1".into(), 26380),
                    ("s2".into(), 26379),
                    ("::1".into(), 26381)
                ],
                master: "dumbo".into(),
                username: None,
                password: Some("p".into()),
                tls: false,
            }
        );
        assert_eq!(uri.db, 1);
    }

    #[test]
    fn the_redis_crate_form_and_tls_keep_working() {
        let uri = RedisUri::parse("redis://user:pw@10.0.0.5:6379/4").unwrap();
        assert_eq!(uri.target, tcp("10.0.0.5", 6379));
        assert_eq!(
            (uri.db, uri.username.as_deref(), uri.password.as_deref()),
            (4, Some("user"), Some("pw"))
        );
        let with_ca =
            RedisUri::parse("rediss://h:6380/0?ssl_ca_certs=/etc/ca%20dir/ca.pem").unwrap();
        assert_eq!(with_ca.ssl_ca_certs.as_deref(), Some("/etc/ca dir/ca.pem"));
        let tls = RedisUri::parse("rediss://cache.example.com:6380/0").unwrap();
        assert!(matches!(
            tls.target,
            RedisTarget::Tcp {
                tls: true,
                port: 6380,
                ..
            }
        ));
        let explicit = RedisUri::parse("redis+sentinel://s1,s2?master=m").unwrap();
        assert!(matches!(explicit.target, RedisTarget::Sentinel { .. }));
        assert_eq!(explicit.min_replicas_ack, 0);
        let secure = RedisUri::parse("rediss://s1,s2?master=m&ssl_ca_certs=/ca.pem").unwrap();
        assert!(matches!(
            secure.target,
            RedisTarget::Sentinel { tls: true, .. }
        ));
        let acked = RedisUri::parse("redis://s1,s2?master=m&min_replicas_ack=1").unwrap();
        assert_eq!(acked.min_replicas_ack, 1);
    }

    #[test]
    fn a_cluster_is_reached_through_any_of_its_nodes() {
        let uri = RedisUri::parse("redis+cluster://:secret@n1:7001,n2,[::1]:7003").unwrap();
        assert_eq!(
            uri.target,
            RedisTarget::Cluster {
                nodes: vec![
                    ("n1".into(), 7001),
                    ("n2".into(), 6379),
                    ("::1".into(), 7003)
                ]
            }
        );
        assert_eq!((uri.db, uri.password.as_deref()), (0, Some("secret")));
        assert!(is_redis("redis+cluster://n1"));
    }

    #[test]
    fn mistakes_are_refused_with_what_is_wrong() {
        for (uri, says) in [
            ("redis://h1,h2", "master"),
            ("redis+sentinel://h1,h2", "master"),
            ("redis:", "neither a host nor a socket path"),
            ("redis://h:notaport", "invalid Redis host"),
            ("redis://h?dbid=-1", "database"),
            ("redis://h?socket_timeout=0", "socket_timeout"),
            ("redis://user@h", "needs a password"),
            ("memcached://h", "unsupported"),
            ("redis://h?dbid=%zz", "%-escape"),
            ("redis://h?min_replicas_ack=-1", "min_replicas_ack"),
            ("redis://h?min_replicas_ack=17", "min_replicas_ack"),
            ("redis+cluster://", "at least one node"),
            ("redis+cluster://h1,h2?master=m", "no master"),
            ("redis+cluster://h1/1", "only database 0"),
            ("redis+cluster://h1?dbid=2", "only database 0"),
            ("redis://h?ssl_ca_certs=/ca.pem", "for a rediss:// server"),
        ] {
            let err = RedisUri::parse(uri).unwrap_err();
            assert!(err.contains(says), "{uri}: {err}");
        }
    }
}
