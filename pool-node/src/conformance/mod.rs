//! The conformance suite: the delivery semantics of `MessageStore`, written once
//! and run against every backend.
//!
//! Each behaviour is a plain `async fn(Arc<dyn MessageStore>)` in one of the
//! submodules; [`conformance_suite!`] turns the list of them into one
//! `#[tokio::test]` each for a backend:
//!
//! ```ignore
//! conformance_suite!(sqlite, crate::conformance::open_sqlite());
//! ```
//!
//! The opener returns `None` to skip (a backend whose server is not configured).
//! Every test works in a fresh random project, so tests can share one server.

mod claims;
mod delivery;
mod depth;
mod messages;
mod queues;
mod subscriptions;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tempfile::TempDir;
use uuid::Uuid;
use zaqar_proto::pb::{ClaimReply, Message, NewMessage, QueueRef};
use zaqar_proto::{ErrorCode, ZaqarError};

use crate::store::{ClaimStore, Lease, ListParams, MessageStore, NewClaim, StoreResult};

pub(crate) use claims::*;
pub(crate) use delivery::*;
pub(crate) use depth::*;
pub(crate) use messages::*;
pub(crate) use queues::*;
pub(crate) use subscriptions::*;

/// Generates one test per behaviour for the backend opened by `$open`
/// (an expression evaluating to a future of `Option<TestStore>`).
macro_rules! conformance_suite {
    ($backend:ident, $open:expr) => {
        mod $backend {
            $crate::conformance::conformance_suite!(@tests $open;
                queue_lifecycle,
                delete_queue_keeps_subscriptions,
                post_creates_the_queue,
                checked_posts_store_only_under_the_expected_metadata,
                a_repeated_idempotency_key_stores_nothing,
                concurrent_posts_with_one_key_store_once,
                an_idempotency_key_is_forgotten_after_its_window,
                stats_count_claimed_free_and_delayed,
                stats_follow_claims_and_delays_that_end_and_messages_that_expire,
                stats_count_the_bytes_of_the_bodies,
                purge_removes_messages_or_subscriptions,
                projects_are_isolated,
                health_is_ok,
                listing_is_fifo_and_pages_with_the_marker,
                an_unparseable_marker_is_bad_request,
                echo_false_hides_the_clients_own_messages,
                include_claimed_lists_claimed_messages,
                delayed_messages_are_hidden_until_the_delay_passes,
                messages_expire_without_any_cleanup,
                get_messages_omits_missing_ids,
                delete_message_follows_the_claim_rules,
                bulk_delete_checks_claim_ids,
                pop_takes_free_messages_in_fifo_order,
                claim_takes_up_to_limit_in_fifo_order,
                concurrent_claims_never_share_a_message,
                get_update_and_delete_a_claim,
                claim_expiry_frees_the_messages,
                claim_extends_the_message_ttl,
                claim_count_grows_with_each_claim,
                exhausted_messages_move_to_the_dead_letter_queue,
                claims_interleave_with_expiring_claims,
                delayed_messages_become_free_in_order,
                dead_lettering_at_depth_keeps_fifo,
                duplicate_subscriber_returns_the_existing_subscription,
                subscriptions_page_with_the_marker,
                update_subscription_rejects_a_duplicate_subscriber,
                confirm_subscription,
                subscriptions_expire,
                delivery_cursors_resume_listings,
                delivery_cursors_go_with_their_subscription,
                delivery_leases_have_one_holder_at_a_time,
                subscribed_queues_lists_every_project,
                a_recreated_queue_continues_after_old_cursors,
            );
        }
    };
    (@tests $open:expr; $($test:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $test() {
                let Some(opened) = $open.await else { return };
                $crate::conformance::$test(::std::sync::Arc::clone(&opened.store)).await;
            }
        )+
    };
}
pub(crate) use conformance_suite;

conformance_suite!(sqlite, crate::conformance::open_sqlite());
conformance_suite!(redis, crate::conformance::open_redis());
conformance_suite!(redis_cluster, crate::conformance::open_redis_cluster());
#[cfg(feature = "mongodb")]
conformance_suite!(mongo, crate::conformance::open_mongo());

/// A store under test, with what must outlive it (its temporary directory).
pub(crate) struct TestStore {
    pub(crate) store: Arc<dyn MessageStore>,
    _dir: Option<TempDir>,
}

/// A fresh SQLite store in a temporary directory.
pub(crate) async fn open_sqlite() -> Option<TestStore> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("zaqar.db");
    let store = crate::sqlite_store::open(path.to_str().expect("a UTF-8 path"))
        .await
        .expect("the sqlite store opens");
    Some(TestStore {
        store,
        _dir: Some(dir),
    })
}

/// The Redis at `ZAQAR_TEST_REDIS_URL`; skipped when unset, unless `CI` is set.
pub(crate) async fn open_redis() -> Option<TestStore> {
    let url = zaqar_tests::test_server_url("ZAQAR_TEST_REDIS_URL")?;
    let store = crate::redis_store::open(&url)
        .await
        .expect("the redis store opens");
    Some(TestStore { store, _dir: None })
}

/// The Redis Cluster at `ZAQAR_TEST_REDIS_CLUSTER_URL`; skipped when unset, unless `CI` is set.
pub(crate) async fn open_redis_cluster() -> Option<TestStore> {
    let url = zaqar_tests::test_server_url("ZAQAR_TEST_REDIS_CLUSTER_URL")?;
    let store = crate::redis_store::open(&url)
        .await
        .expect("the redis cluster store opens");
    Some(TestStore { store, _dir: None })
}

