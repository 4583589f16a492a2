//! Binding one `SO_REUSEPORT` listener per worker on one address.

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
    let mut out = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
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
