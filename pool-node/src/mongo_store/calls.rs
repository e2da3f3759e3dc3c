//! How every call of the store ends: within [`CALL_TIMEOUT`], its driver errors
//! mapped to `Unavailable`, duplicate keys told apart.

use std::future::Future;

use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use zaqar_proto::ZaqarError;

use super::CALL_TIMEOUT;
use crate::store::StoreResult;

/// The server error code of a duplicate key.
const DUPLICATE_KEY: i32 = 11000;

/// Every driver failure is the store failing: retrying later is safe.
pub(super) fn store_error(err: MongoError) -> ZaqarError {
    ZaqarError::unavailable(format!("the mongodb message store failed: {err}"))
}

/// The server's error code, if the server answered with one.
pub(super) fn error_code(err: &MongoError) -> Option<i32> {
    match err.kind.as_ref() {
        ErrorKind::Command(command) => Some(command.code),
        ErrorKind::Write(WriteFailure::WriteError(write)) => Some(write.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(concern)) => Some(concern.code),
        ErrorKind::InsertMany(insert) => insert
            .write_errors
            .as_ref()
            .and_then(|errors| errors.first())
            .map(|error| error.code),
        _ => None,
    }
}

pub(super) fn is_duplicate_key(err: &MongoError) -> bool {
    error_code(err) == Some(DUPLICATE_KEY)
}

/// Runs a store call within [`CALL_TIMEOUT`].
pub(super) async fn bounded<T>(call: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(result) => result,
        Err(_) => Err(ZaqarError::unavailable(format!(
            "the mongodb message store did not answer within {CALL_TIMEOUT:?}"
        ))),
    }
}
