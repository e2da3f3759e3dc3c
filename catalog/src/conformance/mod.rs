//! The catalog conformance suite: written once, run against every backend by
//! `catalog_conformance!` (SQLite on a temporary file, PostgreSQL from
//! `ZAQAR_TEST_POSTGRES_URL` in a private schema per test, etcd from
//! `ZAQAR_TEST_ETCD_URL` under a private key prefix per test, MongoDB from
//! `ZAQAR_TEST_MONGO_URL` in a private database per test, raft as a single node and
//! as a three-node cluster on loopback ports).

use std::collections::BTreeSet;
use std::sync::Arc;

use rand::Rng;
use zaqar_proto::ErrorCode;

mod flavors;
mod project_limits;
mod watch;

use crate::raft::testing::TestCluster;
use crate::{CatalogBackend, ListQueues, PoolSpec, SqlCatalog};
pub use flavors::*;
pub use project_limits::*;
pub use watch::*;

/// A backend under test and what to clean up after it.
pub struct Fixture {
    catalog: Arc<dyn CatalogBackend>,
    cleanup: Cleanup,
}

enum Cleanup {
    Dir(#[allow(dead_code)] tempfile::TempDir),
    PgSchema {
        admin: sqlx::PgPool,
        schema: String,
    },
    Raft(TestCluster),
    #[cfg(feature = "etcd")]
    EtcdPrefix(Arc<crate::etcd_backend::EtcdCatalog>),
    #[cfg(feature = "mongodb")]
    MongoDatabase(Arc<crate::mongo_backend::MongoCatalog>),
}

impl Fixture {
    async fn finish(self) {
        drop(self.catalog);
        match self.cleanup {
            Cleanup::Dir(_) => {}
            Cleanup::Raft(cluster) => cluster.shutdown().await,
            Cleanup::PgSchema { admin, schema } => {
                sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                    .execute(&admin)
                    .await
                    .expect("drop the test schema");
            }
            #[cfg(feature = "etcd")]
            Cleanup::EtcdPrefix(catalog) => {
                catalog.purge().await.expect("delete the test prefix");
            }
            #[cfg(feature = "mongodb")]
            Cleanup::MongoDatabase(catalog) => {
                catalog
                    .drop_database()
                    .await
                    .expect("drop the test database");
            }
        }
    }
}

pub async fn open_sqlite() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let uri = format!("sqlite://{}/catalog.db", dir.path().display());
    let catalog = Arc::new(SqlCatalog::open(&uri).await.unwrap());
    Some(Fixture {
        catalog,
        cleanup: Cleanup::Dir(dir),
    })
}

/// A catalog in a fresh schema of the PostgreSQL at `ZAQAR_TEST_POSTGRES_URL`; `None`
/// (skip) when it is unset, unless `CI` is set.
pub async fn open_postgres() -> Option<Fixture> {
    let url = zaqar_tests::test_server_url("ZAQAR_TEST_POSTGRES_URL")?;
    let admin = sqlx::PgPool::connect(&url)
        .await
        .expect("connect to ZAQAR_TEST_POSTGRES_URL");
    let schema = format!("catalog_test_{:016x}", rand::thread_rng().gen::<u64>());
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let uri = format!("{url}{separator}options=-c%20search_path%3D{schema}");
    let catalog = Arc::new(SqlCatalog::open(&uri).await.unwrap());
    Some(Fixture {
        catalog,
        cleanup: Cleanup::PgSchema { admin, schema },
    })
}

/// `ZAQAR_TEST_ETCD_URL` (`etcd://host:port[,host:port...]`, no prefix); `None`
/// (skip) when it is unset, unless `CI` is set.
#[cfg(feature = "etcd")]
pub fn etcd_url() -> Option<String> {
    let url = zaqar_tests::test_server_url("ZAQAR_TEST_ETCD_URL")?;
    Some(url.trim_end_matches('/').to_string())
}

