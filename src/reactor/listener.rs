//! Binding one `SO_REUSEPORT` listener per worker on one address, and refusing an
//! address another process already listens on.
//!
//! Owns the listening sockets' options. `SO_REUSEPORT` lets the kernel spread new
//! connections over the workers' listeners, but it also lets any other socket of the same
//! user with the option join the group: a second switchboard started on a busy port would
//! silently take a share of the first one's connections. So before the group is bound,
//! a probe socket *without* `SO_REUSEPORT` (and with `SO_REUSEADDR`, so sockets left in
//! `TIME_WAIT` by a previous run do not count) binds the address: if anything listens
//! there, the probe fails with `EADDRINUSE` and so does the start. The window between the
//! probe and the bind is a few microseconds on one thread.

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Binds `count` listeners on `addr`. With port 0, the first picks a port and the others
/// join it.
pub(crate) fn bind_listeners(
    addr: SocketAddr,
    count: usize,
    backlog: i32,
) -> io::Result<Vec<mio::net::TcpListener>> {
    if addr.port() != 0 {
        probe(addr)?;
    }
    let mut out = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count {
        let socket = new_socket(addr)?;
        socket.set_reuse_port(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(backlog)?;
        let std_listener: std::net::TcpListener = socket.into();
        addr = std_listener.local_addr()?;
        out.push(mio::net::TcpListener::from_std(std_listener));
    }
    Ok(out)
}

fn new_socket(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    Ok(socket)
}

/// Fails with `AddrInUse` if some socket already listens on `addr`, whatever its options.
fn probe(addr: SocketAddr) -> io::Result<()> {
    let socket = new_socket(addr)?;
    socket.bind(&addr.into()).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(
                io::ErrorKind::AddrInUse,
                "address already in use: another process is listening on it",
            )
        } else {
            e
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_port_is_refused_even_to_a_reuseport_group() {
        let first = bind_listeners("127.0.0.1:0".parse().unwrap(), 2, 16).unwrap();
        let addr = first[0].local_addr().unwrap();
        let err = bind_listeners(addr, 2, 16).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let err = bind_listeners(plain.local_addr().unwrap(), 1, 16).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        drop(first);
        // Free again: binds.
        assert_eq!(bind_listeners(addr, 2, 16).unwrap().len(), 2);
    }
}
