//! The WebSocket transport: Zaqar's v2 WebSocket API (default port 9000), a
//! sibling of `rest` over the same operations. One task reads each
//! connection and answers its requests in order; a second one writes, fed by a
//! bounded queue, so a client that stops reading is disconnected instead of
//! buffered without limit. The server pings every connection, closes one that
//! stays silent past the idle timeout, refuses frames over the size cap with
//! close code 1009, and closes every connection (1001) on shutdown. With
//! Keystone, `session` binds a token to the connection (`authenticate`) and
//! closes it (4003) when that token expires or is no longer valid. `push` and
//! `notification` serve websocket push subscriptions (`subscription_create`
//! without a subscriber). While a request is answered the connection is still
//! read: when it closes, a long poll in progress ends at once (`HangUp`).

mod action;
mod actions;
mod admin_actions;
mod notification;
pub mod protocol;
mod push;
mod render;
mod schema;
mod session;

pub(crate) use action::Action;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::{interval_at, sleep, sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::error::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use crate::config::ApiConfig;
use crate::operations::long_poll::HangUp;
use crate::operations::Services;
use crate::tls::MaybeTls;
use notification::ListenerSettings;
use protocol::{Encoding, Reply, Request};
use push::{ConnectionPush, Registry};
use session::Gate;

/// How long connections get to close once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The most one read of a connection takes from its socket. Its buffer lives as
/// long as the connection and is zeroed up to this size, so it is small: an idle
/// or waiting connection holds 1 KiB, and a large frame takes more reads.
const READ_CHUNK_BYTES: usize = 1024;

/// A connection's queue of frames to send, shared by its replies and its push
/// notifications. Frames go boxed: the queue sets aside its first 32 entries when
/// it is made, 1.8 KiB of bare frames on every connection, 256 bytes of boxes.
pub(crate) type Replies = mpsc::Sender<Box<Message>>;

/// The connection settings of the WebSocket API.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_frame_bytes: usize,
    pub idle_timeout: Duration,
    pub ping_interval: Duration,
    pub send_queue: usize,
    /// The listener of push subscriptions; `None` turns them off.
    pub push: Option<ListenerSettings>,
    /// TLS of the listener (`[tls]`); plain by default.
    pub tls: crate::tls::StreamAcceptor,
}

impl Settings {
    pub fn from_config(config: &ApiConfig) -> Settings {
        Settings {
            max_frame_bytes: config.ws_max_frame_bytes.max(1),
            idle_timeout: Duration::from_millis(config.ws_idle_timeout_ms.max(1)),
            ping_interval: Duration::from_millis(config.ws_ping_interval_ms.max(1)),
            send_queue: config.ws_send_queue.max(1),
            push: (config.ws_push_max_connections > 0).then(|| ListenerSettings {
                listen: config.ws_notification_listen,
                url: config.ws_notification_url.clone(),
                max_connections: config.ws_push_max_connections,
                max_subscriptions: config.ws_push_max_subscriptions,
                max_body_bytes: config.ws_max_frame_bytes.max(1) as u64,
            }),
            tls: crate::tls::StreamAcceptor::default(),
        }
    }
}

