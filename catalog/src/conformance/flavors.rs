//! The flavor cases of the catalog conformance suite (run by `catalog_conformance!`
//! in `conformance/mod.rs` against every backend): flavor records, pool lists written
//! through pools' flavors, and placement of a flavored queue by weight.

use std::collections::BTreeSet;
use std::sync::Arc;

use zaqar_proto::ErrorCode;

use super::pool;
use crate::flavors::{self, PoolUpdate};
use crate::{CatalogBackend, FlavorSpec};

fn flavor(name: &str, capabilities: &[&str]) -> FlavorSpec {
    FlavorSpec {
        name: name.into(),
        capabilities: capabilities.iter().map(|c| c.to_string()).collect(),
    }
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|n| n.to_string()).collect()
}

pub async fn flavors_are_upserted_listed_and_removed(catalog: Arc<dyn CatalogBackend>) {
    assert_eq!(catalog.list_flavors().await.unwrap(), []);
    let missing = catalog.get_flavor("f").await.unwrap_err();
    assert_eq!(missing.code, ErrorCode::NotFound);
    assert_eq!(missing.description, "Flavor f does not exist");
    catalog.put_flavor(flavor("f", &["FIFO"])).await.unwrap();
    catalog.put_flavor(flavor("b", &[])).await.unwrap();
    catalog
        .put_flavor(flavor("f", &["FIFO", "CLAIMS"]))
        .await
        .unwrap();
    assert_eq!(
        catalog.list_flavors().await.unwrap(),
        [flavor("b", &[]), flavor("f", &["FIFO", "CLAIMS"])]
    );
    assert_eq!(
        catalog.get_flavor("f").await.unwrap(),
        flavor("f", &["FIFO", "CLAIMS"])
    );
    for bad in [flavor("bad name", &[]), flavor("g", &["a b"])] {
        let err = catalog.put_flavor(bad).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
    }
    catalog.remove_flavor("b").await.unwrap();
    let err = catalog.remove_flavor("b").await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(
        catalog.list_flavors().await.unwrap(),
        [flavor("f", &["FIFO", "CLAIMS"])]
    );
}

pub async fn a_flavor_pool_list_moves_pools_and_checks_them_first(
    catalog: Arc<dyn CatalogBackend>,
) {
    catalog.add_pool(pool("a", 1, "")).await.unwrap();
    catalog.add_pool(pool("b", 1, "")).await.unwrap();
    catalog.add_pool(pool("c", 1, "")).await.unwrap();

    let err = flavors::put_flavor(&*catalog, "f", &names(&["a", "nope"]), false)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert!(
        err.description.contains("Pool nope does not exist"),
        "{err}"
    );
    let err = flavors::put_flavor(&*catalog, "f", &[], false)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert_eq!(catalog.list_flavors().await.unwrap(), [], "nothing changed");
    assert_eq!(catalog.get_pool("a").await.unwrap().flavor, "");

    let view = flavors::put_flavor(&*catalog, "f", &names(&["b", "a"]), false)
        .await
        .unwrap();
    assert_eq!(view.pool_list, ["a", "b"]);
    assert_eq!(
        view.capabilities,
        ["FIFO", "CLAIMS", "AOD", "HIGH_THROUGHPUT"]
    );
    assert_eq!(catalog.get_pool("b").await.unwrap().flavor, "f");

    // PATCH replaces the list: "a" leaves the flavor, "c" joins it.
    let view = flavors::put_flavor(&*catalog, "f", &names(&["b", "c"]), true)
        .await
        .unwrap();
    assert_eq!(view.pool_list, ["b", "c"]);
    assert_eq!(catalog.get_pool("a").await.unwrap().flavor, "");
    let err = flavors::put_flavor(&*catalog, "g", &names(&["a"]), true)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);

    let listed = flavors::list_flavors(&*catalog).await.unwrap();
    assert_eq!(listed, [view]);

    flavors::remove_flavor(&*catalog, "f").await.unwrap();
    assert_eq!(catalog.get_pool("b").await.unwrap().flavor, "");
    assert_eq!(catalog.get_pool("c").await.unwrap().flavor, "");
    let err = flavors::remove_flavor(&*catalog, "f").await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}

pub async fn a_flavored_queue_lands_on_the_flavor_pools_by_weight(
    catalog: Arc<dyn CatalogBackend>,
) {
    catalog.add_pool(pool("plain", 100, "")).await.unwrap();
    catalog.add_pool(pool("gold-1", 1, "")).await.unwrap();
    catalog.add_pool(pool("gold-2", 1, "")).await.unwrap();
    catalog.add_pool(pool("gold-0", 1, "")).await.unwrap();
    flavors::put_flavor(
        &*catalog,
        "gold",
        &names(&["gold-0", "gold-1", "gold-2"]),
        false,
    )
    .await
    .unwrap();
    let drained = PoolUpdate {
        name: "gold-0".into(),
        weight: Some(0),
        ..PoolUpdate::default()
    };
    let updated = flavors::update_pool(&*catalog, drained).await.unwrap();
    assert_eq!((updated.weight, updated.flavor.as_str()), (0, "gold"));

    let mut chosen = BTreeSet::new();
    for i in 0..40 {
        let placed = catalog.place_queue("p", &format!("q{i}"), "gold").await;
        chosen.insert(placed.unwrap().pool);
    }
    assert_eq!(chosen, BTreeSet::from(["gold-1".into(), "gold-2".into()]));
    let plain = catalog.place_queue("p", "plain-q", "").await.unwrap();
    assert_eq!(plain.pool, "plain");

    let err = catalog.place_queue("p", "x", "nope").await.unwrap_err();
    assert_eq!(err.code, ErrorCode::BadRequest);
    assert_eq!(err.description, "Flavor nope does not exist");
    assert_eq!(catalog.lookup("p", "x").await.unwrap(), None);

    let unknown = PoolUpdate {
        name: "nope".into(),
        weight: Some(1),
        ..PoolUpdate::default()
    };
    let err = flavors::update_pool(&*catalog, unknown).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}
