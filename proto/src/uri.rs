//! Store and catalog URIs: which store or catalog backend each names (the one place
//! their schemes are decided, for every role and for `zaqar`'s settings), as they may be
//! shown (without their password); and the subscriber URI of WebSocket push
//! subscriptions.

use crate::redis_uri::{is_redis, RedisUri};
use crate::ZaqarError;

/// The message store a pool URI names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// `redis://`, `rediss://`, `redis+sentinel://`, `redis+cluster://`, `redis+unix://`
    /// (checked further by [`RedisUri`]).
    Redis,
    /// `sqlite://path/to/messages.db`.
    Sqlite,
    /// `mongodb://` or `mongodb+srv://` (a build with the `mongodb` feature).
    Mongodb,
}

impl StoreKind {
    /// The store `uri` names; 400 with the schemes known when it names none, or a
    /// Redis URI that does not parse.
    pub fn of(uri: &str) -> Result<StoreKind, ZaqarError> {
        let kind = if is_redis(uri) {
            RedisUri::parse(uri).map_err(|err| {
                ZaqarError::bad_request(format!("pool URI {:?}: {err}", redact(uri)))
            })?;
            StoreKind::Redis
        } else if has_rest(uri, &["sqlite://"]) {
            StoreKind::Sqlite
        } else if has_rest(uri, &["mongodb://", "mongodb+srv://"]) {
            StoreKind::Mongodb
        } else {
            return Err(ZaqarError::bad_request(format!(
                "unsupported pool URI {:?}: expected redis://, rediss://, redis+sentinel://, \
                 redis+cluster://, redis+unix://, sqlite:// or mongodb://",
                redact(uri)
            )));
        };
        Ok(kind)
    }

    /// Its name in metrics and logs: `redis`, `sqlite`, `mongodb`.
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Redis => "redis",
            StoreKind::Sqlite => "sqlite",
            StoreKind::Mongodb => "mongodb",
        }
    }
}

/// The catalog backend a catalog URI names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogKind {
    /// `sqlite://path/to/catalog.db` (also `sqlite:path`).
    Sqlite,
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `etcd://host:port[,host:port...]/prefix` (a build with the `etcd` feature).
    Etcd,
    /// `mongodb://` or `mongodb+srv://` (a build with the `mongodb` feature).
    Mongodb,
}

impl CatalogKind {
    /// The backend `uri` names; 400 with the schemes known when it names none.
    pub fn of(uri: &str) -> Result<CatalogKind, ZaqarError> {
        if has_rest(uri, &["sqlite:"]) {
            Ok(CatalogKind::Sqlite)
        } else if has_rest(uri, &["postgres://", "postgresql://"]) {
            Ok(CatalogKind::Postgres)
        } else if has_rest(uri, &["etcd://"]) {
            Ok(CatalogKind::Etcd)
        } else if has_rest(uri, &["mongodb://", "mongodb+srv://"]) {
            Ok(CatalogKind::Mongodb)
        } else {
            Err(ZaqarError::bad_request(format!(
                "unsupported catalog URI {:?}: expected sqlite://, postgres://, etcd:// or \
                 mongodb://",
                redact(uri)
            )))
        }
    }

    /// Its name in cluster status and logs: `sqlite`, `postgres`, `etcd`, `mongodb`.
    pub fn name(self) -> &'static str {
        match self {
            CatalogKind::Sqlite => "sqlite",
            CatalogKind::Postgres => "postgres",
            CatalogKind::Etcd => "etcd",
            CatalogKind::Mongodb => "mongodb",
        }
    }
}

/// Whether `uri` starts with one of `schemes` and has something after it, without
/// white space.
fn has_rest(uri: &str, schemes: &[&str]) -> bool {
    !uri.contains(char::is_whitespace)
        && schemes.iter().any(|scheme| {
            uri.strip_prefix(scheme)
                .is_some_and(|rest| !rest.is_empty())
        })
}

/// `uri` with the password of its user info (`scheme://user:PASSWORD@host...`)
/// replaced by `***`, for answers, listings and logs; other URIs as they are.
pub fn redact(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    // The user info ends at the last '@' before the path (a password may hold '@').
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return uri.to_string();
    };
    let (credentials, host) = (&rest[..at], &rest[at + 1..]);
    match credentials.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}"),
        None => uri.to_string(),
    }
}

