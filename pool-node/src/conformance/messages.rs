//! Conformance: posting, listing, getting, deleting and popping messages.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use zaqar_proto::pb::{NewMessage, QueueRef};
use zaqar_proto::ErrorCode;

use super::{
    code, empty_message, fresh_queue, ids_of, json, listed_ids, listing, message, post, post_n,
    random_id, sibling, ClaimTerms, CLIENT, OTHER_CLIENT, PAST_ONE_SECOND,
};
use crate::store::{CheckedPost, ListParams, MessageStore, Once, Post};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub(crate) async fn listing_is_fifo_and_pages_with_the_marker(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("fifo");
    let before = now_ms();
    let mut posted = store
        .post_messages(&q, CLIENT, &(0..5).map(message).collect::<Vec<_>>())
        .await
        .unwrap();
    posted.extend(post_n(&store, &q, 2).await);
    let after = now_ms();

    let mut params = listing(3);
    let mut pages = Vec::new();
    let mut seen = Vec::new();
    loop {
        let (messages, next) = store.list_messages(&q, &params).await.unwrap();
        if messages.is_empty() {
            assert_eq!(next, params.marker, "an empty page keeps the marker");
            break;
        }
        pages.push(messages.len());
        seen.extend(messages);
        params.marker = next;
    }
    assert_eq!(pages, vec![3, 3, 1]);
    assert_eq!(ids_of(&seen), posted);

    let first = &seen[0];
    assert_eq!(json(&first.body_json), json(r#"{"n": 0}"#));
    assert_eq!(first.ttl, 300);
    assert!(first.age <= 1);
    assert!(first.claim_id.is_empty());
    assert_eq!(first.claim_count, 0);
    assert!(before - 1000 <= first.created_ms && first.created_ms <= after + 1000);
}

pub(crate) async fn an_unparseable_marker_is_bad_request(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("marker");
    post_n(&store, &q, 1).await;
    let params = ListParams {
        marker: "not a marker!".into(),
        ..listing(10)
    };
    assert_eq!(
        code(store.list_messages(&q, &params).await),
        ErrorCode::BadRequest
    );
}

pub(crate) async fn echo_false_hides_the_clients_own_messages(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("echo");
    let mine = post_n(&store, &q, 2).await;
    let theirs = store
        .post_messages(&q, OTHER_CLIENT, &[message(9)])
        .await
        .unwrap();
    let as_me = |echo| ListParams {
        client_id: CLIENT.into(),
        echo,
        ..listing(10)
    };
    assert_eq!(listed_ids(&store, &q, as_me(false)).await, theirs);
    let everything: Vec<_> = mine.iter().chain(&theirs).cloned().collect();
    assert_eq!(listed_ids(&store, &q, as_me(true)).await, everything);
}

pub(crate) async fn include_claimed_lists_claimed_messages(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("claimed");
    let ids = post_n(&store, &q, 3).await;
    let claim = store.claim_for(&q, 60, 60, 2).await.unwrap().unwrap();

    assert_eq!(listed_ids(&store, &q, listing(10)).await, ids[2..]);
    let params = ListParams {
        include_claimed: true,
        ..listing(10)
    };
    let (all, _) = store.list_messages(&q, &params).await.unwrap();
    assert_eq!(ids_of(&all), ids);
    assert_eq!(all[0].claim_id, claim.id);
    assert_eq!(all[1].claim_id, claim.id);
    assert!(all[2].claim_id.is_empty());
}

pub(crate) async fn delayed_messages_are_hidden_until_the_delay_passes(
    store: Arc<dyn MessageStore>,
) {
    let q = fresh_queue("delayed");
    let delayed = post(&store, &q, empty_message(300, 1)).await;
    let ready = post_n(&store, &q, 1).await;

    assert_eq!(listed_ids(&store, &q, listing(10)).await, ready);
    let with_delayed = ListParams {
        include_delayed: true,
        ..listing(10)
    };
    let both: Vec<_> = delayed.iter().chain(&ready).cloned().collect();
    assert_eq!(listed_ids(&store, &q, with_delayed).await, both);
    let claim = store.claim_for(&q, 60, 60, 10).await.unwrap().unwrap();
    assert_eq!(ids_of(&claim.messages), ready);
    store.delete_claim(&q, &claim.id).await.unwrap();
    assert_eq!(ids_of(&store.pop_messages(&q, 10).await.unwrap()), ready);

    tokio::time::sleep(PAST_ONE_SECOND).await;
    assert_eq!(listed_ids(&store, &q, listing(10)).await, delayed);
    let claim = store.claim_for(&q, 60, 60, 10).await.unwrap().unwrap();
    assert_eq!(ids_of(&claim.messages), delayed);
}

pub(crate) async fn messages_expire_without_any_cleanup(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("expiry");
    let short = post(&store, &q, empty_message(1, 0)).await;
    let long = post_n(&store, &q, 1).await;
    let both: Vec<_> = short.iter().chain(&long).cloned().collect();
    assert_eq!(listed_ids(&store, &q, listing(10)).await, both);

    tokio::time::sleep(PAST_ONE_SECOND).await;
    assert_eq!(listed_ids(&store, &q, listing(10)).await, long);
    assert_eq!(ids_of(&store.get_messages(&q, &both).await.unwrap()), long);
    assert_eq!(store.queue_stats(&q).await.unwrap().total, 1);
    let claim = store.claim_for(&q, 60, 60, 10).await.unwrap().unwrap();
    assert_eq!(ids_of(&claim.messages), long);
}

pub(crate) async fn get_messages_omits_missing_ids(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("get");
    let ids = post_n(&store, &q, 3).await;
    let asked = vec![ids[2].clone(), random_id(), ids[0].clone()];
    let got = store.get_messages(&q, &asked).await.unwrap();
    assert_eq!(ids_of(&got), vec![ids[2].clone(), ids[0].clone()]);
    assert_eq!(json(&got[0].body_json), json(r#"{"n": 2}"#));
    assert!(store.get_messages(&q, &[]).await.unwrap().is_empty());
}

pub(crate) async fn delete_message_follows_the_claim_rules(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("delete");
    let ids = post_n(&store, &q, 2).await;
    let (held, free) = (&ids[0], &ids[1]);
    let claim = store.claim_for(&q, 60, 60, 1).await.unwrap().unwrap();
    assert_eq!(ids_of(&claim.messages), vec![held.clone()]);

    let no_claim = store.delete_message(&q, held, None).await.unwrap_err();
    assert_eq!(no_claim.code, ErrorCode::Forbidden);
    assert_eq!(no_claim.title, "Unable to delete");
    assert_eq!(
        no_claim.description,
        "This message is claimed; it cannot be deleted without a valid claim ID."
    );
    let wrong = store
        .delete_message(&q, held, Some(&random_id()))
        .await
        .unwrap_err();
    assert_eq!(wrong.code, ErrorCode::BadRequest);
    assert_eq!(wrong.title, "Unable to delete");
    assert_eq!(
        wrong.description,
        "The specified claim does not exist or has expired."
    );
    assert_eq!(
        code(store.delete_message(&q, free, Some(&claim.id)).await),
        ErrorCode::BadRequest,
        "a claim id for a message that claim does not hold"
    );
    assert_eq!(store.get_messages(&q, &ids).await.unwrap().len(), 2);

    store
        .delete_message(&q, held, Some(&claim.id))
        .await
        .unwrap();
    store.delete_message(&q, free, None).await.unwrap();
    assert!(store.get_messages(&q, &ids).await.unwrap().is_empty());
    store.delete_message(&q, held, None).await.unwrap();
    store.delete_message(&q, &random_id(), None).await.unwrap();
}

pub(crate) async fn bulk_delete_checks_claim_ids(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("bulk");
    let ids = post_n(&store, &q, 3).await;
    let claim = store.claim_for(&q, 60, 60, 2).await.unwrap().unwrap();

    assert_eq!(
        code(store.delete_messages(&q, &ids, &[random_id()]).await),
        ErrorCode::Forbidden
    );
    assert_eq!(
        store.get_messages(&q, &ids).await.unwrap().len(),
        3,
        "nothing is deleted when one claim does not match"
    );
    store
        .delete_messages(&q, &ids, &[random_id(), claim.id.clone()])
        .await
        .unwrap();
    assert!(store.get_messages(&q, &ids).await.unwrap().is_empty());

    // Without claim ids, claimed messages go too.
    let more = post_n(&store, &q, 2).await;
    store.claim_for(&q, 60, 60, 1).await.unwrap().unwrap();
    store.delete_messages(&q, &more, &[]).await.unwrap();
    assert!(store.get_messages(&q, &more).await.unwrap().is_empty());
    store
        .delete_messages(&q, &[random_id()], &[])
        .await
        .unwrap();
}

pub(crate) async fn pop_takes_free_messages_in_fifo_order(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("pop");
    let ids = post_n(&store, &q, 5).await;
    store.claim_for(&q, 60, 60, 1).await.unwrap().unwrap();

    let popped = store.pop_messages(&q, 2).await.unwrap();
    assert_eq!(ids_of(&popped), ids[1..3]);
    assert_eq!(json(&popped[0].body_json), json(r#"{"n": 1}"#));
    assert!(store.get_messages(&q, &ids[1..3]).await.unwrap().is_empty());
    assert_eq!(ids_of(&store.pop_messages(&q, 10).await.unwrap()), ids[3..]);
    assert!(store.pop_messages(&q, 10).await.unwrap().is_empty());
    assert_eq!(
        ids_of(&store.get_messages(&q, &ids).await.unwrap()),
        ids[..1],
        "the claimed message stays"
    );
}

/// One message posted with `post_checked_messages`.
async fn checked_post(
    store: &Arc<dyn MessageStore>,
    queue: &zaqar_proto::pb::QueueRef,
    expected: Option<&str>,
) -> CheckedPost {
    store
        .post_checked_messages(queue, CLIENT, &[message(0)], expected)
        .await
        .expect("checked post")
}

pub(crate) async fn checked_posts_store_only_under_the_expected_metadata(
    store: Arc<dyn MessageStore>,
) {
    let q = fresh_queue("checked");
    let stored = |store: Arc<dyn MessageStore>, q: zaqar_proto::pb::QueueRef| async move {
        listed_ids(&store, &q, listing(10)).await.len()
    };
    // A queue that does not exist is expected as "".
    assert_eq!(
        checked_post(&store, &q, Some("{}")).await,
        CheckedPost::StaleMetadata
    );
    assert!(store.get_queue(&q).await.unwrap().is_none());
    let first = checked_post(&store, &q, Some("")).await;
    assert!(matches!(first, CheckedPost::Posted(ids) if ids.len() == 1));
    let created = store
        .get_queue(&q)
        .await
        .unwrap()
        .expect("created by the post");

    let metadata = r#"{"_default_message_ttl": 60}"#;
    store.set_queue_metadata(&q, metadata).await.unwrap();
    for stale in ["", created.as_str()] {
        let refused = checked_post(&store, &q, Some(stale)).await;
        assert_eq!(refused, CheckedPost::StaleMetadata);
    }
    assert_eq!(stored(store.clone(), q.clone()).await, 1, "nothing stored");
    let current = checked_post(&store, &q, Some(metadata)).await;
    assert!(matches!(current, CheckedPost::Posted(_)));
    assert!(matches!(
        checked_post(&store, &q, None).await,
        CheckedPost::Posted(_)
    ));

    // A queue that encrypts takes no plain post, whether checked or not.
    let encrypting = r#"{"_enable_encrypt_messages": true}"#;
    store.set_queue_metadata(&q, encrypting).await.unwrap();
    for expected in [Some(encrypting), None] {
        let refused = checked_post(&store, &q, expected).await;
        assert_eq!(refused, CheckedPost::Encrypts);
    }
    let stale = checked_post(&store, &q, Some(metadata)).await;
    assert_eq!(stale, CheckedPost::StaleMetadata);
    let mentioned = r#"{"_enable_encrypt_messages": false}"#;
    store.set_queue_metadata(&q, mentioned).await.unwrap();
    assert!(matches!(
        checked_post(&store, &q, None).await,
        CheckedPost::Posted(_)
    ));
    assert_eq!(stored(store.clone(), q.clone()).await, 4);
}

fn once(key: &str, window_s: u32) -> Once {
    Once {
        key: key.to_string(),
        window_s,
    }
}

/// A post with an idempotency key, checked as the api-node posts.
async fn post_once(
    store: &Arc<dyn MessageStore>,
    queue: &QueueRef,
    messages: &[NewMessage],
    expected: Option<&str>,
    key: &Once,
) -> CheckedPost {
    store
        .post_once(
            queue,
            Post {
                client_id: CLIENT,
                messages,
                plain: true,
                expected_metadata: expected,
            },
            key,
        )
        .await
        .expect("post once")
}

pub(crate) async fn a_repeated_idempotency_key_stores_nothing(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("once");
    let two = [message(0), message(1)];
    let CheckedPost::Posted(first) = post_once(&store, &q, &two, None, &once("k1", 60)).await
    else {
        panic!("the first post with a key stores");
    };
    assert_eq!(first.len(), 2);
    let again = post_once(&store, &q, &[message(2)], None, &once("k1", 60)).await;
    assert_eq!(again, CheckedPost::Repeated(first.clone()));
    assert_eq!(listed_ids(&store, &q, listing(10)).await, first);

    // Keys are per queue, and another key stores.
    let other_queue = sibling(&q, "once-other");
    let elsewhere = post_once(&store, &other_queue, &two, None, &once("k1", 60)).await;
    assert!(matches!(elsewhere, CheckedPost::Posted(_)));
    let CheckedPost::Posted(second) =
        post_once(&store, &q, &[message(3)], None, &once("k2", 60)).await
    else {
        panic!("another key stores");
    };
    let both: Vec<_> = first.iter().chain(&second).cloned().collect();
    assert_eq!(listed_ids(&store, &q, listing(10)).await, both);

    // A refused post records no key.
    let stale = post_once(&store, &q, &two, Some("{\"x\": 1}"), &once("k3", 60)).await;
    assert_eq!(stale, CheckedPost::StaleMetadata);
    let metadata = store.get_queue(&q).await.unwrap().unwrap();
    let stored = post_once(&store, &q, &two, Some(&metadata), &once("k3", 60)).await;
    assert!(matches!(stored, CheckedPost::Posted(_)));
}

pub(crate) async fn concurrent_posts_with_one_key_store_once(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("once-racing");
    let key = once("racing", 60);
    let posts = (0..8).map(|n| {
        let (store, q, key) = (store.clone(), q.clone(), key.clone());
        tokio::spawn(async move { post_once(&store, &q, &[message(n)], None, &key).await })
    });
    let mut stored = Vec::new();
    let mut repeated = Vec::new();
    for post in posts.collect::<Vec<_>>() {
        match post.await.unwrap() {
            CheckedPost::Posted(ids) => stored.push(ids),
            CheckedPost::Repeated(ids) => repeated.push(ids),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(stored.len(), 1, "one post stores");
    assert!(repeated.iter().all(|ids| *ids == stored[0]));
    assert_eq!(listed_ids(&store, &q, listing(10)).await, stored[0]);
}

pub(crate) async fn an_idempotency_key_is_forgotten_after_its_window(store: Arc<dyn MessageStore>) {
    let q = fresh_queue("once-window");
    let CheckedPost::Posted(first) =
        post_once(&store, &q, &[message(0)], None, &once("w", 1)).await
    else {
        panic!("the first post stores");
    };
    tokio::time::sleep(PAST_ONE_SECOND).await;
    let CheckedPost::Posted(second) =
        post_once(&store, &q, &[message(1)], None, &once("w", 1)).await
    else {
        panic!("a key past its window stores again");
    };
    assert_ne!(first, second);
    let both: Vec<_> = first.iter().chain(&second).cloned().collect();
    assert_eq!(listed_ids(&store, &q, listing(10)).await, both);
}
