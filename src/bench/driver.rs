//! The per-thread event loop the bench modes share: a `mio::Poll` over this thread's
//! connections, reading into each connection's buffer and writing its queue once per
//! readiness event.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use super::conn::{Conn, Event, State};
use super::tls::TlsTarget;

pub(crate) struct Driver {
    poll: Poll,
    events: Events,
    pub(crate) conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    addr: SocketAddr,
    request: Vec<u8>,
    binds: Vec<IpAddr>,
    next_bind: usize,
    seed: u64,
    tls: Option<TlsTarget>,
}

impl Driver {
    pub(crate) fn new(
        addr: SocketAddr,
        request: Vec<u8>,
        binds: Vec<IpAddr>,
        seed: u64,
        tls: Option<TlsTarget>,
    ) -> io::Result<Self> {
        Ok(Driver {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            conns: Vec::new(),
            free: Vec::new(),
            addr,
            request,
            binds,
            next_bind: 0,
            seed,
            tls,
        })
    }

    /// Opens a connection; its index stays valid until [`Driver::remove`].
    pub(crate) fn open(&mut self) -> io::Result<usize> {
        let req = std::mem::take(&mut self.request);
        let r = self.open_with(&req);
        self.request = req;
        r
    }

    /// Opens a connection with its own handshake request (a per-user token, say).
    pub(crate) fn open_with(&mut self, request: &[u8]) -> io::Result<usize> {
        let bind = if self.binds.is_empty() {
            None
        } else {
            self.next_bind = (self.next_bind + 1) % self.binds.len();
            Some(self.binds[self.next_bind])
        };
        self.seed = self.seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut conn = Conn::connect(self.addr, bind, request, self.seed, self.tls.as_ref())?;
        let idx = self.free.pop().unwrap_or(self.conns.len());
        self.poll.registry().register(
            &mut conn.sock,
            Token(idx),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        if idx == self.conns.len() {
            self.conns.push(Some(conn));
        } else {
            self.conns[idx] = Some(conn);
        }
        Ok(idx)
    }

    pub(crate) fn remove(&mut self, idx: usize) -> Option<Conn> {
        let mut conn = self.conns.get_mut(idx)?.take()?;
        let _ = self.poll.registry().deregister(&mut conn.sock);
        self.free.push(idx);
        Some(conn)
    }

    /// One loop turn: waits up to `timeout`, then for each ready connection writes what
    /// it has queued and reads everything available, handing events to `on` with the time
    /// the poll returned (one clock read per turn, not per message: everything read in
    /// one turn arrived by then). Connections that fail are reported through `on_fail`
    /// and removed.
    pub(crate) fn turn(
        &mut self,
        timeout: Duration,
        mut on: impl FnMut(usize, &mut Conn, Event<'_>, Instant),
        mut on_fail: impl FnMut(usize, &io::Error),
    ) -> io::Result<()> {
        if let Err(e) = self.poll.poll(&mut self.events, Some(timeout)) {
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(e);
        }
        let now = Instant::now();
        let ready: Vec<(usize, bool, bool)> = self
            .events
            .iter()
            .map(|ev| {
                (
                    ev.token().0,
                    ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                    ev.is_writable(),
                )
            })
            .collect();
        for (idx, readable, writable) in ready {
            let Some(Some(conn)) = self.conns.get_mut(idx) else {
                continue;
            };
            let mut result = Ok(true);
            if writable {
                result = conn.flush().map(|_| true);
            }
            if readable && result.is_ok() {
                result = conn.read(|c, ev| on(idx, c, ev, now));
                if result.is_ok() {
                    result = conn.flush().map(|_| true);
                }
            }
            match result {
                Ok(true) => {}
                Ok(false) => {
                    // Peer closed TCP.
                    if let Some(c) = self.conns[idx].as_mut() {
                        c.state = State::Closed;
                    }
                }
                Err(e) => {
                    on_fail(idx, &e);
                    self.remove(idx);
                }
            }
        }
        Ok(())
    }

    /// Writes every connection's queue (after sends made outside a read callback).
    pub(crate) fn flush_all(&mut self, mut on_fail: impl FnMut(usize, &io::Error)) {
        for idx in 0..self.conns.len() {
            let Some(conn) = self.conns[idx].as_mut() else {
                continue;
            };
            if conn.pending() > 0 && conn.state == State::Open {
                if let Err(e) = conn.flush() {
                    on_fail(idx, &e);
                    self.remove(idx);
                }
            }
        }
    }
}

/// Nanoseconds since `t0`.
pub(crate) fn ns_since(t0: Instant) -> u64 {
    t0.elapsed().as_nanos() as u64
}