/// `ZAQAR_TEST_MONGO_URL`; `None` (the test is skipped) when unset, unless `CI` is set.
#[cfg(feature = "mongodb")]
pub(crate) fn test_mongo_url() -> Option<String> {
    zaqar_tests::test_server_url("ZAQAR_TEST_MONGO_URL")
}

/// The MongoDB at `ZAQAR_TEST_MONGO_URL` (see [`test_mongo_url`]).
#[cfg(feature = "mongodb")]
pub(crate) async fn open_mongo() -> Option<TestStore> {
    let url = test_mongo_url()?;
    let store = crate::mongo_store::open(&url)
        .await
        .expect("the mongodb store opens");
    Some(TestStore { store, _dir: None })
}

// ------------------------------------------------------------ shared helpers

/// The client that posts in these tests.
pub(crate) const CLIENT: &str = "0b7b1dc4-a2c6-4d05-8d3a-7f3f6f0c4a11";
/// Another client, that reads.
pub(crate) const OTHER_CLIENT: &str = "5c0e9a2e-3b8f-4f6e-9d1a-2e8c7b6a5d44";
/// Long enough for a ttl or delay of one second to have passed on any backend.
pub(crate) const PAST_ONE_SECOND: Duration = Duration::from_millis(1300);

/// A queue in a fresh project.
pub(crate) fn fresh_queue(name: &str) -> QueueRef {
    QueueRef {
        project: Uuid::new_v4().to_string(),
        queue: name.to_string(),
    }
}

/// Another queue of the same project.
pub(crate) fn sibling(queue: &QueueRef, name: &str) -> QueueRef {
    QueueRef {
        project: queue.project.clone(),
        queue: name.to_string(),
    }
}

pub(crate) fn message(n: usize) -> NewMessage {
    NewMessage {
        ttl: 300,
        delay: 0,
        body_json: format!(r#"{{"n":{n}}}"#),
    }
}

/// The calls of [`ClaimStore`] with a claim's terms in a row, as the tests write
/// them: `store.claim_for(&q, ttl, grace, limit)`.
#[async_trait]
pub(crate) trait ClaimTerms {
    /// [`ClaimStore::create_claim`] of up to `limit` messages for `ttl` and `grace`.
    async fn claim_for(
        &self,
        queue: &QueueRef,
        ttl: u32,
        grace: u32,
        limit: u32,
    ) -> StoreResult<Option<ClaimReply>>;

    /// [`ClaimStore::update_claim`] of `id` for `ttl` and `grace`.
    async fn renew_for(&self, queue: &QueueRef, id: &str, ttl: u32, grace: u32) -> StoreResult<()>;
}

#[async_trait]
impl<S: ClaimStore + ?Sized> ClaimTerms for S {
    async fn claim_for(
        &self,
        queue: &QueueRef,
        ttl: u32,
        grace: u32,
        limit: u32,
    ) -> StoreResult<Option<ClaimReply>> {
        let lease = Lease { ttl, grace };
        self.create_claim(queue, NewClaim { lease, limit }).await
    }

    async fn renew_for(&self, queue: &QueueRef, id: &str, ttl: u32, grace: u32) -> StoreResult<()> {
        self.update_claim(queue, id, Lease { ttl, grace }).await
    }
}

/// A message `{}` that lives `ttl` seconds and is hidden for the first `delay`.
pub(crate) fn empty_message(ttl: u32, delay: u32) -> NewMessage {
    NewMessage {
        ttl,
        delay,
        body_json: "{}".into(),
    }
}

/// Posts `count` messages `{"n": i}` as [`CLIENT`], one request each, and returns their ids.
pub(crate) async fn post_n(
    store: &Arc<dyn MessageStore>,
    queue: &QueueRef,
    count: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..count {
        ids.extend(post(store, queue, message(n)).await);
    }
    ids
}

pub(crate) async fn post(
    store: &Arc<dyn MessageStore>,
    queue: &QueueRef,
    message: NewMessage,
) -> Vec<String> {
    store
        .post_messages(queue, CLIENT, &[message])
        .await
        .expect("post")
}

/// Subscribes `subscriber` to `queue` (confirmed, for an hour, no options); its id.
pub(crate) async fn subscribe(
    store: &Arc<dyn MessageStore>,
    queue: &QueueRef,
    subscriber: &str,
) -> String {
    let (id, _) = store
        .create_subscription(queue, subscriber, 3600, "{}", true)
        .await
        .unwrap();
    id
}

/// A listing as [`OTHER_CLIENT`] of up to `limit` free, visible messages.
pub(crate) fn listing(limit: u32) -> ListParams {
    ListParams {
        client_id: OTHER_CLIENT.to_string(),
        limit,
        echo: true,
        ..ListParams::default()
    }
}

/// The ids of a listing from the start.
pub(crate) async fn listed_ids(
    store: &Arc<dyn MessageStore>,
    queue: &QueueRef,
    params: ListParams,
) -> Vec<String> {
    let (messages, _) = store.list_messages(queue, &params).await.expect("list");
    ids_of(&messages)
}

pub(crate) fn ids_of(messages: &[Message]) -> Vec<String> {
    messages.iter().map(|m| m.id.clone()).collect()
}

pub(crate) fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).expect("valid JSON")
}

/// The code of an error the call must have returned.
pub(crate) fn code<T: std::fmt::Debug>(result: Result<T, ZaqarError>) -> ErrorCode {
    result.expect_err("the call must fail").code
}

pub(crate) fn random_id() -> String {
    Uuid::new_v4().to_string()
}
