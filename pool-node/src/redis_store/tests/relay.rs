//! The activity relay: a post through one pool-node of a Redis store reaches the
//! `WatchQueues` streams of another pool-node of the same store, on one server, on
//! a Redis Cluster (`ZAQAR_TEST_REDIS_CLUSTER_URL`, skipped when unset unless `CI` is
//! set) and, at the end of `sentinel.rs`, on the master a Sentinel group names.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use tonic::Request;
use zaqar_proto::pb::pool_service_server::PoolService;
use zaqar_proto::pb::{PostMessagesRequest, QueueActivity, WatchQueuesRequest};

use super::{message, queue, TestRedis};
use crate::redis_store::RedisStore;
use crate::server::PoolServer;

/// Two pool-nodes of the store at `url`: what is posted through the second is named
/// by an event of the first's stream (the relay's subscription may take a moment to
/// be made, so the post is made again each second, for at most 10 s).
pub(super) async fn posts_through_one_reach_the_streams_of_the_other(url: &str) {
    let open = || async { Arc::new(RedisStore::connect(url).await.expect("the store opens")) };
    let watched = PoolServer::new(open().await);
    let posting = PoolServer::new(open().await);
    let mut stream = watched
        .watch_queues(Request::new(WatchQueuesRequest {}))
        .await
        .expect("a stream")
        .into_inner();
    let first = stream
        .next()
        .await
        .expect("an event")
        .expect("not an error");
    assert_eq!(first, QueueActivity::default(), "the stream starts live");

    let q = queue("relayed");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(
            Instant::now() < deadline,
            "no event named the queue posted to"
        );
        posting
            .post_messages(Request::new(PostMessagesRequest {
                queue: Some(q.clone()),
                client_id: "producer".into(),
                messages: vec![message(60)],
                ..PostMessagesRequest::default()
            }))
            .await
            .expect("the post");
        let heard = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(event) = stream.next().await {
                let event = event.expect("not an error");
                if event.queues.contains(&q) {
                    return true;
                }
            }
            false
        })
        .await;
        if heard == Ok(true) {
            return;
        }
    }
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
    let Ok(url) = std::env::var("ZAQAR_TEST_REDIS_CLUSTER_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "ZAQAR_TEST_REDIS_CLUSTER_URL must be set when CI is set"
        );
        eprintln!("skipped: ZAQAR_TEST_REDIS_CLUSTER_URL not set");
        return;
    };
    posts_through_one_reach_the_streams_of_the_other(&url).await;
}
