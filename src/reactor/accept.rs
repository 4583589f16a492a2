//! A worker's listeners and what it does with a connection it accepts.
//!
//! Owns the listener table (each a `SO_REUSEPORT` socket of this worker and the spec it
//! serves: which address, TLS or not, HTTP or raw TCP) and the first step of a
//! connection: its transport (plain, or a TLS session from the listener's acceptor) and
//! its first machine — HTTP/1.1, or on a raw listener an open raw connection, accepted
//! by the route's handler. It makes no protocol decision beyond that.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token};

use super::worker::{Conn, Proto, Worker};
use crate::conn::Http1;
use crate::io::Io;
use crate::metrics::bump;
use crate::rawframe::RawFraming;

/// How long to wait before accepting again after `accept` failed (out of descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The token of a worker's first listener; the next ones count down from it.
pub(super) const LISTENER_BASE: usize = usize::MAX - 3;
/// Most listeners a worker holds.
pub(crate) const MAX_LISTENERS: usize = 16;

/// What one listening address serves.
#[derive(Debug)]
pub(crate) struct ListenerSpec {
    /// The address asked for (port 0 until bound).
    pub(crate) addr: SocketAddr,
    /// The listener's TLS settings, when it speaks TLS.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Arc<crate::io::tls::TlsAcceptor>>,
    /// What a raw TCP listener serves; `None` for HTTP and WebSocket.
    pub(crate) raw: Option<RawSpec>,
}

/// A raw TCP listener's route and framing.
#[derive(Debug)]
pub(crate) struct RawSpec {
    /// The WebSocket route whose handler serves the connections.
    pub(crate) route: usize,
    /// The path the handler sees in `on_open`'s request.
    pub(crate) path: Box<str>,
    pub(crate) framing: RawFraming,
    /// Largest message, in bytes.
    pub(crate) max: usize,
}

impl ListenerSpec {
    /// Whether connections on this listener speak TLS.
    pub(crate) fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_some();
        #[cfg(not(feature = "tls"))]
        false
    }
}

/// One of a worker's listening sockets and what it serves.
pub(crate) struct WorkerListener {
    pub(crate) sock: TcpListener,
    pub(crate) spec: Arc<ListenerSpec>,
}

impl std::fmt::Debug for WorkerListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerListener")
            .field("spec", &self.spec)
            .finish()
    }
}

/// The listener index a poll token stands for, if it is a listener's.
pub(super) fn listener_of(token: Token) -> Option<usize> {
    let i = LISTENER_BASE.checked_sub(token.0)?;
    (i < MAX_LISTENERS).then_some(i)
}

impl Worker {
    /// Accepts what listener `which` has waiting, until it would block.
    pub(super) fn accept(&mut self, which: usize) {
        loop {
            let Some(listener) = self.listeners.get(which) else {
                return;
            };
            match listener.sock.accept() {
                Ok((sock, peer)) => self.admit(which, sock, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Usually EMFILE. Connections stay in the backlog; with edge-triggered
                    // readiness no new event may come for them, so retry on a timer.
                    tracing::warn!(worker = self.index, "accept failed: {e}");
                    self.accept_retry_at = Some(self.now + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    /// Accepts on every listener (after a failed accept, or with several listeners
    /// whose edges may have been missed).
    pub(super) fn accept_all(&mut self) {
        for which in 0..self.listeners.len() {
            self.accept(which);
        }
    }

    fn admit(&mut self, which: usize, mut sock: TcpStream, peer: SocketAddr) {
        // Chat traffic is many small messages: latency over packet count.
        let _ = sock.set_nodelay(true);
        let now = self.tick();
        let slot = self.conns.vacant_key();
        if let Err(e) = self.poll.registry().register(
            &mut sock,
            Token(slot),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!(%peer, "cannot register connection: {e}");
            return;
        }
        let spec = self.listeners[which].spec.clone();
        let io = match transport(&spec, sock) {
            Ok(io) => io,
            Err((mut sock, e)) => {
                tracing::warn!(%peer, "cannot start the connection's transport: {e}");
                let _ = self.poll.registry().deregister(&mut sock);
                return;
            }
        };
        let generation = self.take_generation();
        if spec.raw.is_some() {
            // Its slot, reserved above, is the one `open_raw` fills.
            return self.open_raw(&spec, io, peer, generation);
        }
        let http = Proto::Http(Box::new(Http1::new(now)));
        self.conns
            .insert(Conn::new(io, generation, http, peer.ip()));
        self.admission.accepted(peer.ip());
        bump(&self.metrics.connections_open, 1);
        bump(&self.metrics.connections_total, 1);
        self.reschedule(slot);
        tracing::trace!(worker = self.index, %peer, slot, tls = spec.is_tls(), "accepted");
    }
}

/// The connection's transport on listener `spec`.
fn transport(spec: &ListenerSpec, sock: TcpStream) -> Result<Io, (TcpStream, io::Error)> {
    #[cfg(feature = "tls")]
    if let Some(acceptor) = &spec.tls {
        return acceptor.session(sock).map(|t| Io::Tls(Box::new(t)));
    }
    let _ = spec;
    Ok(Io::Plain(sock))
}
