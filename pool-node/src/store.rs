//! The `MessageStore` seam: what every message store backend provides.

use std::time::Duration;

use async_trait::async_trait;
use zaqar_proto::pb::{ClaimReply, Message, NewMessage, QueueRef, QueueStatsReply, Subscription};
use zaqar_proto::{ErrorCode, ZaqarError};

pub type StoreResult<T> = Result<T, ZaqarError>;

/// Which messages a listing returns, and where it starts.
#[derive(Debug, Clone, Default)]
pub struct ListParams {
    /// The client asking; with `echo == false` its own messages are left out.
    pub client_id: String,
    /// Opaque cursor returned by a previous listing; empty to start at the oldest message.
    pub marker: String,
    pub limit: u32,
    pub echo: bool,
    pub include_claimed: bool,
    pub include_delayed: bool,
}

/// Changes to a subscription; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionUpdate {
    pub subscriber: Option<String>,
    pub ttl: Option<u32>,
    pub options_json: Option<String>,
}

/// A post's idempotency key (`Idempotency-Key`): a post whose key was seen on its
/// queue less than `window_s` seconds before stores nothing and answers the ids of
/// the post that brought it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Once {
    pub key: String,
    pub window_s: u32,
}

/// A post as [`MessageLog::post_once`] takes it: who posts what, and the checks.
#[derive(Debug, Clone, Copy)]
pub struct Post<'a> {
    pub client_id: &'a str,
    pub messages: &'a [NewMessage],
    /// The bodies are not encrypted yet: nothing is stored when the queue encrypts
    /// ([`CheckedPost::Encrypts`]).
    pub plain: bool,
    /// Nothing is stored unless the queue's metadata is exactly this ("" for a
    /// queue that does not exist): [`CheckedPost::StaleMetadata`].
    pub expected_metadata: Option<&'a str>,
}

/// What [`QueueStore::purge_queue`] deletes of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purge {
    /// The messages, with their claims.
    pub messages: bool,
    pub subscriptions: bool,
}

impl Purge {
    /// The messages and their claims; the subscriptions stay.
    pub const MESSAGES: Purge = Purge {
        messages: true,
        subscriptions: false,
    };
    /// The subscriptions; the messages stay.
    pub const SUBSCRIPTIONS: Purge = Purge {
        messages: false,
        subscriptions: true,
    };
}

/// How long a claim holds its messages: it ends `ttl` seconds after it was made or
/// renewed, and its messages live at least `ttl + grace` seconds from then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub ttl: u32,
    pub grace: u32,
}

/// A claim to make with [`ClaimStore::create_claim`]: up to `limit` free messages
/// for `lease`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewClaim {
    pub lease: Lease,
    pub limit: u32,
}

/// What [`MessageLog::post_checked_messages`] (or [`MessageLog::post_once`]) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckedPost {
    /// Stored, with these new ids in order.
    Posted(Vec<String>),
    /// Nothing stored: a post with the same idempotency key stored these, within
    /// the key's window.
    Repeated(Vec<String>),
    /// Nothing stored: the queue encrypts its bodies.
    Encrypts,
    /// Nothing stored: the queue's metadata is not the one expected.
    StaleMetadata,
}

impl CheckedPost {
    /// How many messages this post stored; `None` when it stored nothing.
    pub fn posted(&self) -> Option<usize> {
        match self {
            CheckedPost::Posted(ids) => Some(ids.len()),
            _ => None,
        }
    }
}

/// Queues: their records, metadata, counts and purges.
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Creates a queue with `metadata_json` (a JSON object). Returns false if it
    /// already existed; its metadata is then left as it was.
    async fn create_queue(&self, queue: &QueueRef, metadata_json: &str) -> StoreResult<bool>;

    /// The stored metadata of a queue (JSON object text), or `None` if it does not exist.
    async fn get_queue(&self, queue: &QueueRef) -> StoreResult<Option<String>>;

    /// Replaces a queue's metadata; `NotFound` if the queue does not exist.
    async fn set_queue_metadata(&self, queue: &QueueRef, metadata_json: &str) -> StoreResult<()>;

    /// Deletes a queue with its messages and claims. Its subscriptions stay, as in
    /// Zaqar (they outlive the queue). Deleting a missing queue succeeds.
    async fn delete_queue(&self, queue: &QueueRef) -> StoreResult<()>;

    /// Counts of a queue (without scanning where the backend can): `claimed`,
    /// `free` (not claimed, delayed included), `delayed`, `total`, and the oldest
    /// and newest live message. All zero for a missing queue.
    async fn queue_stats(&self, queue: &QueueRef) -> StoreResult<QueueStatsReply>;

    /// Deletes all messages (and claims) and/or all subscriptions of a queue.
    async fn purge_queue(&self, queue: &QueueRef, purge: Purge) -> StoreResult<()>;
}

