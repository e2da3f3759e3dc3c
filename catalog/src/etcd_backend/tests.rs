//! Tests of what is particular to the etcd catalog; the shared behaviour is checked by
//! the conformance suite. Those that need etcd use `ZAQAR_TEST_ETCD_URL`.

use std::time::{Duration, Instant};

use rand::Rng;
use zaqar_proto::ErrorCode;

use super::*;
use crate::conformance::etcd_url;

/// A free loopback port nothing listens on.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pool(name: &str) -> PoolSpec {
    crate::conformance::pool(name, 1, "")
}

/// A catalog under a fresh prefix of the test etcd, reached through `hosts`
/// (the test etcd's own when `None`).
async fn open_test(hosts: Option<String>) -> Option<EtcdCatalog> {
    let url = etcd_url()?;
    let url = match hosts {
        Some(hosts) => format!("{}{hosts}", keys::SCHEME),
        None => url,
    };
    let prefix = format!("zaqar-test-{:016x}", rand::thread_rng().gen::<u64>());
    Some(EtcdCatalog::open(&format!("{url}/{prefix}")).await.unwrap())
}

#[tokio::test]
async fn an_unreachable_etcd_is_unavailable_quickly() {
    let started = Instant::now();
    let uri = format!("etcd://127.0.0.1:{}/zaqar", dead_port());
    let err = EtcdCatalog::open(&uri)
        .await
        .err()
        .expect("nothing listens there");
    assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
    assert!(started.elapsed() < REQUEST_TIMEOUT + Duration::from_secs(1));
}

#[tokio::test]
async fn etcd_uris_are_opened_by_scheme() {
    let err = crate::open_backend("etcd://no-port/zaqar")
        .await
        .err()
        .unwrap();
    assert_eq!(err.code, ErrorCode::BadRequest, "{err}");
    let uri = format!("etcd://127.0.0.1:{}", dead_port());
    let err = crate::open_backend(&uri).await.err().unwrap();
    assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
}

#[tokio::test]
async fn project_ids_that_look_like_paths_stay_isolated() {
    let Some(catalog) = open_test(None).await else {
        return;
    };
    catalog.add_pool(pool("a")).await.unwrap();
    let projects = ["p", "p/q", "p%2Fq", "p/", "p q"];
    for project in projects {
        catalog.place_on(project, "q", "a").await.unwrap();
        catalog
            .place_on(project, &project.len().to_string(), "a")
            .await
            .unwrap();
    }
    let params = ListQueues {
        limit: 10,
        ..Default::default()
    };
    for project in projects {
        let page = catalog.list_queues(project, &params).await.unwrap();
        let names: Vec<String> = page.queues.into_iter().map(|p| p.queue).collect();
        assert_eq!(
            names,
            [project.len().to_string(), "q".to_string()],
            "{project}"
        );
    }
    catalog.remove_queue("p", "q").await.unwrap();
    assert_eq!(catalog.lookup("p", "q").await.unwrap(), None);
    assert!(catalog.lookup("p/q", "q").await.unwrap().is_some());
    catalog.purge().await.unwrap();
}

#[tokio::test]
async fn a_dead_member_in_the_uri_does_not_stop_the_catalog() {
    let Some(url) = etcd_url() else { return };
    let live = url.trim_start_matches(keys::SCHEME).to_string();
    let hosts = format!("127.0.0.1:{},{live}", dead_port());
    let catalog = open_test(Some(hosts)).await.unwrap();
    for i in 0..10 {
        catalog.add_pool(pool(&format!("p{i}"))).await.unwrap();
    }
    assert_eq!(catalog.list_pools().await.unwrap().len(), 10);
    catalog.purge().await.unwrap();
}

#[tokio::test]
async fn a_value_we_did_not_write_is_an_internal_error() {
    let Some(catalog) = open_test(None).await else {
        return;
    };
    let mut kv = catalog.kv.kv_client();
    kv.put(catalog.keys.pool("a"), "not json", None)
        .await
        .unwrap();
    let err = catalog.get_pool("a").await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Internal, "{err}");
    catalog.purge().await.unwrap();
}

