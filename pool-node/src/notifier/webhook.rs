//! One webhook attempt: an HTTP POST of one notification, as Zaqar's webhook task
//! sends it, signed when the subscription has a signing secret.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zaqar_proto::grpc_client::error_chain;

use super::deliver::Failure;
use super::network;
use super::target::SigningSecret;

/// The header that carries a signed notification's signature.
pub const SIGNATURE_HEADER: &str = "X-Zaqar-Signature";

/// POSTs `body` to `url` with `headers` (and `traceparent` with tracing on, and
/// [`SIGNATURE_HEADER`] with a `secret`). 2xx and 3xx are delivered; 408, 429 and
/// 5xx, connection errors and timeouts are worth a retry; other 4xx are final
/// (the endpoint refused the notification, as Zaqar treats them).
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    secret: Option<&SigningSecret>,
    body: String,
) -> Result<(), Failure> {
    let signed = secret.map(|secret| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        signature(secret, now, &body)
    });
    let mut request = client.post(url).body(body);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    if let Some(signed) = signed {
        request = request.header(SIGNATURE_HEADER, signed);
    }
    // The trace context of the delivery's span (none with tracing off).
    for (name, value) in zaqar_proto::trace::outgoing() {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(|err| {
        if err.is_builder() {
            Failure::Permanent(format!("invalid request: {err}"))
        } else if network::is_refused(&err) {
            Failure::Permanent(format!("refused: {}", error_chain(&err)))
        } else {
            Failure::Transient(format!("request failed: {err}"))
        }
    })?;
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
        Err(Failure::Transient(format!("endpoint answered {status}")))
    } else {
        Err(Failure::Permanent(format!("endpoint answered {status}")))
    }
}

/// The value of [`SIGNATURE_HEADER`] for `body` sent at `timestamp` (Unix seconds):
/// `t=TIMESTAMP,v1=HEX`, where HEX is the HMAC-SHA256 with `secret` of the timestamp,
/// a dot and the body. The timestamp lets receivers refuse replays of old requests.
pub fn signature(secret: &SigningSecret, timestamp: u64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.0.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let mut value = format!("t={timestamp},v1=");
    for byte in mac.finalize().into_bytes() {
        let _ = write!(value, "{byte:02x}");
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_the_hmac_sha256_of_the_timestamp_and_body() {
        let secret = SigningSecret("whsec-0123456789abcdef".to_string());
        let body = r#"{"ttl":60,"body":{"a":1},"Message_Type":"Notification","queue_name":"q"}"#;
        // Python: hmac.new(b"whsec-0123456789abcdef", b"1765000000." + body, hashlib.sha256).hexdigest()
        assert_eq!(
            signature(&secret, 1_765_000_000, body),
            "t=1765000000,v1=cad5ed4ae22cc25f8ccada5b9e9f0c8bfdfc000f364a1edf8c0a8d4de134d674"
        );
        assert_ne!(
            signature(&secret, 1_765_000_001, body),
            signature(&secret, 1_765_000_000, body)
        );
    }
}
