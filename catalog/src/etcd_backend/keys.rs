//! The etcd catalog's URI (`etcd://host:port[,host:port...]/prefix`) and its key layout.
//!
//! Every key lives under the prefix: `<prefix>/pools/<pool>`, `<prefix>/flavors/<flavor>`,
//! `<prefix>/placements/<escaped project>/<queue>` and
//! `<prefix>/project-limits/<escaped project>`. The project id is percent-encoded
//! so that it holds no `/`: one project's key range is never a prefix of another's,
//! and a project's placements sort by queue name (byte order).

use zaqar_proto::ZaqarError;

/// The scheme of an etcd catalog URI.
pub const SCHEME: &str = "etcd://";
/// The prefix of a URI without a path.
pub const DEFAULT_PREFIX: &str = "/zaqar";

/// A parsed `etcd://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdUri {
    /// `http://host:port` of each etcd member to talk to.
    pub endpoints: Vec<String>,
    /// The key prefix, `/` followed by the URI path without trailing slashes.
    pub prefix: String,
}

/// Parses `etcd://host:port[,host:port...][/prefix]`.
pub fn parse_uri(uri: &str) -> Result<EtcdUri, ZaqarError> {
    let invalid = |why: &str| {
        ZaqarError::bad_request(format!(
            "invalid etcd catalog URI {uri:?}: {why}; expected etcd://host:port[,host:port...]/prefix"
        ))
    };
    let rest = uri
        .strip_prefix(SCHEME)
        .ok_or_else(|| invalid("not an etcd:// URI"))?;
    let (hosts, path) = rest.split_once('/').unwrap_or((rest, ""));
    if hosts.contains('@') {
        return Err(invalid("credentials are not supported"));
    }
    let mut endpoints = Vec::new();
    for host_port in hosts.split(',') {
        let port_ok = host_port.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok || host_port.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(invalid(&format!("{host_port:?} is not host:port")));
        }
        endpoints.push(format!("http://{host_port}"));
    }
    if path.contains(|c: char| c.is_whitespace() || c.is_control() || c == '?' || c == '#') {
        return Err(invalid("the prefix holds whitespace, '?' or '#'"));
    }
    let path = path.trim_end_matches('/');
    let prefix = if path.is_empty() {
        DEFAULT_PREFIX.to_string()
    } else {
        format!("/{path}")
    };
    Ok(EtcdUri { endpoints, prefix })
}

/// Where each record lives under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// Every key of the catalog starts with this.
    pub fn root(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// The prefix of every pool key.
    pub fn pools(&self) -> String {
        format!("{}/pools/", self.prefix)
    }

    pub fn pool(&self, name: &str) -> String {
        format!("{}{name}", self.pools())
    }

    /// The prefix of every flavor key.
    pub fn flavors(&self) -> String {
        format!("{}/flavors/", self.prefix)
    }

    pub fn flavor(&self, name: &str) -> String {
        format!("{}{name}", self.flavors())
    }

    /// The prefix of every project limits key.
    pub fn project_limits_all(&self) -> String {
        format!("{}/project-limits/", self.prefix)
    }

    pub fn project_limits(&self, project: &str) -> String {
        format!("{}{}", self.project_limits_all(), escape_project(project))
    }

    /// The prefix of every placement key.
    pub fn placements(&self) -> String {
        format!("{}/placements/", self.prefix)
    }

    /// The prefix of every placement key of `project`.
    pub fn project(&self, project: &str) -> String {
        format!("{}{}/", self.placements(), escape_project(project))
    }

    pub fn placement(&self, project: &str, queue: &str) -> String {
        format!("{}{queue}", self.project(project))
    }
}

/// Percent-encodes every byte outside `[A-Za-z0-9._-]`, so the result holds no `/`
/// and two different ids never encode alike.
pub fn escape_project(project: &str) -> String {
    let mut escaped = String::with_capacity(project.len());
    for byte in project.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-') {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("%{byte:02X}"));
        }
    }
    escaped
}

/// The project id [`escape_project`] encoded; `None` for text it would not produce.
pub fn unescape_project(escaped: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(escaped.len());
    let mut rest = escaped.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// The first key after every key that starts with `prefix` (etcd's range end of a
/// prefix); `prefix` must end with a byte below 0xff, as every prefix here ends in `/`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    let last = end.last_mut().expect("a non-empty prefix");
    debug_assert!(*last < 0xff);
    *last += 1;
    end
}

/// The first key after `key` itself: where a listing after a marker starts.
pub fn key_after(key: &str) -> Vec<u8> {
    let mut after = key.as_bytes().to_vec();
    after.push(0);
    after
}

#[cfg(test)]
mod tests {
    use super::*;
    use zaqar_proto::ErrorCode;

    #[test]
    fn uris_name_endpoints_and_a_prefix() {
        assert_eq!(
            parse_uri("etcd://127.0.0.1:2379").unwrap(),
            EtcdUri {
                endpoints: vec!["http://127.0.0.1:2379".into()],
                prefix: "/zaqar".into()
            }
        );
        assert_eq!(
            parse_uri("etcd://a:1,[::1]:2/cat/alog//").unwrap(),
            EtcdUri {
                endpoints: vec!["http://a:1".into(), "http://[::1]:2".into()],
                prefix: "/cat/alog".into()
            }
        );
        assert_eq!(parse_uri("etcd://a:1/").unwrap().prefix, "/zaqar");
    }

    #[test]
    fn malformed_uris_are_bad_requests() {
        for uri in [
            "http://a:1/x",
            "etcd://",
            "etcd://a/x",
            "etcd://a:0",
            "etcd://a:70000",
            "etcd://:1",
            "etcd://a:1,",
            "etcd://u:p@a:1/x",
            "etcd://a:1/x y",
            "etcd://a:1/x?timeout=1",
        ] {
            let err = parse_uri(uri).unwrap_err();
            assert_eq!(err.code, ErrorCode::BadRequest, "{uri}");
        }
    }

    #[test]
    fn project_ranges_never_nest() {
        let keys = Keys::new("/z");
        let ids = ["p", "p/q", "p%2Fq", "p%2fq", "p q", "é", "p-1.x_y"];
        for a in ids {
            assert!(!escape_project(a).contains('/'), "{a}");
            for b in ids {
                if a != b {
                    assert!(!keys.project(a).starts_with(&keys.project(b)), "{a} {b}");
                }
            }
        }
        for id in ids {
            assert_eq!(unescape_project(&escape_project(id)).as_deref(), Some(id));
        }
        assert_eq!(unescape_project("%2"), None);
        assert_eq!(keys.placement("p/q", "q1"), "/z/placements/p%2Fq/q1");
        assert_eq!(keys.pool("a"), "/z/pools/a");
    }

    #[test]
    fn ranges_end_after_the_prefix() {
        assert_eq!(prefix_end("/z/pools/"), b"/z/pools0");
        assert_eq!(key_after("/z/a"), b"/z/a\0");
    }
}