/// A catalog under a fresh key prefix of the etcd at `ZAQAR_TEST_ETCD_URL`; `None`
/// (skip) when it is unset, unless `CI` is set.
#[cfg(feature = "etcd")]
pub async fn open_etcd() -> Option<Fixture> {
    let url = etcd_url()?;
    let prefix = format!("zaqar-test-{:016x}", rand::thread_rng().gen::<u64>());
    let catalog = crate::etcd_backend::EtcdCatalog::open(&format!("{url}/{prefix}"))
        .await
        .expect("connect to ZAQAR_TEST_ETCD_URL");
    let catalog = Arc::new(catalog);
    Some(Fixture {
        catalog: catalog.clone(),
        cleanup: Cleanup::EtcdPrefix(catalog),
    })
}

/// In CI, a set `ZAQAR_TEST_ETCD_URL` means the etcd suite is expected to run.
#[cfg(not(feature = "etcd"))]
#[test]
fn the_etcd_suite_is_built_when_ci_provides_an_etcd() {
    assert!(
        std::env::var_os("CI").is_none() || std::env::var_os("ZAQAR_TEST_ETCD_URL").is_none(),
        "ZAQAR_TEST_ETCD_URL is set in CI but zaqar-catalog was built without the etcd feature"
    );
}

/// A catalog in a fresh database of the MongoDB at `ZAQAR_TEST_MONGO_URL`; `None`
/// (skip) when it is unset, unless `CI` is set.
#[cfg(feature = "mongodb")]
pub async fn open_mongo() -> Option<Fixture> {
    let url = zaqar_tests::test_server_url("ZAQAR_TEST_MONGO_URL")?;
    let database = format!("catalog_test_{:016x}", rand::thread_rng().gen::<u64>());
    let uri = url.replacen("/?", &format!("/{database}?"), 1);
    let catalog = crate::mongo_backend::MongoCatalog::open(&uri)
        .await
        .expect("connect to ZAQAR_TEST_MONGO_URL");
    let catalog = Arc::new(catalog);
    Some(Fixture {
        catalog: catalog.clone(),
        cleanup: Cleanup::MongoDatabase(catalog),
    })
}

/// A single-node raft catalog in a temporary directory.
pub async fn open_raft_node() -> Option<Fixture> {
    let cluster = TestCluster::start(1).await;
    Some(Fixture {
        catalog: cluster.node(1),
        cleanup: Cleanup::Raft(cluster),
    })
}

/// A follower of a three-node raft cluster on loopback ports: its writes are forwarded
/// to the leader, its reads go through the leader's read index.
pub async fn open_raft_cluster() -> Option<Fixture> {
    let cluster = TestCluster::start(3).await;
    Some(Fixture {
        catalog: cluster.node(cluster.follower().await),
        cleanup: Cleanup::Raft(cluster),
    })
}

/// One `#[tokio::test]` per suite case, each on a fresh backend from `$open`.
macro_rules! catalog_conformance {
    ($open:path) => {
        catalog_conformance!(@each $open;
            pools_are_upserted_and_listed_by_name,
            an_unknown_pool_is_not_found,
            invalid_input_is_a_bad_request,
            placement_is_idempotent_and_compare_and_set,
            placement_without_a_usable_pool_fails,
            placement_follows_weights_and_groups,
            the_empty_flavor_uses_all_pools_when_none_is_in_the_default_group,
            concurrent_placements_agree_on_one_pool,
            removed_placements_are_forgotten,
            listings_are_sorted_paged_filtered_and_counted,
            placements_follow_a_re_registered_endpoint,
            projects_are_isolated,
            a_pool_is_removed_only_when_it_holds_no_queue,
            flavors_are_upserted_listed_and_removed,
            a_flavor_pool_list_moves_pools_and_checks_them_first,
            a_flavored_queue_lands_on_the_flavor_pools_by_weight,
            project_limits_are_set_listed_and_removed,
            invalid_project_limits_are_refused_and_change_nothing,
            a_watcher_sees_placements_and_pool_changes,
            a_pool_node_registration_keeps_an_admins_changes,
        );
    };
    (@each $open:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(fixture) = $open().await else { return };
                crate::conformance::$case(fixture.catalog.clone()).await;
                fixture.finish().await;
            }
        )*
    };
}

mod sqlite {
    catalog_conformance!(super::open_sqlite);
}

mod postgres {
    catalog_conformance!(super::open_postgres);
}

mod raft_node {
    catalog_conformance!(super::open_raft_node);
}

mod raft_cluster {
    catalog_conformance!(super::open_raft_cluster);
}

