//! One webhook attempt: an HTTP POST of one notification, as Zaqar's webhook task sends it.

use super::deliver::Failure;
use super::network;

/// POSTs `body` to `url` with `headers` (and `traceparent` with tracing on). 2xx and 3xx are delivered; 408, 429 and
/// 5xx, connection errors and timeouts are worth a retry; other 4xx are final
/// (the endpoint refused the notification, as Zaqar treats them).
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    body: String,
) -> Result<(), Failure> {
    let mut request = client.post(url).body(body);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    // The trace context of the delivery's span (none with tracing off).
    for (name, value) in zaqar_proto::trace::outgoing() {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(|err| {
        if err.is_builder() {
            Failure::Permanent(format!("invalid request: {err}"))
        } else if network::is_refused(&err) {
            Failure::Permanent(format!("refused: {err}: {}", error_chain(&err)))
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

/// The causes of `err`, which reqwest's own message leaves out.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut causes = Vec::new();
    let mut cause = err.source();
    while let Some(err) = cause {
        causes.push(err.to_string());
        cause = err.source();
    }
    causes.join(": ")
}
