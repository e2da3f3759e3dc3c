//! Subscription operations: create, list, get, update, delete, confirm.

use serde::Serialize;
use serde_json::{json, Map, Value};
use zaqar_proto::pb;
use zaqar_proto::{ErrorCode, ZaqarError};

use super::json::{as_python_int, is_truthy, parse_optional, too_large};
use super::metadata::check_retry_policy;
use super::types::{Subscription, SubscriptionList};
use super::{check_limit, conflict, invalid_api, unavailable_as, Context, Payload};
use crate::signed_url::sign;
use zaqar_proto::timefmt::format_utc;
use zaqar_proto::uri::push_url;

/// The option holding a `trust+` subscriber's Keystone trust (as in Zaqar).
const TRUST_ID_OPTION: &str = "trust_id";

/// The subscriber URI schemes Zaqar notifies.
const SUBSCRIBER_TYPES: [&str; 5] = ["http", "https", "mailto", "trust+http", "trust+https"];

/// The outcome of a create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub id: String,
    /// False when the subscriber already had a subscription on the queue.
    pub created: bool,
}

/// Subscribes `subscriber` to a queue (creating the queue if needed). A
/// duplicate subscriber answers its existing subscription, unless that one was
/// confirmed while confirmation is required (then 409, as in Zaqar).
pub async fn create(ctx: &Context, queue: &str, payload: &Payload) -> Result<Created, ZaqarError> {
    create_subscription(ctx, queue, payload, false, false).await
}

/// [`create`] for a WebSocket push subscription, whose subscriber is the
/// api-node's own listener (`zaqar_proto::uri::push_subscriber`), a scheme no
/// client may give.
pub async fn create_push(
    ctx: &Context,
    queue: &str,
    payload: &Payload,
) -> Result<Created, ZaqarError> {
    create_subscription(ctx, queue, payload, false, true).await
}

/// [`create`] as Zaqar's REST API does it: with confirmation required, the new (or
/// still unconfirmed) subscription is also sent a confirmation request carrying
/// its confirm URL, signed with `signed_url_secret_key` for `PUT` until its ttl
/// ends (nothing is sent without a key). Zaqar's WebSocket API sends none.
pub async fn create_requesting_confirmation(
    ctx: &Context,
    queue: &str,
    payload: &Payload,
) -> Result<Created, ZaqarError> {
    create_subscription(ctx, queue, payload, true, false).await
}

async fn create_subscription(
    ctx: &Context,
    queue: &str,
    payload: &Payload,
    request_confirmation: bool,
    push: bool,
) -> Result<Created, ZaqarError> {
    ctx.check_queue(queue)?;
    let document = document(payload)?;
    let Some(subscriber) = document.get("subscriber") else {
        return Err(invalid_api("Missing parameter subscriber in body."));
    };
    check_fields(ctx, &document, push)?;
    let subscriber = subscriber.as_str().unwrap_or_default().to_string();
    let ttl = ttl(&document)?.unwrap_or(ctx.limits().default_subscription_ttl);
    let mut options = document
        .get("options")
        .filter(|o| is_truthy(o))
        .cloned()
        .unwrap_or(Value::Object(Map::new()));
    if scheme_of(&subscriber).starts_with("trust+") {
        add_trust(ctx, &mut options, ttl).await?;
    }
    let failed = unavailable_as("Subscription could not be created.");
    let pool = ctx.place_queue(queue, "").await.map_err(&failed)?;
    let confirmation_required = ctx.services.require_subscription_confirmation;
    let request = pb::CreateSubscriptionRequest {
        queue: Some(ctx.queue_ref(queue)),
        subscriber,
        ttl,
        options_json: options.to_string(),
        // Without required confirmation Zaqar notifies every subscriber at once;
        // the pool-node notifies confirmed subscriptions, so they start confirmed.
        confirmed: !confirmation_required,
    };
    let reply = ctx
        .call_pool(queue, &pool, request, |mut c, request| async move {
            c.create_subscription(request).await
        })
        .await
        .map_err(&failed)?;
    if confirmation_required {
        if !reply.created && get(ctx, queue, &reply.id).await?.confirmed {
            return Err(conflict(
                "Such subscription already exists.Subscriptions are unique by project + queue + subscriber URI.",
            ));
        }
        // New or still unconfirmed: (re)send the confirmation request, as Zaqar does.
        let notice = request_confirmation
            .then(|| confirmation_notice(ctx, queue, &reply.id, ttl, false))
            .flatten();
        if let Some(notice) = notice {
            let request = pb::ConfirmSubscriptionRequest {
                subscription: Some(subscription_ref(ctx, queue, &reply.id)),
                confirmed: false,
                notice_json: notice,
            };
            let sent = ctx
                .call_pool(queue, &pool, request, |mut c, request| async move {
                    c.confirm_subscription(request).await
                })
                .await;
            if let Err(err) = sent {
                tracing::warn!(queue, subscription = %reply.id, error = %err,
                    "the confirmation request was not handed to the pool");
            }
        }
    }
    Ok(Created {
        id: reply.id,
        created: reply.created,
    })
}

