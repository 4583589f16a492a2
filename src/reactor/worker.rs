//! One worker: its event loop and the connections it owns.
//!
//! Owns a `mio::Poll`, a listener, the `Slab` of connections, a read buffer shared by all
//! of them, a timer wheel and an inbox. Everything a connection does happens here, on
//! this thread; the only way in from elsewhere is a [`Command`] through the inbox.
//!
//! A connection's phases:
//! - `Handshake`: bytes accumulate until the request head is complete. Next: `Open` (101
//!   sent) or `Closing` (an HTTP response sent), or dropped on handshake timeout.
//! - `Open`: frames are decoded and handed to the route's handler. Next: `Closing` when
//!   either side sends close or the peer breaks the protocol; dropped on EOF or error.
//! - `Closing`: our last bytes (close frame or HTTP response) are flushed, then the write
//!   side is shut; input is discarded until the peer closes or `close_timeout_ms` passes.

use std::cell::Cell;
use std::io::{self, Read};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::id::ConnId;
use super::outq::OutQueue;
use super::timer::TimerWheel;
use crate::config::Config;
use crate::handler::{Action, Context, Handler, Message};
use crate::http::{
    check_request_line, is_upgrade_request, parse_request, validate_upgrade, HandshakeError,
    HttpLimits, Parsed, Request, UpgradePolicy,
};
use crate::server::Router;
use crate::ws::{
    close_code, encode_frame, is_valid_close_code, Decoder, DecoderLimits, Incoming, OpCode, Role,
};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// How long to wait before accepting again after `accept` failed (out of descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Work handed to a worker by other threads.
pub(crate) enum Command {
    /// Send an already encoded frame to every open connection on a route.
    Broadcast { route: usize, frame: Arc<[u8]> },
}

/// The sending side of a worker's inbox.
pub(crate) struct Peer {
    tx: Sender<Command>,
    waker: Waker,
}

impl Peer {
    /// An inbox for the worker that will run `poll`.
    pub(crate) fn new(poll: &Poll) -> io::Result<(Peer, Receiver<Command>)> {
        let waker = Waker::new(poll.registry(), WAKER)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        Ok((Peer { tx, waker }, rx))
    }

    pub(crate) fn send(&self, cmd: Command) {
        // The receiver lives as long as its worker; after the worker exits a message to
        // it has nowhere to go anyway.
        let _ = self.tx.send(cmd);
    }

    pub(crate) fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            tracing::warn!("waking a worker failed: {e}");
        }
    }
}

struct OpenState {
    decoder: Decoder,
    route: usize,
    path: String,
    protocol: Option<String>,
}

enum Phase {
    Handshake(Vec<u8>),
    Open(Box<OpenState>),
    Closing,
}

struct Conn {
    sock: TcpStream,
    generation: u32,
    phase: Phase,
    out: OutQueue,
    /// When the current phase times out (handshake or closing); `None` while open.
    deadline: Option<Instant>,
    read_paused: bool,
    write_shut: bool,
}

/// A worker thread's state. Built on the spawning thread, run on its own.
pub(crate) struct Worker {
    index: u16,
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab<Conn>,
    next_generation: u32,
    read_buf: Vec<u8>,
    timers: TimerWheel,
    inbox: Receiver<Command>,
    peers: Arc<[Peer]>,
    shutdown: Arc<AtomicBool>,
    router: Arc<Router>,
    config: Arc<Config>,
    http_limits: HttpLimits,
    decoder_limits: DecoderLimits,
    policy: UpgradePolicy,
    /// Reused between handler calls so collecting actions does not allocate.
    actions: Cell<Vec<Action>>,
    /// Connections whose reads were paused and whose queues have drained.
    resume: Vec<usize>,
    shutdown_deadline: Option<Instant>,
    accept_retry_at: Option<Instant>,
}

fn timer_key(slot: usize, generation: u32) -> u64 {
    ((slot as u64) << 32) | generation as u64
}

