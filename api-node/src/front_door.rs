//! The api-node's front door: how many client connections (REST and WebSocket
//! together) may be open at once, and the accepting of them. A connection over
//! the limit is answered `503` with Zaqar's body and closed at once, so a flood
//! of idle or slow clients costs a bounded number of sockets and tasks. The REST
//! server's header read timeout is set where it is served (`lib.rs`), the body
//! read timeout where bodies are read (`rest/request.rs`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use zaqar_proto::ZaqarError;

/// How long a refused connection is given to take its 503.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Accepted connections waiting for the server to take them.
const ACCEPTED_BACKLOG: usize = 256;

/// The slots of open client connections of one api-node.
#[derive(Clone, Debug)]
pub struct ConnectionSlots {
    slots: Arc<Semaphore>,
    max: usize,
}

impl ConnectionSlots {
    /// At most `max` connections at once (at least one).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        ConnectionSlots {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// A slot, held until dropped; `None` when every slot is taken.
    pub fn try_slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().try_acquire_owned().ok()
    }

    /// `stream` holding a slot until it is dropped, or back when every slot is taken.
    pub fn admit<S>(&self, stream: S) -> Result<Admitted<S>, S> {
        match self.try_slot() {
            Some(slot) => Ok(Admitted {
                stream,
                _slot: slot,
            }),
            None => Err(stream),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    /// The answer of a connection over the limit: `503` with Zaqar's body, then
    /// the connection is closed.
    pub async fn refuse<S: AsyncWrite + Unpin>(&self, mut stream: S) {
        let err = ZaqarError::unavailable(format!(
            "This server has {} connections open, its limit. Please try again in a few seconds.",
            self.max
        ));
        let body = serde_json::json!({"title": err.title, "description": err.description});
        let body = body.to_string();
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=UTF-8\r\n\
             Content-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = async {
            stream.write_all(response.as_bytes()).await?;
            stream.shutdown().await
        };
        let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, answer).await;
    }
}

/// An accepted connection and its slot, released when the connection is dropped.
pub struct Admitted<S> {
    stream: S,
    _slot: OwnedSemaphorePermit,
}

impl<S: AsyncRead + Unpin> AsyncRead for Admitted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Admitted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The admitted plain connections of `listener`; the others are refused.
/// Accepting stops when the stream is dropped.
pub fn plain(
    listener: TcpListener,
    slots: ConnectionSlots,
) -> ReceiverStream<io::Result<Admitted<TcpStream>>> {
    accepting(listener, move |stream, sender| {
        let slots = slots.clone();
        async move {
            let _ = stream.set_nodelay(true);
            match slots.admit(stream) {
                Ok(admitted) => {
                    let _ = sender.send(Ok(admitted)).await;
                }
                Err(stream) => slots.refuse(stream).await,
            }
        }
    })
}

/// The admitted TLS connections of `listener`, handshakes done concurrently and
/// bounded in time; a connection over the limit gets its 503 over TLS.
pub fn tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    slots: ConnectionSlots,
) -> ReceiverStream<io::Result<Admitted<TlsStream<TcpStream>>>> {
    accepting(listener, move |stream, sender| {
        let (slots, acceptor) = (slots.clone(), acceptor.clone());
        async move {
            let admitted = match slots.admit(stream) {
                Ok(admitted) => admitted,
                Err(stream) => {
                    if let Ok(tls) = crate::tls::handshake(&acceptor, stream).await {
                        slots.refuse(tls).await;
                    }
                    return;
                }
            };
            let Admitted { stream, _slot } = admitted;
            match crate::tls::handshake(&acceptor, stream).await {
                Ok(tls) => {
                    let _ = sender.send(Ok(Admitted { stream: tls, _slot })).await;
                }
                Err(err) => tracing::debug!(error = %err, "tls handshake failed"),
            }
        }
    })
}

/// Accepts connections of `listener` and hands each to `admit` in a task of its
/// own (a slow client holds up no one), until the returned stream is dropped.
fn accepting<T, F, Fut>(listener: TcpListener, admit: F) -> ReceiverStream<io::Result<T>>
where
    T: Send + 'static,
    F: Fn(TcpStream, mpsc::Sender<io::Result<T>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = mpsc::channel(ACCEPTED_BACKLOG);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = sender.closed() => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(admit(stream, sender.clone()));
                }
                Err(err) => {
                    // Out of file descriptors, most likely: wait instead of spinning.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    ReceiverStream::new(receiver)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn connections_over_the_limit_get_a_503_and_slots_come_back() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let slots = ConnectionSlots::new(1);
        let mut admitted = plain(listener, slots.clone());
        let _first = TcpStream::connect(addr).await.unwrap();
        let held = tokio_stream::StreamExt::next(&mut admitted).await.unwrap();
        assert_eq!(slots.open(), 1);

        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut answer = String::new();
        second.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            answer.contains("\"title\":\"Service temporarily unavailable\""),
            "{answer}"
        );

        drop(held);
        assert_eq!(slots.open(), 0);
        let _third = TcpStream::connect(addr).await.unwrap();
        let _taken = tokio_stream::StreamExt::next(&mut admitted).await.unwrap();
        assert_eq!(slots.open(), 1);
    }
}
