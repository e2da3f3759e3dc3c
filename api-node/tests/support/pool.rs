//! A test-only in-memory `PoolService`: just enough of the pool semantics
//! (FIFO, echo, claims, delays, expiry) to drive api-node end to end.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tonic::{Request, Response, Status};
use zaqar_proto::pb::pool_service_server::PoolService;
use zaqar_proto::pb::*;
use zaqar_proto::{ErrorCode, ZaqarError};

use super::subscriptions::MemorySubscriptions;

pub type Key = (String, String);
type Reply<T> = Result<Response<T>, Status>;

struct Msg {
    id: String,
    ttl: u32,
    delay: u32,
    body_json: String,
    client_id: String,
    born: Instant,
    created_ms: i64,
    claim: Option<String>,
    claim_count: u32,
}

struct ClaimData {
    ttl: u32,
    born: Instant,
}

#[derive(Default)]
struct QueueData {
    metadata: String,
    messages: Vec<Msg>,
    claims: HashMap<String, ClaimData>,
}

impl QueueData {
    fn live_claim(&self, id: &str) -> Option<&ClaimData> {
        self.claims
            .get(id)
            .filter(|c| c.born.elapsed().as_secs() < u64::from(c.ttl))
    }

    fn held_by(&self, msg: &Msg) -> Option<String> {
        msg.claim.clone().filter(|c| self.live_claim(c).is_some())
    }

    fn sweep(&mut self) {
        self.messages
            .retain(|m| m.born.elapsed().as_secs() < u64::from(m.ttl));
    }

    fn show(&self, msg: &Msg) -> Message {
        Message {
            id: msg.id.clone(),
            ttl: msg.ttl,
            age: msg.born.elapsed().as_secs(),
            body_json: msg.body_json.clone(),
            claim_id: self.held_by(msg).unwrap_or_default(),
            claim_count: msg.claim_count,
            created_ms: msg.created_ms,
            checksum: String::new(),
            dead_letter_source: String::new(),
        }
    }
}

fn delayed(msg: &Msg) -> bool {
    msg.born.elapsed().as_secs() < u64::from(msg.delay)
}

/// The in-memory pool.
#[derive(Default)]
pub struct MemoryPool {
    queues: Mutex<HashMap<Key, QueueData>>,
    subscriptions: MemorySubscriptions,
}

impl MemoryPool {
    /// Drops a queue as if another api-node had deleted it.
    pub fn forget_queue(&self, project: &str, queue: &str) {
        self.queues
            .lock()
            .unwrap()
            .remove(&(project.to_string(), queue.to_string()));
    }

    pub fn has_queue(&self, project: &str, queue: &str) -> bool {
        let key = (project.to_string(), queue.to_string());
        self.queues.lock().unwrap().contains_key(&key)
    }
}

pub fn key(queue: &Option<QueueRef>) -> Key {
    let q = queue.clone().unwrap_or_default();
    (q.project, q.queue)
}

pub fn err(code: ErrorCode, title: &str, description: &str) -> Status {
    ZaqarError::titled(code, title, description).into()
}