/// A `trust+` subscriber created with a Keystone token and no `trust_id` option
/// gets one: a trust from the caller to api-node's service user, which the
/// notifier delivers with (Zaqar's trust notifier). Without Keystone the
/// subscription is stored as given, and not delivered until it has a trust.
async fn add_trust(ctx: &Context, options: &mut Value, ttl: u32) -> Result<(), ZaqarError> {
    let (Some(keystone), Some(trustor), Some(options)) = (
        ctx.services.auth.keystone(),
        ctx.identity.trustor.as_ref(),
        options.as_object_mut(),
    ) else {
        return Ok(());
    };
    if options.contains_key(TRUST_ID_OPTION) {
        return Ok(());
    }
    let trust = keystone
        .create_trust(trustor, &ctx.identity.project, &ctx.identity.roles, ttl)
        .await?;
    options.insert(TRUST_ID_OPTION.to_string(), Value::String(trust));
    Ok(())
}

/// Lists a queue's subscriptions; empty for a queue that does not exist.
pub async fn list(
    ctx: &Context,
    queue: &str,
    marker: Option<String>,
    limit: Option<i64>,
) -> Result<SubscriptionList, ZaqarError> {
    ctx.check_queue(queue)?;
    let limits = ctx.limits();
    check_limit(
        limit,
        limits.max_page_size,
        "Limit must be at least 1 and may not be greater than {0}.",
    )?;
    let failed = unavailable_as("Subscriptions could not be listed.");
    let marker = marker.unwrap_or_default();
    let empty = SubscriptionList {
        subscriptions: Vec::new(),
        next_marker: marker.clone(),
    };
    let request = pb::ListSubscriptionsRequest {
        queue: Some(ctx.queue_ref(queue)),
        marker: marker.clone(),
        limit: limit.map_or(limits.default_page_size, |l| l as u32),
    };
    let reply = ctx
        .call_queue(queue, &failed, request, |mut c, request| async move {
            c.list_subscriptions(request).await
        })
        .await?;
    let Some(reply) = reply else {
        return Ok(empty);
    };
    let subscriptions = reply
        .subscriptions
        .into_iter()
        .map(Subscription::try_from)
        .collect::<Result<Vec<_>, _>>()?;
    let next_marker = if reply.next_marker.is_empty() {
        marker
    } else {
        reply.next_marker
    };
    Ok(SubscriptionList {
        subscriptions,
        next_marker,
    })
}

/// One live subscription.
pub async fn get(ctx: &Context, queue: &str, id: &str) -> Result<Subscription, ZaqarError> {
    ctx.check_queue(queue)?;
    let failed = unavailable_as("Subscription could not be retrieved.");
    let subscription = subscription_ref(ctx, queue, id);
    let reply = ctx
        .call_queue(
            queue,
            &failed,
            subscription,
            |mut c, subscription| async move { c.get_subscription(subscription).await },
        )
        .await?
        .ok_or_else(|| missing(id))?;
    Subscription::try_from(reply)
}

