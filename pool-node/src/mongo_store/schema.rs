//! The indexes of the MongoDB store, and the upgrade of documents written by older builds.
//!
//! A message's `st` says which range of the index `by_state` (project, queue,
//! state, seq) it is in: a claim, a pop or a default listing reads the free
//! range only, and a listing with claimed or delayed messages merges the
//! ranges (`SORT_MERGE`). Claims that end and delays that pass are found through
//! two partial indexes on their end times (`messages::free_ended`). Messages
//! written before 2026-12-04 have no `st`: `upgrade` sets it once, and records
//! that it did in the `counters` document [`SCHEMA_KEY`].

use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::options::IndexOptions;
use mongodb::IndexModel;

use super::fields::{self, CLAIMED, CLAIM_EXPIRES, DELAYED, FREE, STATE, VISIBLE};
use super::{now_ms, store_error, MongoStore};
use crate::store::StoreResult;

/// The index of messages by state and seq: free messages are one range of it.
pub(super) const BY_STATE: &str = "by_state";
/// The partial indexes of claimed messages by claim expiry, and delayed ones by delay end.
pub(super) const CLAIMS_ENDING: &str = "claims_ending";
pub(super) const DELAYS_ENDING: &str = "delays_ending";
/// The `counters` document holding the schema version (never a counter's key,
/// which always has two `:`).
const SCHEMA_KEY: &str = "schema";
/// The schema version this build writes.
const VERSION: i64 = 1;

impl MongoStore {
    /// The indexes every query relies on, and the TTL indexes that remove expired
    /// documents (correctness never waits for them). Creating an existing index is a no-op.
    pub(super) async fn create_indexes(&self) -> StoreResult<()> {
        let unique = || IndexOptions::builder().unique(true).build();
        let ttl = || {
            IndexOptions::builder()
                .expire_after(Duration::from_secs(0))
                .build()
        };
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
                    doc! { PROJECT: 1, QUEUE: 1, CLAIM_EXPIRES: 1 },
                    Some(partial(CLAIMED)),
                    CLAIMS_ENDING,
                ),
                named(
                    doc! { PROJECT: 1, QUEUE: 1, VISIBLE: 1 },
                    Some(partial(DELAYED)),
                    DELAYS_ENDING,
                ),
                index(doc! { PROJECT: 1, QUEUE: 1, CLAIM_ID: 1 }, None),
                index(doc! { EXPIRES: 1 }, Some(ttl())),
            ])
            .await
            .map_err(store_error)?;
        self.claims
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

    /// Gives every message written by an older build its state, once.
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
}
