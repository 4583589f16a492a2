//! One bench client connection on mio: the handshake, masked frame writing into one
//! contiguous buffer, and zero-copy scanning of the server's frames; over TLS for a
//! `wss://` target (frames are written to the session, which encrypts them into one
//! record batch per flush).
//!
//! Owns the socket and its two buffers. Nothing is allocated per message: frames are
//! encoded straight into the write buffer (one `write` per readiness event sends all of
//! them) and read frames are handed out as slices of the read buffer.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use mio::net::TcpStream;

use super::tls::{is_eof, Session, TlsTarget};
use crate::ws::deflate::{Agreement, Inflater};
use crate::ws::mask::apply_mask;
use crate::ws::{FrameHeader, OpCode};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// TCP connecting, request queued.
    Handshaking,
    /// 101 received.
    Open,
    /// Closed by either side or failed.
    Closed,
}

/// What reading produced, in order.
pub(crate) enum Event<'a> {
    /// The 101 arrived.
    Opened,
    /// A whole data message (opcode, payload).
    Message(OpCode, &'a [u8]),
    /// The server sent close.
    Close,
}

/// A small fast PRNG for masking keys: every frame gets a fresh key, as RFC 6455 asks,
/// without a syscall or a lock.
#[derive(Debug, Clone)]
pub(crate) struct KeyGen(u64);

impl KeyGen {
    pub(crate) fn new(seed: u64) -> Self {
        KeyGen(seed | 1)
    }

    pub(crate) fn next(&mut self) -> [u8; 4] {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32).to_le_bytes()[..4]
            .try_into()
            .unwrap_or([0x5a; 4])
    }
}

pub(crate) struct Conn {
    pub(crate) sock: TcpStream,
    pub(crate) state: State,
    pub(crate) started: Instant,
    rbuf: Vec<u8>,
    rlen: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    keys: KeyGen,
    /// Reassembly of a fragmented message (servers under test rarely fragment).
    frag: Option<(OpCode, Vec<u8>)>,
    /// The TLS session of a `wss://` connection.
    tls: Option<Session>,
    /// permessage-deflate, when the server accepted the client's offer: the inflater
    /// and the buffer a compressed message is inflated into.
    inflate: Option<Box<(Inflater, Vec<u8>)>>,
}

/// The handshake request for `path` on `host`.
pub(crate) fn request(host: &str, path: &str) -> Vec<u8> {
    request_offering(host, path, "")
}

/// The handshake request for `path` on `host` with `extensions` offered (none if
/// empty).
pub(crate) fn request_offering(host: &str, path: &str, extensions: &str) -> Vec<u8> {
    let ext = match extensions {
        "" => String::new(),
        e => format!("Sec-WebSocket-Extensions: {e}\r\n"),
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
    )
    .into_bytes()
}

/// What `--deflate` offers: permessage-deflate without context takeover either way, so
/// a server may compress a broadcast once for every recipient.
pub(crate) const DEFLATE_OFFER: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// The largest frame the client accepts from a server; the read buffer grows (by doubling
/// when full) up to this.
const MAX_FRAME: usize = 64 << 20;

/// The header of a complete server frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawFrame {
    /// FIN bit.
    pub fin: bool,
    /// Opcode.
    pub op: OpCode,
    /// Header length; the payload starts here.
    pub head: usize,
    /// Payload length.
    pub len: usize,
    /// RSV1: a permessage-deflate compressed message.
    pub compressed: bool,
}

