//! Request ids: every REST answer carries `X-Openstack-Request-Id: req-<uuid>`
//! (the OpenStack convention Zaqar follows, through oslo.middleware), every
//! WebSocket reply the same key among its `headers`, and every log line written
//! while the request is handled carries the same id (a `request` span).

use warp::http::HeaderValue;
use warp::reply::Response;

/// The header of the request id.
pub const HEADER: &str = "x-openstack-request-id";

/// A new request id, `req-` and a random UUID.
pub fn new() -> String {
    format!("req-{}", uuid::Uuid::new_v4())
}

/// Puts `id` in the answer.
pub fn set(response: &mut Response, id: &str) {
    if let Ok(value) = HeaderValue::from_str(id) {
        response.headers_mut().insert(HEADER, value);
    }
}

/// The answer with a request id: the one it was handled under, or a new one
/// (answers made without a handler: 404 of unknown paths, the home document).
pub fn ensure(mut response: Response) -> Response {
    if !response.headers().contains_key(HEADER) {
        set(&mut response, &new());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_openstack_request_ids_and_kept_once_set() {
        let id = new();
        assert!(id.starts_with("req-") && id.len() == 40, "{id}");
        let mut response = Response::new(Default::default());
        set(&mut response, &id);
        let response = ensure(response);
        assert_eq!(response.headers()[HEADER], id.as_str());
        let fresh = ensure(Response::new(Default::default()));
        assert_ne!(fresh.headers()[HEADER], id.as_str());
    }
}