/// Messages: posts, listings, reads, deletes and pops.
#[async_trait]
pub trait MessageLog: QueueStore + Send + Sync {
    /// Appends messages in order and returns their new ids in the same order.
    /// Creates the queue (empty metadata) if it does not exist, as Zaqar v2 does.
    async fn post_messages(
        &self,
        queue: &QueueRef,
        client_id: &str,
        messages: &[NewMessage],
    ) -> StoreResult<Vec<String>>;

    /// Like [`Self::post_messages`] for bodies that are not to be encrypted, but
    /// stores nothing when the queue encrypts (its metadata has
    /// `_enable_encrypt_messages: true`: the caller seals the bodies and posts
    /// again) or, with `expected_metadata`, when the queue's metadata is not exactly
    /// that ("" for a queue that does not exist). A store that can check and post
    /// in one call overrides this.
    async fn post_checked_messages(
        &self,
        queue: &QueueRef,
        client_id: &str,
        messages: &[NewMessage],
        expected_metadata: Option<&str>,
    ) -> StoreResult<CheckedPost> {
        let metadata = self.get_queue(queue).await?;
        if expected_metadata.is_some_and(|expected| metadata.as_deref().unwrap_or("") != expected) {
            return Ok(CheckedPost::StaleMetadata);
        }
        if metadata
            .as_deref()
            .is_some_and(crate::encryption::queue_encrypts)
        {
            return Ok(CheckedPost::Encrypts);
        }
        let ids = self.post_messages(queue, client_id, messages).await?;
        Ok(CheckedPost::Posted(ids))
    }

    /// The checks of `post` (see [`Post`]) and the post, once per `once.key`:
    /// the check of the key, the post and the key's record are one atomic step, so
    /// that of two posts with one key in one window (concurrent ones too) one stores
    /// and the other answers [`CheckedPost::Repeated`] with its ids. A refused post
    /// records no key.
    async fn post_once(
        &self,
        queue: &QueueRef,
        post: Post<'_>,
        once: &Once,
    ) -> StoreResult<CheckedPost>;

    /// Up to `limit` live messages after `marker`, oldest first, and the cursor
    /// that continues the listing (the marker itself when nothing followed).
    /// A marker that cannot be parsed is `BadRequest`.
    async fn list_messages(
        &self,
        queue: &QueueRef,
        params: &ListParams,
    ) -> StoreResult<(Vec<Message>, String)>;

    /// The live messages among `ids` (missing ones are left out), in the order of `ids`.
    async fn get_messages(&self, queue: &QueueRef, ids: &[String]) -> StoreResult<Vec<Message>>;

    /// Deletes the messages `ids`. With `claim_ids` non-empty, every claimed
    /// message among them must be held by one of those claims (`Forbidden`
    /// otherwise, and nothing is deleted).
    async fn delete_messages(
        &self,
        queue: &QueueRef,
        ids: &[String],
        claim_ids: &[String],
    ) -> StoreResult<()>;

    /// Deletes one message, following the claim rules above.
    async fn delete_message(
        &self,
        queue: &QueueRef,
        id: &str,
        claim_id: Option<&str>,
    ) -> StoreResult<()>;

    /// Removes and returns up to `limit` free messages, oldest first, atomically.
    async fn pop_messages(&self, queue: &QueueRef, limit: u32) -> StoreResult<Vec<Message>>;
}

/// Claims: taking free messages for a while, renewing and releasing them.
#[async_trait]
pub trait ClaimStore: Send + Sync {
    /// Claims up to `claim.limit` free messages; `None` when there were none.
    /// The reply carries the claim id, its ttl, age 0 and the claimed messages.
    async fn create_claim(
        &self,
        queue: &QueueRef,
        claim: NewClaim,
    ) -> StoreResult<Option<ClaimReply>>;

    /// A live claim with the messages it still holds; `NotFound` otherwise.
    async fn get_claim(&self, queue: &QueueRef, claim_id: &str) -> StoreResult<ClaimReply>;

