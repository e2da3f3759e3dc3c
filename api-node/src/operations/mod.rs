//! The Zaqar operations: one plain async fn per API call, shared by both transports
//! (REST in `rest/`, WebSocket in `websocket/actions.rs`). Each takes already-parsed
//! input and a [`Context`], validates it against the limits, forwards it to the
//! queue's pool-node and returns a typed result or a [`ZaqarError`] carrying Zaqar's
//! status, title and description.

pub mod admin_listing;
pub mod claims;
pub mod flavors;
pub mod health;
pub mod home;
pub mod json;
pub mod long_poll;
pub mod messages;
pub mod metadata;
pub mod metadata_cache;
pub mod pools;
pub mod queues;
pub mod redrive;
pub mod share;
pub mod subscriptions;
pub mod topics;
pub mod types;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use zaqar_proto::limits::{is_valid_name, Limits, TOPIC_NAMESPACE_MARK};
use zaqar_proto::pb::{self, QueueRef};
use zaqar_proto::{ErrorCode, ZaqarError};

use crate::admin_client::AdminCatalog;
use crate::auth::{Auth, Credentials, Identity};
use crate::config::ApiConfig;
use crate::front_door::ConnectionSlots;
use crate::project_quotas::{self, QuotaCache};
use crate::rate_limit::{ProjectLimits, ProjectQuotas};
use crate::routing::{InProcessPools, Pool, PoolClient, Router};

/// What every operation needs besides its input: limits, options and clients.
pub struct Services {
    pub router: Router,
    /// The catalog's AdminService, behind `/v2/pools` and `/v2/flavors`.
    pub admin: AdminCatalog,
    pub limits: Limits,
    /// Per-project request rates, quotas and request-size overrides.
    pub project_limits: ProjectLimits,
    /// The rate and quotas of each project seen, with what operators set in the catalog.
    pub quotas: QuotaCache,
    pub auth: Auth,
    pub require_subscription_confirmation: bool,
    pub message_delete_with_claim_id: bool,
    /// Whether the privileged routes and actions exist (Zaqar's `admin_mode`).
    pub admin_mode: bool,
    pub signing_key: Option<String>,
    pub enable_checksum: bool,
    /// The metadata posts are checked against (see `metadata_cache.rs`).
    pub metadata_cache: metadata_cache::QueueMetadataCache,
    /// Open client connections, REST and WebSocket (`max_connections`).
    pub connections: ConnectionSlots,
    /// How long a request body may take to arrive.
    pub body_read_timeout: Duration,
    /// Cross-Origin Resource Sharing (`[cors]`).
    pub cors: crate::cors::CorsConfig,
}

impl Services {
    pub fn new(config: &ApiConfig) -> Result<Services, ZaqarError> {
        Services::with_in_process_pools(config, InProcessPools::new())
    }

    /// Services calling the pool-nodes of `in_process` directly instead of over gRPC.
    pub fn with_in_process_pools(
        config: &ApiConfig,
        in_process: InProcessPools,
    ) -> Result<Services, ZaqarError> {
        Ok(Services {
            router: Router::new(config, in_process)?,
            admin: AdminCatalog::new(config)?,
            limits: config.limits.clone(),
            project_limits: ProjectLimits::new(&config.project_limits, &config.limits),
            quotas: QuotaCache::new(config.project_limits.max_tracked_projects),
            auth: Auth::new(config)?,
            require_subscription_confirmation: config.require_subscription_confirmation,
            message_delete_with_claim_id: config.message_delete_with_claim_id,
            admin_mode: config.admin_mode,
            cors: config.cors.clone(),
            signing_key: config.signed_url_secret_key.clone(),
            enable_checksum: config.enable_checksum,
            metadata_cache: Default::default(),
            connections: ConnectionSlots::new(config.max_connections),
            body_read_timeout: config.body_read_timeout(),
        })
    }

    /// Authenticates a request and returns the context its operations run in.
    pub async fn context(
        self: &Arc<Self>,
        credentials: &Credentials<'_>,
    ) -> Result<Context, ZaqarError> {
        let identity = self
            .auth
            .authenticate(credentials, self.signing_key.as_deref())
            .await?;
        topics::check_client_project(&identity.project)?;
        let quotas = project_quotas::quotas_of(self, &identity.project).await;
        self.project_limits.admit(&identity.project, &quotas)?;
        Ok(Context {
            services: self.clone(),
            identity,
            quotas,
            hang_up: long_poll::HangUp::default(),
        })
    }
}