#[cfg(feature = "etcd")]
mod etcd {
    catalog_conformance!(super::open_etcd);
}

#[cfg(feature = "mongodb")]
mod mongo {
    catalog_conformance!(super::open_mongo);
}

// ------------------------------------------------------------------ cases

/// A pool of the default flavor or of `flavor`, on made-up addresses
/// (`redis://NAME.example:6379/0`, `http://NAME.example:7001`); the tests of every
/// catalog module use it.
pub(crate) fn pool(name: &str, weight: u32, flavor: &str) -> PoolSpec {
    PoolSpec {
        name: name.into(),
        weight,
        flavor: flavor.into(),
        uri: format!("redis://{name}.example:6379/0"),
        endpoint: format!("http://{name}.example:7001"),
        options_json: "{}".into(),
    }
}

fn page(limit: u32, marker: &str, filter: &str) -> ListQueues {
    ListQueues {
        marker: marker.into(),
        limit,
        name_filter: filter.into(),
        with_count: true,
    }
}

/// The code of an error that was expected.
fn bad<T: std::fmt::Debug>(result: Result<T, zaqar_proto::ZaqarError>) -> ErrorCode {
    result.unwrap_err().code
}

async fn listed(
    catalog: &dyn CatalogBackend,
    project: &str,
    params: ListQueues,
) -> (Vec<String>, u64) {
    let page = catalog.list_queues(project, &params).await.unwrap();
    (
        page.queues.into_iter().map(|p| p.queue).collect(),
        page.count,
    )
}

pub async fn pools_are_upserted_and_listed_by_name(catalog: Arc<dyn CatalogBackend>) {
    catalog.add_pool(pool("b", 1, "")).await.unwrap();
    catalog
        .add_pool(PoolSpec {
            options_json: String::new(),
            ..pool("a", 2, "")
        })
        .await
        .unwrap();
    let names: Vec<String> = catalog
        .list_pools()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(catalog.get_pool("a").await.unwrap(), pool("a", 2, ""));

    let replaced = PoolSpec {
        weight: 7,
        flavor: "fast".into(),
        uri: "redis://elsewhere:6379/1".into(),
        endpoint: "https://a2.example:7443".into(),
        options_json: r#"{"tls": true}"#.into(),
        ..pool("a", 0, "")
    };
    catalog.add_pool(replaced.clone()).await.unwrap();
    assert_eq!(catalog.get_pool("a").await.unwrap(), replaced);
    assert_eq!(
        catalog.list_pools().await.unwrap(),
        [replaced, pool("b", 1, "")]
    );
}

pub async fn an_unknown_pool_is_not_found(catalog: Arc<dyn CatalogBackend>) {
    assert_eq!(
        catalog.get_pool("nope").await.unwrap_err().code,
        ErrorCode::NotFound
    );
    let err = catalog.place_on("p", "q", "nope").await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(catalog.lookup("p", "q").await.unwrap(), None);
}

