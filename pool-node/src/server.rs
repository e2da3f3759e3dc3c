//! The gRPC `PoolService`: unpacks requests, calls the [`MessageStore`], packs replies,
//! encrypting message bodies on their way in and decrypting them on their way out
//! (see `encryption.rs`).

use std::sync::Arc;

use tonic::{Request, Response, Status};
use zaqar_proto::pb::pool_service_server::PoolService;
use zaqar_proto::pb::*;
use zaqar_proto::stopping::Stopping;
use zaqar_proto::uri::push_url;
use zaqar_proto::{ErrorCode, QueueActivityStream, ZaqarError};

use crate::activity::Activity;
use crate::encryption::{self, MessageCipher};
use crate::notifier::Notifier;
use crate::quota::{self, Adding, Quota};
use crate::store::{
    CheckedPost, Lease, ListParams, MessageStore, NewClaim, Once, Post, Purge, SubscriptionUpdate,
};

/// Serves one store over gRPC.
///
/// Message bodies posted to a queue whose metadata has `_enable_encrypt_messages:
/// true` are stored encrypted (AES-256-GCM, see [`MessageCipher`]); every message
/// body returned (listings, gets, pops, claims, stats) that is encrypted is
/// decrypted, whatever the queue's current setting, so clients only ever see
/// plaintext. Without a cipher, posts to an encrypting queue are refused
/// (`Unavailable`) and an encrypted body cannot be read (`Internal`).
#[derive(Clone)]
pub struct PoolServer {
    store: Arc<dyn MessageStore>,
    notifier: Option<Notifier>,
    cipher: Option<MessageCipher>,
    /// The queues that got messages, for the api-nodes' long polls (`WatchQueues`).
    activity: Activity,
    /// Turns true when the server stops: the `WatchQueues` streams then end.
    stopping: Stopping,
}

impl PoolServer {
    /// Serves `store`, relaying its queue activity to the other pool-nodes of the
    /// store, if it has any (see [`MessageStore::relay_activity`]).
    pub fn new(store: Arc<dyn MessageStore>) -> Self {
        let activity = Activity::default();
        store.relay_activity(activity.relay());
        PoolServer {
            store,
            notifier: None,
            cipher: None,
            activity,
            stopping: Stopping::never(),
        }
    }

    /// Ends every `WatchQueues` stream once `shutdown` completes. Without it, a
    /// graceful stop of the gRPC server would wait for api-nodes that never hang up.
    pub fn with_shutdown(
        mut self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.stopping = Stopping::on(shutdown);
        self
    }

    /// Encrypts the bodies of encrypting queues with `cipher` (the pool's `encryption_key`).
    pub fn with_encryption(mut self, cipher: MessageCipher) -> Self {
        if let Some(notifier) = &self.notifier {
            notifier.use_cipher(Some(cipher.clone()));
        }
        self.cipher = Some(cipher);
        self
    }

    /// Tells `notifier` of every successful post and subscription change (it never
    /// makes the call wait).
    pub fn with_notifier(mut self, notifier: Notifier) -> Self {
        notifier.use_cipher(self.cipher.clone());
        self.notifier = Some(notifier);
        self
    }

    /// Refuses a tenant's webhook to an address the notifier's network policy does
    /// not permit (400); push subscriptions, other schemes and a pool-node that
    /// delivers nothing are not checked here (delivery checks again).
    async fn check_subscriber(&self, subscriber: &str) -> Result<(), Status> {
        let Some(notifier) = &self.notifier else {
            return Ok(());
        };
        if push_url(subscriber).is_some() {
            return Ok(());
        }
        let Ok(url) = reqwest::Url::parse(subscriber) else {
            return Ok(());
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Ok(());
        }
        notifier
            .network_policy()
            .check_url(&url)
            .await
            .map_err(|reason| {
                ZaqarError::titled(ErrorCode::BadRequest, "Invalid API request", reason).into()
            })
    }

    /// Lets the notifier start or stop delivering to the subscriptions of `queue`, and
    /// waits until it has (see [`Notifier::queue_changed`]).
    async fn subscriptions_changed(&self, queue: &QueueRef) {
        if let Some(notifier) = &self.notifier {
            notifier.queue_changed(queue.clone()).await;
        }
    }

