//! Posting and reading message bodies as the quota tests do.

use anyhow::Result;
use serde_json::{json, Value};

use crate::Client;

/// The body of a post of `bodies` (JSON strings, ttl 300 s): each counts as its
/// length plus 2 (the quotes) against a byte quota.
pub fn posting(bodies: &[&str]) -> Value {
    let messages: Vec<Value> = bodies
        .iter()
        .map(|body| json!({"ttl": 300, "body": body}))
        .collect();
    json!({ "messages": messages })
}

/// The bodies of the queue's messages, oldest first (claimed ones included, the
/// first 20).
pub async fn bodies(client: &Client, queue: &str) -> Result<Vec<Value>> {
    let path = format!("/v2/queues/{queue}/messages?include_claimed=true&echo=true&limit=20");
    let listed = client.get(&path).await?;
    Ok(listed.body["messages"]
        .as_array()
        .map(|messages| messages.iter().map(|m| m["body"].clone()).collect())
        .unwrap_or_default())
}