/// Serves the WebSocket API on `listener` (and push subscriptions' notifications on
/// `notifications`, bound when `settings.push` is set); returns its address and the
/// server future, which runs until `shutdown` completes and its connections close.
pub async fn bind(
    listener: TcpListener,
    notifications: Option<TcpListener>,
    services: Arc<Services>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<(SocketAddr, impl Future<Output = ()>)> {
    let addr = listener.local_addr()?;
    // The notification listener stops once the connections are closed.
    let (stop_notifications, notifications_stopped) = oneshot::channel::<()>();
    let (registry, notifications): (_, Pin<Box<dyn Future<Output = ()> + Send>>) =
        match settings.push.as_ref().zip(notifications) {
            Some((push, notifications)) => {
                let stopped = async {
                    let _ = notifications_stopped.await;
                };
                let (registry, server) = notification::serve(notifications, push, stopped)?;
                (Some(registry), Box::pin(server))
            }
            None => (None, Box::pin(async {})),
        };
    tracing::info!(%addr, "websocket api listening");
    let server = async move {
        let accept = async move {
            accept_loop(listener, services, settings, registry, shutdown).await;
            let _ = stop_notifications.send(());
        };
        futures::join!(accept, notifications);
    };
    Ok((addr, server))
}

async fn accept_loop(
    listener: TcpListener,
    services: Arc<Services>,
    settings: Settings,
    registry: Option<Arc<Registry>>,
    shutdown: impl Future<Output = ()>,
) {
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    let settings = Arc::new(settings);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // One of the api-node's connection slots, held while the connection lives.
                    let Some(slot) = services.connections.try_slot() else {
                        refuse(&services, &settings, stream);
                        continue;
                    };
                    let connection = Connection {
                        services: services.clone(),
                        settings: settings.clone(),
                        stop: stopped.clone(),
                        session: session::Session::default(),
                        push: ConnectionPush::new(registry.clone()),
                        hang_up: HangUp::default(),
                    };
                    connections.spawn(async move {
                        let _open = crate::metrics::websocket_opened();
                        connection.run(stream, peer).await;
                        drop(slot);
                    });
                }
                Err(err) => {
                    // Out of file descriptors, most likely: wait instead of spinning.
                    tracing::warn!(error = %err, "websocket accept failed");
                    sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let open = connections.len();
    if open > 0 {
        tracing::info!(connections = open, "closing websocket connections");
    }
    let drained = timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        connections.abort_all();
    }
}

/// Answers a connection over the api-node's limit 503 (over plain HTTP; a TLS
/// one is closed) without holding up the accept loop.
fn refuse(services: &Arc<Services>, settings: &Settings, stream: TcpStream) {
    if settings.tls.tls().is_some() {
        return;
    }
    let slots = services.connections.clone();
    tokio::spawn(async move { slots.refuse(stream).await });
}

/// Why a connection's read loop ended.
enum End {
    /// The peer left or broke the protocol; nothing more to say.
    Gone,
    /// Close with this code and reason.
    Close(CloseCode, &'static str),
    /// The peer does not read its replies: drop it without waiting.
    Drop,
}

/// The next frame of `source`: the one read early, if any, else the next one read.
async fn next_frame(
    source: &mut futures::stream::SplitStream<WebSocketStream<MaybeTls>>,
    early: &mut Option<Option<Result<Message, WsError>>>,
) -> Option<Result<Message, WsError>> {
    match early.take() {
        Some(frame) => frame,
        None => source.next().await,
    }
}

struct Connection {
    services: Arc<Services>,
    settings: Arc<Settings>,
    stop: watch::Receiver<bool>,
    /// The Keystone token bound by `authenticate` (keystone mode).
    session: session::Session,
    /// The connection's push subscriptions.
    push: ConnectionPush,
    /// Hears when the connection closed while a request waited (a long poll).
    hang_up: HangUp,
}

impl Connection {
    /// The TLS (if configured) and WebSocket handshakes of a new connection, within
    /// the idle timeout; `None` when either failed.
    async fn open(&self, stream: TcpStream, peer: SocketAddr) -> Option<WebSocketStream<MaybeTls>> {
        let stream = match self.settings.tls.accept(stream).await {
            Ok(stream) => stream,
            Err(err) => {
                tracing::debug!(%peer, error = %err, "websocket tls handshake failed");
                return None;
            }
        };
        let max = self.settings.max_frame_bytes;
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_CHUNK_BYTES)
            .write_buffer_size(0)
            .max_frame_size(Some(max))
            .max_message_size(Some(max));
        let handshake = tokio_tungstenite::accept_async_with_config(stream, Some(config));
        match timeout(self.settings.idle_timeout, handshake).await {
            Ok(Ok(socket)) => Some(socket),
            Ok(Err(err)) => {
                tracing::debug!(%peer, error = %err, "websocket handshake failed");
                None
            }
            Err(_) => None,
        }
    }

