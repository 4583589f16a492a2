//! The I/O layer under every connection: moves bytes between a socket and the
//! connection's protocol machine, and knows no protocol.
//!
//! Owns the transport of one connection and the rules of reading and writing it. Today
//! that is plain TCP; a TLS session (rustls) becomes a second variant of [`Io`] whose
//! `read` decrypts into the same buffer and whose `write_from` encrypts what the
//! [`OutQueue`] holds, so no protocol code changes when it arrives. It must not parse
//! what it moves, and it never touches the reactor's tables.
//!
//! The read rule belongs here because it is a property of the transport: on a plain TCP
//! socket a read that returns less than the buffer means the kernel handed over all it
//! had, and a new edge will come for new bytes, so the caller may stop without paying a
//! syscall for `WouldBlock`. A TLS session may hold decrypted bytes after a short read,
//! so it will say "more" until the socket blocks.

use std::io::{self, Read};
use std::net::Shutdown;

use mio::net::TcpStream;

use crate::conn::{OutQueue, StoragePool};

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
}

impl Io {
    /// The socket, to register with the poll.
    pub(crate) fn source(&mut self) -> &mut TcpStream {
        match self {
            Io::Plain(s) => s,
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
        }
    }

    /// Writes as much of `out` as the transport takes: whether `out` is now empty, and
    /// how many bytes went out. `pool` is the worker's scratch for gathering small frames.
    pub(crate) fn write_from(
        &mut self,
        out: &mut OutQueue,
        pool: &mut StoragePool,
    ) -> io::Result<(bool, usize)> {
        match self {
            Io::Plain(s) => out.flush(s, pool),
        }
    }

    /// Ends our sending side (TCP FIN) once our last bytes are out, so the peer sees EOF
    /// while we still read what it sends.
    pub(crate) fn shutdown_write(&mut self) {
        match self {
            Io::Plain(s) => {
                let _ = s.shutdown(Shutdown::Write);
            }
        }
    }
}
