//! Placeholder: the sqlite backend of `MessageStore` is being written.

use std::sync::Arc;

use zaqar_proto::ZaqarError;

use crate::MessageStore;

/// Opens the sqlite store.
pub async fn open(_location: &str) -> Result<Arc<dyn MessageStore>, ZaqarError> {
    Err(ZaqarError::unavailable(
        "the sqlite store is not available yet",
    ))
}