pub fn not_found(what: &str) -> Status {
    ZaqarError::not_found(format!("{what} does not exist")).into()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[tonic::async_trait]
impl PoolService for MemoryPool {
    async fn create_queue(&self, r: Request<CreateQueueRequest>) -> Reply<CreateQueueReply> {
        let r = r.into_inner();
        let mut queues = self.queues.lock().unwrap();
        let k = key(&r.queue);
        let created = !queues.contains_key(&k);
        queues.entry(k).or_insert_with(|| QueueData {
            metadata: r.metadata_json,
            ..Default::default()
        });
        Ok(Response::new(CreateQueueReply { created }))
    }

    async fn get_queue(&self, r: Request<QueueRef>) -> Reply<GetQueueReply> {
        let queues = self.queues.lock().unwrap();
        let q = queues.get(&key(&Some(r.into_inner())));
        Ok(Response::new(GetQueueReply {
            exists: q.is_some(),
            metadata_json: q.map_or("{}".into(), |q| q.metadata.clone()),
        }))
    }

    async fn set_queue_metadata(&self, r: Request<SetQueueMetadataRequest>) -> Reply<Empty> {
        let r = r.into_inner();
        let mut queues = self.queues.lock().unwrap();
        let q = queues
            .get_mut(&key(&r.queue))
            .ok_or_else(|| not_found("Queue"))?;
        q.metadata = r.metadata_json;
        Ok(Response::new(Empty {}))
    }

    async fn delete_queue(&self, r: Request<QueueRef>) -> Reply<Empty> {
        self.queues
            .lock()
            .unwrap()
            .remove(&key(&Some(r.into_inner())));
        Ok(Response::new(Empty {}))
    }

    async fn queue_stats(&self, r: Request<QueueRef>) -> Reply<QueueStatsReply> {
        let mut queues = self.queues.lock().unwrap();
        let mut reply = QueueStatsReply::default();
        if let Some(q) = queues.get_mut(&key(&Some(r.into_inner()))) {
            q.sweep();
            for m in &q.messages {
                reply.total += 1;
                match q.held_by(m) {
                    Some(_) => reply.claimed += 1,
                    None => reply.free += 1,
                }
                reply.delayed += u64::from(delayed(m));
            }
            reply.oldest = q.messages.first().map(|m| q.show(m));
            reply.newest = q.messages.last().map(|m| q.show(m));
        }
        Ok(Response::new(reply))
    }

    async fn purge_queue(&self, r: Request<PurgeQueueRequest>) -> Reply<Empty> {
        let r = r.into_inner();
        let k = key(&r.queue);
        if r.messages {
            if let Some(q) = self.queues.lock().unwrap().get_mut(&k) {
                q.messages.clear();
                q.claims.clear();
            }
        }
        if r.subscriptions {
            self.subscriptions.purge(&k);
        }
        Ok(Response::new(Empty {}))
    }

    async fn post_messages(&self, r: Request<PostMessagesRequest>) -> Reply<PostMessagesReply> {
        let r = r.into_inner();
        let mut queues = self.queues.lock().unwrap();
        // Like the pool-node: a post checked against other metadata stores nothing.
        if let Some(expected) = &r.expected_metadata_json {
            let stored = queues.get(&key(&r.queue)).map(|q| q.metadata.as_str());
            if stored.unwrap_or("") != expected {
                return Ok(Response::new(PostMessagesReply {
                    stale_metadata: true,
                    ..Default::default()
                }));
            }
        }
        let q = queues.entry(key(&r.queue)).or_insert_with(|| QueueData {
            metadata: "{}".into(),
            ..Default::default()
        });
        let mut ids = Vec::new();
        for m in r.messages {
            let id = uuid::Uuid::new_v4().to_string();
            ids.push(id.clone());
            q.messages.push(Msg {
                id,
                ttl: m.ttl,
                delay: m.delay,
                body_json: m.body_json,
                client_id: r.client_id.clone(),
                born: Instant::now(),
                created_ms: now_ms(),
                claim: None,
                claim_count: 0,
            });
        }
        Ok(Response::new(PostMessagesReply {
            ids,
            ..Default::default()
        }))
    }

    async fn list_messages(&self, r: Request<ListMessagesRequest>) -> Reply<ListMessagesReply> {
        let r = r.into_inner();
        let mut queues = self.queues.lock().unwrap();
        let Some(q) = queues.get_mut(&key(&r.queue)) else {
            return Ok(Response::new(ListMessagesReply {
                messages: vec![],
                next_marker: r.marker,
            }));
        };
        q.sweep();
        let start = match r.marker.as_str() {
            "" => 0,
            marker => q
                .messages
                .iter()
                .position(|m| m.id == marker)
                .map_or(0, |i| i + 1),
        };
        let messages: Vec<Message> = q.messages[start..]
            .iter()
            .filter(|m| r.echo || m.client_id != r.client_id)
            .filter(|m| r.include_claimed || q.held_by(m).is_none())
            .filter(|m| r.include_delayed || !delayed(m))
            .take(r.limit as usize)
            .map(|m| q.show(m))
            .collect();
        let next_marker = messages.last().map_or(r.marker, |m| m.id.clone());
        Ok(Response::new(ListMessagesReply {
            messages,
            next_marker,
        }))
    }

    async fn get_messages(&self, r: Request<GetMessagesRequest>) -> Reply<MessagesReply> {
        let r = r.into_inner();
        let mut queues = self.queues.lock().unwrap();
        let mut messages = Vec::new();
        if let Some(q) = queues.get_mut(&key(&r.queue)) {
            q.sweep();
            for id in &r.ids {
                if let Some(m) = q.messages.iter().find(|m| &m.id == id) {
                    messages.push(q.show(m));
                }
            }
        }
        Ok(Response::new(MessagesReply { messages }))
    }

    async fn delete_messages(&self, r: Request<DeleteMessagesRequest>) -> Reply<Empty> {
        let r = r.into_inner();
        let mut queues = self.queues.lock().unwrap();
        if let Some(q) = queues.get_mut(&key(&r.queue)) {
            if !r.claim_ids.is_empty() {
                let foreign = q
                    .messages
                    .iter()
                    .filter(|m| r.ids.contains(&m.id))
                    .any(|m| q.held_by(m).is_some_and(|c| !r.claim_ids.contains(&c)));
                if foreign {
                    return Err(err(
                        ErrorCode::Forbidden,
                        "Unable to delete",
                        "claimed by another claim",
                    ));
                }
            }
            q.messages.retain(|m| !r.ids.contains(&m.id));
        }
        Ok(Response::new(Empty {}))
    }

    async fn delete_message(&self, r: Request<DeleteMessageRequest>) -> Reply<Empty> {
        let r = r.into_inner();
        let mut queues = self.queues.lock().unwrap();
        let Some(q) = queues.get_mut(&key(&r.queue)) else {
            return Ok(Response::new(Empty {}));
        };
        let Some(m) = q.messages.iter().find(|m| m.id == r.id) else {
            return Ok(Response::new(Empty {}));
        };
        match (q.held_by(m), r.claim_id.as_str()) {
            (Some(_), "") => {
                return Err(err(
                    ErrorCode::Forbidden,
                    "Unable to delete",
                    "This message is claimed; it cannot be deleted without a valid claim ID.",
                ))
            }
            (held, given) if !given.is_empty() && held.as_deref() != Some(given) => {
                return Err(err(
                    ErrorCode::BadRequest,
                    "Unable to delete",
                    "The specified claim does not exist or has expired.",
                ))
            }
            _ => {}
        }
        q.messages.retain(|m| m.id != r.id);
        Ok(Response::new(Empty {}))
    }

    async fn pop_messages(&self, r: Request<PopMessagesRequest>) -> Reply<MessagesReply> {
        let r = r.into_inner();
        let mut queues = self.queues.lock().unwrap();
        let mut messages = Vec::new();
        if let Some(q) = queues.get_mut(&key(&r.queue)) {
            q.sweep();
            let popped: Vec<String> = q
                .messages
                .iter()
                .filter(|m| q.held_by(m).is_none() && !delayed(m))
                .take(r.limit as usize)
                .map(|m| m.id.clone())
                .collect();
            for m in q.messages.iter().filter(|m| popped.contains(&m.id)) {
                messages.push(q.show(m));
            }
            q.messages.retain(|m| !popped.contains(&m.id));
        }
        Ok(Response::new(MessagesReply { messages }))
    }

    async fn create_claim(&self, r: Request<CreateClaimRequest>) -> Reply<ClaimReply> {
        let r = r.into_inner();
        let mut queues = self.queues.lock().unwrap();
        let Some(q) = queues.get_mut(&key(&r.queue)) else {
            return Ok(Response::new(ClaimReply::default()));
        };
        q.sweep();
        let id = uuid::Uuid::new_v4().to_string();
        let free: Vec<usize> = (0..q.messages.len())
            .filter(|&i| q.held_by(&q.messages[i]).is_none() && !delayed(&q.messages[i]))
            .take(r.limit as usize)
            .collect();
        if free.is_empty() {
            return Ok(Response::new(ClaimReply::default()));
        }
        q.claims.insert(
            id.clone(),
            ClaimData {
                ttl: r.ttl,
                born: Instant::now(),
            },
        );
        for &i in &free {
            let m = &mut q.messages[i];
            m.claim = Some(id.clone());
            m.claim_count += 1;
            let age = m.born.elapsed().as_secs() as u32;
            m.ttl = m.ttl.max(age + r.ttl + r.grace);
        }
        let messages = free.iter().map(|&i| q.show(&q.messages[i])).collect();
        Ok(Response::new(ClaimReply {
            id,
            ttl: r.ttl,
            age: 0,
            messages,
            dead_letter_queue: String::new(),
        }))
    }

    async fn get_claim(&self, r: Request<ClaimRef>) -> Reply<ClaimReply> {
        let r = r.into_inner();
        let mut queues = self.queues.lock().unwrap();
        let q = queues
            .get_mut(&key(&r.queue))
            .ok_or_else(|| not_found("Claim"))?;
        let claim = q
            .live_claim(&r.claim_id)
            .ok_or_else(|| not_found("Claim"))?;
        let (ttl, age) = (claim.ttl, claim.born.elapsed().as_secs());
        let messages = q
            .messages
            .iter()
            .filter(|m| m.claim.as_deref() == Some(r.claim_id.as_str()))
            .map(|m| q.show(m))
            .collect();
        Ok(Response::new(ClaimReply {
            id: r.claim_id,
            ttl,
            age,
            messages,
            dead_letter_queue: String::new(),
        }))
    }

    async fn update_claim(&self, r: Request<UpdateClaimRequest>) -> Reply<Empty> {
        let r = r.into_inner();
        let claim = r.claim.unwrap_or_default();
        let mut queues = self.queues.lock().unwrap();
        let q = queues
            .get_mut(&key(&claim.queue))
            .ok_or_else(|| not_found("Claim"))?;
        q.live_claim(&claim.claim_id)
            .ok_or_else(|| not_found("Claim"))?;
        q.claims.insert(
            claim.claim_id,
            ClaimData {
                ttl: r.ttl,
                born: Instant::now(),
            },
        );
        Ok(Response::new(Empty {}))
    }

    async fn delete_claim(&self, r: Request<ClaimRef>) -> Reply<Empty> {
        let r = r.into_inner();
        if let Some(q) = self.queues.lock().unwrap().get_mut(&key(&r.queue)) {
            q.claims.remove(&r.claim_id);
        }
        Ok(Response::new(Empty {}))
    }

    async fn create_subscription(
        &self,
        r: Request<CreateSubscriptionRequest>,
    ) -> Reply<CreateSubscriptionReply> {
        self.subscriptions.create(r.into_inner()).map(Response::new)
    }

    async fn list_subscriptions(
        &self,
        r: Request<ListSubscriptionsRequest>,
    ) -> Reply<ListSubscriptionsReply> {
        self.subscriptions.list(r.into_inner()).map(Response::new)
    }

    async fn get_subscription(&self, r: Request<SubscriptionRef>) -> Reply<Subscription> {
        self.subscriptions.get(r.into_inner()).map(Response::new)
    }

    async fn update_subscription(&self, r: Request<UpdateSubscriptionRequest>) -> Reply<Empty> {
        self.subscriptions.update(r.into_inner()).map(Response::new)
    }

    async fn delete_subscription(&self, r: Request<SubscriptionRef>) -> Reply<Empty> {
        self.subscriptions.delete(r.into_inner()).map(Response::new)
    }

    async fn confirm_subscription(&self, r: Request<ConfirmSubscriptionRequest>) -> Reply<Empty> {
        self.subscriptions
            .confirm(r.into_inner())
            .map(Response::new)
    }

    async fn health(&self, _: Request<Empty>) -> Reply<HealthReply> {
        Ok(Response::new(HealthReply {
            ok: true,
            detail: String::new(),
            notifier_lag_seconds: 0.0,
        }))
    }

    type WatchQueuesStream = zaqar_proto::QueueActivityStream;

    /// As a pool-node of before long polling: waiting requests look every second.
    async fn watch_queues(&self, _: Request<WatchQueuesRequest>) -> Reply<Self::WatchQueuesStream> {
        Err(Status::unimplemented("no activity stream"))
    }
}
