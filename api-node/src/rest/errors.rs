//! The one mapping of failures to HTTP answers: every error leaves as JSON
//! `{"title", "description"}` with the status of its code, never as HTML.

use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use zaqar_proto::{ErrorCode, ZaqarError};

/// Why a REST request failed: an operation's error, or an HTTP-level refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestError {
    Zaqar(ZaqarError),
    /// No route for this path.
    NotFound,
    /// The path exists, the method does not; the methods it has.
    MethodNotAllowed(&'static [&'static str]),
    /// The client does not accept JSON.
    NotAcceptable,
    /// A body of the wrong media type (queue PATCH).
    UnsupportedMediaType(String),
}

impl From<ZaqarError> for RestError {
    fn from(err: ZaqarError) -> Self {
        RestError::Zaqar(err)
    }
}

/// The HTTP answer of an error.
pub fn render(err: RestError) -> Response {
    match err {
        RestError::Zaqar(err) => {
            let status = StatusCode::from_u16(err.code.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if status.is_server_error() {
                tracing::warn!(status = status.as_u16(), title = %err.title, description = %err.description, "request failed");
            }
            // Falcon's own answers (e.g. 404 of a bad signature) carry only a title.
            let body = if err.description.is_empty() {
                serde_json::json!({"title": err.title})
            } else {
                err.body()
            };
            let mut response = json_error(status, body);
            if let ErrorCode::TooManyRequests { retry_after_secs } = err.code {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            response
        }
        // Falcon's own answers carry only a title.
        RestError::NotFound => json_error(
            StatusCode::NOT_FOUND,
            serde_json::json!({"title": "404 Not Found"}),
        ),
        RestError::MethodNotAllowed(allowed) => {
            let mut response = json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                serde_json::json!({"title": "405 Method Not Allowed"}),
            );
            let allow = format!("{}, OPTIONS", allowed.join(", "));
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(header::ALLOW, value);
            }
            response
        }
        // Zaqar sends this one without a body (the client accepts no JSON);
        // we still say why, in JSON.
        RestError::NotAcceptable => json_error(
            StatusCode::NOT_ACCEPTABLE,
            serde_json::json!({
                "title": "Not Acceptable",
                "description": "Endpoint only serves `application/json`; specify client-side media type support with the \"Accept\" header."
            }),
        ),
        RestError::UnsupportedMediaType(description) => json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            serde_json::json!({"title": "415 Unsupported Media Type", "description": description}),
        ),
    }
}

fn json_error(status: StatusCode, body: serde_json::Value) -> Response {
    let mut response = Response::new(body.to_string().into());
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> serde_json::Value {
        let bytes = warp::hyper::body::to_bytes(response.into_body())
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn errors_render_as_zaqar_json() {
        let err = ZaqarError::titled(ErrorCode::Conflict, "Resource conflict", "nope");
        let response = render(err.into());
        assert_eq!(response.status(), 409);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body_of(response).await,
            serde_json::json!({"title": "Resource conflict", "description": "nope"})
        );

        let response = render(RestError::MethodNotAllowed(&["GET", "POST"]));
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()[header::ALLOW], "GET, POST, OPTIONS");

        let response = render(RestError::NotFound);
        assert_eq!(
            body_of(response).await,
            serde_json::json!({"title": "404 Not Found"})
        );
    }
}
