//! A TCP proxy between two roles on loopback, for network faults: it forwards
//! connections to its target until told to cut them (close every connection and
//! refuse new ones at once) or to stall them (hold every byte, as a network that
//! drops packets would, until healed; held connections are then closed, as their
//! peers' timeouts would end them), or to cut only the connections from some source
//! addresses (a partition between two of several peers that each dial from their own
//! loopback address), or to lose the answers of the requests it forwards.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What the proxy does with connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Link {
    /// Forwards both ways.
    #[default]
    Up,
    /// Closes every connection, and new ones at once.
    Cut,
    /// Forwards nothing and keeps connections open.
    Stalled,
    /// Forwards what clients send, throws the target's answers away and closes
    /// each connection when its answer comes: requests done, answers lost.
    AnswersLost,
}

/// What the proxy does: its link, and the sources whose connections are cut whatever
/// the link.
#[derive(Clone, Debug, Default)]
struct Rules {
    link: Link,
    cut_from: Vec<IpAddr>,
}

impl Rules {
    /// What happens to a connection from `source`.
    fn link_from(&self, source: IpAddr) -> Link {
        if self.cut_from.contains(&source) {
            Link::Cut
        } else {
            self.link
        }
    }
}

/// A running proxy; stops (closing every connection) when dropped.
pub struct TcpProxy {
    pub port: u16,
    rules: watch::Sender<Rules>,
    connections: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:target`.
    pub async fn start(target: u16) -> Result<TcpProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (rules, watching) = watch::channel(Rules::default());
        let connections = Arc::new(Mutex::new(JoinSet::new()));
        let held = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, source)) = listener.accept().await {
                let watching = watching.clone();
                let mut set = held.lock().expect("connections");
                set.spawn(forward(client, source.ip(), target, watching));
            }
        });
        Ok(TcpProxy {
            port,
            rules,
            connections,
            accept,
        })
    }

    /// Sets what the proxy does from now on. Leaving `Cut` or `Stalled` closes the
    /// connections that were cut off or held.
    pub fn set(&self, link: Link) {
        let before = self.rules.borrow().link;
        if before != Link::Up && link == Link::Up {
            self.connections.lock().expect("connections").abort_all();
        }
        if link == Link::Cut {
            self.connections.lock().expect("connections").abort_all();
        }
        self.rules.send_modify(|rules| rules.link = link);
    }

    /// Cuts the connections from `sources` (closes those open, refuses new ones) while
    /// the others go on as the link says; an empty list ends the cut.
    pub fn cut_from(&self, sources: &[IpAddr]) {
        self.rules
            .send_modify(|rules| rules.cut_from = sources.to_vec());
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.connections.lock().expect("connections").abort_all();
    }
}

/// One connection from `source`: refused while cut, held while stalled, else copied
/// both ways.
async fn forward(
    mut client: TcpStream,
    source: IpAddr,
    target: u16,
    mut rules: watch::Receiver<Rules>,
) {
    loop {
        let now = rules.borrow_and_update().link_from(source);
        match now {
            Link::Cut => {
                let _ = client.shutdown().await;
                return;
            }
            Link::Stalled => {
                if rules.changed().await.is_err() {
                    return;
                }
            }
            Link::Up => break,
            Link::AnswersLost => return lose_answers(client, target).await,
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
        while rules.changed().await.is_ok() {
            let now = rules.borrow().link_from(source);
            if now != Link::Up {
                return now;
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

/// Forwards what `client` sends to the target until the target answers; the answer
/// is thrown away and both connections close, as after a timeout on the way back.
async fn lose_answers(mut client: TcpStream, target: u16) {
    let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    let (mut client_read, _) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let mut answer = [0u8; 1];
    tokio::select! {
        _ = tokio::io::copy(&mut client_read, &mut server_write) => {}
        _ = server_read.read(&mut answer) => {}
    }
}
