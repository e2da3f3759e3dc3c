//! Reading a queue's messages in windows of sequence numbers, and the queue's free head.
//!
//! A server may read every document a query matches before it applies the limit
//! (SecantusDB does), so no query here leaves its range open: each reads one window
//! `(after, upto]` of seqs through an index with the queue and, for free messages,
//! the state as its leading keys (`by_state`, or the unique index on project, queue
//! and seq), and the conditions the index does not hold (expiry, delay, claim,
//! echo) are checked here. A window that gives fewer messages than wanted is
//! followed by one twice as wide, up to [`MAX_WINDOW`] and never past the queue's
//! last seq, so a scan costs about what it returns plus the gaps it crosses.
//!
//! The free head (`counters` document [`head_key`]) is a seq no free message is
//! at or before, so claims, pops and the default listing start there instead of
//! crossing the claimed messages at the front of the queue again and again. A
//! claim or a pop raises it past what it took (in its transaction); whatever
//! makes a message free again (an ended claim or delay, a released claim) lowers
//! it in the same transaction. Both always write the head document, so a claim
//! that would raise it past a message freed at the same time conflicts with that
//! change and starts again.

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::error::Error as MongoError;
use mongodb::ClientSession;
use zaqar_proto::pb::QueueRef;

use super::counts::{self, Counts};
use super::fields::{
    self, CHANGES, CLAIM_EXPIRES, EXPIRES, FREE, FREE_HEAD, ID, LAST, SEQ, STATE, VISIBLE,
};
use super::{counter_key, of_ids, of_queue, MongoStore};

/// The widest window a scan reads in one query.
pub(super) const MAX_WINDOW: i64 = 4096;

/// The `counters` document holding the free head of `queue` (a counter key
/// starts with a digit, the schema key is `schema`: neither starts with `h`).
pub(super) fn head_key(queue: &QueueRef) -> String {
    format!("h{}", counter_key(queue))
}

/// The windows of seqs after `after`, up to `last`, a scan reads in turn.
#[derive(Debug, Clone)]
pub(super) struct Windows {
    after: i64,
    last: i64,
    width: i64,
}

impl Windows {
    /// Windows after `after` up to `last`, the first one `wanted` wide.
    pub(super) fn new(after: i64, last: i64, wanted: u32) -> Self {
        Windows {
            after,
            last,
            width: i64::from(wanted).clamp(1, MAX_WINDOW),
        }
    }

    /// The filter of the next window: `base` and a bounded range of seqs; `None`
    /// once past the last seq. The window after it is twice as wide.
    pub(super) fn next(&mut self, base: &Document) -> Option<(Document, i64)> {
        if self.after >= self.last {
            return None;
        }
        let upto = self.after.saturating_add(self.width).min(self.last);
        let mut filter = base.clone();
        filter.insert(SEQ, doc! { "$gt": self.after, "$lte": upto });
        self.after = upto;
        self.width = (self.width * 2).min(MAX_WINDOW);
        Some((filter, upto))
    }

    /// Goes on after `seq` (the last message used of a window read in part).
    pub(super) fn resume_after(&mut self, seq: i64) {
        self.after = seq;
    }
}

/// The documents of one window, in seq order (inside `session`'s transaction when given).
pub(super) async fn read_window(
    store: &MongoStore,
    filter: Document,
    session: Option<&mut ClientSession>,
) -> Result<Vec<Document>, MongoError> {
    let find = store.messages.find(filter).sort(doc! { SEQ: 1 });
    match session {
        Some(session) => {
            find.session(&mut *session)
                .await?
                .stream(session)
                .try_collect()
                .await
        }
        None => find.await?.try_collect().await,
    }
}

/// The filter of the queue's messages in the free state (a range of `by_state`).
pub(super) fn free_state(queue: &QueueRef) -> Document {
    let mut filter = of_queue(queue);
    filter.insert(STATE, FREE);
    filter
}

/// Whether a message is live at `now` (its expiry is ahead).
pub(super) fn is_live(document: &Document, now: i64) -> bool {
    fields::int(document, EXPIRES) > now
}

/// Whether a live message can be claimed or popped at `now`: not delayed, not held.
pub(super) fn is_available(document: &Document, now: i64) -> bool {
    fields::int(document, VISIBLE) <= now && fields::int(document, CLAIM_EXPIRES) <= now
}

/// The free head and the last seq of `queue` (0 for what does not exist yet).
pub(super) async fn head_and_last(
    store: &MongoStore,
    queue: &QueueRef,
    session: Option<&mut ClientSession>,
) -> Result<(i64, i64), MongoError> {
    let (head, counter) = (head_key(queue), counter_key(queue));
    let find = store
        .counters
        .find(doc! { ID: { "$in": [&head, &counter] } });
    let documents: Vec<Document> = match session {
        Some(session) => {
            find.session(&mut *session)
                .await?
                .stream(session)
                .try_collect()
                .await?
        }
        None => find.await?.try_collect().await?,
    };
    let value = |key: &str, field: &str| {
        documents
            .iter()
            .find(|d| fields::text(d, ID) == key)
            .map_or(0, |d| fields::int(d, field))
    };
    Ok((value(&head, FREE_HEAD), value(&counter, LAST)))
}