/// The scheme prefix of a WebSocket push subscription's subscriber as stored
/// (`zaqar-push+http://HOST:PORT/CONNECTION`): the api-node's own notification
/// listener. Tenants cannot give it (the api-node takes only Zaqar's subscriber
/// schemes from them), so the notifier delivers to it whatever its address.
pub const PUSH_SCHEME_PREFIX: &str = "zaqar-push+";

/// The stored subscriber of a push subscription to `url`.
pub fn push_subscriber(url: &str) -> String {
    format!("{PUSH_SCHEME_PREFIX}{url}")
}

/// The URL of a push subscription's `subscriber`; `None` for any other subscriber.
pub fn push_url(subscriber: &str) -> Option<&str> {
    subscriber.strip_prefix(PUSH_SCHEME_PREFIX)
}

/// A subscriber as clients see it: a push subscription's URL without the prefix.
pub fn shown_subscriber(subscriber: &str) -> &str {
    push_url(subscriber).unwrap_or(subscriber)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scheme_names_one_store_or_catalog() {
        let store = |uri| StoreKind::of(uri).map_err(|err| err.description);
        assert_eq!(store("redis://127.0.0.1:6379/0"), Ok(StoreKind::Redis));
        assert_eq!(
            store("redis+sentinel://s1,s2?master=m"),
            Ok(StoreKind::Redis)
        );
        assert_eq!(store("sqlite:///var/lib/zaqar/m.db"), Ok(StoreKind::Sqlite));
        assert_eq!(
            store("mongodb://h/zaqar?replicaSet=rs"),
            Ok(StoreKind::Mongodb)
        );
        assert_eq!(
            store("mongodb+srv://cluster.example/zaqar"),
            Ok(StoreKind::Mongodb)
        );
        for bad in [
            "sqlite://",
            "postgres://db/x",
            "mongodb://h /x",
            "ftp://x",
            "",
        ] {
            let err = store(bad).unwrap_err();
            assert!(err.contains("unsupported pool URI"), "{bad}: {err}");
        }
        assert!(store("redis://:pw@h:notaport/0")
            .unwrap_err()
            .contains("***"));

        let catalog = |uri| CatalogKind::of(uri).map(CatalogKind::name).ok();
        assert_eq!(catalog("sqlite://c.db"), Some("sqlite"));
        assert_eq!(catalog("sqlite:c.db"), Some("sqlite"));
        assert_eq!(catalog("postgresql://u@db/z"), Some("postgres"));
        assert_eq!(catalog("etcd://127.0.0.1:2379/zaqar"), Some("etcd"));
        assert_eq!(catalog("mongodb://h/zaqar"), Some("mongodb"));
        assert_eq!(catalog("redis://h/0"), None);
        let err = CatalogKind::of("zk://u:secret@h/x")
            .unwrap_err()
            .description;
        assert!(err.contains("zk://u:***@h/x"), "{err}");
    }

    #[test]
    fn push_subscribers_carry_a_prefix_that_clients_do_not_see() {
        let stored = push_subscriber("http://10.0.0.5:9001/abc");
        assert_eq!(stored, "zaqar-push+http://10.0.0.5:9001/abc");
        assert_eq!(push_url(&stored), Some("http://10.0.0.5:9001/abc"));
        assert_eq!(shown_subscriber(&stored), "http://10.0.0.5:9001/abc");
        assert_eq!(push_url("http://hook/"), None);
        assert_eq!(shown_subscriber("http://hook/"), "http://hook/");
    }

    #[test]
    fn passwords_are_hidden_and_the_rest_is_kept() {
        let cases = [
            (
                "postgres://zaqar:s3cret@db:5432/zaqar",
                "postgres://zaqar:***@db:5432/zaqar",
            ),
            (
                "redis://:p%40ss@10.0.0.1:6379/0",
                "redis://:***@10.0.0.1:6379/0",
            ),
            (
                "mongodb://u:p@ss@h1,h2/zaqar?replicaSet=rs",
                "mongodb://u:***@h1,h2/zaqar?replicaSet=rs",
            ),
            ("postgres://zaqar@db/zaqar", "postgres://zaqar@db/zaqar"),
            ("sqlite://data/catalog.db", "sqlite://data/catalog.db"),
            ("redis://h:6379/0?x=a@b", "redis://h:6379/0?x=a@b"),
            ("not a uri", "not a uri"),
        ];
        for (uri, shown) in cases {
            assert_eq!(redact(uri), shown, "{uri}");
        }
    }
}
