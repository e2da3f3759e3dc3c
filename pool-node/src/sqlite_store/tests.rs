//! Tests of what only the SQLite store has: its file, reopening it, and clean-up.
//! The behaviour every backend shares is checked by `crate::conformance`.

use sqlx::Row;
use zaqar_proto::pb::{NewMessage, QueueRef};
use zaqar_proto::ErrorCode;

use super::*;

fn queue() -> QueueRef {
    QueueRef {
        project: "project-a".into(),
        queue: "orders".into(),
    }
}

fn message(ttl: u32) -> NewMessage {
    NewMessage {
        ttl,
        delay: 0,
        body_json: r#"{"n":1}"#.into(),
    }
}

#[tokio::test]
async fn everything_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dirs/zaqar.db");
    let path = path.to_str().unwrap();
    let q = queue();
    let (ids, claim_id, subscription_id) = {
        let store = open(path).await.unwrap();
        store
            .create_queue(&q, r#"{"_max_claim_count":5}"#)
            .await
            .unwrap();
        let ids = store
            .post_messages(&q, "client", &[message(300), message(300)])
            .await
            .unwrap();
        let claim = store.create_claim(&q, 300, 60, 1).await.unwrap().unwrap();
        let (subscription_id, _) = store
            .create_subscription(&q, "http://example.com/hook", 3600, "{}", true)
            .await
            .unwrap();
        (ids, claim.id, subscription_id)
    };
    let store = open(path).await.unwrap();
    assert_eq!(
        store.get_queue(&q).await.unwrap().as_deref(),
        Some(r#"{"_max_claim_count":5}"#)
    );
    let params = ListParams {
        limit: 10,
        echo: true,
        include_claimed: true,
        ..ListParams::default()
    };
    let (listed, _) = store.list_messages(&q, &params).await.unwrap();
    let listed_ids: Vec<_> = listed.iter().map(|m| m.id.clone()).collect();
    assert_eq!(listed_ids, ids);
    assert_eq!(listed[0].claim_id, claim_id);
    assert_eq!(listed[0].checksum, checksum(r#"{"n":1}"#));
    let claim = store.get_claim(&q, &claim_id).await.unwrap();
    assert_eq!(claim.messages.len(), 1);
    let subscription = store.get_subscription(&q, &subscription_id).await.unwrap();
    assert!(subscription.confirmed);
}

#[tokio::test]
async fn remove_expired_deletes_expired_rows_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("z.db").to_str().unwrap())
        .await
        .unwrap();
    let q = queue();
    let ids = store
        .post_messages(&q, "client", &[message(1), message(300)])
        .await
        .unwrap();
    store.create_claim(&q, 1, 0, 1).await.unwrap().unwrap();
    store
        .create_subscription(&q, "http://example.com/hook", 1, "{}", true)
        .await
        .unwrap();
    assert_eq!(store.remove_expired(now_ms()).await.unwrap(), 0);
    // Two seconds from now: the message, the claim and the subscription are gone.
    assert_eq!(store.remove_expired(now_ms() + 2000).await.unwrap(), 3);
    let left: Vec<String> = sqlx::query("SELECT id FROM messages")
        .fetch_all(&store.reader)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get("id"))
        .collect();
    assert_eq!(left, vec![ids[1].clone()]);
}

#[tokio::test]
async fn a_file_that_cannot_be_created_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let path = file.join("zaqar.db");
    let err = open(path.to_str().unwrap()).await.err().unwrap();
    assert_eq!(err.code, ErrorCode::Unavailable);
}

#[test]
fn markers_are_decimal_sequence_numbers() {
    assert_eq!(parse_marker("").unwrap(), 0);
    assert_eq!(parse_marker("42").unwrap(), 42);
    assert_eq!(parse_marker("4x2").unwrap_err().code, ErrorCode::BadRequest);
}

#[test]
fn checksum_is_zaqars_md5() {
    // md5("{}") = 99914b932bd37a50b983c5e7c90ae93b
    assert_eq!(checksum("{}"), "MD5:99914b932bd37a50b983c5e7c90ae93b");
}