    /// Starts a subscription's delivery at the end of its queue: it is notified of
    /// the messages posted from now on. A failure is logged; the notifier then
    /// starts at the messages posted since the subscription's creation.
    async fn start_delivery_now(&self, queue: &QueueRef, id: &str) {
        if let Err(err) = self.store.reset_delivery_cursor(queue, id).await {
            tracing::warn!(project = %queue.project, queue = %queue.queue, subscription = %id,
                error = %err, "cannot set the new subscription's delivery cursor");
        }
    }

    /// The tonic service to add to a `tonic::transport::Server`.
    pub fn into_service(self) -> pool_service_server::PoolServiceServer<PoolServer> {
        pool_service_server::PoolServiceServer::new(self)
    }

    /// Whether the queue encrypts its messages: by the metadata the post is checked
    /// against (`expected`, empty for a new queue), else by the stored metadata.
    async fn encrypts(&self, queue: &QueueRef, expected: Option<&str>) -> Result<bool, ZaqarError> {
        let metadata = match expected {
            Some(expected) => Some(expected.to_string()),
            None => self.store.get_queue(queue).await?,
        };
        Ok(metadata.as_deref().is_some_and(encryption::queue_encrypts))
    }

    /// Stores the messages of a post, sealed as their queue requires; with
    /// `expected_metadata`, only if the queue's metadata is that. The usual post is
    /// one store call: bodies posted as they are, unless the store finds that the
    /// queue encrypts; then they are sealed and posted again.
    async fn post(
        &self,
        queue: &QueueRef,
        client_id: &str,
        messages: &[NewMessage],
        expected_metadata: Option<&str>,
        once: Option<&Once>,
    ) -> Result<CheckedPost, ZaqarError> {
        if let Ok(plain) = encryption::seal_messages(self.cipher.as_ref(), false, messages) {
            let posted = match once {
                Some(once) => {
                    self.store
                        .post_once(
                            queue,
                            Post {
                                client_id,
                                messages: &plain,
                                plain: true,
                                expected_metadata,
                            },
                            once,
                        )
                        .await?
                }
                None => {
                    self.store
                        .post_checked_messages(queue, client_id, &plain, expected_metadata)
                        .await?
                }
            };
            if posted != CheckedPost::Encrypts {
                return Ok(posted);
            }
        }
        // The queue encrypts, or a body cannot be stored as it is: the metadata
        // decides which error a refusal is.
        let metadata = self.store.get_queue(queue).await?;
        if expected_metadata.is_some_and(|expected| metadata.as_deref().unwrap_or("") != expected) {
            return Ok(CheckedPost::StaleMetadata);
        }
        let encrypts = metadata.as_deref().is_some_and(encryption::queue_encrypts);
        let stored = encryption::seal_messages(self.cipher.as_ref(), encrypts, messages)
            .inspect_err(|err| {
                tracing::warn!(project = %queue.project, queue = %queue.queue, error = %err,
                    "post refused: its messages cannot be encrypted");
            })?;
        match once {
            Some(once) => {
                self.store
                    .post_once(
                        queue,
                        Post {
                            client_id,
                            messages: &stored,
                            plain: false,
                            expected_metadata,
                        },
                        once,
                    )
                    .await
            }
            None => {
                let ids = self.store.post_messages(queue, client_id, &stored).await?;
                Ok(CheckedPost::Posted(ids))
            }
        }
    }

    /// Decrypts the encrypted bodies among `messages`, logging a failure.
    fn decrypt<'a>(
        &self,
        queue: &QueueRef,
        messages: impl IntoIterator<Item = &'a mut Message>,
    ) -> Result<(), ZaqarError> {
        encryption::decrypt_messages(self.cipher.as_ref(), messages).inspect_err(|err| {
            tracing::error!(project = %queue.project, queue = %queue.queue, error = %err,
                "message body not decrypted");
        })
    }

    /// `result` with its messages decrypted.
    fn decrypted<T: CarriesMessages>(
        &self,
        queue: &QueueRef,
        result: Result<T, ZaqarError>,
    ) -> Reply<T> {
        let mut value = result?;
        self.decrypt(queue, value.messages_mut())?;
        Ok(Response::new(value))
    }
}

/// An answer that carries messages, whose bodies may need decrypting.
trait CarriesMessages {
    fn messages_mut(&mut self) -> Vec<&mut Message>;
}

impl CarriesMessages for MessagesReply {
    fn messages_mut(&mut self) -> Vec<&mut Message> {
        self.messages.iter_mut().collect()
    }
}

