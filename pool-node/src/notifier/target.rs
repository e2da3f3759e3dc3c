//! What one subscription asks for: where to deliver and how, read from its
//! subscriber URI and options, and the notification document Zaqar sends.

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use zaqar_proto::pb::{Message, NewMessage, Subscription};
use zaqar_proto::uri::push_url;

/// How a subscription is notified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `http://` or `https://`: one POST per message.
    Webhook {
        /// Where to POST (for a `trust+http(s)` subscriber, without `trust+`).
        url: String,
        /// `Content-Type: application/json`, then the `post_headers` option.
        headers: Vec<(String, String)>,
        /// The `post_data` option: a template whose `"$zaqar_message$"` is
        /// replaced by the notification document.
        post_data: Option<String>,
        /// A WebSocket push subscription (the api-node's own listener): delivered
        /// whatever its address; tenants' webhooks are checked against the
        /// network policy.
        trusted: bool,
        /// The `_signing_secret` option: each POST then carries `X-Zaqar-Signature`.
        signing_secret: Option<SigningSecret>,
        /// A `trust+http(s)` subscriber's `trust_id` option: each POST then carries
        /// `X-Auth-Token`, a token of that Keystone trust (`trustee.rs`).
        trust_id: Option<String>,
    },
    /// `mailto:address?subject=...`: one email per message.
    Mailto {
        to: String,
        /// The `from` option; the configured sender when unset.
        from: Option<String>,
        /// The `subject` query parameter, else the `subject` option, else empty.
        subject: String,
    },
}

/// The subscription option holding its filter (`zaqar_proto::filter`).
pub const FILTER_OPTION: &str = "filter";

/// The subscription option holding a `trust+` subscriber's Keystone trust.
pub const TRUST_ID_OPTION: &str = "trust_id";

/// The subscription option holding a webhook's signing secret.
pub const SIGNING_SECRET_OPTION: &str = "_signing_secret";

/// A webhook's signing secret; never shown in logs.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(pub String);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

/// Why a subscription gets no delivery from this notifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    #[error("subscriber scheme {0:?} is not delivered by this notifier")]
    Scheme(String),
    #[error("invalid subscriber URI: {0}")]
    Uri(String),
    #[error("a trust+ subscriber needs the trust_id option (created with keystone auth)")]
    NoTrust,
}

impl Target {
    /// The kind of notification, as the metrics name it: `webhook`, `websocket`
    /// (a push subscription) or `email`.
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Webhook { trusted: true, .. } => "websocket",
            Target::Webhook { .. } => "webhook",
            Target::Mailto { .. } => "email",
        }
    }

    /// The target of `subscriber` with the subscription's parsed `options`.
    pub fn of(subscriber: &str, options: &Map<String, Value>) -> Result<Self, Unsupported> {
        let (subscriber, trusted) = match push_url(subscriber) {
            Some(url) => (url, true),
            None => (subscriber, false),
        };
        let trust_url = subscriber
            .get(..6)
            .filter(|prefix| prefix.eq_ignore_ascii_case("trust+") && !trusted)
            .map(|_| &subscriber[6..]);
        let (subscriber, trust_id) = match trust_url {
            Some(url) if url.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("http")) => {
                let trust_id = options
                    .get(TRUST_ID_OPTION)
                    .and_then(Value::as_str)
                    .filter(|id| !id.is_empty())
                    .ok_or(Unsupported::NoTrust)?;
                (url, Some(trust_id.to_string()))
            }
            _ => (subscriber, None),
        };
        let url =
            reqwest::Url::parse(subscriber).map_err(|err| Unsupported::Uri(err.to_string()))?;
        match url.scheme() {
            "http" | "https" => {
                let mut headers =
                    vec![("Content-Type".to_string(), "application/json".to_string())];
                if let Some(extra) = options.get("post_headers").and_then(Value::as_object) {
                    for (name, value) in extra {
                        let value = value
                            .as_str()
                            .map_or_else(|| value.to_string(), str::to_string);
                        headers.retain(|(known, _)| !known.eq_ignore_ascii_case(name));
                        headers.push((name.clone(), value));
                    }
                }
                let post_data = options
                    .get("post_data")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let signing_secret = options
                    .get(SIGNING_SECRET_OPTION)
                    .and_then(Value::as_str)
                    .map(|secret| SigningSecret(secret.to_string()));
                Ok(Target::Webhook {
                    url: subscriber.to_string(),
                    headers,
                    post_data,
                    trusted,
                    signing_secret,
                    trust_id,
                })
            }
            "mailto" if !trusted => {
                let query_subject = url
                    .query_pairs()
                    .find(|(key, _)| key.eq_ignore_ascii_case("subject"))
                    .map(|(_, value)| value.into_owned());
                let option =
                    |key: &str| options.get(key).and_then(Value::as_str).map(str::to_string);
                Ok(Target::Mailto {
                    to: url.path().to_string(),
                    from: option("from").filter(|from| !from.is_empty()),
                    subject: query_subject
                        .or_else(|| option("subject"))
                        .unwrap_or_default(),
                })
            }
            other => Err(Unsupported::Scheme(other.to_string())),
        }
    }

    /// The target of a stored subscription (options that are not a JSON object count as none).
    pub fn of_subscription(subscription: &Subscription) -> Result<Self, Unsupported> {
        Target::of(&subscription.subscriber, &options_of(subscription))
    }

    /// The request body of one notification for a webhook (`post_data` applied).
    pub fn webhook_body(post_data: Option<&str>, document: &str) -> String {
        match post_data {
            Some(template) => template.replace("\"$zaqar_message$\"", document),
            None => document.to_string(),
        }
    }
}

