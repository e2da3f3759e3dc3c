//! Placeholder: the redis backend of `MessageStore` is being written.

use std::sync::Arc;

use zaqar_proto::ZaqarError;

use crate::MessageStore;

/// Opens the redis store.
pub async fn open(_location: &str) -> Result<Arc<dyn MessageStore>, ZaqarError> {
    Err(ZaqarError::unavailable(
        "the redis store is not available yet",
    ))
}