impl CarriesMessages for ListMessagesReply {
    fn messages_mut(&mut self) -> Vec<&mut Message> {
        self.messages.iter_mut().collect()
    }
}

impl CarriesMessages for ClaimReply {
    fn messages_mut(&mut self) -> Vec<&mut Message> {
        self.messages.iter_mut().collect()
    }
}

impl CarriesMessages for QueueStatsReply {
    fn messages_mut(&mut self) -> Vec<&mut Message> {
        self.oldest
            .iter_mut()
            .chain(self.newest.iter_mut())
            .collect()
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn queue_of(queue: Option<QueueRef>) -> Result<QueueRef, Status> {
    queue.ok_or_else(|| ZaqarError::bad_request("missing queue").into())
}

fn claim_of(claim: Option<ClaimRef>) -> Result<(QueueRef, String), Status> {
    let claim = claim.ok_or_else(|| Status::from(ZaqarError::bad_request("missing claim")))?;
    Ok((queue_of(claim.queue)?, claim.claim_id))
}

fn subscription_of(sub: Option<SubscriptionRef>) -> Result<(QueueRef, String), Status> {
    let sub = sub.ok_or_else(|| Status::from(ZaqarError::bad_request("missing subscription")))?;
    Ok((queue_of(sub.queue)?, sub.id))
}

fn reply<T>(result: Result<T, ZaqarError>) -> Reply<T> {
    result.map(Response::new).map_err(Status::from)
}

/// The empty answer of a call that returns nothing.
fn done(result: Result<(), ZaqarError>) -> Reply<Empty> {
    reply(result.map(|()| Empty {}))
}

#[tonic::async_trait]
impl PoolService for PoolServer {
    async fn create_queue(&self, request: Request<CreateQueueRequest>) -> Reply<CreateQueueReply> {
        let req = request.into_inner();
        let queue = queue_of(req.queue)?;
        let created = self.store.create_queue(&queue, &req.metadata_json).await;
        reply(created.map(|created| CreateQueueReply { created }))
    }

    async fn get_queue(&self, request: Request<QueueRef>) -> Reply<GetQueueReply> {
        let metadata = self.store.get_queue(request.get_ref()).await;
        reply(metadata.map(|metadata| GetQueueReply {
            exists: metadata.is_some(),
            metadata_json: metadata.unwrap_or_else(|| "{}".to_string()),
        }))
    }

    async fn set_queue_metadata(&self, request: Request<SetQueueMetadataRequest>) -> Reply<Empty> {
        let req = request.into_inner();
        let queue = queue_of(req.queue)?;
        done(
            self.store
                .set_queue_metadata(&queue, &req.metadata_json)
                .await,
        )
    }

    async fn delete_queue(&self, request: Request<QueueRef>) -> Reply<Empty> {
        done(self.store.delete_queue(request.get_ref()).await)
    }

    async fn queue_stats(&self, request: Request<QueueRef>) -> Reply<QueueStatsReply> {
        let queue = request.get_ref();
        let stats = self.store.queue_stats(queue).await;
        self.decrypted(queue, stats)
    }

    async fn purge_queue(&self, request: Request<PurgeQueueRequest>) -> Reply<Empty> {
        let req = request.into_inner();
        let queue = queue_of(req.queue)?;
        let purged = self
            .store
            .purge_queue(
                &queue,
                Purge {
                    messages: req.messages,
                    subscriptions: req.subscriptions,
                },
            )
            .await;
        if req.subscriptions {
            self.subscriptions_changed(&queue).await;
        }
        done(purged)
    }

    async fn post_messages(
        &self,
        request: Request<PostMessagesRequest>,
    ) -> Reply<PostMessagesReply> {
        let req = request.into_inner();
        let queue = queue_of(req.queue)?;
        let expected = req.expected_metadata_json.as_deref();
        let once = (!req.idempotency_key.is_empty()).then(|| Once {
            key: req.idempotency_key.clone(),
            window_s: req.idempotency_window,
        });
        let quota = Quota {
            messages: req.max_messages,
            bytes: req.max_bytes,
        };
        if quota.is_limited() {
            // An encrypting queue stores (and counts) the sealed bodies.
            let sealed = quota.bytes > 0 && self.encrypts(&queue, expected).await?;
            let stored_len = |message: &NewMessage| match sealed {
                true => encryption::sealed_len(message.body_json.len()) as u64,
                false => message.body_json.len() as u64,
            };
            let adding = Adding {
                messages: req.messages.len() as u64,
                bytes: req.messages.iter().map(stored_len).sum(),
            };
            quota::make_room(&*self.store, &queue, adding, quota, req.drop_oldest).await?;
        }
        let posted = self
            .post(
                &queue,
                &req.client_id,
                &req.messages,
                expected,
                once.as_ref(),
            )
            .await?;
        let reply = |ids, stale_metadata, repeated| {
            Ok(Response::new(PostMessagesReply {
                ids,
                stale_metadata,
                repeated,
            }))
        };
        match posted {
            CheckedPost::Posted(ids) => {
                self.activity.changed(&queue);
                if let Some(notifier) = &self.notifier {
                    notifier.notify(queue, &ids, req.messages);
                }
                reply(ids, false, false)
            }
            CheckedPost::Repeated(ids) => reply(ids, false, true),
            CheckedPost::Encrypts | CheckedPost::StaleMetadata => reply(Vec::new(), true, false),
        }
    }

    async fn list_messages(
        &self,
        request: Request<ListMessagesRequest>,
    ) -> Reply<ListMessagesReply> {
        let req = request.into_inner();
        let queue = queue_of(req.queue)?;
        let params = ListParams {
            client_id: req.client_id,
            marker: req.marker,
            limit: req.limit,
            echo: req.echo,
            include_claimed: req.include_claimed,
            include_delayed: req.include_delayed,
        };
        let listed = self.store.list_messages(&queue, &params).await;
        let listed = listed.map(|(messages, next_marker)| ListMessagesReply {
            messages,
            next_marker,
        });
        self.decrypted(&queue, listed)
    }

    async fn get_messages(&self, request: Request<GetMessagesRequest>) -> Reply<MessagesReply> {
        let req = request.into_inner();
        let queue = queue_of(req.queue)?;
        let messages = self.store.get_messages(&queue, &req.ids).await;
        let messages = messages.map(|messages| MessagesReply { messages });
        self.decrypted(&queue, messages)
    }

    async fn delete_messages(&self, request: Request<DeleteMessagesRequest>) -> Reply<Empty> {
        let req = request.into_inner();
        let queue = queue_of(req.queue)?;
        let deleted = self
            .store
            .delete_messages(&queue, &req.ids, &req.claim_ids)
            .await;
        done(deleted)
    }

    async fn delete_message(&self, request: Request<DeleteMessageRequest>) -> Reply<Empty> {
        let req = request.into_inner();
        let queue = queue_of(req.queue)?;
        let claim_id = Some(req.claim_id.as_str()).filter(|id| !id.is_empty());
        let deleted = self.store.delete_message(&queue, &req.id, claim_id).await;
        done(deleted)
    }

    async fn pop_messages(&self, request: Request<PopMessagesRequest>) -> Reply<MessagesReply> {
        let req = request.into_inner();
        let queue = queue_of(req.queue)?;
        let messages = self.store.pop_messages(&queue, req.limit).await;
        let messages = messages.map(|messages| MessagesReply { messages });
        self.decrypted(&queue, messages)
    }

    async fn create_claim(&self, request: Request<CreateClaimRequest>) -> Reply<ClaimReply> {
        let req = request.into_inner();
        let queue = queue_of(req.queue)?;
        let (ttl, grace, limit) = (req.ttl, req.grace, req.limit);
        let lease = Lease { ttl, grace };
        let claim = self
            .store
            .create_claim(&queue, NewClaim { lease, limit })
            .await;
        let claim = claim.map(Option::unwrap_or_default);
        self.decrypted(&queue, claim)
    }

    async fn get_claim(&self, request: Request<ClaimRef>) -> Reply<ClaimReply> {
        let (queue, claim_id) = claim_of(Some(request.into_inner()))?;
        let claim = self.store.get_claim(&queue, &claim_id).await;
        self.decrypted(&queue, claim)
    }

    async fn update_claim(&self, request: Request<UpdateClaimRequest>) -> Reply<Empty> {
        let req = request.into_inner();
        let (queue, claim_id) = claim_of(req.claim)?;
        let lease = Lease {
            ttl: req.ttl,
            grace: req.grace,
        };
        let updated = self.store.update_claim(&queue, &claim_id, lease).await;
        done(updated)
    }

    async fn delete_claim(&self, request: Request<ClaimRef>) -> Reply<Empty> {
        let (queue, claim_id) = claim_of(Some(request.into_inner()))?;
        let released = self.store.delete_claim(&queue, &claim_id).await;
        if released.is_ok() {
            self.activity.changed(&queue);
        }
        done(released)
    }

    async fn create_subscription(
        &self,
        request: Request<CreateSubscriptionRequest>,
    ) -> Reply<CreateSubscriptionReply> {
        let req = request.into_inner();
        let queue = queue_of(req.queue)?;
        self.check_subscriber(&req.subscriber).await?;
        let created = self
            .store
            .create_subscription(
                &queue,
                &req.subscriber,
                req.ttl,
                &req.options_json,
                req.confirmed,
            )
            .await;
        if let Ok((id, true)) = &created {
            self.start_delivery_now(&queue, id).await;
            self.subscriptions_changed(&queue).await;
        }
        reply(created.map(|(id, created)| CreateSubscriptionReply { id, created }))
    }

    async fn list_subscriptions(
        &self,
        request: Request<ListSubscriptionsRequest>,
    ) -> Reply<ListSubscriptionsReply> {
        let req = request.into_inner();
        let queue = queue_of(req.queue)?;
        let listed = self
            .store
            .list_subscriptions(&queue, &req.marker, req.limit)
            .await;
        reply(
            listed.map(|(subscriptions, next_marker)| ListSubscriptionsReply {
                subscriptions,
                next_marker,
            }),
        )
    }

    async fn get_subscription(&self, request: Request<SubscriptionRef>) -> Reply<Subscription> {
        let (queue, id) = subscription_of(Some(request.into_inner()))?;
        reply(self.store.get_subscription(&queue, &id).await)
    }

    async fn update_subscription(
        &self,
        request: Request<UpdateSubscriptionRequest>,
    ) -> Reply<Empty> {
        let req = request.into_inner();
        let (queue, id) = subscription_of(req.subscription)?;
        if let Some(subscriber) = &req.subscriber {
            self.check_subscriber(subscriber).await?;
        }
        let update = SubscriptionUpdate {
            subscriber: req.subscriber,
            ttl: req.ttl,
            options_json: req.options_json,
        };
        let updated = self.store.update_subscription(&queue, &id, &update).await;
        self.subscriptions_changed(&queue).await;
        done(updated)
    }

    async fn delete_subscription(&self, request: Request<SubscriptionRef>) -> Reply<Empty> {
        let (queue, id) = subscription_of(Some(request.into_inner()))?;
        let deleted = self.store.delete_subscription(&queue, &id).await;
        self.subscriptions_changed(&queue).await;
        done(deleted)
    }

    async fn confirm_subscription(
        &self,
        request: Request<ConfirmSubscriptionRequest>,
    ) -> Reply<Empty> {
        let req = request.into_inner();
        let (queue, id) = subscription_of(req.subscription)?;
        let before = self.store.get_subscription(&queue, &id).await?;
        if req.confirmed && !before.confirmed {
            // Messages posted while unconfirmed are not notified, as in Zaqar. The
            // cursor moves first: no lane can start from the old one meanwhile.
            self.start_delivery_now(&queue, &id).await;
        }
        self.store
            .confirm_subscription(&queue, &id, req.confirmed)
            .await?;
        self.subscriptions_changed(&queue).await;
        if let (false, Some(notifier)) = (req.notice_json.is_empty(), &self.notifier) {
            notifier.send_notice(queue, before, req.notice_json);
        }
        Ok(Response::new(Empty {}))
    }

    async fn health(&self, _request: Request<Empty>) -> Reply<HealthReply> {
        let notifier_lag_seconds = self
            .notifier
            .as_ref()
            .map_or(0.0, |notifier| notifier.lag().as_secs_f64());
        let health = match self.store.health().await {
            Ok(()) => HealthReply {
                ok: true,
                detail: String::new(),
                notifier_lag_seconds,
            },
            Err(err) => HealthReply {
                ok: false,
                detail: err.description,
                notifier_lag_seconds,
            },
        };
        Ok(Response::new(health))
    }

    type WatchQueuesStream = QueueActivityStream;

    async fn watch_queues(
        &self,
        _request: Request<WatchQueuesRequest>,
    ) -> Reply<QueueActivityStream> {
        Ok(Response::new(
            self.activity.subscribe(self.stopping.clone()),
        ))
    }
}