/// One authenticated request: who asks, what their project may do, and the services
/// to answer with.
#[derive(Clone)]
pub struct Context {
    pub services: Arc<Services>,
    pub identity: Identity,
    /// The rate and quotas of the client's project (those of a topic namespace too).
    pub quotas: ProjectQuotas,
    /// Ends the request's long poll when its client goes away.
    pub hang_up: long_poll::HangUp,
}

/// A request body as the transport received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// No body and no `Content-Length` (Zaqar's `content_length is None`).
    Absent,
    /// The whole body (possibly empty, with `Content-Length: 0`).
    Read(Bytes),
    /// A body larger than the transport accepts, left unread; its size in bytes.
    TooLarge(u64),
}

impl Payload {
    /// The size Zaqar compares with its limits (its `Content-Length`).
    pub fn size(&self) -> Option<u64> {
        match self {
            Payload::Absent => None,
            Payload::Read(bytes) => Some(bytes.len() as u64),
            Payload::TooLarge(size) => Some(*size),
        }
    }

    /// Whether Zaqar would skip the body (`if not req.content_length`).
    pub fn is_empty(&self) -> bool {
        self.size().unwrap_or(0) == 0
    }
}

impl Context {
    /// The project's limits: its overrides in `[project_limits]`, else the defaults.
    pub fn limits(&self) -> &Limits {
        let services = &self.services;
        // A topic namespace has the limits of the project it belongs to.
        let (project, _) = topics::client_view(&self.identity.project);
        services
            .project_limits
            .limits_of(project)
            .unwrap_or(&services.limits)
    }

    pub fn router(&self) -> &Router {
        &self.services.router
    }

    pub fn project(&self) -> &str {
        &self.identity.project
    }

    pub fn queue_ref(&self, queue: &str) -> QueueRef {
        QueueRef {
            project: self.identity.project.clone(),
            queue: queue.to_string(),
        }
    }

    /// A message of a pool reply as clients see it (checksums only when enabled).
    pub fn message(&self, message: pb::Message) -> Result<types::Message, ZaqarError> {
        let mut message = types::Message::try_from(message)?;
        if !self.services.enable_checksum {
            message.checksum = None;
        }
        Ok(message)
    }

    /// The messages of a pool reply as clients see them.
    pub fn messages(&self, messages: Vec<pb::Message>) -> Result<Vec<types::Message>, ZaqarError> {
        messages.into_iter().map(|m| self.message(m)).collect()
    }

    /// A claim of a pool reply as clients see it.
    pub fn claim(&self, claim: pb::ClaimReply) -> Result<types::Claim, ZaqarError> {
        Ok(types::Claim {
            messages: self.messages(claim.messages)?,
            id: claim.id,
            ttl: claim.ttl,
            age: claim.age,
        })
    }

    /// Zaqar's queue identification check (name and project id; the mark of a
    /// topic namespace does not count, see [`topics`]).
    pub fn check_queue(&self, queue: &str) -> Result<(), ZaqarError> {
        let limits = self.limits();
        let project_length = self
            .project()
            .chars()
            .filter(|&c| c != TOPIC_NAMESPACE_MARK)
            .count();
        if project_length > limits.max_project_id_length
            || !is_valid_name(queue, limits.max_queue_name_length)
        {
            return Err(ZaqarError::titled(
                ErrorCode::BadRequest,
                "Invalid queue identification",
                "The format of the submitted queue name or project id is not valid.",
            ));
        }
        Ok(())
    }

    /// The pool of `queue`, placing it on a pool of `flavor` first if it has none: a
    /// new queue of the project, refused (403) when the project has its
    /// `max_queues` already. Two queues created at once may both pass the check.
    pub async fn place_queue(&self, queue: &str, flavor: &str) -> Result<Pool, ZaqarError> {
        let (router, project) = (self.router(), self.project());
        let (client_project, _) = topics::client_view(project);
        if let Some(max) = self.quotas.max_queues {
            if router.lookup(project, queue).await?.is_none() {
                let (_, count) = router.list_queues(project, "", 1, "", true).await?;
                if count >= max {
                    return Err(ZaqarError::titled(
                        ErrorCode::Forbidden,
                        "Queue quota exceeded",
                        format!("Project {client_project} may have at most {max} queues."),
                    ));
                }
            }
        }
        router.place(project, queue, flavor).await
    }

    /// The pool holding `queue` of this context's project; `None` when the queue is
    /// not placed (it does not exist).
    pub async fn pool_of(&self, queue: &str) -> Result<Option<Pool>, ZaqarError> {
        self.router().lookup(self.project(), queue).await
    }