pub async fn invalid_input_is_a_bad_request(catalog: Arc<dyn CatalogBackend>) {
    catalog.add_pool(pool("a", 1, "")).await.unwrap();
    let bad_pools = [
        pool("bad name", 1, ""),
        pool("a", 1, "bad group"),
        PoolSpec {
            endpoint: "127.0.0.1:7001".into(),
            ..pool("a", 1, "")
        },
        PoolSpec {
            uri: String::new(),
            ..pool("a", 1, "")
        },
        PoolSpec {
            options_json: "[]".into(),
            ..pool("a", 1, "")
        },
    ];
    for bad in bad_pools {
        let err = catalog.add_pool(bad.clone()).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest, "{bad:?}");
    }
    assert_eq!(
        catalog.get_pool("a").await.unwrap(),
        pool("a", 1, ""),
        "a rejected pool changes nothing"
    );

    assert_eq!(bad(catalog.lookup("", "q").await), ErrorCode::BadRequest);
    assert_eq!(
        bad(catalog.place_queue("p", "bad name", "").await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        bad(catalog.place_queue("p", "q", "bad flavor").await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        bad(catalog.place_on("p", "", "a").await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        bad(catalog.remove_queue("p", "q/1").await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        bad(catalog.list_queues("", &page(10, "", "")).await),
        ErrorCode::BadRequest
    );
    assert_eq!(
        bad(catalog.list_queues("p", &page(1001, "", "")).await),
        ErrorCode::BadRequest
    );
    assert_eq!(listed(&*catalog, "p", page(10, "", "")).await, (vec![], 0));
}

pub async fn placement_is_idempotent_and_compare_and_set(catalog: Arc<dyn CatalogBackend>) {
    catalog.add_pool(pool("a", 1, "")).await.unwrap();
    let first = catalog.place_queue("p", "q", "").await.unwrap();
    assert_eq!((first.project.as_str(), first.queue.as_str()), ("p", "q"));
    assert_eq!(
        (first.pool.as_str(), first.endpoint.as_str()),
        ("a", "http://a.example:7001")
    );

    // Even when the weights now favour another pool, the placement stays.
    catalog.add_pool(pool("b", 1000, "")).await.unwrap();
    catalog.add_pool(pool("a", 0, "")).await.unwrap();
    assert_eq!(catalog.place_queue("p", "q", "").await.unwrap(), first);
    assert_eq!(
        catalog.place_queue("p", "q", "other-flavor").await.unwrap(),
        first
    );
    assert_eq!(catalog.place_on("p", "q", "b").await.unwrap(), first);
    assert_eq!(catalog.lookup("p", "q").await.unwrap(), Some(first));

    let direct = catalog.place_on("p", "q2", "b").await.unwrap();
    assert_eq!(direct.pool, "b");
    assert_eq!(catalog.lookup("p", "q2").await.unwrap(), Some(direct));
}

pub async fn placement_without_a_usable_pool_fails(catalog: Arc<dyn CatalogBackend>) {
    let err = catalog.place_queue("p", "q", "").await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable);
    catalog.add_pool(pool("drained", 0, "")).await.unwrap();
    let err = catalog.place_queue("p", "q", "").await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable);
    let err = catalog.place_queue("p", "q", "fast").await.unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert_eq!(catalog.lookup("p", "q").await.unwrap(), None);
}

pub async fn placement_follows_weights_and_groups(catalog: Arc<dyn CatalogBackend>) {
    catalog.add_pool(pool("fast-1", 1, "fast")).await.unwrap();
    catalog.add_pool(pool("drained", 0, "")).await.unwrap();
    catalog.add_pool(pool("default-1", 5, "")).await.unwrap();
    catalog.add_pool(pool("default-2", 5, "")).await.unwrap();

    let mut default_pools = BTreeSet::new();
    for i in 0..40 {
        let placement = catalog
            .place_queue("p", &format!("q{i}"), "")
            .await
            .unwrap();
        default_pools.insert(placement.pool);
    }
    // Both weighted pools of the default flavor, never the drained or the flavored one.
    assert_eq!(
        default_pools,
        BTreeSet::from(["default-1".to_string(), "default-2".to_string()])
    );

    for i in 0..10 {
        let placement = catalog
            .place_queue("p", &format!("f{i}"), "fast")
            .await
            .unwrap();
        assert_eq!(placement.pool, "fast-1");
    }
}

pub async fn the_empty_flavor_uses_all_pools_when_none_is_in_the_default_group(
    catalog: Arc<dyn CatalogBackend>,
) {
    catalog.add_pool(pool("x", 1, "g1")).await.unwrap();
    catalog.add_pool(pool("y", 1, "g2")).await.unwrap();
    let mut used = BTreeSet::new();
    for i in 0..40 {
        used.insert(
            catalog
                .place_queue("p", &format!("q{i}"), "")
                .await
                .unwrap()
                .pool,
        );
    }
    assert_eq!(used, BTreeSet::from(["x".to_string(), "y".to_string()]));
}

pub async fn concurrent_placements_agree_on_one_pool(catalog: Arc<dyn CatalogBackend>) {
    for name in ["a", "b", "c", "d"] {
        catalog.add_pool(pool(name, 1, "")).await.unwrap();
    }
    for i in 0..8 {
        let queue = format!("q{i}");
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (catalog, queue) = (catalog.clone(), queue.clone());
                tokio::spawn(async move { catalog.place_queue("p", &queue, "").await.unwrap() })
            })
            .collect();
        let mut pools = BTreeSet::new();
        for task in tasks {
            pools.insert(task.await.unwrap().pool);
        }
        assert_eq!(pools.len(), 1, "{queue} placed on {pools:?}");
        let placed = catalog.lookup("p", &queue).await.unwrap().unwrap();
        assert_eq!(Some(&placed.pool), pools.first());
    }
    assert_eq!(listed(&*catalog, "p", page(100, "", "")).await.1, 8);
}