/// Changes the subscriber, ttl and/or options of a subscription.
pub async fn update(
    ctx: &Context,
    queue: &str,
    id: &str,
    payload: &Payload,
) -> Result<(), ZaqarError> {
    ctx.check_queue(queue)?;
    let document = document(payload)?;
    check_fields(ctx, &document, false)?;
    if document
        .keys()
        .any(|key| !["subscriber", "ttl", "options"].contains(&key.as_str()))
    {
        // Zaqar passes the body to its storage as keyword arguments, which
        // refuses unknown ones with this answer.
        return Err(ZaqarError::titled(
            ErrorCode::BadRequest,
            "Unable to update subscription",
            format!("Subscription {id} could not be updated."),
        ));
    }
    let unavailable = unavailable_as("Subscription could not be updated.");
    let failed = |err: ZaqarError| {
        match err.code {
        ErrorCode::Conflict => conflict(
            "Such subscription already exists. Subscriptions are unique by project + queue + subscriber URI.",
        ),
        _ => unavailable(err),
    }
    };
    let request = pb::UpdateSubscriptionRequest {
        subscription: Some(subscription_ref(ctx, queue, id)),
        subscriber: document
            .get("subscriber")
            .and_then(Value::as_str)
            .map(str::to_string),
        ttl: ttl(&document)?,
        options_json: document.get("options").map(|options| match options {
            Value::Null => "{}".to_string(),
            options => options.to_string(),
        }),
    };
    ctx.call_queue(queue, &failed, request, |mut c, request| async move {
        c.update_subscription(request).await
    })
    .await?
    .ok_or_else(|| missing(id))?;
    Ok(())
}

/// Deletes a subscription; a missing one succeeds.
pub async fn delete(ctx: &Context, queue: &str, id: &str) -> Result<(), ZaqarError> {
    ctx.check_queue(queue)?;
    let failed = unavailable_as("Subscription could not be deleted.");
    let subscription = subscription_ref(ctx, queue, id);
    ctx.call_queue(
        queue,
        &failed,
        subscription,
        |mut c, subscription| async move { c.delete_subscription(subscription).await },
    )
    .await?;
    Ok(())
}

/// Confirms (or unconfirms) a subscription: `{"confirmed": bool}`.
pub async fn confirm(
    ctx: &Context,
    queue: &str,
    id: &str,
    payload: &Payload,
) -> Result<(), ZaqarError> {
    confirm_subscription(ctx, queue, id, payload, false).await
}

/// [`confirm`] as Zaqar's REST API does it: with confirmation required,
/// unconfirming sends the subscriber an unsubscribe notice carrying a confirm URL
/// signed for `PUT` until the default subscription ttl ends, to subscribe again.
pub async fn confirm_with_notice(
    ctx: &Context,
    queue: &str,
    id: &str,
    payload: &Payload,
) -> Result<(), ZaqarError> {
    confirm_subscription(ctx, queue, id, payload, true).await
}

async fn confirm_subscription(
    ctx: &Context,
    queue: &str,
    id: &str,
    payload: &Payload,
    notify: bool,
) -> Result<(), ZaqarError> {
    ctx.check_queue(queue)?;
    let document = match parse_optional(payload)? {
        Some(document) => document,
        None => Value::Object(Map::new()),
    };
    let Some(confirmed) = document.get("confirmed").and_then(Value::as_bool) else {
        return Err(invalid_api("The 'confirmed' should be boolean."));
    };
    let failed = unavailable_as("Subscription could not be confirmed.");
    // Unconfirming tells the subscriber how to subscribe again, as Zaqar does.
    let required = ctx.services.require_subscription_confirmation;
    let notice = match (confirmed, required && notify) {
        (false, true) => {
            let ttl = ctx.limits().default_subscription_ttl;
            confirmation_notice(ctx, queue, id, ttl, true)
        }
        _ => None,
    };
    let request = pb::ConfirmSubscriptionRequest {
        subscription: Some(subscription_ref(ctx, queue, id)),
        confirmed,
        notice_json: notice.unwrap_or_default(),
    };
    ctx.call_queue(queue, &failed, request, |mut c, request| async move {
        c.confirm_subscription(request).await
    })
    .await?
    .ok_or_else(|| missing(id))?;
    Ok(())
}