    /// Renews the live claim `id` for `lease`, counted from now; `NotFound` if there
    /// is no live claim.
    async fn update_claim(&self, queue: &QueueRef, id: &str, lease: Lease) -> StoreResult<()>;

    /// Releases a claim: its messages become free again. A missing claim succeeds.
    async fn delete_claim(&self, queue: &QueueRef, claim_id: &str) -> StoreResult<()>;
}

/// Subscriptions of a queue.
#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Subscribes `subscriber` to a queue. If that subscriber already has a live
    /// subscription on the queue, returns its id and `false` (nothing changes).
    async fn create_subscription(
        &self,
        queue: &QueueRef,
        subscriber: &str,
        ttl: u32,
        options_json: &str,
        confirmed: bool,
    ) -> StoreResult<(String, bool)>;

    /// Up to `limit` live subscriptions of a queue after `marker`, in a stable
    /// order, and the cursor continuing the listing.
    async fn list_subscriptions(
        &self,
        queue: &QueueRef,
        marker: &str,
        limit: u32,
    ) -> StoreResult<(Vec<Subscription>, String)>;

    /// A live subscription; `NotFound` otherwise.
    async fn get_subscription(&self, queue: &QueueRef, id: &str) -> StoreResult<Subscription>;

    /// Changes a live subscription (`NotFound` if missing; `Conflict` if the new
    /// subscriber already has another subscription on the queue). A new ttl
    /// counts from now.
    async fn update_subscription(
        &self,
        queue: &QueueRef,
        id: &str,
        update: &SubscriptionUpdate,
    ) -> StoreResult<()>;

    /// Deletes a subscription; a missing one succeeds.
    async fn delete_subscription(&self, queue: &QueueRef, id: &str) -> StoreResult<()>;

    /// Sets whether a live subscription is confirmed; `NotFound` if missing.
    async fn confirm_subscription(
        &self,
        queue: &QueueRef,
        id: &str,
        confirmed: bool,
    ) -> StoreResult<()>;
}

/// What the notifier keeps per subscription: its cursor and its lease.
#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// The delivery cursor of a live subscription: the listing marker (as
    /// `list_messages` takes it) right after the last message its notifier is done
    /// with (delivered, refused, or out of retries). `None` when no cursor was
    /// stored or the subscription does not exist. It goes with the subscription
    /// (deleted, purged or expired together).
    async fn delivery_cursor(&self, queue: &QueueRef, id: &str) -> StoreResult<Option<String>>;

    /// Stores the delivery cursor of a live subscription; a missing subscription
    /// succeeds and stores nothing.
    async fn set_delivery_cursor(
        &self,
        queue: &QueueRef,
        id: &str,
        marker: &str,
    ) -> StoreResult<()>;

    /// Sets the delivery cursor of a live subscription to the end of its queue
    /// (after the newest message ever posted to it, even if deleted since), so it
    /// is notified of the messages posted from now on; returns that marker. A
    /// missing subscription succeeds and stores nothing.
    async fn reset_delivery_cursor(&self, queue: &QueueRef, id: &str) -> StoreResult<String>;

    /// Takes or renews the delivery lease of a live subscription for `holder` (one
    /// notifier) for `ttl`: true when `holder` holds it now; false when another
    /// holder's lease has not run out, or the subscription is gone. Pool-nodes that
    /// share a store thus deliver each subscription from one notifier at a time.
    /// The lease goes with the subscription.
    async fn take_delivery_lease(
        &self,
        queue: &QueueRef,
        id: &str,
        holder: &str,
        ttl: Duration,
    ) -> StoreResult<bool>;

    /// Gives up the delivery lease of a subscription if `holder` holds it.
    async fn release_delivery_lease(
        &self,
        queue: &QueueRef,
        id: &str,
        holder: &str,
    ) -> StoreResult<()>;

    /// Every queue (of every project) with at least one live subscription, so the
    /// notifier can resume them all after a restart.
    async fn subscribed_queues(&self) -> StoreResult<Vec<QueueRef>>;
}

/// Zaqar 23's answer to deleting a claimed message without its claim id.
pub(crate) fn claimed_without_claim_id() -> ZaqarError {
    ZaqarError::titled(
        ErrorCode::Forbidden,
        "Unable to delete",
        "This message is claimed; it cannot be deleted without a valid claim ID.",
    )
}

