//! The subscriptions part of the test-only in-memory pool.

use std::collections::HashMap;
use std::sync::Mutex;

use tonic::Status;
use zaqar_proto::pb::*;
use zaqar_proto::ErrorCode;

use super::pool::{err, key, not_found, Key};

#[derive(Clone)]
struct Sub {
    id: String,
    subscriber: String,
    ttl: u32,
    options_json: String,
    confirmed: bool,
}

/// Subscriptions per queue, in creation order.
#[derive(Default)]
pub struct MemorySubscriptions {
    map: Mutex<HashMap<Key, Vec<Sub>>>,
}

type Result<T> = std::result::Result<T, Status>;

impl MemorySubscriptions {
    pub fn purge(&self, k: &Key) {
        self.map.lock().unwrap().remove(k);
    }

    pub fn create(&self, r: CreateSubscriptionRequest) -> Result<CreateSubscriptionReply> {
        let mut map = self.map.lock().unwrap();
        let list = map.entry(key(&r.queue)).or_default();
        if let Some(existing) = list.iter().find(|s| s.subscriber == r.subscriber) {
            let id = existing.id.clone();
            return Ok(CreateSubscriptionReply { id, created: false });
        }
        let id = uuid::Uuid::new_v4().to_string();
        list.push(Sub {
            id: id.clone(),
            subscriber: r.subscriber,
            ttl: r.ttl,
            options_json: r.options_json,
            confirmed: r.confirmed,
        });
        Ok(CreateSubscriptionReply { id, created: true })
    }

    pub fn list(&self, r: ListSubscriptionsRequest) -> Result<ListSubscriptionsReply> {
        let map = self.map.lock().unwrap();
        let k = key(&r.queue);
        let all = map.get(&k).cloned().unwrap_or_default();
        let start = all
            .iter()
            .position(|s| s.id == r.marker)
            .map_or(0, |i| i + 1);
        let page: Vec<Subscription> = all[start..]
            .iter()
            .take(r.limit as usize)
            .map(|s| show(&k, s))
            .collect();
        let next_marker = page.last().map_or(r.marker, |s| s.id.clone());
        Ok(ListSubscriptionsReply {
            subscriptions: page,
            next_marker,
        })
    }

    pub fn get(&self, r: SubscriptionRef) -> Result<Subscription> {
        let k = key(&r.queue);
        let map = self.map.lock().unwrap();
        let sub = map.get(&k).and_then(|l| l.iter().find(|s| s.id == r.id));
        sub.map(|s| show(&k, s))
            .ok_or_else(|| not_found("Subscription"))
    }

    pub fn update(&self, r: UpdateSubscriptionRequest) -> Result<Empty> {
        let sub_ref = r.subscription.unwrap_or_default();
        let mut map = self.map.lock().unwrap();
        let list = map
            .get_mut(&key(&sub_ref.queue))
            .ok_or_else(|| not_found("Subscription"))?;
        if let Some(subscriber) = &r.subscriber {
            if list
                .iter()
                .any(|s| &s.subscriber == subscriber && s.id != sub_ref.id)
            {
                return Err(err(ErrorCode::Conflict, "Conflict", "duplicate subscriber"));
            }
        }
        let sub = list
            .iter_mut()
            .find(|s| s.id == sub_ref.id)
            .ok_or_else(|| not_found("Subscription"))?;
        if let Some(subscriber) = r.subscriber {
            sub.subscriber = subscriber;
        }
        if let Some(ttl) = r.ttl {
            sub.ttl = ttl;
        }
        if let Some(options_json) = r.options_json {
            sub.options_json = options_json;
        }
        Ok(Empty {})
    }

    pub fn delete(&self, r: SubscriptionRef) -> Result<Empty> {
        if let Some(list) = self.map.lock().unwrap().get_mut(&key(&r.queue)) {
            list.retain(|s| s.id != r.id);
        }
        Ok(Empty {})
    }

    pub fn confirm(&self, r: ConfirmSubscriptionRequest) -> Result<Empty> {
        let sub_ref = r.subscription.unwrap_or_default();
        let mut map = self.map.lock().unwrap();
        let sub = map
            .get_mut(&key(&sub_ref.queue))
            .and_then(|l| l.iter_mut().find(|s| s.id == sub_ref.id))
            .ok_or_else(|| not_found("Subscription"))?;
        sub.confirmed = r.confirmed;
        Ok(Empty {})
    }
}

fn show(k: &Key, s: &Sub) -> Subscription {
    Subscription {
        id: s.id.clone(),
        source: k.1.clone(),
        subscriber: s.subscriber.clone(),
        ttl: s.ttl,
        age: 0,
        options_json: s.options_json.clone(),
        confirmed: s.confirmed,
    }
}