    async fn run(mut self, stream: TcpStream, peer: SocketAddr) {
        // Boxed, as the answers below: the connection's task keeps no room for the
        // handshakes (about 1.5 KiB) while it lives.
        let Some(socket) = Box::pin(self.open(stream, peer)).await else {
            return;
        };
        tracing::debug!(%peer, "websocket connection open");
        let (sink, source) = socket.split();
        let (replies, queued) = mpsc::channel(self.settings.send_queue);
        let mut writer = tokio::spawn(write_loop(sink, queued));
        let end = self.read_loop(source, &replies).await;
        match end {
            End::Drop => {
                tracing::info!(%peer, "websocket client too slow to read its replies: disconnected");
                writer.abort();
                self.close_push().await;
                return;
            }
            End::Close(code, reason) => {
                tracing::debug!(%peer, %code, reason, "closing websocket connection");
                let frame = CloseFrame {
                    code,
                    reason: reason.into(),
                };
                let _ = replies.try_send(Box::new(Message::Close(Some(frame))));
            }
            End::Gone => {}
        }
        drop(replies);
        let flushed = async {
            if timeout(SHUTDOWN_GRACE, &mut writer).await.is_err() {
                writer.abort();
            }
        };
        futures::join!(flushed, self.close_push());
        tracing::debug!(%peer, "websocket connection closed");
    }

    /// Stops the connection's notifications and deletes its push
    /// subscriptions, within the shutdown grace.
    async fn close_push(&mut self) {
        // Boxed: deleting subscriptions takes 4.4 KiB of future, which the
        // connection's task would otherwise keep for as long as it lives.
        if timeout(SHUTDOWN_GRACE, Box::pin(self.push.close()))
            .await
            .is_err()
        {
            tracing::warn!(
                "websocket push subscriptions not all deleted at close: they last until their ttl"
            );
        }
    }

