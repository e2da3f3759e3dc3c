//! Requests whose head no longer pins the connection's read buffer.
//!
//! hyper 0.14 parses a request's URI and header values into slices of its
//! connection's 8 KiB read buffer. While such a request is in flight (a long-polling
//! claim waits up to 20 s), those slices keep the buffer alive, and hyper, which reads
//! on to notice a client that hangs up, allocates a second one: 1,000 waiting claims
//! held 8 MiB of buffers nobody reads. Copying the few bytes of the head (into one
//! allocation) lets hyper reuse its buffer. The body is copied when it is read.

use bytes::{Bytes, BytesMut};
use hyper014::body::Body;
use hyper014::http::{HeaderValue, Request, Uri};

/// `request` with its URI and header values copied out of the read buffer, into
/// one buffer of their own that the new values are slices of.
pub fn detach(request: Request<Body>) -> Request<Body> {
    let (mut parts, body) = request.into_parts();
    let uri = parts.uri.to_string();
    let values: usize = parts.headers.values().map(|v| v.len()).sum();
    let mut head = BytesMut::with_capacity(uri.len() + values);
    head.extend_from_slice(uri.as_bytes());
    for value in parts.headers.values() {
        head.extend_from_slice(value.as_bytes());
    }
    let head: Bytes = head.freeze();
    if let Ok(owned) = Uri::from_maybe_shared(head.slice(..uri.len())) {
        parts.uri = owned;
    }
    let mut at = uri.len();
    for value in parts.headers.values_mut() {
        let end = at + value.len();
        if let Ok(mut owned) = HeaderValue::from_maybe_shared(head.slice(at..end)) {
            owned.set_sensitive(value.is_sensitive());
            *value = owned;
        }
        at = end;
    }
    Request::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(buffer: &Bytes, bytes: &[u8]) -> bool {
        let range = buffer.as_ptr_range();
        range.contains(&bytes.as_ptr())
    }

    #[test]
    fn the_head_is_copied_out_of_the_buffer_it_was_parsed_from() {
        let buffer = Bytes::from_static(b"/v2/queues/q/claims?wait=20 3381af92 secret-token");
        let mut request = Request::new(Body::empty());
        *request.uri_mut() = Uri::from_maybe_shared(buffer.slice(0..27)).unwrap();
        let client = HeaderValue::from_maybe_shared(buffer.slice(28..36)).unwrap();
        let mut token = HeaderValue::from_maybe_shared(buffer.slice(37..)).unwrap();
        token.set_sensitive(true);
        request.headers_mut().insert("client-id", client);
        request.headers_mut().insert("x-auth-token", token);
        assert!(within(&buffer, request.headers()["client-id"].as_bytes()));

        let request = detach(request);

        assert_eq!(request.uri(), "/v2/queues/q/claims?wait=20");
        assert_eq!(request.uri().query(), Some("wait=20"));
        assert!(!within(&buffer, request.uri().path().as_bytes()));
        let client = &request.headers()["client-id"];
        assert_eq!(client, "3381af92");
        assert!(!within(&buffer, client.as_bytes()));
        let token = &request.headers()["x-auth-token"];
        assert_eq!(token, "secret-token");
        assert!(token.is_sensitive());
        assert!(!within(&buffer, token.as_bytes()));
    }

    #[test]
    fn absolute_and_asterisk_targets_keep_their_form() {
        for target in ["http://zaqar.example:8888/v2/queues?limit=1", "*"] {
            let mut request = Request::new(Body::empty());
            *request.uri_mut() = target.parse().unwrap();
            assert_eq!(detach(request).uri(), target);
        }
    }
}
