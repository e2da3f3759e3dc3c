//! `zaqar standalone` on each message store, for the tests of a feature that every
//! store must give: the embedded one, a Redis of the test's own, and MongoDB (a
//! database of the test's own at `ZAQAR_TEST_MONGO_URL`; left out when that is unset,
//! unless `CI` is set).

use anyhow::Result;

use crate::{Redis, Standalone};

/// A standalone server on one store, with what must outlive it.
pub struct OnStore {
    /// `embedded`, `redis` or `mongodb`.
    pub store: &'static str,
    pub server: Standalone,
    _redis: Option<Redis>,
    _dir: tempfile::TempDir,
}

/// The test server's MongoDB URL with a database of its own (named from `prefix`).
pub fn mongo_database_uri(prefix: &str) -> Option<String> {
    let url = crate::test_server_url("ZAQAR_TEST_MONGO_URL")?;
    let database = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    Some(url.replacen("/?", &format!("/{database}?"), 1))
}

/// A standalone server on each store, started with `extra` arguments.
pub fn standalone_on_each_store(extra: &[&str]) -> Result<Vec<OnStore>> {
    standalone_on_each_store_with(|_| extra.iter().map(|arg| arg.to_string()).collect())
}

/// A standalone server on each store, started with the configuration file `toml`
/// (kept in `dir`).
pub fn standalone_on_each_store_configured(
    dir: &std::path::Path,
    toml: &str,
) -> Result<Vec<OnStore>> {
    let config = dir.join("zaqar.toml");
    std::fs::write(&config, toml)?;
    let config = config.to_string_lossy().into_owned();
    standalone_on_each_store(&["--config", &config])
}

/// A standalone server on each store, started with the arguments `extra` gives for
/// that store (`embedded`, `redis`, `mongodb`).
pub fn standalone_on_each_store_with(
    extra: impl Fn(&'static str) -> Vec<String>,
) -> Result<Vec<OnStore>> {
    let args = |store| extra(store);
    let mut servers = Vec::new();
    let dir = tempfile::tempdir()?;
    let embedded = args("embedded");
    let extra: Vec<&str> = embedded.iter().map(String::as_str).collect();
    let server = Standalone::start_with(dir.path(), &extra)?;
    servers.push(OnStore {
        store: "embedded",
        server,
        _redis: None,
        _dir: dir,
    });
    let redis = Redis::start()?;
    let dir = tempfile::tempdir()?;
    let uri = redis.uri(0);
    let on_redis = args("redis");
    let extra: Vec<&str> = on_redis.iter().map(String::as_str).collect();
    let server = Standalone::start_with(dir.path(), &[&["--pool-uri", &uri], &extra[..]].concat())?;
    servers.push(OnStore {
        store: "redis",
        server,
        _redis: Some(redis),
        _dir: dir,
    });
    if let Some(uri) = mongo_database_uri("zaqar_standalone") {
        let dir = tempfile::tempdir()?;
        let on_mongodb = args("mongodb");
        let extra: Vec<&str> = on_mongodb.iter().map(String::as_str).collect();
        let server = Standalone::start_with(
            dir.path(),
            &[&["--pool-uri", uri.as_str()], &extra[..]].concat(),
        )?;
        servers.push(OnStore {
            store: "mongodb",
            server,
            _redis: None,
            _dir: dir,
        });
    }
    Ok(servers)
}