/// Raises the free head of `queue` to `seq` (no free message is at or before it),
/// in the transaction of `session`.
pub(super) async fn raise_head(
    store: &MongoStore,
    queue: &QueueRef,
    seq: i64,
    session: &mut ClientSession,
) -> Result<(), MongoError> {
    store
        .counters
        .update_one(
            doc! { ID: head_key(queue) },
            doc! { "$max": { FREE_HEAD: seq }, "$inc": { CHANGES: 1_i64 } },
        )
        .upsert(true)
        .session(session)
        .await
        .map(drop)
}

/// Lowers the free head of `queue` below `seq` (the message at `seq` is free
/// again), in the transaction of `session`. It writes the head document even when
/// the head is already lower, so that a claim raising it at the same time conflicts.
pub(super) async fn lower_head(
    store: &MongoStore,
    queue: &QueueRef,
    seq: i64,
    session: &mut ClientSession,
) -> Result<(), MongoError> {
    let lowered = store
        .counters
        .update_one(
            doc! { ID: head_key(queue) },
            doc! { "$min": { FREE_HEAD: seq - 1 }, "$inc": { CHANGES: 1_i64 } },
        )
        .session(&mut *session)
        .await?;
    if lowered.matched_count == 0 {
        // No head yet is a head at 0; a claim creating one now conflicts with this.
        store
            .counters
            .insert_one(doc! { ID: head_key(queue), FREE_HEAD: 0_i64, CHANGES: 1_i64 })
            .session(session)
            .await?;
    }
    Ok(())
}

/// Makes the messages `found` finds free again: sets `change` (which makes them
/// [`FREE`]) on at most `limit` of them (0: all) that still match `guard`, counts
/// them as moved, and lowers the free head below them, in `session`'s
/// transaction; nothing when it finds none.
pub(super) async fn free_found(
    store: &MongoStore,
    queue: &QueueRef,
    found: Document,
    limit: i64,
    guard: Document,
    change: Document,
    session: &mut ClientSession,
) -> Result<(), MongoError> {
    let documents: Vec<Document> = store
        .messages
        .find(found)
        .limit(limit)
        .projection(doc! { ID: 1, SEQ: 1, STATE: 1 })
        .session(&mut *session)
        .await?
        .stream(&mut *session)
        .try_collect()
        .await?;
    let Some(first) = documents.iter().map(|d| fields::int(d, SEQ)).min() else {
        return Ok(());
    };
    let ids: Vec<String> = documents.iter().map(|d| fields::text(d, ID)).collect();
    let mut selected = of_ids(queue, doc! { "$in": ids });
    selected.extend(guard);
    let updated = store
        .messages
        .update_many(selected, change)
        .session(&mut *session)
        .await?;
    if updated.matched_count != documents.len() as u64 {
        return Err(super::transaction::taken_meanwhile());
    }
    counts::record(store, queue, Counts::moved(&documents, FREE), session).await?;
    lower_head(store, queue, first, session).await
}

/// A scan of the queue's free messages from its free head, inside a transaction
/// that takes (claims, pops or moves) every message it returns.
pub(super) struct FreeScan {
    base: Document,
    now: i64,
    windows: Windows,
    head: i64,
    /// Every free message at or before it was taken or has expired.
    cleared: i64,
    /// A free message that cannot be taken was met: `cleared` stays where it is.
    blocked: bool,
}

impl FreeScan {
    /// Starts at the queue's free head.
    pub(super) async fn start(
        store: &MongoStore,
        queue: &QueueRef,
        now: i64,
        wanted: u32,
        session: &mut ClientSession,
    ) -> Result<FreeScan, MongoError> {
        let (head, last) = head_and_last(store, queue, Some(session)).await?;
        Ok(FreeScan {
            base: free_state(queue),
            now,
            windows: Windows::new(head, last, wanted),
            head,
            cleared: head,
            blocked: false,
        })
    }

    /// The next free, live, available messages in seq order, at most `wanted`
    /// (none: the queue has no more). The caller takes every one of them.
    pub(super) async fn next(
        &mut self,
        store: &MongoStore,
        wanted: u32,
        session: &mut ClientSession,
    ) -> Result<Vec<Document>, MongoError> {
        let mut found = Vec::new();
        while let Some((filter, upto)) = self.windows.next(&self.base) {
            let documents = read_window(store, filter, Some(&mut *session)).await?;
            if self.take(documents, wanted, &mut found) {
                return Ok(found);
            }
            self.clear(upto);
        }
        Ok(found)
    }

    /// Adds the usable `documents` of a window to `found`; true once it holds
    /// `wanted` (the rest of the window is read again by the next call).
    fn take(&mut self, documents: Vec<Document>, wanted: u32, found: &mut Vec<Document>) -> bool {
        for document in documents {
            let seq = fields::int(&document, SEQ);
            if !is_live(&document, self.now) {
                self.clear(seq);
            } else if !is_available(&document, self.now) {
                self.blocked = true;
            } else {
                found.push(document);
                self.clear(seq);
                if found.len() as u32 >= wanted {
                    self.windows.resume_after(seq);
                    return true;
                }
            }
        }
        false
    }

    fn clear(&mut self, seq: i64) {
        if !self.blocked {
            self.cleared = self.cleared.max(seq);
        }
    }

    /// Raises the free head past what the scan took, if it moved.
    pub(super) async fn finish(
        self,
        store: &MongoStore,
        queue: &QueueRef,
        session: &mut ClientSession,
    ) -> Result<(), MongoError> {
        if self.cleared > self.head {
            raise_head(store, queue, self.cleared, session).await?;
        }
        Ok(())
    }
}