/// Parses the next server frame in `avail`: `Ok(None)` until the whole frame (header and
/// payload) is there. `capacity` is the most a frame may occupy; a larger frame, a masked
/// frame or a reserved opcode is an error. Pure, so it is fuzzed
/// (`fuzz/fuzz_targets/client_frames.rs`).
pub fn next_frame(avail: &[u8], capacity: usize) -> Result<Option<RawFrame>, String> {
    if avail.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (avail[0], avail[1]);
    if b1 & 0x80 != 0 {
        return Err("server sent a masked frame".into());
    }
    let op = OpCode::from_u8(b0 & 0x0f).ok_or("reserved opcode from server")?;
    let (len, head) = match b1 & 0x7f {
        126 if avail.len() >= 4 => (u16::from_be_bytes([avail[2], avail[3]]) as u64, 4),
        127 if avail.len() >= 10 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&avail[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        126 | 127 => return Ok(None),
        n => (n as u64, 2),
    };
    if len > (capacity.saturating_sub(head)) as u64 {
        return Err(format!(
            "frame of {len} bytes over the client's limit of {capacity}"
        ));
    }
    let len = len as usize;
    if avail.len() < head + len {
        return Ok(None);
    }
    Ok(Some(RawFrame {
        compressed: b0 & 0x40 != 0,
        fin: b0 & 0x80 != 0,
        op,
        head,
        len,
    }))
}

impl Conn {
    /// Starts a non-blocking connect from `bind` (any local port) and queues `req`.
    pub(crate) fn connect(
        addr: SocketAddr,
        bind: Option<IpAddr>,
        req: &[u8],
        seed: u64,
        tls: Option<&TlsTarget>,
    ) -> io::Result<Conn> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_nonblocking(true)?;
        socket.set_nodelay(true)?;
        if let Some(ip) = bind {
            socket.bind(&SocketAddr::new(ip, 0).into())?;
        }
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(115) || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        let std: std::net::TcpStream = socket.into();
        let (tls, wbuf) = match tls {
            Some(t) => {
                let mut session = t.session()?;
                session.write_plain(req)?;
                (Some(session), Vec::new())
            }
            None => (None, req.to_vec()),
        };
        Ok(Conn {
            sock: TcpStream::from_std(std),
            state: State::Handshaking,
            started: Instant::now(),
            rbuf: vec![0; 64 * 1024],
            rlen: 0,
            wbuf,
            wpos: 0,
            keys: KeyGen::new(seed),
            frag: None,
            tls,
            inflate: None,
        })
    }

    /// Bytes queued and not yet written.
    pub(crate) fn pending(&self) -> usize {
        let records = self.tls.as_ref().is_some_and(|t| t.wants_write());
        self.wbuf.len() - self.wpos + records as usize
    }

    /// Queues one masked frame with a fresh key.
    pub(crate) fn send(&mut self, op: OpCode, payload: &[u8]) {
        let key = self.keys.next();
        let header = FrameHeader::new(true, op, payload.len(), Some(key));
        self.wbuf.extend_from_slice(header.as_bytes());
        let start = self.wbuf.len();
        self.wbuf.extend_from_slice(payload);
        apply_mask(&mut self.wbuf[start..], key, 0);
    }

    /// Queues a masked frame whose payload is written in place by `fill` (no copy).
    pub(crate) fn send_with(&mut self, op: OpCode, len: usize, fill: impl FnOnce(&mut [u8])) {
        let key = self.keys.next();
        let header = FrameHeader::new(true, op, len, Some(key));
        self.wbuf.extend_from_slice(header.as_bytes());
        let start = self.wbuf.len();
        self.wbuf.resize(start + len, 0);
        fill(&mut self.wbuf[start..]);
        apply_mask(&mut self.wbuf[start..], key, 0);
    }

    /// Writes what is queued with one `write` call (or a few, if the kernel takes part).
    /// `Ok(true)` when everything went out.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        if let Some(tls) = &mut self.tls {
            return flush_tls(tls, &mut self.sock, &mut self.wbuf, &mut self.wpos);
        }
        while self.wpos < self.wbuf.len() {
            match self.sock.write(&self.wbuf[self.wpos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.wbuf.clear();
        self.wpos = 0;
        Ok(true)
    }

    /// Reads until the socket would block and hands every complete event to `on`.
    /// Returns false once the peer closed TCP.
    pub(crate) fn read(&mut self, mut on: impl FnMut(&mut Conn, Event<'_>)) -> io::Result<bool> {
        if self.tls.is_some() {
            return self.read_tls(&mut on);
        }
        loop {
            if self.rlen == self.rbuf.len() {
                let grow = self.rbuf.len();
                self.rbuf.resize(grow * 2, 0);
            }
            match self.sock.read(&mut self.rbuf[self.rlen..]) {
                Ok(0) => {
                    self.state = State::Closed;
                    return Ok(false);
                }
                Ok(n) => {
                    let short = self.rlen + n < self.rbuf.len();
                    self.rlen += n;
                    self.process(&mut on)?;
                    if self.state == State::Closed {
                        return Ok(false);
                    }
                    // A short read drained the socket; new data raises a new edge.
                    if short {
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Conn::read`] over TLS: records until the socket would block, each batch
    /// decrypted and handed on before the next is read.
    fn read_tls(&mut self, on: &mut impl FnMut(&mut Conn, Event<'_>)) -> io::Result<bool> {
        loop {
            let Some(tls) = self.tls.as_mut() else {
                return Ok(false);
            };
            let (eof, blocked) = match tls.read_tls(&mut self.sock) {
                Ok(0) => (true, false),
                Ok(_) => (false, false),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => (false, true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if !self.drain_plain(on)? {
                return Ok(false);
            }
            if eof {
                self.state = State::Closed;
                return Ok(false);
            }
            if blocked {
                return Ok(true);
            }
        }
    }

    /// Hands on what the TLS session has decrypted; false once the connection closed.
    fn drain_plain(&mut self, on: &mut impl FnMut(&mut Conn, Event<'_>)) -> io::Result<bool> {
        loop {
            if self.rlen == self.rbuf.len() {
                let grow = self.rbuf.len();
                self.rbuf.resize(grow * 2, 0);
            }
            let Some(tls) = self.tls.as_mut() else {
                return Ok(false);
            };
            match tls.read_plain(&mut self.rbuf[self.rlen..]) {
                Ok(0) => {
                    self.state = State::Closed;
                    return Ok(false);
                }
                Ok(n) => {
                    self.rlen += n;
                    self.process(on)?;
                    if self.state == State::Closed {
                        return Ok(false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if is_eof(&e) => {
                    self.state = State::Closed;
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn process(&mut self, on: &mut impl FnMut(&mut Conn, Event<'_>)) -> io::Result<()> {
        let mut pos = 0;
        if self.state == State::Handshaking {
            let Some(end) = self.rbuf[..self.rlen]
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
            else {
                if self.rlen > 16 * 1024 {
                    return Err(io::Error::other("handshake response too large"));
                }
                return Ok(());
            };
            if !self.rbuf.starts_with(b"HTTP/1.1 101") {
                let line = String::from_utf8_lossy(&self.rbuf[..end.min(80)]).into_owned();
                return Err(io::Error::other(format!("handshake refused: {line}")));
            }
            pos = end + 4;
            let head = String::from_utf8_lossy(&self.rbuf[..end]).to_ascii_lowercase();
            if head.contains("sec-websocket-extensions: permessage-deflate") {
                // Our offer asked the server not to keep context: each message inflates
                // on its own, with a stream borrowed for that message.
                let agreed = Agreement::no_context_takeover();
                self.inflate = Some(Box::new((Inflater::new(&agreed), Vec::new())));
            }
            self.state = State::Open;
            on(self, Event::Opened);
        }
        // Frames are scanned in place; `scratch` borrows the buffer out of `self` so the
        // callback can queue replies on the same connection.
        let mut buf = std::mem::take(&mut self.rbuf);
        let result = self.scan(&mut buf, &mut pos, on);
        let remaining = self.rlen - pos;
        buf.copy_within(pos..self.rlen, 0);
        self.rlen = remaining;
        self.rbuf = buf;
        result
    }

    fn scan(
        &mut self,
        buf: &mut [u8],
        pos: &mut usize,
        on: &mut impl FnMut(&mut Conn, Event<'_>),
    ) -> io::Result<()> {
        while self.state == State::Open {
            let avail = &buf[*pos..self.rlen];
            if avail.len() < 2 {
                return Ok(());
            }
            let frame = match next_frame(avail, MAX_FRAME) {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(()),
                Err(e) => return Err(io::Error::other(e)),
            };
            let payload_at = *pos + frame.head;
            *pos += frame.head + frame.len;
            let (fin, op, len) = (frame.fin, frame.op, frame.len);
            let payload = &buf[payload_at..payload_at + len];
            if frame.compressed {
                self.inflated(fin, op, payload, on)?;
                continue;
            }
            match op {
                OpCode::Ping => {
                    let mut copy = [0u8; 125];
                    let n = payload.len().min(125);
                    copy[..n].copy_from_slice(&payload[..n]);
                    self.send(OpCode::Pong, &copy[..n]);
                }
                OpCode::Pong => {}
                OpCode::Close => {
                    self.state = State::Closed;
                    on(self, Event::Close);
                }
                OpCode::Text | OpCode::Binary if fin => on(self, Event::Message(op, payload)),
                OpCode::Text | OpCode::Binary => self.frag = Some((op, payload.to_vec())),
                OpCode::Continuation => {
                    let Some((first, mut data)) = self.frag.take() else {
                        return Err(io::Error::other("continuation without a message"));
                    };
                    data.extend_from_slice(payload);
                    if fin {
                        on(self, Event::Message(first, &data));
                    } else {
                        self.frag = Some((first, data));
                    }
                }
            }
        }
        Ok(())
    }

    /// Hands on a compressed message (servers under test send them whole).
    fn inflated(
        &mut self,
        fin: bool,
        op: OpCode,
        payload: &[u8],
        on: &mut impl FnMut(&mut Conn, Event<'_>),
    ) -> io::Result<()> {
        let Some(mut state) = self.inflate.take() else {
            return Err(io::Error::other("RSV1 without permessage-deflate"));
        };
        if !fin || !matches!(op, OpCode::Text | OpCode::Binary) {
            return Err(io::Error::other("fragmented compressed message"));
        }
        let (inflater, out) = &mut *state;
        out.clear();
        let result = inflater
            .feed(payload, out, MAX_FRAME)
            .and_then(|()| inflater.finish(out, MAX_FRAME));
        if let Err(e) = result {
            return Err(io::Error::other(format!("bad compressed message: {e:?}")));
        }
        on(self, Event::Message(op, &state.1));
        self.inflate = Some(state);
        Ok(())
    }

    /// Makes sure the read buffer can hold a frame of `len` payload bytes.
    pub(crate) fn reserve_frame(&mut self, len: usize) {
        let need = len + 14;
        if self.rbuf.len() < need * 2 {
            self.rbuf.resize(need * 2, 0);
        }
    }
}

/// [`Conn::flush`] over TLS: the queued frames become records, which leave in as few
/// writes as the socket allows.
fn flush_tls(
    tls: &mut Session,
    sock: &mut TcpStream,
    wbuf: &mut Vec<u8>,
    wpos: &mut usize,
) -> io::Result<bool> {
    if *wpos < wbuf.len() {
        tls.write_plain(&wbuf[*wpos..])?;
        wbuf.clear();
        *wpos = 0;
    }
    while tls.wants_write() {
        match tls.write_tls(sock) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