pub async fn removed_placements_are_forgotten(catalog: Arc<dyn CatalogBackend>) {
    catalog.add_pool(pool("a", 1, "")).await.unwrap();
    catalog.place_queue("p", "q", "").await.unwrap();
    catalog.place_queue("p", "keep", "").await.unwrap();
    catalog.remove_queue("p", "q").await.unwrap();
    assert_eq!(catalog.lookup("p", "q").await.unwrap(), None);
    catalog.remove_queue("p", "q").await.unwrap();
    catalog.remove_queue("p", "never-placed").await.unwrap();
    assert_eq!(
        listed(&*catalog, "p", page(10, "", "")).await,
        (vec!["keep".to_string()], 1)
    );

    catalog.add_pool(pool("a", 0, "")).await.unwrap();
    catalog.add_pool(pool("b", 1, "")).await.unwrap();
    assert_eq!(catalog.place_queue("p", "q", "").await.unwrap().pool, "b");
}

pub async fn listings_are_sorted_paged_filtered_and_counted(catalog: Arc<dyn CatalogBackend>) {
    catalog.add_pool(pool("a", 1, "")).await.unwrap();
    for queue in ["b", "a", "c_1", "cx1", "d", "A"] {
        catalog.place_queue("p", queue, "").await.unwrap();
    }
    catalog.place_queue("other", "a", "").await.unwrap();
    let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // Byte order: upper case before lower case, '_' before letters.
    let all = names(&["A", "a", "b", "c_1", "cx1", "d"]);
    assert_eq!(listed(&*catalog, "p", page(10, "", "")).await, (all, 6));
    assert_eq!(
        listed(&*catalog, "p", page(2, "", "")).await,
        (names(&["A", "a"]), 6)
    );
    assert_eq!(
        listed(&*catalog, "p", page(2, "b", "")).await,
        (names(&["c_1", "cx1"]), 6)
    );
    assert_eq!(
        listed(&*catalog, "p", page(10, "bb", "")).await,
        (names(&["c_1", "cx1", "d"]), 6)
    );
    assert_eq!(listed(&*catalog, "p", page(10, "d", "")).await, (vec![], 6));
    assert_eq!(listed(&*catalog, "p", page(0, "", "")).await, (vec![], 6));

    // A substring, not a pattern: '_' matches only itself; case matters.
    assert_eq!(
        listed(&*catalog, "p", page(10, "", "_")).await,
        (names(&["c_1"]), 1)
    );
    assert_eq!(
        listed(&*catalog, "p", page(10, "", "c")).await,
        (names(&["c_1", "cx1"]), 2)
    );
    assert_eq!(
        listed(&*catalog, "p", page(10, "c_1", "c")).await,
        (names(&["cx1"]), 2)
    );
    assert_eq!(
        listed(&*catalog, "p", page(10, "", "A")).await,
        (names(&["A"]), 1)
    );
    assert_eq!(listed(&*catalog, "p", page(10, "", "%")).await, (vec![], 0));

    // Without with_count nothing is counted; the pages are the same.
    let uncounted = |limit, marker: &str, filter: &str| ListQueues {
        with_count: false,
        ..page(limit, marker, filter)
    };
    assert_eq!(
        listed(&*catalog, "p", uncounted(2, "b", "")).await,
        (names(&["c_1", "cx1"]), 0)
    );
    assert_eq!(
        listed(&*catalog, "p", uncounted(1, "", "c")).await,
        (names(&["c_1"]), 0)
    );

    let page = catalog
        .list_queues("other", &page(10, "", ""))
        .await
        .unwrap();
    assert_eq!(page.count, 1);
    assert_eq!(
        page.queues,
        [catalog.lookup("other", "a").await.unwrap().unwrap()]
    );
    assert_eq!(page.queues[0].endpoint, "http://a.example:7001");
}

