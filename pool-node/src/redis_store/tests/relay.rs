//! The activity relay: a post through one pool-node of a Redis store reaches the
//! `WatchQueues` streams of another pool-node of the same store, on one server, on
//! a Redis Cluster (`ZAQAR_TEST_REDIS_CLUSTER_URL`, skipped when unset unless `CI` is
//! set) and, at the end of `sentinel.rs`, on the master a Sentinel group names.

use std::sync::Arc;

use super::{queue, TestRedis};
use crate::redis_store::RedisStore;

/// Two pool-nodes of the store at `url` relay their activity to each other.
pub(super) async fn posts_through_one_reach_the_streams_of_the_other(url: &str) {
    let open = || async { Arc::new(RedisStore::connect(url).await.expect("the store opens")) };
    crate::activity::assert_relayed(open().await, open().await, queue("relayed")).await;
}

#[tokio::test]
async fn a_post_through_one_pool_node_wakes_the_streams_of_another() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    posts_through_one_reach_the_streams_of_the_other(&redis.url()).await;
}

#[tokio::test]
async fn the_relay_works_across_a_redis_cluster() {
    let Some(url) = zaqar_tests::test_server_url("ZAQAR_TEST_REDIS_CLUSTER_URL") else {
        return;
    };
    posts_through_one_reach_the_streams_of_the_other(&url).await;
}