/// Zaqar 23's answer to deleting a message with a claim id that does not hold it
/// (a wrong or expired claim, or a message not claimed).
pub(crate) fn claim_not_holding() -> ZaqarError {
    ZaqarError::titled(
        ErrorCode::BadRequest,
        "Unable to delete",
        "The specified claim does not exist or has expired.",
    )
}

/// A message store: queues, messages, claims and subscriptions of every project
/// of one pool, one trait per concern (each backend implements each in its file
/// of that concern). Input is already validated by api-node (names, limits, TTLs);
/// a store checks only what needs its data (existence, claims).
///
/// Delivery semantics every backend keeps (the conformance suite checks them):
/// - Messages of a queue are listed, claimed and popped in posting order (FIFO).
/// - A message is *expired* once `age >= ttl`; a claim once `age >= claim ttl`.
///   Expired things are invisible to every call at once, whether or not a
///   background clean-up has removed them yet.
/// - A message posted with `delay` is *delayed* until `age >= delay`: it is not
///   claimable nor poppable, and listed only with `include_delayed`.
/// - `create_claim` takes up to `limit` free messages (not delayed, not held by
///   a live claim) atomically: two concurrent claims never get the same message.
///   Each claimed message's `claim_count` grows by one, and its lifetime is
///   extended to at least `claim ttl + grace` from now.
/// - With `_max_claim_count` and `_dead_letter_queue` in the queue metadata, a
///   message already claimed `_max_claim_count` times is moved to the dead
///   letter queue (same project) instead of being claimed again, with the TTL
///   `_dead_letter_queue_messages_ttl` if set (see `dead_letter.rs`).
/// - Deleting a claimed message needs its claim id: without one the store
///   answers `ZaqarError::titled(Forbidden, "Unable to delete", "This message is
///   claimed; it cannot be deleted without a valid claim ID.")`; with a claim id
///   that does not hold the message (wrong, expired, or message not claimed):
///   `ZaqarError::titled(BadRequest, "Unable to delete", "The specified claim
///   does not exist or has expired.")`, exactly as Zaqar 23 answers.
/// - Deleting something that does not exist succeeds (Zaqar answers 204).
/// - Every acknowledged write is durable to the degree the backend is (Redis per
///   its persistence settings; SQLite in WAL mode with synchronous=NORMAL).
/// - A store that cannot be reached answers `Unavailable` quickly (no hang).
#[async_trait]
pub trait MessageStore:
    QueueStore + MessageLog + ClaimStore + SubscriptionStore + DeliveryStore + 'static
{
    /// Whether the store answers (a cheap round trip).
    async fn health(&self) -> StoreResult<()>;

    /// Why the store, as its server is set up, can lose messages it has
    /// acknowledged (no append-only file, an evicting memory policy, ...);
    /// `None` when it is set up not to, or cannot tell.
    async fn volatility(&self) -> StoreResult<Option<String>> {
        Ok(None)
    }

    /// One step of the expiry sweep ([`crate::expiry`] calls it every second):
    /// removes a bounded batch of the messages whose ttl ran out, and returns how
    /// many messages the store counted as expired meanwhile (these, and those its
    /// other calls dropped on their way), adding them to `zaqar_messages_total{event=
    /// "expired"}`. Every query already ignores expired messages: the sweep frees
    /// their space and counts them.
    async fn remove_expired_messages(&self) -> StoreResult<u64>;

    /// Passes this pool-node's queue activity to the other pool-nodes serving the
    /// same store, and theirs to it through `relay`, for as long as the pool-node
    /// runs; a store that cannot relay drops it. (No default: a wrapper must pass it on.)
    fn relay_activity(&self, relay: crate::activity::Relay);
}

/// What a claim that took nothing answers: `None`, or, when it moved messages to the
/// queue's dead letter queue `dead_letter_queue`, an empty claim naming it.
pub(crate) fn nothing_claimed(dead_letter_queue: String) -> Option<ClaimReply> {
    (!dead_letter_queue.is_empty()).then(|| ClaimReply {
        dead_letter_queue,
        ..ClaimReply::default()
    })
}

/// Every store trait, for code that calls a store of a known type (`use
/// crate::store::prelude::*`): a trait's methods are callable where it is in scope.
pub mod prelude {
    pub use super::{
        ClaimStore, DeliveryStore, MessageLog, MessageStore, QueueStore, SubscriptionStore,
    };
}
