//! A pool on `rediss://`: a Redis that serves TLS only, with a certificate of a CA the
//! test makes (rcgen). The store connects when the URI names that CA (`ssl_ca_certs`),
//! and refuses a server it cannot verify. A Sentinel group over TLS (`rediss://` with
//! `master=`: sentinels and master both on TLS) is followed through a failover.

use std::path::Path;

use zaqar_proto::ErrorCode;
use zaqar_tests::pki::make_pki;

use super::{everything, free_port, message, queue, TestRedis};
use crate::redis_store::RedisStore;
use crate::store::prelude::*;

#[tokio::test]
async fn a_tls_redis_is_used_through_its_ca_and_refused_without_it() {
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path()).unwrap();
    let file = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let port = free_port();
    let tls_port = port.to_string();
    let (cert, key, ca) = (file("server.pem"), file("server.key"), file("ca.pem"));
    // TLS only: the plain port is off.
    let extra = [
        "--port",
        "0",
        "--tls-port",
        &tls_port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ];
    let Some(_redis) = TestRedis::start_with(port, &extra) else {
        return;
    };

    let url = format!("rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}");
    let store = RedisStore::connect(&url)
        .await
        .expect("a verified TLS server");
    let q = queue("over-tls");
    let ids = store.post_messages(&q, "c", &[message(60)]).await.unwrap();
    let (listed, _) = store.list_messages(&q, &everything()).await.unwrap();
    assert_eq!(
        listed.iter().map(|m| &m.id).collect::<Vec<_>>(),
        vec![&ids[0]]
    );

    // Without the CA, the server's certificate is not trusted: no connection.
    let unverified = format!("rediss://127.0.0.1:{port}/0");
    let err = RedisStore::connect(&unverified)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
    // Nor does plain TCP reach it.
    let plain = format!("redis://127.0.0.1:{port}/0");
    let err = RedisStore::connect(&plain).await.err().expect("refused");
    assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
    // A CA file that is not there is a bad URI.
    let missing = format!("rediss://127.0.0.1:{port}/0?ssl_ca_certs=/no/such/ca.pem");
    let err = RedisStore::connect(&missing).await.err().expect("refused");
    assert_eq!(err.code, ErrorCode::BadRequest, "{err}");
}

/// The TLS settings of a Redis process (server or sentinel) with the test's certificates.
fn tls_args(dir: &Path, tls_port: u16) -> Vec<String> {
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    [
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &file("server.pem"),
        "--tls-key-file",
        &file("server.key"),
        "--tls-ca-cert-file",
        &file("ca.pem"),
        "--tls-auth-clients",
        "no",
        "--tls-replication",
        "yes",
    ]
    .map(String::from)
    .to_vec()
}

/// What `redis-cli -p port args...` prints over the plain port (empty when it fails).
fn cli(port: u16, args: &[&str]) -> String {
    std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).to_string())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_group_over_tls_is_followed_through_a_failover() {
    let _one_at_a_time = super::FAILOVERS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    make_pki(dir.path()).unwrap();
    // Every process also keeps a plain port, for the test's own questions.
    let (master_tls, replica_tls, sentinel_tls) = (free_port(), free_port(), free_port());
    let mut master_args = tls_args(dir.path(), master_tls);
    master_args.extend(["--repl-diskless-sync-delay".into(), "0".into()]);
    let master_args: Vec<&str> = master_args.iter().map(String::as_str).collect();
    let Some(master) = TestRedis::start_with(free_port(), &master_args) else {
        return;
    };
    let mut replica_args = tls_args(dir.path(), replica_tls);
    replica_args.extend(["--replicaof", "127.0.0.1", &master_tls.to_string()].map(String::from));
    let replica_args: Vec<&str> = replica_args.iter().map(String::as_str).collect();
    let replica = TestRedis::start_with(free_port(), &replica_args).expect("the replica");
    let sentinel_port = free_port();
    let config = dir.path().join("sentinel.conf");
    let tls: Vec<String> = tls_args(dir.path(), sentinel_tls)
        .chunks(2)
        .map(|pair| format!("{} {}", pair[0].trim_start_matches("--"), pair[1]))
        .collect();
    std::fs::write(
        &config,
        format!(
            "port {sentinel_port}\nbind 127.0.0.1\ndir {}\n{}\n\
             sentinel monitor tls-pool 127.0.0.1 {master_tls} 1\n\
             sentinel down-after-milliseconds tls-pool 1000\n\
             sentinel failover-timeout tls-pool 2000\n",
            dir.path().display(),
            tls.join("\n")
        ),
    )
    .unwrap();
    let mut sentinel = std::process::Command::new("redis-server")
        .arg(&config)
        .arg("--sentinel")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server --sentinel");
    let ready = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let knows = cli(sentinel_port, &["SENTINEL", "replicas", "tls-pool"]);
        let synced = cli(replica.port, &["INFO", "replication"]);
        if knows.contains(&replica_tls.to_string()) && synced.contains("master_link_status:up") {
            break;
        }
        assert!(
            std::time::Instant::now() < ready,
            "the TLS Sentinel group did not form"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let ca = dir.path().join("ca.pem").to_string_lossy().into_owned();
    let url = format!(
        "rediss://127.0.0.1:{sentinel_tls}?master=tls-pool&ssl_ca_certs={ca}&min_replicas_ack=1"
    );
    let store = RedisStore::connect(&url)
        .await
        .expect("the master through TLS sentinels");
    let q = queue("tls-sentinel");
    let first = store.post_messages(&q, "c", &[message(300)]).await.unwrap();

    let failover = cli(sentinel_port, &["SENTINEL", "failover", "tls-pool"]);
    assert!(failover.contains("OK"), "{failover}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let second = loop {
        let named = cli(
            sentinel_port,
            &["SENTINEL", "get-master-addr-by-name", "tls-pool"],
        );
        if named.contains(&replica_tls.to_string()) {
            if let Ok(ids) = store.post_messages(&q, "c", &[message(300)]).await {
                break ids;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no post acknowledged after the failover"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    // Posts that failed while no replica acknowledged them may be kept too (see
    // `min_replicas_ack` in docs/configuration.md): the acknowledged ones must be there.
    let acked = [first[0].clone(), second[0].clone()];
    let kept = store.get_messages(&q, &acked).await.unwrap();
    assert_eq!(kept.len(), 2, "an acknowledged post was lost: {kept:?}");
    let role = cli(replica.port, &["ROLE"]);
    assert!(
        role.starts_with("master"),
        "the replica was not promoted: {role}"
    );
    let _ = sentinel.kill();
    let _ = sentinel.wait();
    drop(master);
}