    async fn read_loop(
        &mut self,
        mut source: futures::stream::SplitStream<WebSocketStream<MaybeTls>>,
        replies: &Replies,
    ) -> End {
        let settings = self.settings.clone();
        let mut ping = interval_at(
            Instant::now() + settings.ping_interval,
            settings.ping_interval,
        );
        let idle = sleep(settings.idle_timeout);
        tokio::pin!(idle);
        // A frame that came while a request was being answered, next to be read.
        let mut early = None;
        let (hung_up, hearing) = watch::channel(false);
        self.hang_up = HangUp::on(hearing);
        loop {
            let frame = tokio::select! {
                frame = next_frame(&mut source, &mut early) => frame,
                _ = ping.tick() => {
                    if replies.try_send(Box::new(Message::Ping(Default::default()))).is_err() {
                        return End::Drop;
                    }
                    continue;
                }
                () = &mut idle => return End::Close(CloseCode::Away, "idle timeout"),
                _ = self.stop.changed() => return End::Close(CloseCode::Away, "server shutting down"),
                () = until(self.session.expires_at()) => return AUTH_EXPIRED,
                () = self.push.too_slow() => return End::Drop,
            };
            idle.as_mut().reset(Instant::now() + settings.idle_timeout);
            let (data, encoding) = match frame {
                None => return End::Gone,
                Some(Err(WsError::Capacity(err))) => {
                    tracing::debug!(error = %err, "websocket frame over the size cap");
                    return End::Close(CloseCode::Size, "frame too large");
                }
                Some(Err(WsError::Protocol(err))) => {
                    tracing::debug!(error = %err, "websocket protocol error");
                    return End::Close(CloseCode::Protocol, "protocol error");
                }
                Some(Err(err)) => {
                    tracing::debug!(error = %err, "websocket read failed");
                    return End::Gone;
                }
                Some(Ok(Message::Text(text))) => (text.into(), Encoding::Json),
                Some(Ok(Message::Binary(bytes))) => (bytes, Encoding::MessagePack),
                Some(Ok(Message::Close(_))) => return End::Gone,
                Some(Ok(_)) => continue,
            };
            // The peer may hang up while its request is answered: a long poll then
            // ends at once (its place under the bounds is free again), any other
            // request runs to its end, and the frame that ended the connection is
            // read next, as any other. A request frame that comes meanwhile waits for
            // the answer (and nothing more is read until then); pings and pongs are
            // read and dropped.
            // Boxed: the connection's task keeps no room for a request between requests.
            let mut answering = Box::pin(self.answer(&data, encoding, replies));
            let (reply, expired) = loop {
                tokio::select! {
                    answered = &mut answering => break answered,
                    frame = source.next(), if early.is_none() => match frame {
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(message)) if !message.is_close() => early = Some(Some(Ok(message))),
                        ending => {
                            early = Some(ending);
                            hung_up.send_replace(true);
                        }
                    },
                }
            };
            if replies.try_send(Box::new(reply)).is_err() {
                return End::Drop;
            }
            if expired {
                return AUTH_EXPIRED;
            }
        }
    }

    /// The reply frame to one request frame, and whether the connection's
    /// token has expired (which closes the connection).
    async fn answer(
        &mut self,
        data: &[u8],
        encoding: Encoding,
        replies: &Replies,
    ) -> (Message, bool) {
        // Every log line of the request carries its id, and so does the reply; with
        // tracing on, the span continues the trace of a `traceparent` among the
        // frame's headers, as a REST request's does.
        let id = crate::request_id::new();
        let started = std::time::Instant::now();
        let decoded = protocol::decode(data, encoding, self.services.admin_mode);
        let span = zaqar_proto::trace::continue_trace(
            |name| decoded.as_ref().ok()?.header(name),
            || {
                tracing::info_span!("request", id = %id, action = tracing::field::Empty,
                    trace_id = tracing::field::Empty)
            },
        );
        if let Ok(request) = &decoded {
            span.record("action", request.action_name());
        }
        let (request, reply, expired) = self
            .answer_decoded(decoded, encoding, replies)
            .instrument(span)
            .await;
        crate::metrics::record_action(request.known, reply.status, started.elapsed());
        (protocol::encode(&request, &reply, encoding, &id), expired)
    }

    async fn answer_decoded(
        &mut self,
        decoded: Result<Request, (Request, Reply)>,
        encoding: Encoding,
        replies: &Replies,
    ) -> (Request, Reply, bool) {
        let mut expired = false;
        let (request, reply) = match decoded {
            Ok(request) => match Box::pin(self.session.admit(&self.services, &request)).await {
                Gate::Run => {
                    let reply = self.run_request(&request, encoding, replies).await;
                    (request, reply)
                }
                Gate::Answer(reply) => (request, reply),
                Gate::Expired(reply) => {
                    expired = true;
                    (request, reply)
                }
            },
            Err(refused) => refused,
        };
        tracing::debug!(
            action = request.action_name(),
            status = reply.status,
            "websocket request"
        );
        (request, reply, expired)
    }

    /// Runs a request admitted by the session.
    async fn run_request(
        &mut self,
        request: &protocol::Request,
        encoding: Encoding,
        replies: &Replies,
    ) -> protocol::Reply {
        let token = self.session.token();
        // Boxed, as the actions (see `actions::run`): a waiting request would otherwise
        // keep room for the largest of them.
        if push::is_push_create(request) {
            let push = &mut self.push;
            return Box::pin(actions::subscribe_connection(
                &self.services,
                request,
                token,
                push,
                encoding,
                replies,
            ))
            .await;
        }
        // A bug that panics answers this request 500, not the whole connection.
        let run = AssertUnwindSafe(actions::run(&self.services, request, token, &self.hang_up));
        let reply = match run.catch_unwind().await {
            Ok(reply) => reply,
            Err(_) => {
                tracing::error!(
                    action = request.action_name(),
                    "a websocket action panicked"
                );
                protocol::Reply::error(500, "the request could not be handled")
            }
        };
        if request.known == Some(Action::SubscriptionDelete) && reply.status == 204 {
            self.push.forget(
                request.header("X-Project-ID").unwrap_or_default(),
                &request.text("queue_name"),
                &request.text("subscription_id"),
            );
        }
        reply
    }
}

/// Zaqar's close when the connection's Keystone token expires.
const AUTH_EXPIRED: End = End::Close(CloseCode::Library(4003), "Authentication expired.");

/// Completes at `at`, or never.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends queued frames in order; ends after a close frame or when the queue closes.
async fn write_loop(
    mut sink: futures::stream::SplitSink<WebSocketStream<MaybeTls>, Message>,
    mut queued: mpsc::Receiver<Box<Message>>,
) {
    while let Some(message) = queued.recv().await {
        let closing = matches!(*message, Message::Close(_));
        if sink.send(*message).await.is_err() {
            return;
        }
        if closing {
            break;
        }
    }
    let _ = sink.close().await;
}
