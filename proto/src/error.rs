//! The error codes of zaqar-rs and their one mapping to HTTP and to gRPC status.
//!
//! Every role returns a [`ZaqarError`]; api-node turns it into Zaqar's
//! `{"title", "description"}` body, and gRPC carries it between roles as a status
//! whose metadata names the code, so it arrives unchanged on the other side.

use tonic::metadata::MetadataValue;

/// What went wrong, as a client sees it. No catch-all: every code is chosen on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Input the API rejects (400). Retrying the same request is pointless.
    BadRequest,
    /// No credentials, or credentials that are not valid (401).
    Unauthorized,
    /// The caller may not do this, e.g. delete a claimed message without its claim (403).
    Forbidden,
    /// The resource does not exist (404).
    NotFound,
    /// The resource already exists or was changed concurrently (409).
    Conflict,
    /// The request body is larger than allowed (413).
    PayloadTooLarge,
    /// The client took too long to send its request (408).
    RequestTimeout,
    /// The project is over its request rate (429); the same request may pass
    /// after `retry_after_secs` (sent as `Retry-After`; between roles, where it
    /// does not travel, it arrives as 1).
    TooManyRequests { retry_after_secs: u32 },
    /// A dependency (store, catalog, pool-node) is down; retrying later is safe (503).
    Unavailable,
    /// A bug or an unexpected store answer (500).
    Internal,
}

impl ErrorCode {
    /// Every code (`TooManyRequests` with a retry after 1 s).
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RequestTimeout,
        ErrorCode::TooManyRequests {
            retry_after_secs: 1,
        },
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The HTTP status Zaqar answers with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::TooManyRequests { .. } => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }

    /// The gRPC status code used between roles.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorCode::BadRequest => tonic::Code::InvalidArgument,
            ErrorCode::Unauthorized => tonic::Code::Unauthenticated,
            ErrorCode::Forbidden => tonic::Code::PermissionDenied,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::Conflict => tonic::Code::AlreadyExists,
            ErrorCode::PayloadTooLarge => tonic::Code::OutOfRange,
            ErrorCode::RequestTimeout => tonic::Code::DeadlineExceeded,
            ErrorCode::TooManyRequests { .. } => tonic::Code::ResourceExhausted,
            ErrorCode::Unavailable => tonic::Code::Unavailable,
            ErrorCode::Internal => tonic::Code::Internal,
        }
    }

    /// The title Zaqar puts in error bodies of this kind.
    pub fn default_title(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "Invalid API request",
            ErrorCode::Unauthorized => "Authentication required",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::NotFound => "Not found",
            ErrorCode::Conflict => "Conflict",
            ErrorCode::PayloadTooLarge => "Request entity too large",
            ErrorCode::RequestTimeout => "Request timeout",
            ErrorCode::TooManyRequests { .. } => "Too Many Requests",
            ErrorCode::Unavailable => "Service temporarily unavailable",
            ErrorCode::Internal => "Internal server error",
        }
    }

    /// Whether the same request may succeed if retried later.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Unavailable | ErrorCode::TooManyRequests { .. }
        )
    }

    /// The code's name, as gRPC metadata and metric labels carry it (`not_found`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::TooManyRequests { .. } => "too_many_requests",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.name() == name)
    }
}

/// An error with its code, Zaqar's title and a description for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{title}: {description}")]
pub struct ZaqarError {
    pub code: ErrorCode,
    pub title: String,
    pub description: String,
}

const CODE_KEY: &str = "zaqar-error";
const TITLE_KEY: &str = "zaqar-title";

impl ZaqarError {
    /// An error with the default title of its code.
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        ZaqarError {
            code,
            title: code.default_title().to_string(),
            description: description.into(),
        }
    }

    /// An error with a title of its own (Zaqar uses several for 400 and 404).
    pub fn titled(
        code: ErrorCode,
        title: impl Into<String>,
        description: impl Into<String>,
    ) -> Self {
        ZaqarError {
            code,
            title: title.into(),
            description: description.into(),
        }
    }

    pub fn bad_request(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, description)
    }

    pub fn not_found(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, description)
    }

    pub fn forbidden(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, description)
    }

    pub fn unavailable(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, description)
    }

    pub fn internal(description: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, description)
    }

    /// Zaqar's JSON error body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"title": self.title, "description": self.description})
    }
}

impl From<ZaqarError> for tonic::Status {
    fn from(err: ZaqarError) -> Self {
        let mut status = tonic::Status::new(err.code.grpc_code(), err.description);
        let metadata = status.metadata_mut();
        metadata.insert(CODE_KEY, MetadataValue::from_static(err.code.name()));
        if let Ok(title) = MetadataValue::try_from(err.title.as_str()) {
            metadata.insert(TITLE_KEY, title);
        }
        status
    }
}

impl From<tonic::Status> for ZaqarError {
    /// A status from a zaqar-rs role keeps its code; any other status (connection
    /// refused, deadline exceeded, ...) means the remote role is unreachable.
    fn from(status: tonic::Status) -> Self {
        let metadata = status.metadata();
        let code = metadata
            .get(CODE_KEY)
            .and_then(|v| v.to_str().ok())
            .and_then(ErrorCode::from_name);
        match code {
            Some(code) => {
                let title = metadata
                    .get(TITLE_KEY)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(code.default_title());
                ZaqarError::titled(code, title, status.message())
            }
            None => ZaqarError::unavailable(format!(
                "A backend service is unavailable: {}",
                status.message()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_survives_a_grpc_round_trip() {
        for code in ErrorCode::ALL {
            let err = ZaqarError::titled(code, "Some title", "what happened");
            let back = ZaqarError::from(tonic::Status::from(err.clone()));
            assert_eq!(back, err);
        }
    }

    #[test]
    fn a_foreign_status_means_unavailable() {
        let err = ZaqarError::from(tonic::Status::unavailable("connection refused"));
        assert_eq!(err.code, ErrorCode::Unavailable);
        assert_eq!(err.code.http_status(), 503);
    }
}
