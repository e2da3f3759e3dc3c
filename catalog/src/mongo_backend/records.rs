//! Records kept by name in a collection of their own (flavors, project limits): one
//! document per `_id` holding one field, written whole.

use futures::TryStreamExt;
use mongodb::bson::{doc, Document};
use mongodb::Collection;

use super::{bounded, store_error};
use crate::backend::CatalogResult;

/// Sets `field` of the record `id` to `value`, creating the record if needed.
pub(super) async fn put(
    records: &Collection<Document>,
    id: &str,
    field: &str,
    value: &str,
) -> CatalogResult<()> {
    bounded(async {
        records
            .update_one(doc! { "_id": id }, doc! { "$set": { field: value } })
            .upsert(true)
            .await
            .map(drop)
            .map_err(store_error)
    })
    .await
}

/// The record `id`, if there is one.
pub(super) async fn get(
    records: &Collection<Document>,
    id: &str,
) -> CatalogResult<Option<Document>> {
    bounded(async {
        records
            .find_one(doc! { "_id": id })
            .await
            .map_err(store_error)
    })
    .await
}

/// Every record, sorted by `_id`.
pub(super) async fn list(records: &Collection<Document>) -> CatalogResult<Vec<Document>> {
    bounded(async {
        let cursor = records
            .find(doc! {})
            .sort(doc! { "_id": 1 })
            .await
            .map_err(store_error)?;
        cursor.try_collect().await.map_err(store_error)
    })
    .await
}

/// Removes the record `id`; whether there was one.
pub(super) async fn remove(records: &Collection<Document>, id: &str) -> CatalogResult<bool> {
    let deleted = bounded(async {
        records
            .delete_one(doc! { "_id": id })
            .await
            .map_err(store_error)
    })
    .await?;
    Ok(deleted.deleted_count > 0)
}
