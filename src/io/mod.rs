//! The I/O layer under every connection: moves bytes between a socket and the
//! connection's protocol machine, and knows no protocol.
//!
//! Owns the transport of one connection and the rules of reading and writing it: plain
//! TCP, or a TLS session (rustls, `tls` module) whose `read` decrypts into the same
//! buffer and whose `write_from` encrypts what the [`OutQueue`] holds, so no protocol
//! code knows which it runs on. It must not parse what it moves, and it never touches
//! the reactor's tables.
//!
//! The read rule belongs here because it is a property of the transport: on a plain TCP
//! socket a read that returns less than the buffer means the kernel handed over all it
//! had, and a new edge will come for new bytes, so the caller may stop without paying a
//! syscall for `WouldBlock`. A TLS session (on rustls' unbuffered API) holds no decrypted
//! bytes between reads, so the same rule holds for it.
//!
//! A connection may also have no socket on this worker at all: a [`Wire`] (a SockJS
//! session carried by a series of HTTP requests, say) takes what the connection writes
//! and hands it input. The worker drives such a connection through commands and timers
//! instead of readiness events.

use std::any::Any;
use std::io::{self, Read};
use std::net::Shutdown;

use mio::net::TcpStream;

use crate::conn::{OutQueue, StoragePool, Tick};
use crate::http::HttpResponse;
use crate::id::ConnId;

#[cfg(feature = "tls")]
pub(crate) mod tls;

/// The transport of a virtual connection: whatever carries an open WebSocket-shaped
/// connection when it is not a socket of this worker. The connection's machine is the
/// ordinary WebSocket machine; the wire sees the frames it writes (server frames,
/// unmasked, cut anywhere) and gives it input as masked client frames.
///
/// Every method runs on the connection's worker and must not block.
pub trait Wire: Send + 'static {
    /// The handler accepted the connection, which is now `id`.
    fn opened(&mut self, id: ConnId, now: Tick);
    /// The handler refused the connection with `resp`; the wire is dropped next.
    fn refused(&mut self, resp: HttpResponse);
    /// Bytes the connection wrote.
    fn write(&mut self, bytes: &[u8], now: Tick);
    /// The connection has written its last bytes.
    fn shutdown(&mut self);
    /// Something sent to this connection from elsewhere ([`crate::Hub`]'s wire input).
    fn input(&mut self, input: Box<dyn Any + Send>, now: Tick);
    /// Moves pending input (masked WebSocket frames) into `into`.
    fn take_input(&mut self, into: &mut Vec<u8>);
    /// Whether the far side is gone for good: the worker drops the connection.
    fn is_gone(&self) -> bool;
    /// When [`Wire::handle_timeout`] must next be called.
    fn poll_timeout(&self) -> Option<Tick>;
    /// Called at or after [`Wire::poll_timeout`].
    fn handle_timeout(&mut self, now: Tick);
}

/// A virtual connection's transport and the scratch its output is gathered in.
pub(crate) struct VirtualIo {
    pub(crate) wire: Box<dyn Wire>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for VirtualIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VirtualIo")
    }
}

/// What one read produced.
#[derive(Debug)]
pub(crate) enum ReadOutcome {
    /// `n` bytes are at the start of the buffer; `more`: reading again may give more
    /// before the transport blocks.
    Data { n: usize, more: bool },
    /// The peer closed its side.
    Eof,
    /// Nothing to read now.
    Blocked,
}

/// A connection's transport.
#[derive(Debug)]
pub(crate) enum Io {
    /// A plain TCP socket.
    Plain(TcpStream),
    /// A TLS session over a TCP socket.
    #[cfg(feature = "tls")]
    Tls(Box<tls::TlsIo>),
    /// No socket: a [`Wire`].
    Virtual(Box<VirtualIo>),
}

impl Io {
    /// A virtual connection's transport.
    pub(crate) fn virtual_wire(wire: Box<dyn Wire>) -> Io {
        Io::Virtual(Box::new(VirtualIo {
            wire,
            scratch: Vec::new(),
        }))
    }

    /// The socket, to register with the poll (`None` for a virtual connection).
    pub(crate) fn source(&mut self) -> Option<&mut TcpStream> {
        match self {
            Io::Plain(s) => Some(s),
            #[cfg(feature = "tls")]
            Io::Tls(t) => Some(t.socket()),
            Io::Virtual(_) => None,
        }
    }

    /// The wire of a virtual connection.
    pub(crate) fn wire(&mut self) -> Option<&mut dyn Wire> {
        match self {
            Io::Virtual(v) => Some(&mut *v.wire),
            _ => None,
        }
    }

    /// Whether the transport has bytes of its own to write (a TLS handshake's
    /// messages), whatever the connection queued.
    pub(crate) fn wants_write(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Io::Tls(t) => t.wants_write(),
            _ => false,
        }
    }

    /// True once, when a TLS handshake has just completed.
    pub(crate) fn take_handshake_done(&mut self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Io::Tls(t) => t.take_handshake_done(),
            _ => false,
        }
    }

    /// Whether this is a TLS session whose handshake never finished.
    pub(crate) fn tls_unfinished(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Io::Tls(t) => t.is_handshaking(),
            _ => false,
        }
    }

    /// Reads into `buf`. With `until_blocked` (the poll reported EOF or an error, which
    /// raise no second edge), `more` stays true until the transport says it would block.
    pub(crate) fn read(&mut self, buf: &mut [u8], until_blocked: bool) -> io::Result<ReadOutcome> {
        match self {
            Io::Plain(s) => loop {
                match s.read(buf) {
                    Ok(0) => return Ok(ReadOutcome::Eof),
                    Ok(n) => {
                        let more = until_blocked || n == buf.len();
                        return Ok(ReadOutcome::Data { n, more });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        return Ok(ReadOutcome::Blocked)
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            },
            #[cfg(feature = "tls")]
            Io::Tls(t) => t.read(buf, until_blocked),
            Io::Virtual(_) => Ok(ReadOutcome::Blocked),
        }
    }

    /// Writes as much of `out` as the transport takes: whether `out` is now empty, and
    /// how many bytes went out. `pool` is the worker's scratch for gathering small frames.
    pub(crate) fn write_from(
        &mut self,
        out: &mut OutQueue,
        pool: &mut StoragePool,
        now: Tick,
    ) -> io::Result<(bool, usize)> {
        match self {
            Io::Plain(s) => out.flush(s, pool),
            #[cfg(feature = "tls")]
            Io::Tls(t) => t.write_from(out, pool),
            Io::Virtual(v) => {
                let (drained, n) = out.flush(&mut v.scratch, pool)?;
                v.wire.write(&v.scratch, now);
                v.scratch.clear();
                Ok((drained, n))
            }
        }
    }

    /// Ends our sending side (TCP FIN) once our last bytes are out, so the peer sees EOF
    /// while we still read what it sends.
    pub(crate) fn shutdown_write(&mut self) {
        match self {
            Io::Plain(s) => {
                let _ = s.shutdown(Shutdown::Write);
            }
            #[cfg(feature = "tls")]
            Io::Tls(t) => t.shutdown_write(),

            Io::Virtual(v) => v.wire.shutdown(),
        }
    }
}