/// A subscription's options as a JSON object (empty when unset or not an object).
pub fn options_of(subscription: &Subscription) -> Map<String, Value> {
    match serde_json::from_str(&subscription.options_json) {
        Ok(Value::Object(options)) => options,
        _ => Map::new(),
    }
}

/// The document Zaqar sends for one posted message, keys in Zaqar's order:
/// `{"ttl":..,"body":..,["delay":..,]"Message_Type":"Notification","queue_name":..}`.
/// `delay` is present only when the message was posted with one.
#[derive(Serialize)]
struct Document<'a> {
    ttl: u32,
    body: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    delay: Option<u32>,
    #[serde(rename = "Message_Type")]
    message_type: &'static str,
    queue_name: &'a str,
}

/// The notification document of a message as posted.
pub fn document_of(queue_name: &str, message: &NewMessage) -> String {
    document(queue_name, message.ttl, &message.body_json, message.delay)
}

/// The document of a message read back from the store (after a restart, or once
/// the posted one left the cache): its `ttl` is its current lifetime and it has no
/// `delay` key, as the store keeps neither as posted.
pub fn stored_document(queue_name: &str, message: &Message) -> String {
    document(queue_name, message.ttl, &message.body_json, 0)
}

/// One document; a body that is not JSON (api-node validates it, so only a bug
/// gets here) is sent as `null`, and `delay` only when positive.
fn document(queue_name: &str, ttl: u32, body_json: &str, delay: u32) -> String {
    let null = RawValue::from_string("null".to_string()).expect("null is JSON");
    let body = serde_json::from_str::<&RawValue>(body_json).unwrap_or(&null);
    let document = Document {
        ttl,
        body,
        delay: Some(delay).filter(|delay| *delay > 0),
        message_type: "Notification",
        queue_name,
    };
    serde_json::to_string(&document).expect("a document serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn options(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn documents_keep_zaqars_keys_and_the_body_as_posted() {
        let messages = [
            NewMessage {
                ttl: 60,
                delay: 0,
                body_json: r#"{"b":1,"a":[true]}"#.into(),
            },
            NewMessage {
                ttl: 300,
                delay: 5,
                body_json: "\"text\"".into(),
            },
        ];
        assert_eq!(
            messages.map(|message| document_of("orders", &message)),
            [
                r#"{"ttl":60,"body":{"b":1,"a":[true]},"Message_Type":"Notification","queue_name":"orders"}"#,
                r#"{"ttl":300,"body":"text","delay":5,"Message_Type":"Notification","queue_name":"orders"}"#,
            ]
        );
    }

    #[test]
    fn webhook_options_add_headers_and_wrap_the_document() {
        let target = Target::of(
            "http://127.0.0.1:9/hook",
            &options(
                json!({"post_headers": {"X-Token": "s3cret", "content-type": "text/plain"},
                            "post_data": "{\"event\": \"$zaqar_message$\"}"}),
            ),
        )
        .unwrap();
        let Target::Webhook {
            headers, post_data, ..
        } = target
        else {
            panic!("not a webhook")
        };
        assert_eq!(
            headers,
            [
                ("X-Token".to_string(), "s3cret".to_string()),
                ("content-type".to_string(), "text/plain".to_string())
            ]
        );
        assert_eq!(
            Target::webhook_body(post_data.as_deref(), "{\"ttl\":1}"),
            "{\"event\": {\"ttl\":1}}"
        );
    }

    #[test]
    fn mailto_takes_the_query_subject_before_the_option() {
        let target = Target::of(
            "mailto:ops@example.org?Subject=Queue%20alert",
            &options(json!({"from": "zaqar@example.org", "subject": "ignored"})),
        );
        assert_eq!(
            target.unwrap(),
            Target::Mailto {
                to: "ops@example.org".into(),
                from: Some("zaqar@example.org".into()),
                subject: "Queue alert".into(),
            }
        );
        let plain =
            Target::of("mailto:ops@example.org", &options(json!({"subject": "s"}))).unwrap();
        assert!(matches!(plain, Target::Mailto { subject, from: None, .. } if subject == "s"));
        assert!(matches!(
            Target::of("trust+ftp://x", &Map::new()),
            Err(Unsupported::Scheme(_))
        ));
    }

    #[test]
    fn trust_subscribers_need_their_trust_and_post_without_the_prefix() {
        assert_eq!(
            Target::of("trust+http://127.0.0.1:9/v2/queues/q/messages", &Map::new()),
            Err(Unsupported::NoTrust)
        );
        let target = Target::of(
            "trust+https://zaqar.example.org/v2/queues/q/messages",
            &options(json!({"trust_id": "abc", "post_headers": {"X-Project-ID": "p"}})),
        )
        .unwrap();
        let Target::Webhook {
            url,
            trust_id,
            trusted,
            ..
        } = target
        else {
            panic!("not a webhook")
        };
        assert_eq!(url, "https://zaqar.example.org/v2/queues/q/messages");
        assert_eq!(trust_id.as_deref(), Some("abc"));
        assert!(!trusted);
        assert_eq!(target_kind("http://x"), "webhook");
        assert_eq!(
            target_kind("trust+http://x"),
            "webhook",
            "a trust is still a webhook"
        );
    }

    fn target_kind(subscriber: &str) -> &'static str {
        Target::of(subscriber, &options(json!({"trust_id": "t"})))
            .unwrap()
            .kind()
    }
}