/// Zaqar's confirmation request (`send_confirm_notification`), keys in its order;
/// the webhook adds `queue_name` last.
#[derive(Serialize)]
struct ConfirmationNotice<'a> {
    #[serde(rename = "Message_Type")]
    message_type: &'static str,
    #[serde(rename = "Message")]
    message: String,
    #[serde(rename = "URL-Signature")]
    signature: &'a str,
    #[serde(rename = "URL-Methods")]
    methods: &'a str,
    #[serde(rename = "URL-Paths")]
    paths: &'a str,
    #[serde(rename = "X-Project-ID")]
    project: &'a str,
    #[serde(rename = "URL-Expires")]
    expires: &'a str,
    #[serde(rename = "SubscribeBody")]
    subscribe_body: Value,
    #[serde(rename = "UnsubscribeBody")]
    unsubscribe_body: Value,
    queue_name: &'a str,
}

/// The confirmation (or, with `unsubscribed`, unsubscribe) request for subscription
/// `id`: a URL signed for `PUT .../confirm`, valid `ttl` seconds. `None` (logged)
/// without a signing key, as Zaqar sends nothing then.
fn confirmation_notice(
    ctx: &Context,
    queue: &str,
    id: &str,
    ttl: u32,
    unsubscribed: bool,
) -> Option<String> {
    let Some(key) = ctx.services.signing_key.as_deref() else {
        tracing::error!(queue, subscription = %id,
            "no confirmation request sent: signed_url_secret_key is not set");
        return None;
    };
    // A topic's subscription lives in the project's topic namespace; its confirm URL
    // names the client's own project and the `/v2/topics` path.
    let (project, collection) = super::topics::client_view(ctx.project());
    let path = format!("/v2/{collection}/{queue}/subscriptions/{id}/confirm");
    let expires = format_utc(unix_now() + i64::from(ttl.max(1)));
    let signed = match sign(key, &[path], &["PUT".to_string()], project, Some(&expires)) {
        Ok(signed) => signed,
        Err(reason) => {
            tracing::error!(queue, subscription = %id, %reason, "confirm URL not signed");
            return None;
        }
    };
    let (message_type, message) = if unsubscribed {
        (
            "UnsubscribeConfirmation",
            format!(
                "You have unsubscribed successfully to the queue: {queue}, you can resubscribe it by using confirmed=True."
            ),
        )
    } else {
        (
            "SubscriptionConfirmation",
            format!("You have chosen to subscribe to the queue: {queue}"),
        )
    };
    let notice = ConfirmationNotice {
        message_type,
        message,
        signature: &signed.signature,
        methods: &signed.methods[0],
        paths: &signed.paths[0],
        project: &signed.project,
        expires: &signed.expires,
        subscribe_body: json!({"confirmed": true}),
        unsubscribe_body: json!({"confirmed": false}),
        queue_name: queue,
    };
    serde_json::to_string(&notice).ok()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// The body of a create or update: an object, `{}` when empty.
fn document(payload: &Payload) -> Result<Map<String, Value>, ZaqarError> {
    if let Payload::TooLarge(size) = payload {
        return Err(too_large(*size));
    }
    match parse_optional(payload)? {
        None => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(invalid_api("Subscriptions must be a dict.")),
    }
}

/// Zaqar's `subscription_patching` checks; with `push`, the subscriber is the
/// api-node's own push URL instead of one of Zaqar's schemes.
fn check_fields(
    ctx: &Context,
    document: &Map<String, Value>,
    push: bool,
) -> Result<(), ZaqarError> {
    if document.is_empty() {
        return Err(invalid_api("No subscription to create."));
    }
    if let Some(subscriber) = document.get("subscriber") {
        let subscriber = subscriber.as_str();
        let scheme = subscriber.map(scheme_of).unwrap_or_default();
        let pushed = push && subscriber.and_then(push_url).is_some();
        if !pushed && !SUBSCRIBER_TYPES.contains(&scheme.as_str()) {
            return Err(invalid_api(
                "The subscriber type of subscription must be supported in the list \
                 ['http', 'https', 'mailto', 'trust+http', 'trust+https'].",
            ));
        }
    }
    if let Some(options) = document.get("options") {
        if is_truthy(options) && !options.is_object() {
            return Err(invalid_api("Options must be a dict."));
        }
        if let Some(options) = options.as_object() {
            check_retry_policy(options.get("_retry_policy")).map_err(invalid_api)?;
            check_signing_secret(options.get("_signing_secret")).map_err(invalid_api)?;
            if let Some(filter) = options.get("filter") {
                zaqar_proto::filter::Filter::parse(filter).map_err(invalid_api)?;
            }
        }
    }
    let min = ctx.limits().min_subscription_ttl;
    match ttl(document)? {
        Some(ttl) if ttl < min => Err(invalid_api(format!(
            "The TTL for a subscription must be at least {min} seconds long."
        ))),
        _ => Ok(()),
    }
}

/// The `_signing_secret` option (a zaqar-rs extension): when set, every webhook POST
/// of the subscription carries `X-Zaqar-Signature`, an HMAC-SHA256 with this secret.
fn check_signing_secret(secret: Option<&Value>) -> Result<(), &'static str> {
    match secret {
        None => Ok(()),
        Some(Value::String(secret))
            if (16..=256).contains(&secret.len())
                && secret.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(())
        }
        Some(_) => Err(
            "The _signing_secret option must be a string of 16 to 256 printable ASCII characters without spaces.",
        ),
    }
}

