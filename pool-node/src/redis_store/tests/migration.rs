//! A store written in layout 1 or 2 is migrated when a pool-node opens it; one of
//! an unknown layout is refused.

use zaqar_proto::pb::QueueRef;
use zaqar_proto::ErrorCode;

use super::{everything, queue, TestRedis};
use crate::conformance::ClaimTerms;
use crate::redis_store::keys::{QueueKeys, Slots, LAYOUT_KEY};
use crate::redis_store::RedisStore;
use crate::store::prelude::*;
use crate::store::ListParams;

/// Writes a queue as layout 1 did: messages packed in one hash, every one of
/// them in the `ids` zset by seq. ARGV: claim id, then per message its id and
/// state ('free', 'claimed', 'claim ended', 'delayed').
const WRITE_LAYOUT_1: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000
local q, ids, exp, clm, dly, msg = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local cid, e = ARGV[1], now + 600000
redis.call('HSET', q, 'meta', '{}', 'x', e + 60000)
for i = 2, #ARGV, 2 do
  local id, state, seq = ARGV[i], ARGV[i + 1], i / 2
  local d, ci, ce, n = 0, '', 0, 0
  if state == 'claimed' then ci, ce, n = cid, now + 300000, 1 end
  if state == 'claim ended' then ci, ce, n = 'old', now - 1000, 1 end
  if state == 'delayed' then d = now + 300000 end
  redis.call('HSET', msg, id, cmsgpack.pack(e, d, ci, ce, n, 'client', 600, now, 'MD5:x', '{}'))
  redis.call('ZADD', ids, seq, id)
  redis.call('ZADD', exp, e, id)
  if ce > 0 then redis.call('ZADD', clm, ce, id) end
  if d > 0 then redis.call('ZADD', dly, d, id) end
  redis.call('HSET', q, 'seq', seq)
end
redis.call('HSET', KEYS[7], 't', 300, 'e', now + 300000, 'ids', ARGV[2])
"#;

async fn write_layout_1(store: &RedisStore, q: &QueueRef, claim_id: &str, states: &[&str]) {
    let keys = QueueKeys::new(q, Slots::Project);
    let mut script = redis::cmd("EVAL");
    script.arg(WRITE_LAYOUT_1).arg(7).arg(keys.record());
    for kind in ["ids", "exp", "clm", "dly", "m"] {
        script.arg(keys.record().replace(":q:", &format!(":{kind}:")));
    }
    script.arg(keys.claim(claim_id)).arg(claim_id);
    for (n, state) in states.iter().enumerate() {
        script.arg(format!("m{n}")).arg(*state);
    }
    store.query::<()>(&script).await.unwrap();
}

fn ids(messages: &[zaqar_proto::pb::Message]) -> Vec<&str> {
    messages.iter().map(|m| m.id.as_str()).collect()
}

#[tokio::test]
async fn a_layout_1_store_is_migrated_when_opened() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let first = RedisStore::connect(&redis.url()).await.unwrap();
    // As a layout 1 build left it: no layout key, queues with an `ids` zset.
    first
        .query::<()>(redis::cmd("DEL").arg(LAYOUT_KEY))
        .await
        .unwrap();
    let q = queue("old");
    let claim_id = "7d0c4d3e-0000-4000-8000-000000000001";
    let states = ["claimed", "free", "claim ended", "delayed", "free"];
    write_layout_1(&first, &q, claim_id, &states).await;
    let many = queue("many");
    write_layout_1(&first, &many, claim_id, &["free"; 1200]).await;

    let store = RedisStore::connect(&redis.url()).await.unwrap();
    let layout: u32 = store
        .query(redis::cmd("GET").arg(LAYOUT_KEY))
        .await
        .unwrap();
    assert_eq!(layout, 3);
    let old_ids: u64 = store
        .query(redis::cmd("EXISTS").arg(QueueKeys::new(&q, Slots::Project).layout_1_ids()))
        .await
        .unwrap();
    assert_eq!(old_ids, 0, "the layout 1 index is gone");

    let free = ListParams {
        echo: true,
        ..everything()
    };
    let (all, _) = store.list_messages(&q, &free).await.unwrap();
    assert_eq!(ids(&all), ["m0", "m1", "m2", "m3", "m4"]);
    let default = ListParams {
        include_claimed: false,
        include_delayed: false,
        ..free.clone()
    };
    let (listed, _) = store.list_messages(&q, &default).await.unwrap();
    assert_eq!(ids(&listed), ["m1", "m2", "m4"]);
    let claim = store.get_claim(&q, claim_id).await.unwrap();
    assert_eq!(ids(&claim.messages), ["m0"]);
    let stats = store.queue_stats(&q).await.unwrap();
    assert_eq!(
        (stats.total, stats.claimed, stats.delayed, stats.bytes),
        (5, 1, 1, 10)
    );
    let taken = store.claim_for(&q, 60, 60, 10).await.unwrap().unwrap();
    assert_eq!(ids(&taken.messages), ["m1", "m2", "m4"]);
    store.delete_claim(&q, claim_id).await.unwrap();
    let again = store.claim_for(&q, 60, 60, 10).await.unwrap().unwrap();
    assert_eq!(ids(&again.messages), ["m0"]);
    let stats = store.queue_stats(&many).await.unwrap();
    assert_eq!((stats.total, stats.bytes), (1200, 2400));
    let popped = store.pop_messages(&many, 3).await.unwrap();
    assert_eq!(ids(&popped), ["m0", "m1", "m2"]);
    assert_eq!(store.queue_stats(&many).await.unwrap().bytes, 2394);
}

#[tokio::test]
async fn a_layout_2_store_gets_the_bytes_of_its_queues_counted() {
    let Some(redis) = TestRedis::start() else {
        return;
    };
    let first = RedisStore::connect(&redis.url()).await.unwrap();
    let q = queue("sized");
    let bodies: Vec<_> = (0..1100)
        .map(|n| zaqar_proto::pb::NewMessage {
            ttl: 300,
            body_json: format!("\"{n}\""),
            ..Default::default()
        })
        .collect();
    first.post_messages(&q, "client", &bodies).await.unwrap();
    let expected: u64 = bodies.iter().map(|m| m.body_json.len() as u64).sum();
    assert_eq!(first.queue_stats(&q).await.unwrap().bytes, expected);
    // As a layout 2 build left it: no byte counts.
    let record = QueueKeys::new(&q, Slots::Project).record();
    first
        .query::<()>(redis::cmd("HDEL").arg(&record).arg("b"))
        .await
        .unwrap();
    first
        .query::<()>(redis::cmd("SET").arg(LAYOUT_KEY).arg(2))
        .await
        .unwrap();
    let store = RedisStore::connect(&redis.url()).await.unwrap();
    assert_eq!(store.queue_stats(&q).await.unwrap().bytes, expected);
    let leftovers: Vec<String> = store.query(redis::cmd("HKEYS").arg(&record)).await.unwrap();
    assert!(
        leftovers.iter().all(|field| !field.starts_with("bm:")),
        "{leftovers:?}"
    );
}

#[tokio::test]
async fn a_store_of_an_unknown_layout_is_refused() {
    let Some((redis, store)) = TestRedis::with_store().await else {
        return;
    };
    store
        .query::<()>(redis::cmd("SET").arg(LAYOUT_KEY).arg(4))
        .await
        .unwrap();
    let err = RedisStore::connect(&redis.url()).await.err().unwrap();
    assert_eq!(err.code, ErrorCode::Unavailable);
    assert!(err.description.contains("layout 4"), "{}", err.description);
}