/// A close frame payload: the code and as much of `reason` as fits in 123 bytes.
fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut p = Vec::with_capacity(2 + end);
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(&reason.as_bytes()[..end]);
    p
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        index: usize,
        poll: Poll,
        mut listener: TcpListener,
        inbox: Receiver<Command>,
        peers: Arc<[Peer]>,
        shutdown: Arc<AtomicBool>,
        router: Arc<Router>,
        config: Arc<Config>,
    ) -> io::Result<Worker> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Worker {
            index: index as u16,
            poll,
            listener: Some(listener),
            conns: Slab::new(),
            next_generation: 0,
            read_buf: vec![0; config.read_buffer_size],
            timers: TimerWheel::new(Instant::now()),
            inbox,
            peers,
            shutdown,
            router,
            http_limits: config.http_limits(),
            decoder_limits: config.decoder_limits(),
            policy: config.upgrade_policy(),
            config,
            actions: Cell::new(Vec::new()),
            resume: Vec::new(),
            shutdown_deadline: None,
            accept_retry_at: None,
        })
    }

    /// Runs the event loop until shutdown completes.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut expired = Vec::new();
        loop {
            let now = Instant::now();
            let timeout = [
                self.timers.next_timeout(now),
                self.shutdown_deadline
                    .map(|d| d.saturating_duration_since(now)),
                self.accept_retry_at
                    .map(|d| d.saturating_duration_since(now)),
            ]
            .into_iter()
            .flatten()
            .min();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::error!(worker = self.index, "poll failed: {e}");
                break;
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => self.drain_inbox(),
                    Token(slot) => {
                        if ev.is_writable() {
                            self.flush(slot);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.read(slot);
                        }
                    }
                }
            }
            while let Some(slot) = self.resume.pop() {
                self.read(slot);
            }

            let now = Instant::now();
            if self.shutdown.load(Ordering::Acquire) && self.shutdown_deadline.is_none() {
                self.begin_shutdown(now);
            }
            if self.accept_retry_at.is_some_and(|t| now >= t) {
                self.accept_retry_at = None;
                self.accept();
            }
            self.timers.expire(now, &mut expired);
            for key in expired.drain(..) {
                self.on_timer(key, now);
            }
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() || now >= deadline {
                    break;
                }
            }
        }
        tracing::debug!(
            worker = self.index,
            left = self.conns.len(),
            "worker stopped"
        );
    }

    fn accept(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((mut sock, peer)) => {
                    // Chat traffic is many small messages: latency over packet count.
                    let _ = sock.set_nodelay(true);
                    let entry = self.conns.vacant_entry();
                    let slot = entry.key();
                    if let Err(e) = self.poll.registry().register(
                        &mut sock,
                        Token(slot),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        tracing::warn!(%peer, "cannot register connection: {e}");
                        continue;
                    }
                    let generation = self.next_generation;
                    self.next_generation = self.next_generation.wrapping_add(1);
                    let deadline = Instant::now() + self.config.handshake_timeout();
                    entry.insert(Conn {
                        sock,
                        generation,
                        phase: Phase::Handshake(Vec::new()),
                        out: OutQueue::default(),
                        deadline: Some(deadline),
                        read_paused: false,
                        write_shut: false,
                    });
                    self.timers.insert(timer_key(slot, generation), deadline);
                    tracing::trace!(worker = self.index, %peer, slot, "accepted");
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Usually EMFILE. Connections stay in the backlog; with edge-triggered
                    // readiness no new event may come for them, so retry on a timer.
                    tracing::warn!(worker = self.index, "accept failed: {e}");
                    self.accept_retry_at = Some(Instant::now() + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    fn drain_inbox(&mut self) {
        while let Ok(cmd) = self.inbox.try_recv() {
            match cmd {
                Command::Broadcast { route, frame } => self.deliver_local(route, &frame),
            }
        }
    }

    fn read(&mut self, slot: usize) {
        let mut buf = std::mem::take(&mut self.read_buf);
        while let Some(conn) = self.conns.get_mut(slot) {
            if conn.read_paused {
                break;
            }
            match conn.sock.read(&mut buf) {
                Ok(0) => {
                    self.drop_conn(slot, "peer closed TCP");
                    break;
                }
                Ok(n) => {
                    self.on_bytes(slot, &buf[..n]);
                    self.flush(slot);
                    if let Some(conn) = self.conns.get_mut(slot) {
                        if conn.out.len() > self.config.write_high_water {
                            conn.read_paused = true;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(slot, "read error: {e}");
                    self.drop_conn(slot, "read error");
                    break;
                }
            }
        }
        self.read_buf = buf;
    }

    fn on_bytes(&mut self, slot: usize, data: &[u8]) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        match &mut conn.phase {
            Phase::Handshake(buf) => {
                buf.extend_from_slice(data);
                // Only a newline can end the head: skip parsing until one arrives.
                if !data.contains(&b'\n') && buf.len() < self.http_limits.max_handshake_bytes {
                    return;
                }
                match parse_request(buf, &self.http_limits) {
                    Ok(Parsed::Partial) => {}
                    Ok(Parsed::Complete { request, consumed }) => {
                        let rest = buf.split_off(consumed);
                        self.on_request(slot, request, &rest);
                    }
                    Err(e) => self.reject(slot, e),
                }
            }
            Phase::Open(_) => self.on_frames(slot, data),
            Phase::Closing => {}
        }
    }

    fn on_request(&mut self, slot: usize, req: Request, rest: &[u8]) {
        if let Err(e) = check_request_line(&req) {
            return self.reject(slot, e);
        }
        if !is_upgrade_request(&req) {
            if let Some(route) = self.router.http_route(&req.path) {
                let resp = route(&req);
                return self.respond_and_close(slot, resp.to_bytes());
            }
        }
        let Some(route) = self.router.ws_route(&req.path) else {
            return self.reject(slot, HandshakeError::NotFound(req.path));
        };
        if self.shutdown_deadline.is_some() {
            return self.reject(slot, HandshakeError::Unavailable);
        }
        let upgrade = match validate_upgrade(&req, &self.policy) {
            Ok(u) => u,
            Err(e) => return self.reject(slot, e),
        };
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        conn.out.push_bytes(upgrade.response);
        conn.deadline = None;
        conn.phase = Phase::Open(Box::new(OpenState {
            decoder: Decoder::new(Role::Server, self.decoder_limits),
            route,
            path: req.path,
            protocol: upgrade.protocol,
        }));
        tracing::debug!(worker = self.index, slot, "websocket open");
        self.call_handler(slot, |h, ctx| h.on_open(ctx));
        if !rest.is_empty() {
            self.on_frames(slot, rest);
        }
    }

    fn reject(&mut self, slot: usize, err: HandshakeError) {
        tracing::debug!(
            worker = self.index,
            slot,
            status = err.status(),
            "handshake rejected: {err}"
        );
        self.respond_and_close(slot, err.response().to_bytes());
    }

    fn respond_and_close(&mut self, slot: usize, bytes: Vec<u8>) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        conn.out.push_bytes(bytes);
        conn.phase = Phase::Closing;
        self.set_deadline(slot, self.config.close_timeout());
    }

    fn set_deadline(&mut self, slot: usize, after: Duration) {
        if let Some(conn) = self.conns.get_mut(slot) {
            let at = Instant::now() + after;
            conn.deadline = Some(at);
            self.timers.insert(timer_key(slot, conn.generation), at);
        }
    }

    fn on_frames(&mut self, slot: usize, data: &[u8]) {
        let mut input = data;
        loop {
            let Some(conn) = self.conns.get_mut(slot) else {
                return;
            };
            let Phase::Open(open) = &mut conn.phase else {
                return;
            };
            match open.decoder.decode(&mut input) {
                Ok(None) => return,
                Ok(Some(Incoming::Text(s))) => self.deliver(slot, Message::Text(s)),
                Ok(Some(Incoming::Binary(b))) => self.deliver(slot, Message::Binary(b)),
                Ok(Some(Incoming::Ping(p))) => conn.out.push_frame(OpCode::Pong, p),
                Ok(Some(Incoming::Pong(_))) => {}
                Ok(Some(Incoming::Close(Some((code, reason))))) => {
                    // Echo the peer's code (RFC 6455 §5.5.1).
                    self.start_close(slot, code.to_be_bytes().to_vec(), code, &reason);
                    return;
                }
                Ok(Some(Incoming::Close(None))) => {
                    self.start_close(slot, Vec::new(), 1005, "");
                    return;
                }
                Err(e) => {
                    let code = e.close_code();
                    let reason = e.to_string();
                    tracing::debug!(worker = self.index, slot, code, "protocol error: {reason}");
                    self.start_close(slot, close_payload(code, &reason), code, &reason);
                    return;
                }
            }
        }
    }

    fn deliver(&mut self, slot: usize, msg: Message) {
        self.call_handler(slot, move |h, ctx| h.on_message(ctx, msg));
    }

    /// Runs a handler callback for an open connection and carries out what it asked.
    fn call_handler(&mut self, slot: usize, f: impl FnOnce(&dyn Handler, &mut Context<'_>)) {
        let Some(conn) = self.conns.get(slot) else {
            return;
        };
        let Phase::Open(open) = &conn.phase else {
            return;
        };
        let id = ConnId::new(self.index, slot as u32, conn.generation);
        let route = open.route;
        let actions = self.collect_actions(id, open, f);
        self.apply_actions(slot, route, actions);
    }

    fn collect_actions(
        &self,
        id: ConnId,
        open: &OpenState,
        f: impl FnOnce(&dyn Handler, &mut Context<'_>),
    ) -> Vec<Action> {
        let mut actions = self.actions.take();
        let mut ctx = Context {
            id,
            path: &open.path,
            protocol: open.protocol.as_deref(),
            actions: &mut actions,
        };
        f(self.router.handler(open.route), &mut ctx);
        actions
    }

    fn apply_actions(&mut self, slot: usize, route: usize, mut actions: Vec<Action>) {
        for action in actions.drain(..) {
            match action {
                Action::Send(msg) => {
                    if let Some(conn) = self.conns.get_mut(slot) {
                        if let Phase::Open(_) = conn.phase {
                            let (op, bytes) = match msg {
                                Message::Text(s) => (OpCode::Text, s.into_bytes()),
                                Message::Binary(b) => (OpCode::Binary, b),
                            };
                            conn.out.push_frame(op, bytes);
                        }
                    }
                }
                Action::Close(code, reason) => {
                    let code = if is_valid_close_code(code) {
                        code
                    } else {
                        tracing::warn!(
                            code,
                            "handler asked to close with an invalid code; using 1000"
                        );
                        close_code::NORMAL
                    };
                    self.start_close(slot, close_payload(code, &reason), code, &reason);
                }
                Action::Broadcast(msg) => self.broadcast(route, msg),
            }
        }
        self.actions.set(actions);
    }

    /// Queues our close frame, tells the handler, and moves to `Closing`.
    fn start_close(&mut self, slot: usize, payload: Vec<u8>, code: u16, reason: &str) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if !matches!(conn.phase, Phase::Open(_)) {
            return;
        }
        let Phase::Open(open) = std::mem::replace(&mut conn.phase, Phase::Closing) else {
            return;
        };
        conn.out.push_frame(OpCode::Close, payload);
        let id = ConnId::new(self.index, slot as u32, conn.generation);
        self.set_deadline(slot, self.config.close_timeout());
        let actions = self.collect_actions(id, &open, |h, ctx| h.on_close(ctx, code, reason));
        self.apply_actions(slot, open.route, actions);
    }

    fn broadcast(&mut self, route: usize, msg: Message) {
        let (op, bytes) = match &msg {
            Message::Text(s) => (OpCode::Text, s.as_bytes()),
            Message::Binary(b) => (OpCode::Binary, b.as_slice()),
        };
        // Encoded once; every recipient on every worker queues a handle to these bytes.
        let frame: Arc<[u8]> = encode_frame(true, op, bytes).into();
        self.deliver_local(route, &frame);
        for (i, peer) in self.peers.iter().enumerate() {
            if i != self.index as usize {
                peer.send(Command::Broadcast {
                    route,
                    frame: frame.clone(),
                });
                peer.wake();
            }
        }
    }

    fn deliver_local(&mut self, route: usize, frame: &Arc<[u8]>) {
        let mut failed = Vec::new();
        for (slot, conn) in self.conns.iter_mut() {
            if let Phase::Open(open) = &conn.phase {
                if open.route == route {
                    conn.out.push_shared(frame.clone());
                    if conn.out.flush(&mut conn.sock).is_err() {
                        failed.push(slot);
                    }
                }
            }
        }
        for slot in failed {
            self.drop_conn(slot, "write error");
        }
    }

    fn flush(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        match conn.out.flush(&mut conn.sock) {
            Ok(drained) => {
                if drained && matches!(conn.phase, Phase::Closing) && !conn.write_shut {
                    // Our last bytes are out: half-close so the peer sees EOF, but keep
                    // reading until it closes, so unread input does not turn our close
                    // into a reset that could destroy the bytes we just sent.
                    let _ = conn.sock.shutdown(Shutdown::Write);
                    conn.write_shut = true;
                }
                if conn.read_paused && conn.out.len() <= self.config.write_high_water / 2 {
                    conn.read_paused = false;
                    self.resume.push(slot);
                }
            }
            Err(e) => {
                tracing::debug!(slot, "write error: {e}");
                self.drop_conn(slot, "write error");
            }
        }
    }

    fn on_timer(&mut self, key: u64, now: Instant) {
        let slot = (key >> 32) as usize;
        let generation = key as u32;
        let Some(conn) = self.conns.get(slot) else {
            return;
        };
        if conn.generation != generation || conn.deadline.is_none_or(|d| d > now) {
            return;
        }
        let why = match conn.phase {
            Phase::Handshake(_) => "handshake timeout",
            _ => "close timeout",
        };
        self.drop_conn(slot, why);
    }

    /// Removes a connection for good; the handler hears 1006 if it was still open.
    fn drop_conn(&mut self, slot: usize, why: &str) {
        if !self.conns.contains(slot) {
            return;
        }
        let mut conn = self.conns.remove(slot);
        let _ = self.poll.registry().deregister(&mut conn.sock);
        tracing::debug!(worker = self.index, slot, "connection dropped: {why}");
        if let Phase::Open(open) = conn.phase {
            let id = ConnId::new(self.index, slot as u32, conn.generation);
            let actions = self.collect_actions(id, &open, |h, ctx| h.on_close(ctx, 1006, why));
            self.apply_actions(slot, open.route, actions);
        }
    }

    fn begin_shutdown(&mut self, now: Instant) {
        tracing::info!(
            worker = self.index,
            open = self.conns.len(),
            "shutting down"
        );
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.accept_retry_at = None;
        self.shutdown_deadline = Some(now + self.config.shutdown_timeout());
        let slots: Vec<usize> = self.conns.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            match self.conns.get(slot).map(|c| &c.phase) {
                Some(Phase::Handshake(_)) => self.drop_conn(slot, "shutdown"),
                Some(Phase::Open(_)) => {
                    let reason = "server shutting down";
                    let payload = close_payload(close_code::GOING_AWAY, reason);
                    self.start_close(slot, payload, close_code::GOING_AWAY, reason);
                    self.flush(slot);
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reason_is_cut_at_a_char_boundary() {
        let long = "é".repeat(100);
        let p = close_payload(1000, &long);
        assert!(p.len() <= 125);
        assert!(std::str::from_utf8(&p[2..]).is_ok());
    }

    #[test]
    fn timer_keys_round_trip() {
        let k = timer_key(123_456, 0xdead_beef);
        assert_eq!((k >> 32) as usize, 123_456);
        assert_eq!(k as u32, 0xdead_beef);
    }
}