/// The subscription's ttl, `None` when absent or falsy. (Zaqar 23 stores a
/// falsy ttl as given and then fails on the already expired subscription with
/// a 500; we use the default ttl instead.)
fn ttl(document: &Map<String, Value>) -> Result<Option<u32>, ZaqarError> {
    let Some(value) = document.get("ttl").filter(|v| is_truthy(v)) else {
        return Ok(None);
    };
    let ttl = as_python_int(value).ok_or_else(|| invalid_api("TTL must be an integer."))?;
    if ttl < 0 {
        return Ok(Some(0));
    }
    u32::try_from(ttl).map(Some).map_err(|_| {
        invalid_api(
            "The TTL seconds for a subscription plus current time must be less than 9999-12-31 23:59:59.999999.",
        )
    })
}

/// The URI scheme as Python's `urlparse` finds it (lowercased), or "".
fn scheme_of(uri: &str) -> String {
    match uri.split_once(':') {
        Some((scheme, _))
            if scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) =>
        {
            scheme.to_ascii_lowercase()
        }
        _ => String::new(),
    }
}

fn subscription_ref(ctx: &Context, queue: &str, id: &str) -> pb::SubscriptionRef {
    pb::SubscriptionRef {
        queue: Some(ctx.queue_ref(queue)),
        id: id.to_string(),
    }
}

fn missing(id: &str) -> ZaqarError {
    ZaqarError::not_found(format!("Subscription {id} does not exist"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schemes_are_parsed_like_urlparse() {
        assert_eq!(scheme_of("http://a.example/x"), "http");
        assert_eq!(scheme_of("HTTPS://a"), "https");
        assert_eq!(scheme_of("mailto:a@b.c"), "mailto");
        assert_eq!(scheme_of("trust+http://x"), "trust+http");
        assert_eq!(scheme_of("no scheme"), "");
        assert_eq!(scheme_of("1http://x"), "");
    }

    #[test]
    fn ttls_follow_zaqar() {
        let doc = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(ttl(&doc(json!({}))).unwrap(), None);
        assert_eq!(ttl(&doc(json!({"ttl": 0}))).unwrap(), None);
        assert_eq!(ttl(&doc(json!({"ttl": 120}))).unwrap(), Some(120));
        assert_eq!(
            ttl(&doc(json!({"ttl": "x"}))).unwrap_err().description,
            "TTL must be an integer."
        );
        assert!(ttl(&doc(json!({"ttl": 99999999999i64}))).is_err());
    }

    #[test]
    fn signing_secrets_are_long_printable_strings() {
        assert!(check_signing_secret(None).is_ok());
        assert!(check_signing_secret(Some(&json!("0123456789abcdef"))).is_ok());
        assert!(check_signing_secret(Some(&json!("x".repeat(256)))).is_ok());
        for bad in [
            json!("too-short"),
            json!("x".repeat(257)),
            json!("has a space 0123456789"),
            json!(1234567890123456789u64),
            json!(null),
        ] {
            assert!(check_signing_secret(Some(&bad)).is_err(), "{bad}");
        }
    }
}
