//! `/v2/queues/{q}/messages` and `/v2/queues/{q}/messages/{id}`, and how
//! messages are shown (with their hrefs). Topics serve their messages through
//! the same handlers ([`collection_at`], [`item_at`]) under `/v2/topics/{t}`.

use std::sync::Arc;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Filter;

use super::{empty, handle, json, located, next_link, queue_path, request, Request, RestError};
use crate::operations::messages::{self, DeleteMessages, ListMessages};
use crate::operations::types::Message;
use crate::operations::{Context, Services};

pub fn routes(services: Arc<Services>) -> BoxedFilter<(Response,)> {
    let collection = warp::path!("v2" / "queues" / String / "messages")
        .and(request(services.clone()))
        .then(|queue: String, req| {
            handle(req, &["DELETE", "GET", "POST"], move |ctx, req| {
                let base = queue_path(&queue);
                collection_at(ctx, req, queue, base)
            })
        });
    let item = warp::path!("v2" / "queues" / String / "messages" / String)
        .and(request(services))
        .then(|queue: String, id: String, req| {
            handle(req, &["DELETE", "GET"], move |ctx, req| {
                let base = queue_path(&queue);
                item_at(ctx, req, queue, id, base)
            })
        });
    collection.or(item).unify().boxed()
}

/// The messages of `queue`, whose own path (queue or topic) is `base`.
pub(super) async fn collection_at(
    ctx: Context,
    req: Request,
    queue: String,
    base: String,
) -> Result<Response, RestError> {
    let path = format!("{base}/messages");
    match req.method.as_str() {
        "POST" => {
            let key = req
                .idempotency_key()
                .map(messages::idempotency_key)
                .transpose()?;
            let ids = messages::post(&ctx, &queue, req.payload(), key.as_deref()).await?;
            let hrefs: Vec<String> = ids.iter().map(|id| format!("{path}/{id}")).collect();
            let response = json(StatusCode::CREATED, &json!({"resources": hrefs}));
            Ok(located(response, &format!("{path}?ids={}", ids.join(","))))
        }
        "GET" => match req.query.list("ids") {
            Some(ids) => {
                let found = messages::get_many(&ctx, &queue, &ids).await?;
                let shown: Vec<Shown> = found.iter().map(|m| Shown::at(&base, m)).collect();
                Ok(json(StatusCode::OK, &json!({"messages": shown})))
            }
            None => list(ctx, req, queue, &base, path).await,
        },
        "DELETE" => {
            let input = DeleteMessages {
                ids: req.query.list("ids"),
                claim_ids: req.query.list("claim_ids"),
                pop: req.query.int("pop")?,
            };
            match messages::delete_many(&ctx, &queue, input).await? {
                None => Ok(empty(StatusCode::NO_CONTENT)),
                Some(popped) => {
                    let shown: Vec<Value> = popped.iter().map(Message::popped).collect();
                    Ok(json(StatusCode::OK, &json!({"messages": shown})))
                }
            }
        }
        _ => Err(RestError::MethodNotAllowed(&["DELETE", "GET", "POST"])),
    }
}

async fn list(
    ctx: Context,
    req: Request,
    queue: String,
    base: &str,
    path: String,
) -> Result<Response, RestError> {
    let query = &req.query;
    let input = ListMessages {
        marker: query.string("marker"),
        limit: query.int("limit")?,
        echo: query.flag("echo")?,
        include_claimed: query.flag("include_claimed")?,
        include_delayed: query.flag("include_delayed")?,
        wait: query.int("wait")?,
    };
    let mut params: Vec<(&str, String)> = Vec::new();
    if let Some(limit) = input.limit {
        params.push(("limit", limit.to_string()));
    }
    for (name, value) in [
        ("echo", input.echo),
        ("include_claimed", input.include_claimed),
        ("include_delayed", input.include_delayed),
    ] {
        if query.get(name).is_some() {
            params.push((name, value.to_string()));
        }
    }
    if let Some(wait) = input.wait {
        params.push(("wait", wait.to_string()));
    }
    let listed = messages::list(&ctx, &queue, input).await?;
    let shown: Vec<Shown> = listed.messages.iter().map(|m| Shown::at(base, m)).collect();
    let links = if shown.is_empty() {
        json!([])
    } else {
        params.push(("marker", listed.next_marker));
        next_link(&path, &params)
    };
    Ok(json(
        StatusCode::OK,
        &json!({"messages": shown, "links": links}),
    ))
}

/// One message of `queue`, whose own path (queue or topic) is `base`.
pub(super) async fn item_at(
    ctx: Context,
    req: Request,
    queue: String,
    id: String,
    base: String,
) -> Result<Response, RestError> {
    match req.method.as_str() {
        "GET" => {
            let message = messages::get(&ctx, &queue, &id).await?;
            Ok(json(StatusCode::OK, &Shown::at(&base, &message)))
        }
        "DELETE" => {
            messages::delete(&ctx, &queue, &id, req.query.string("claim_id")).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(RestError::MethodNotAllowed(&["DELETE", "GET"])),
    }
}

/// A message as Zaqar lists it (`format_message`).
#[derive(Serialize)]
pub struct Shown<'a> {
    id: &'a str,
    href: String,
    ttl: u32,
    age: u64,
    body: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    checksum: Option<&'a str>,
}

impl<'a> Shown<'a> {
    /// The message of a queue with its href (`?claim_id=` when claimed).
    pub fn of(queue: &str, message: &'a Message) -> Shown<'a> {
        Shown::at(&queue_path(queue), message)
    }

    /// The message with its href under `base`, the path of its queue or topic.
    pub fn at(base: &str, message: &'a Message) -> Shown<'a> {
        Shown {
            id: &message.id,
            href: message_href(base, message),
            ttl: message.ttl,
            age: message.age,
            body: &message.body,
            checksum: message.checksum.as_deref(),
        }
    }
}

fn message_href(base: &str, message: &Message) -> String {
    let href = format!("{base}/messages/{}", message.id);
    match &message.claim_id {
        Some(claim_id) => format!("{href}?claim_id={claim_id}"),
        None => href,
    }
}

/// A message as queue stats show it (oldest, newest), with its href under `base`.
pub fn stats_message(base: &str, message: &Message) -> Value {
    json!({
        "age": message.age,
        "ttl": message.ttl,
        "body": message.body_value(),
        "claim_id": message.claim_id,
        "claim_count": message.claim_count,
        "created": message.created_utc(),
        "href": format!("{base}/messages/{}", message.id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Message `m1`, claimed by `c1`, created at `created_ms`.
    fn message(created_ms: i64) -> Message {
        Message {
            id: "m1".into(),
            ttl: 60,
            age: 1,
            body: RawValue::from_string("{\"b\": 1}".into()).unwrap(),
            claim_id: Some("c1".into()),
            claim_count: 1,
            created_ms,
            checksum: None,
            dead_letter_source: None,
        }
    }

    #[test]
    fn times_are_shown_in_utc() {
        let shown = |ms| message(ms).created_utc();
        assert_eq!(shown(0), "1970-01-01T00:00:00Z");
        assert_eq!(shown(1_795_623_895_999), "2026-11-25T16:24:55Z");
        assert_eq!(shown(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn claimed_messages_link_their_claim() {
        let message = message(0);
        let shown = serde_json::to_value(Shown::of("q", &message)).unwrap();
        assert_eq!(shown["href"], "/v2/queues/q/messages/m1?claim_id=c1");
        assert_eq!(shown["body"]["b"], 1);
        assert!(shown.get("checksum").is_none());
    }
}
