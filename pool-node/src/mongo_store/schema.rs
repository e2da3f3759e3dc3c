//! The indexes of the MongoDB store, and the upgrade of documents written by older builds.
//!
//! A message's `st` says which range of the index `by_state` (project, queue,
//! state, seq) it is in: a claim, a pop or a default listing reads windows of the
//! free range only (`scan.rs`), and a listing with claimed or delayed messages
//! reads windows of the unique index on project, queue and seq. Claims that end
//! and delays that pass are found through two partial indexes with the state as
//! a key before their end times (`messages::free_ended`), so that each is one
//! range of an index for a server that routes a query by one range (SecantusDB).
//!
//! Versions, kept in the `counters` document [`SCHEMA_KEY`]: messages written
//! before 2026-12-04 have no `st` (version 1 sets it once); version 2 replaced the
//! end-time indexes without `st` (`claims_ending`, `delays_ending`), which `upgrade` drops.
//! Version 3 keeps each queue's messages per state in count documents (`counts.rs`),
//! filled once from the messages when a database of an older version is opened
//! (stop a pool's older pool-nodes before the first of this build starts: their
//! writes are not counted). Version 4 keeps each message's body size (`z`) and
//! each queue's bytes with its counts; a database of an older version gets the
//! sizes of its messages and its counts made again, once. Only the expiry sweep (`messages::remove_expired_messages`) removes expired
//! messages, counting them: the messages' expiry index is no TTL index, and
//! [`MongoStore::create_indexes`] replaces the TTL index of older builds.

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::IndexModel;

use super::fields::{self, BODY, CLAIMED, CLAIM_EXPIRES, DELAYED, FREE, ID, SIZE, STATE, VISIBLE};
use super::{now_ms, store_error, MongoStore};
use crate::store::StoreResult;

/// The index of messages by state and seq: free messages are one range of it.
pub(super) const BY_STATE: &str = "by_state";
/// The partial indexes of claimed messages by claim expiry, and delayed ones by delay end.
pub(super) const CLAIM_ENDS: &str = "claim_ends";
pub(super) const DELAY_ENDS: &str = "delay_ends";
/// The indexes version 1 had in their place.
const VERSION_1_INDEXES: [&str; 2] = ["claims_ending", "delays_ending"];
/// The server's error code for a collection that does not exist.
const NAMESPACE_NOT_FOUND: i32 = 26;
/// The `counters` document holding the schema version (never a counter's key,
/// which always has two `:`).
const SCHEMA_KEY: &str = "schema";
/// The schema version this build writes.
const VERSION: i64 = 4;

