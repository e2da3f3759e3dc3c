//! One email attempt: a notification sent through the configured SMTP server, with
//! the headers and body Zaqar's mailto task gives it.

use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::deliver::Failure;

/// Plain SMTP to `host:port`: no TLS, no login (a local relay, as Zaqar's sendmail path).
pub fn transport(
    host: &str,
    port: u16,
    timeout: std::time::Duration,
) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(port)
        .timeout(Some(timeout))
        .build()
}

/// Sends one text/plain email whose body is the notification `document`.
/// Addresses that do not parse and permanent SMTP answers (5xx) are final;
/// everything else is worth a retry.
pub async fn send(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    from: &str,
    to: &str,
    subject: &str,
    document: String,
) -> Result<(), Failure> {
    let address = |role: &str, text: &str| {
        text.parse()
            .map_err(|err| Failure::Permanent(format!("invalid {role} address {text:?}: {err}")))
    };
    let email = Message::builder()
        .from(address("from", from)?)
        .to(address("to", to)?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(document)
        .map_err(|err| Failure::Permanent(format!("cannot build the email: {err}")))?;
    match transport.send(email).await {
        Ok(_) => Ok(()),
        Err(err) if err.is_permanent() => Err(Failure::Permanent(format!("smtp: {err}"))),
        Err(err) => Err(Failure::Transient(format!("smtp: {err}"))),
    }
}