    /// Calls the pool that holds `queue`: `call` gets a client and a copy of
    /// `request` (see [`Context::call_pool`] for the second try on a newer
    /// placement). `Ok(None)` when no pool holds the queue or its pool answers
    /// NotFound; a failed lookup or call goes through `failed`.
    pub async fn call_queue<R, T, F, Fut>(
        &self,
        queue: &str,
        failed: &impl Fn(ZaqarError) -> ZaqarError,
        request: R,
        call: F,
    ) -> Result<Option<T>, ZaqarError>
    where
        R: Clone,
        F: Fn(PoolClient, R) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let pool = self.pool_of(queue).await;
        let Some(pool) = pool.map_err(failed)? else {
            return Ok(None);
        };
        let reply = self.call_pool(queue, &pool, request, call).await;
        match reply {
            Ok(reply) => Ok(Some(reply)),
            Err(err) if err.code == ErrorCode::NotFound => Ok(None),
            Err(err) => Err(failed(err)),
        }
    }

    /// Calls the pool of `queue`: `call` gets a client and a copy of `request`. When
    /// the placement came from the cache and the pool answers NotFound, the placement
    /// is looked up again and, if it changed, the call is made once more on the new pool.
    pub async fn call_pool<R, T, F, Fut>(
        &self,
        queue: &str,
        pool: &Pool,
        request: R,
        call: F,
    ) -> Result<T, ZaqarError>
    where
        R: Clone,
        F: Fn(PoolClient, R) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_pool_checked(queue, pool, request, call, |_| false)
            .await
    }

    /// Like [`Context::call_pool`], also retrying when `looks_missing` says the
    /// reply describes a queue that is not there.
    pub async fn call_pool_checked<R, T, F, Fut>(
        &self,
        queue: &str,
        pool: &Pool,
        request: R,
        call: F,
        looks_missing: impl Fn(&T) -> bool,
    ) -> Result<T, ZaqarError>
    where
        R: Clone,
        F: Fn(PoolClient, R) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        // Only a cached placement may be tried again: the request is copied for that.
        let (first, retry) = if pool.cached {
            (request.clone(), Some(request))
        } else {
            (request, None)
        };
        let result = call(pool.client.clone(), first)
            .await
            .map(tonic::Response::into_inner)
            .map_err(ZaqarError::from);
        let stale = match &result {
            Ok(reply) => looks_missing(reply),
            Err(err) => err.code == ErrorCode::NotFound,
        };
        if let Some(request) = retry.filter(|_| stale) {
            if let Some(newer) = self.router().refresh(self.project(), queue, pool).await {
                return call(newer.client, request)
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(ZaqarError::from);
            }
        }
        result
    }
}

/// 400 with Zaqar's "Invalid API request" title.
pub fn invalid_api(description: impl Into<String>) -> ZaqarError {
    ZaqarError::titled(ErrorCode::BadRequest, "Invalid API request", description)
}

/// 400 with Zaqar's "Invalid request body" title.
pub fn invalid_body(description: impl Into<String>) -> ZaqarError {
    ZaqarError::titled(ErrorCode::BadRequest, "Invalid request body", description)
}

/// 409 with Zaqar's "Resource conflict" title.
pub fn conflict(description: impl Into<String>) -> ZaqarError {
    ZaqarError::titled(ErrorCode::Conflict, "Resource conflict", description)
}

/// 403 for a caller without the needed role.
pub fn not_authorized() -> ZaqarError {
    ZaqarError::titled(
        ErrorCode::Forbidden,
        "Not authorized",
        "You are not authorized to complete this action.",
    )
}

/// Rewrites an Unavailable error into Zaqar's description of what failed
/// ("Queue could not be created. Please try again in a few seconds.").
pub fn unavailable_as(what: &'static str) -> impl Fn(ZaqarError) -> ZaqarError {
    move |err| {
        if err.code == ErrorCode::Unavailable {
            tracing::warn!(error = %err.description, "{}", what.to_lowercase());
            ZaqarError::unavailable(format!("{what} Please try again in a few seconds."))
        } else {
            err
        }
    }
}

/// Checks an optional page size against `1..=max` with Zaqar's message.
pub(crate) fn check_limit(limit: Option<i64>, max: u32, message: &str) -> Result<(), ZaqarError> {
    match limit {
        Some(limit) if !(1..=i64::from(max)).contains(&limit) => {
            Err(invalid_api(message.replace("{0}", &max.to_string())))
        }
        _ => Ok(()),
    }
}
