//! The project limits cases of the catalog conformance suite (run by
//! `catalog_conformance!` in `conformance/mod.rs` against every backend): records set,
//! replaced, listed and removed, checked before they are stored.

use std::sync::Arc;

use zaqar_proto::ErrorCode;

use crate::{CatalogBackend, ProjectLimitsSpec};

fn limits(project: &str, json: &str) -> ProjectLimitsSpec {
    ProjectLimitsSpec {
        project: project.into(),
        limits_json: json.into(),
    }
}

pub async fn project_limits_are_set_listed_and_removed(catalog: Arc<dyn CatalogBackend>) {
    assert_eq!(catalog.list_project_limits().await.unwrap(), []);
    assert_eq!(catalog.get_project_limits("p").await.unwrap(), None);
    catalog
        .put_project_limits(limits("p", r#"{"max_queues": 5}"#))
        .await
        .unwrap();
    // A project id may hold any character but control characters (a topic namespace
    // holds U+FFFF, a Keystone id may hold '/').
    let odd = "team/a b\u{FFFF}";
    catalog
        .put_project_limits(limits(odd, r#"{"requests_per_second": 2.5, "burst": 3}"#))
        .await
        .unwrap();
    catalog
        .put_project_limits(limits("a", r#"{"max_messages_per_queue": 0}"#))
        .await
        .unwrap();
    // Written again: replaced whole, in the one JSON form.
    catalog
        .put_project_limits(limits(
            "p",
            r#"{ "max_messages_per_queue": 100, "max_queues": 7 }"#,
        ))
        .await
        .unwrap();
    let stored_p = limits("p", r#"{"max_queues":7,"max_messages_per_queue":100}"#);
    assert_eq!(
        catalog.get_project_limits("p").await.unwrap(),
        Some(stored_p.clone())
    );
    assert_eq!(
        catalog.list_project_limits().await.unwrap(),
        [
            limits("a", r#"{"max_messages_per_queue":0}"#),
            stored_p.clone(),
            limits(odd, r#"{"requests_per_second":2.5,"burst":3}"#),
        ]
    );
    catalog.remove_project_limits(odd).await.unwrap();
    let err = catalog.remove_project_limits(odd).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(catalog.get_project_limits(odd).await.unwrap(), None);
    assert_eq!(catalog.list_project_limits().await.unwrap().len(), 2);
}

pub async fn invalid_project_limits_are_refused_and_change_nothing(
    catalog: Arc<dyn CatalogBackend>,
) {
    catalog
        .put_project_limits(limits("p", r#"{"max_queues": 5}"#))
        .await
        .unwrap();
    for bad in [
        limits("p", r#"{"max_queue": 1}"#),
        limits("p", r#"{"max_queues": -1}"#),
        limits("p", r#"{"requests_per_second": -1}"#),
        limits("p", "[]"),
        limits("p", "not json"),
        limits("", "{}"),
        limits("p\n", "{}"),
        limits(&"p".repeat(257), "{}"),
    ] {
        let err = catalog.put_project_limits(bad.clone()).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest, "{bad:?}");
    }
    for bad in ["", "p\n"] {
        let err = catalog.get_project_limits(bad).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
        let err = catalog.remove_project_limits(bad).await.unwrap_err();
        assert_eq!(err.code, ErrorCode::BadRequest);
    }
    assert_eq!(
        catalog.list_project_limits().await.unwrap(),
        [limits("p", r#"{"max_queues":5}"#)]
    );
}
