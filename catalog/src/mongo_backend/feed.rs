//! The MongoDB catalog's change feed: a change stream on the catalog's database,
//! translated into [`CatalogEvent`]s.
//!
//! Pool documents are looked up whole on update (`fullDocument: updateLookup`); an
//! update that only moved a pool's placement count is not a pool change. When the
//! stream fails it is resumed after the last event seen; when that fails too, the
//! watchers get a `Reset` and a new stream starts.

use std::time::Duration;

use futures::StreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType, ResumeToken};
use mongodb::change_stream::ChangeStream;
use mongodb::options::FullDocumentType;
use mongodb::Database;
use zaqar_proto::mongo::text;
use zaqar_proto::ZaqarError;

use super::{pool_from_doc, store_error};
use crate::watch::{CatalogEvent, EventHub};

pub(super) const POOLS: &str = "catalog_pools";
pub(super) const PLACEMENTS: &str = "catalog_placements";

/// How long the feed waits before opening a failed stream again.
const REOPEN_DELAY: Duration = Duration::from_secs(1);

type Stream = ChangeStream<ChangeStreamEvent<Document>>;

/// Opens the change stream of the pool and placement collections.
pub(super) async fn open(database: &Database) -> Result<Stream, ZaqarError> {
    open_after(database, None).await
}

async fn open_after(database: &Database, token: Option<ResumeToken>) -> Result<Stream, ZaqarError> {
    let pipeline = [doc! { "$match": { "ns.coll": { "$in": [POOLS, PLACEMENTS] } } }];
    database
        .watch()
        .pipeline(pipeline)
        .full_document(FullDocumentType::UpdateLookup)
        .resume_after(token)
        .await
        .map_err(store_error)
}

/// Publishes the events of `stream` until the task is aborted.
pub(super) async fn run(database: Database, mut stream: Stream, events: EventHub) {
    loop {
        match stream.next().await {
            Some(Ok(event)) => {
                if let Some(event) = translate(&event) {
                    events.publish(event);
                }
            }
            failure => {
                if let Some(Err(err)) = failure {
                    tracing::warn!(error = %err, "the mongodb catalog change stream failed");
                }
                stream = reopen(&database, stream.resume_token(), &events).await;
            }
        }
    }
}

/// A new stream: resumed after `token` if the server still can, else from now on
/// (and the watchers are told to reset).
async fn reopen(database: &Database, token: Option<ResumeToken>, events: &EventHub) -> Stream {
    let mut token = token;
    loop {
        tokio::time::sleep(REOPEN_DELAY).await;
        match open_after(database, token.clone()).await {
            Ok(stream) => return stream,
            Err(err) => {
                tracing::warn!(error = %err.description, "the mongodb catalog change stream cannot reopen");
                if token.take().is_some() {
                    events.publish(CatalogEvent::Reset);
                }
            }
        }
    }
}

/// The catalog event of a change, if it is one.
fn translate(event: &ChangeStreamEvent<Document>) -> Option<CatalogEvent> {
    let collection = event.ns.as_ref()?.coll.as_deref()?;
    let key = || match event.document_key.as_ref()?.get("_id") {
        Some(Bson::String(key)) => Some(key.clone()),
        _ => None,
    };
    match (collection, &event.operation_type) {
        (POOLS, OperationType::Update) if only_the_count_changed(event) => None,
        (POOLS, OperationType::Insert | OperationType::Update | OperationType::Replace) => event
            .full_document
            .as_ref()
            .map(|doc| CatalogEvent::PoolChanged(pool_from_doc(doc))),
        (POOLS, OperationType::Delete) => key().map(CatalogEvent::PoolRemoved),
        (PLACEMENTS, OperationType::Insert) => {
            let doc = event.full_document.as_ref()?;
            Some(CatalogEvent::Placed {
                project: text(doc, "p"),
                queue: text(doc, "q"),
                pool: text(doc, "pool"),
            })
        }
        (PLACEMENTS, OperationType::Delete) => {
            let (project, queue) = parse_placement_key(&key()?)?;
            Some(CatalogEvent::Unplaced { project, queue })
        }
        (_, OperationType::Drop | OperationType::DropDatabase | OperationType::Invalidate) => {
            Some(CatalogEvent::Reset)
        }
        _ => None,
    }
}

fn only_the_count_changed(event: &ChangeStreamEvent<Document>) -> bool {
    event.update_description.as_ref().is_some_and(|update| {
        update.removed_fields.is_empty() && update.updated_fields.keys().all(|field| field == "n")
    })
}

/// The project and queue of a [`super::placement_key`].
fn parse_placement_key(key: &str) -> Option<(String, String)> {
    let (length, rest) = key.split_once(':')?;
    let length: usize = length.parse().ok()?;
    let project = rest.get(..length)?;
    let queue = rest.get(length..)?.strip_prefix('/')?;
    Some((project.to_string(), queue.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_keys_parse_back() {
        for (project, queue) in [("p", "q"), ("a/b:c", "d"), ("", "x")] {
            let key = super::super::placement_key(project, queue);
            assert_eq!(
                parse_placement_key(&key),
                Some((project.to_string(), queue.to_string()))
            );
        }
        assert_eq!(parse_placement_key("9:short/q"), None);
    }
}