pub async fn placements_follow_a_re_registered_endpoint(catalog: Arc<dyn CatalogBackend>) {
    catalog.add_pool(pool("a", 1, "")).await.unwrap();
    catalog.place_queue("p", "q", "").await.unwrap();
    let moved = PoolSpec {
        endpoint: "http://10.0.0.9:7001".into(),
        ..pool("a", 1, "")
    };
    catalog.add_pool(moved).await.unwrap();
    let placement = catalog.lookup("p", "q").await.unwrap().unwrap();
    assert_eq!(
        (placement.pool.as_str(), placement.endpoint.as_str()),
        ("a", "http://10.0.0.9:7001")
    );
    let page = catalog.list_queues("p", &page(10, "", "")).await.unwrap();
    assert_eq!(page.queues, std::slice::from_ref(&placement));
    assert_eq!(catalog.place_queue("p", "q", "").await.unwrap(), placement);
}

pub async fn projects_are_isolated(catalog: Arc<dyn CatalogBackend>) {
    catalog.add_pool(pool("a", 1, "")).await.unwrap();
    catalog.add_pool(pool("b", 1, "fast")).await.unwrap();
    catalog.place_queue("p1", "q", "").await.unwrap();
    catalog.place_queue("p2", "q", "fast").await.unwrap();
    assert_eq!(catalog.lookup("p1", "q").await.unwrap().unwrap().pool, "a");
    assert_eq!(catalog.lookup("p2", "q").await.unwrap().unwrap().pool, "b");
    catalog.remove_queue("p1", "q").await.unwrap();
    assert_eq!(catalog.lookup("p1", "q").await.unwrap(), None);
    assert_eq!(catalog.lookup("p2", "q").await.unwrap().unwrap().pool, "b");
    assert_eq!(listed(&*catalog, "p1", page(10, "", "")).await, (vec![], 0));
    assert_eq!(
        listed(&*catalog, "p2", page(10, "", "")).await,
        (vec!["q".to_string()], 1)
    );
    assert_eq!(listed(&*catalog, "p", page(10, "", "")).await, (vec![], 0));
}

pub async fn a_pool_is_removed_only_when_it_holds_no_queue(catalog: Arc<dyn CatalogBackend>) {
    assert_eq!(bad(catalog.remove_pool("nope").await), ErrorCode::NotFound);
    assert_eq!(
        bad(catalog.remove_pool("bad name").await),
        ErrorCode::BadRequest
    );
    catalog.add_pool(pool("a", 1, "")).await.unwrap();
    catalog.add_pool(pool("b", 1, "")).await.unwrap();
    catalog.place_on("p1", "q1", "a").await.unwrap();
    catalog.place_on("p2", "q2", "a").await.unwrap();
    catalog.place_on("p2", "q3", "b").await.unwrap();

    let refused = catalog.remove_pool("a").await.unwrap_err();
    assert_eq!(refused.code, ErrorCode::Conflict);
    assert!(
        refused.description.contains("2 queues"),
        "{}",
        refused.description
    );
    assert_eq!(catalog.get_pool("a").await.unwrap(), pool("a", 1, ""));
    assert_eq!(catalog.lookup("p1", "q1").await.unwrap().unwrap().pool, "a");

    catalog.remove_queue("p2", "q3").await.unwrap();
    catalog.remove_pool("b").await.unwrap();
    assert_eq!(bad(catalog.get_pool("b").await), ErrorCode::NotFound);
    assert_eq!(bad(catalog.remove_pool("b").await), ErrorCode::NotFound);
    assert_eq!(
        bad(catalog.place_on("p", "q", "b").await),
        ErrorCode::NotFound
    );
    assert_eq!(catalog.list_pools().await.unwrap(), [pool("a", 1, "")]);

    catalog.remove_queue("p1", "q1").await.unwrap();
    let refused = catalog.remove_pool("a").await.unwrap_err();
    assert!(refused.description.contains("1 queue;"), "{refused}");
    catalog.remove_queue("p2", "q2").await.unwrap();
    catalog.remove_pool("a").await.unwrap();
    assert_eq!(catalog.list_pools().await.unwrap(), []);
}