impl MongoStore {
    /// The indexes every query relies on, and the TTL indexes that remove expired
    /// claims, idempotency keys and subscriptions (correctness never waits for
    /// them). Creating an existing index is a no-op.
    pub(super) async fn create_indexes(&self) -> StoreResult<()> {
        self.drop_message_ttl().await?;
        let unique = || IndexOptions::builder().unique(true).build();
        let ttl = || IndexOptions::builder().expire_after(Duration::ZERO).build();
        let index = |keys: Document, options: Option<IndexOptions>| {
            IndexModel::builder().keys(keys).options(options).build()
        };
        use fields::*;
        self.queues
            .create_index(index(doc! { PROJECT: 1, QUEUE: 1 }, Some(unique())))
            .await
            .map_err(store_error)?;
        let partial = |state: i32| {
            IndexOptions::builder()
                .partial_filter_expression(doc! { STATE: state })
                .build()
        };
        let named = |keys: Document, options: Option<IndexOptions>, name: &str| {
            let mut options = options.unwrap_or_default();
            options.name = Some(name.to_string());
            index(keys, Some(options))
        };
        self.messages
            .create_indexes([
                index(doc! { PROJECT: 1, QUEUE: 1, SEQ: 1 }, Some(unique())),
                named(
                    doc! { PROJECT: 1, QUEUE: 1, STATE: 1, SEQ: 1 },
                    None,
                    BY_STATE,
                ),
                named(
                    doc! { PROJECT: 1, QUEUE: 1, STATE: 1, CLAIM_EXPIRES: 1 },
                    Some(partial(CLAIMED)),
                    CLAIM_ENDS,
                ),
                named(
                    doc! { PROJECT: 1, QUEUE: 1, STATE: 1, VISIBLE: 1 },
                    Some(partial(DELAYED)),
                    DELAY_ENDS,
                ),
                index(doc! { PROJECT: 1, QUEUE: 1, CLAIM_ID: 1 }, None),
                index(doc! { EXPIRES: 1 }, None),
            ])
            .await
            .map_err(store_error)?;
        self.claims
            .create_index(index(doc! { EXPIRES: 1 }, Some(ttl())))
            .await
            .map_err(store_error)?;
        self.idempotency
            .create_index(index(doc! { EXPIRES: 1 }, Some(ttl())))
            .await
            .map_err(store_error)?;
        super::relay::collection(self)
            .create_index(index(doc! { EXPIRES: 1 }, Some(ttl())))
            .await
            .map_err(store_error)?;
        self.subscriptions
            .create_indexes([
                index(doc! { PROJECT: 1, QUEUE: 1, SUBSCRIBER: 1 }, Some(unique())),
                index(doc! { PROJECT: 1, QUEUE: 1, SEQ: 1 }, None),
                index(doc! { EXPIRES: 1 }, Some(ttl())),
            ])
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Drops the messages' TTL index of builds before 2026-12-07, whose TTL monitor
    /// removed messages the expiry sweep had not counted (at once before
    /// 2026-12-06, an hour after they expired since); [`Self::create_indexes`]
    /// makes the expiry index again without a TTL.
    async fn drop_message_ttl(&self) -> StoreResult<()> {
        let mut indexes = match self.messages.list_indexes().await {
            Ok(indexes) => indexes,
            // A new database has no messages collection yet.
            Err(err) if super::error_code(&err) == Some(NAMESPACE_NOT_FOUND) => return Ok(()),
            Err(err) => return Err(store_error(err)),
        };
        let mut ttl = Vec::new();
        while let Some(index) = indexes.try_next().await.map_err(store_error)? {
            let options = index.options.unwrap_or_default();
            if options.expire_after.is_some() {
                ttl.extend(options.name);
            }
        }
        for name in ttl {
            self.messages.drop_index(&name).await.map_err(store_error)?;
            tracing::warn!(
                index = name,
                "mongodb expiry index of an older build dropped"
            );
        }
        Ok(())
    }

    /// Brings a database written by an older build to [`VERSION`], once.
    pub(super) async fn upgrade(&self) -> StoreResult<()> {
        let version = self
            .counters
            .find_one(doc! { fields::ID: SCHEMA_KEY })
            .await
            .map_err(store_error)?
            .map_or(0, |document| fields::int(&document, fields::LAST));
        if version >= VERSION {
            return Ok(());
        }
        if version < 1 {
            self.give_states().await?;
        }
        self.drop_version_1_indexes().await?;
        if version < 4 {
            self.give_sizes().await?;
            let queues = super::counts::fill(self).await.map_err(store_error)?;
            tracing::warn!(queues, "mongodb messages counted per queue");
        }
        self.counters
            .update_one(
                doc! { fields::ID: SCHEMA_KEY },
                doc! { "$set": { fields::LAST: VERSION } },
            )
            .upsert(true)
            .await
            .map_err(store_error)?;
        Ok(())
    }

    /// Gives every message written before sizes were kept the size of its body: in
    /// one update where the server computes it (`$strLenBytes`), else one update per
    /// message.
    async fn give_sizes(&self) -> StoreResult<()> {
        let computed = self
            .messages
            .update_many(
                doc! { SIZE: { "$exists": false } },
                vec![doc! { "$set": { SIZE: { "$strLenBytes": format!("${BODY}") } } }],
            )
            .await;
        match computed {
            Ok(done) => {
                if done.modified_count > 0 {
                    tracing::warn!(
                        messages = done.modified_count,
                        "mongodb messages given their size"
                    );
                }
                return Ok(());
            }
            Err(err) => tracing::info!(error = %err,
                "the server cannot compute the sizes of messages: setting them one by one"),
        }
        let mut without_size = self
            .messages
            .find(doc! { SIZE: { "$exists": false } })
            .projection(doc! { ID: 1, BODY: 1 })
            .await
            .map_err(store_error)?;
        let mut given = 0u64;
        while let Some(message) = without_size.try_next().await.map_err(store_error)? {
            let size = fields::text(&message, BODY).len() as i64;
            let id = message.get(ID).cloned().unwrap_or_default();
            self.messages
                .update_one(doc! { ID: id }, doc! { "$set": { SIZE: size } })
                .await
                .map_err(store_error)?;
            given += 1;
        }
        if given > 0 {
            tracing::warn!(messages = given, "mongodb messages given their size");
        }
        Ok(())
    }

    /// Gives every message written before states existed its state.
    async fn give_states(&self) -> StoreResult<()> {
        let now = now_ms();
        let stateless = |condition: Document| {
            let mut filter = doc! { STATE: { "$exists": false } };
            filter.extend(condition);
            filter
        };
        for (condition, state) in [
            (doc! { CLAIM_EXPIRES: { "$gt": now } }, CLAIMED),
            (doc! { VISIBLE: { "$gt": now } }, DELAYED),
            (doc! {}, FREE),
        ] {
            let done = self
                .messages
                .update_many(stateless(condition), doc! { "$set": { STATE: state } })
                .await
                .map_err(store_error)?;
            if done.modified_count > 0 {
                tracing::warn!(
                    messages = done.modified_count,
                    state,
                    "mongodb messages upgraded"
                );
            }
        }
        Ok(())
    }

    /// Drops the end-time indexes of version 1, where they exist.
    async fn drop_version_1_indexes(&self) -> StoreResult<()> {
        let existing: Vec<String> = self
            .messages
            .list_index_names()
            .await
            .map_err(store_error)?;
        for name in VERSION_1_INDEXES {
            if existing.iter().any(|have| have == name) {
                self.messages.drop_index(name).await.map_err(store_error)?;
                tracing::warn!(index = name, "mongodb index of an older build dropped");
            }
        }
        Ok(())
    }
}