/// A private single-node etcd on free loopback ports, killed when dropped.
struct PrivateEtcd {
    process: tokio::process::Child,
    client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
}

impl PrivateEtcd {
    fn start() -> PrivateEtcd {
        let dir = tempfile::tempdir().unwrap();
        let client_port = dead_port();
        let peer_port = std::iter::repeat_with(dead_port)
            .find(|&port| port != client_port)
            .unwrap();
        let process = Self::spawn(dir.path(), client_port, peer_port);
        PrivateEtcd {
            process,
            client_port,
            peer_port,
            dir,
        }
    }

    fn spawn(dir: &std::path::Path, client_port: u16, peer_port: u16) -> tokio::process::Child {
        let client = format!("http://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        tokio::process::Command::new("etcd")
            .args(["--name", "solo", "--data-dir"])
            .arg(dir.join("data"))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("solo={peer}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("etcd is installed (scripts/setup-deps.sh)")
    }

    async fn kill(&mut self) {
        self.process.kill().await.unwrap();
    }

    fn restart(&mut self) {
        self.process = Self::spawn(self.dir.path(), self.client_port, self.peer_port);
    }

    /// Opens a catalog on this etcd, waiting for it to come up.
    async fn open(&self) -> EtcdCatalog {
        let uri = format!("etcd://127.0.0.1:{}/zaqar", self.client_port);
        let mut tries = 0;
        loop {
            match EtcdCatalog::open(&uri).await {
                Ok(catalog) => return catalog,
                Err(err) if tries < 3 => {
                    tries += 1;
                    eprintln!("etcd not up yet: {err}");
                }
                Err(err) => panic!("etcd did not come up: {err}"),
            }
        }
    }
}

#[tokio::test]
async fn a_restarted_etcd_keeps_the_catalog_and_is_unavailable_meanwhile() {
    if etcd_url().is_none() {
        return;
    }
    let mut etcd = PrivateEtcd::start();
    let catalog = etcd.open().await;
    catalog.add_pool(pool("a")).await.unwrap();
    let placed = catalog.place_queue("p", "q", "").await.unwrap();

    etcd.kill().await;
    let started = Instant::now();
    let err = catalog.lookup("p", "q").await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable, "{err}");
    assert!(started.elapsed() < REQUEST_TIMEOUT + Duration::from_secs(1));

    etcd.restart();
    let mut tries = 0;
    let found = loop {
        match catalog.lookup("p", "q").await {
            Ok(found) => break found,
            Err(_) if tries < 3 => tries += 1,
            Err(err) => panic!("the catalog did not reconnect: {err}"),
        }
    };
    assert_eq!(found, Some(placed));
    etcd.kill().await;
}

#[tokio::test]
async fn a_watcher_hears_of_writes_made_through_another_catalog_process() {
    let Some(writer) = open_test(None).await else {
        return;
    };
    let url = etcd_url().unwrap();
    let reader = EtcdCatalog::open(&format!(
        "{url}{}",
        writer.keys.root().trim_end_matches('/')
    ))
    .await
    .unwrap();
    let mut watch = reader.watch().unwrap();
    writer.add_pool(pool("a")).await.unwrap();
    writer.place_on("p/x", "q", "a").await.unwrap();
    writer.remove_queue("p/x", "q").await.unwrap();
    let seen = crate::conformance::next_changes(&mut watch, 3).await;
    assert_eq!(
        seen,
        [
            crate::CatalogEvent::PoolChanged(pool("a")),
            crate::CatalogEvent::Placed {
                project: "p/x".into(),
                queue: "q".into(),
                pool: "a".into()
            },
            crate::CatalogEvent::Unplaced {
                project: "p/x".into(),
                queue: "q".into()
            },
        ]
    );
    writer.purge().await.unwrap();
}
