//! What the MongoDB catalog backend and the MongoDB message store share (cargo feature
//! `mongodb`): the client options a `mongodb://` URI gives, and how fields of their
//! documents are read.

use std::time::Duration;

use mongodb::bson::{Bson, Document};
use mongodb::options::{Acknowledgment, ClientOptions, WriteConcern};

use crate::ZaqarError;

/// How long the driver looks for a usable server (the primary) before a call fails,
/// unless the URI sets `serverSelectionTimeoutMS`.
const SERVER_SELECTION_TIMEOUT: Duration = Duration::from_secs(3);
/// One connection attempt, unless the URI sets `connectTimeoutMS`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The database when the URI names none.
const DEFAULT_DATABASE: &str = "zaqar";

/// The driver's options for `uri`, the client named `app_name`: the timeouts above
/// and majority, journaled writes unless the URI says otherwise. A malformed URI is
/// `BadRequest`. (The URI may hold a password: it is neither logged nor put in errors.)
pub async fn client_options(uri: &str, app_name: &str) -> Result<ClientOptions, ZaqarError> {
    let mut options = ClientOptions::parse(uri)
        .await
        .map_err(|err| ZaqarError::bad_request(format!("invalid mongodb URI: {err}")))?;
    options
        .server_selection_timeout
        .get_or_insert(SERVER_SELECTION_TIMEOUT);
    options.connect_timeout.get_or_insert(CONNECT_TIMEOUT);
    let concern = options
        .write_concern
        .get_or_insert_with(WriteConcern::default);
    concern.w.get_or_insert(Acknowledgment::Majority);
    concern.journal.get_or_insert(true);
    options.app_name.get_or_insert_with(|| app_name.to_string());
    Ok(options)
}

/// The database the URI of `options` names, `zaqar` when it names none.
pub fn database_name(options: &ClientOptions) -> String {
    options
        .default_database
        .clone()
        .unwrap_or_else(|| DEFAULT_DATABASE.to_string())
}

/// A text field, empty when missing or not text.
pub fn text(doc: &Document, field: &str) -> String {
    match doc.get(field) {
        Some(Bson::String(value)) => value.clone(),
        _ => String::new(),
    }
}

/// A number field (whatever width it was stored with; a date as milliseconds since
/// the epoch), 0 when missing.
pub fn int(doc: &Document, field: &str) -> i64 {
    match doc.get(field) {
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Double(n)) => *n as i64,
        Some(Bson::DateTime(date)) => date.timestamp_millis(),
        _ => 0,
    }
}
