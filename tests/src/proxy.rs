//! A TCP proxy between two roles on loopback, for network faults: it forwards
//! connections to its target until told to cut them (close every connection and
//! refuse new ones at once) or to stall them (hold every byte, as a network that
//! drops packets would, until healed; held connections are then closed, as their
//! peers' timeouts would end them).

use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What the proxy does with connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Forwards both ways.
    Up,
    /// Closes every connection, and new ones at once.
    Cut,
    /// Forwards nothing and keeps connections open.
    Stalled,
}

/// A running proxy; stops (closing every connection) when dropped.
pub struct TcpProxy {
    pub port: u16,
    link: watch::Sender<Link>,
    connections: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:target`.
    pub async fn start(target: u16) -> Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (link, watching) = watch::channel(Link::Up);
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let held = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let watching = watching.clone();
                let mut set = held.lock().expect("connections");
                set.spawn(forward(client, target, watching));
            }
        });
        Ok(TcpProxy {
            port,
            link,
            connections,
            accept,
        })
    }

    /// Sets what the proxy does from now on. Leaving `Cut` or `Stalled` closes the
    /// connections that were cut off or held.
    pub fn set(&self, link: Link) {
        let before = *self.link.borrow();
        if before != Link::Up && link == Link::Up {
            self.connections.lock().expect("connections").abort_all();
        }
        if link == Link::Cut {
            self.connections.lock().expect("connections").abort_all();
        }
        self.link.send_replace(link);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.connections.lock().expect("connections").abort_all();
    }
}

/// One connection: refused while cut, held while stalled, else copied both ways.
async fn forward(mut client: TcpStream, target: u16, mut link: watch::Receiver<Link>) {
    loop {
        let now = *link.borrow_and_update();
        match now {
            Link::Cut => {
                let _ = client.shutdown().await;
                return;
            }
            Link::Stalled => {
                if link.changed().await.is_err() {
                    return;
                }
            }
            Link::Up => break,
        }
    }
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    // Small gRPC frames would otherwise wait for Nagle's algorithm and delayed acks.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let copy = async {
        tokio::select! {
            _ = tokio::io::copy(&mut client_read, &mut server_write) => {}
            _ = tokio::io::copy(&mut server_read, &mut client_write) => {}
        }
    };
    // The copy stops at the first change of link: a cut closes the connection; a
    // stall keeps both sockets open and forwards nothing until `set` closes them.
    let changed = async {
        while link.changed().await.is_ok() {
            if *link.borrow() != Link::Up {
                return *link.borrow();
            }
        }
        Link::Cut
    };
    tokio::select! {
        _ = copy => {}
        now = changed => {
            if now == Link::Stalled {
                std::future::pending::<()>().await;
            }
        }
    }
}
