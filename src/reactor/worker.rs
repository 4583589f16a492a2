//! One worker: its event loop and the connections it owns.
//!
//! Owns a `mio::Poll`, a listener, the `Slab` of connections, a read buffer shared by all
//! of them, a timer wheel, the local side of named groups, and an inbox. Everything a
//! connection does happens here, on this thread; the only way in from elsewhere is a
//! `hub::Command` through the inbox.
//!
//! A connection's phases:
//! - `Handshake`: bytes accumulate until the request head is complete. Next: `Open` (101
//!   sent) or `Closing` (an HTTP response sent), or dropped on handshake timeout.
//! - `Open`: frames are decoded and handed to the route's handler; a ping goes out after
//!   `heartbeat_interval_ms` of silence. Next: `Closing` when either side sends close,
//!   the peer breaks the protocol, its queue overflows, or it is idle too long; dropped
//!   on EOF or error.
//! - `Closing`: our last bytes (close frame or HTTP response) are flushed, then the write
//!   side is shut; input is discarded until the peer closes or `close_timeout_ms` passes.
//!
//! Output is queued and the connection marked dirty; dirty connections are flushed once
//! per loop turn, so many messages for one connection leave in one `writev`.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::net::{IpAddr, Shutdown};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::admission::Admission;
use super::outq::OutQueue;
use super::timer::TimerWheel;
use crate::config::{Config, SlowConsumerPolicy};
use crate::handler::{Action, Attributes, ConnError, Context, Handler, Message};
use crate::http::{
    check_request_line, is_upgrade_request, parse_request, validate_upgrade, HandshakeError,
    HttpLimits, Parsed, Request, UpgradePolicy,
};
use crate::hub::{encode_shared, Command, Hub, SharedFrame, WAKER};
use crate::id::ConnId;
use crate::metrics::{bump, HandshakeFailure, WorkerMetrics};
use crate::router::Router;
use crate::ws::{close_code, is_valid_close_code, Decoder, DecoderLimits, Incoming, OpCode, Role};

const LISTENER: Token = Token(usize::MAX - 1);

/// How long to wait before accepting again after `accept` failed (out of descriptors).
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// An open connection's protocol state, kept small: an idle connection holds one of
/// these (boxed) and its slab entry, nothing else.
struct OpenState {
    decoder: Decoder,
    route: u32,
    /// Index into the configured subprotocols.
    protocol: Option<u8>,
    /// Shared with every connection on the same path (see `Worker::intern_path`).
    path: Arc<str>,
    attributes: Attributes,
    // Boxed on purpose: 8 bytes per connection instead of a `Vec`'s 24 while unused.
    #[allow(clippy::box_collection)]
    groups: Option<Box<Vec<Arc<str>>>>,
}

impl OpenState {
    fn route(&self) -> usize {
        self.route as usize
    }

    fn groups(&self) -> &[Arc<str>] {
        self.groups.as_deref().map_or(&[], |g| g.as_slice())
    }
}

/// Most distinct request paths a worker interns; past it, each connection keeps its own
/// copy, so a client inventing paths cannot grow the table.
const MAX_INTERNED_PATHS: usize = 1024;

enum Phase {
    Handshake(Vec<u8>),
    /// A plain HTTP request whose body is still arriving: the request so far and the
    /// body length it announced.
    Body(Box<(Request, usize)>),
    Open(Box<OpenState>),
    Closing,
}

struct Conn {
    sock: TcpStream,
    generation: u32,
    phase: Phase,
    out: OutQueue,
    /// When the timer should next look at this connection (handshake deadline, close
    /// linger, or heartbeat check), as a [`Stamp`]. Wheel entries that fire earlier are
    /// stale.
    deadline: Option<Stamp>,
    /// When bytes last arrived.
    last_rx: Stamp,
    ip: IpAddr,
    read_paused: bool,
    write_shut: bool,
    dirty: bool,
}

/// A point in time as 100 ms units since the worker started: 4 bytes instead of an
/// `Instant`'s 16 in every connection, and enough for 13 years of uptime. The timer wheel
/// has the same resolution.
type Stamp = u32;

const STAMP_MS: u64 = 100;

/// Something to queue on a connection.
enum Outgoing {
    Frame(OpCode, Vec<u8>),
    Shared(SharedFrame),
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
    /// Router, hub, upgrade policy and the actions scratch, lent to handler calls.
    env: HandlerEnv,
    metrics: Arc<WorkerMetrics>,
    shutdown: Arc<AtomicBool>,
    admission: Arc<Admission>,
    config: Arc<Config>,
    http_limits: HttpLimits,
    decoder_limits: DecoderLimits,
    /// Group name → slots of this worker's members.
    groups: HashMap<Arc<str>, HashSet<usize>>,
    /// Request paths shared by the connections that asked for them.
    paths: HashMap<Box<str>, Arc<str>>,
    /// Connections with queued output not yet flushed this turn.
    dirty: Vec<usize>,
    /// Connections whose reads were paused and whose queues have drained.
    resume: Vec<usize>,
    scratch: Vec<usize>,
    /// The origin of this worker's [`Stamp`]s.
    epoch: Instant,
    now: Instant,
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

/// What a handler call needs besides the connection: kept apart from the connection
/// table so a connection can be borrowed mutably while these are lent out.
struct HandlerEnv {
    router: Arc<Router>,
    hub: Hub,
    policy: UpgradePolicy,
    /// Reused between handler calls so collecting actions does not allocate.
    actions: Cell<Vec<Action>>,
}

impl HandlerEnv {
    /// Runs one handler callback with a context over `open`, returning what it asked for.
    fn run(
        &self,
        id: ConnId,
        open: &mut OpenState,
        f: impl FnOnce(&dyn Handler, &mut Context<'_>),
    ) -> Vec<Action> {
        let mut actions = self.actions.take();
        let handler = self.router.handler(open.route());
        let mut ctx = Context {
            id,
            path: &open.path,
            protocol: open
                .protocol
                .and_then(|i| self.policy.subprotocols.get(i as usize))
                .map(String::as_str),
            attributes: &mut open.attributes,
            actions: &mut actions,
            hub: &self.hub,
        };
        // A panicking handler must not take the worker (and every connection on it)
        // down: the panic is contained to this connection, which is closed with 1011.
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(handler, &mut ctx)));
        if outcome.is_err() {
            tracing::error!(%id, "handler panicked; closing the connection with 1011");
            actions.push(Action::Close(
                close_code::INTERNAL_ERROR,
                "internal error".into(),
            ));
        }
        actions
    }
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        index: usize,
        poll: Poll,
        mut listener: TcpListener,
        inbox: Receiver<Command>,
        hub: Hub,
        shutdown: Arc<AtomicBool>,
        admission: Arc<Admission>,
        router: Arc<Router>,
        config: Arc<Config>,
    ) -> io::Result<Worker> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let now = Instant::now();
        Ok(Worker {
            index: index as u16,
            poll,
            listener: Some(listener),
            conns: Slab::new(),
            next_generation: 0,
            read_buf: vec![0; config.read_buffer_size],
            timers: TimerWheel::new(now),
            inbox,
            metrics: hub.inner.metrics[index].clone(),
            env: HandlerEnv {
                router,
                hub,
                policy: config.upgrade_policy(),
                actions: Cell::new(Vec::new()),
            },
            shutdown,
            admission,
            http_limits: config.http_limits(),
            decoder_limits: config.decoder_limits(),
            config,
            groups: HashMap::new(),
            paths: HashMap::new(),
            dirty: Vec::new(),
            resume: Vec::new(),
            scratch: Vec::new(),
            epoch: now,
            now,
            shutdown_deadline: None,
            accept_retry_at: None,
        })
    }

    /// `t` as a stamp, rounded down (for "when did this happen").
    fn stamp(&self, t: Instant) -> Stamp {
        let ms = t.saturating_duration_since(self.epoch).as_millis() as u64;
        (ms / STAMP_MS).min(u32::MAX as u64) as Stamp
    }

    /// `t` as a stamp, rounded up (for deadlines: never early).
    fn stamp_ceil(&self, t: Instant) -> Stamp {
        let ms = t.saturating_duration_since(self.epoch).as_millis() as u64;
        ms.div_ceil(STAMP_MS).min(u32::MAX as u64) as Stamp
    }

    fn instant(&self, s: Stamp) -> Instant {
        self.epoch + Duration::from_millis(s as u64 * STAMP_MS)
    }

    fn conn_id(&self, slot: usize, generation: u32) -> ConnId {
        ConnId::new(self.index, slot as u32, generation)
    }

    /// The slot of `id` if it names an open connection of this worker; otherwise the
    /// command is dropped and counted (the connection closed, or is closing).
    fn resolve(&self, id: ConnId) -> Option<usize> {
        let (worker, slot, generation) = id.parts();
        let live = worker == self.index
            && self
                .conns
                .get(slot as usize)
                .is_some_and(|c| c.generation == generation && matches!(c.phase, Phase::Open(_)));
        if !live {
            bump(&self.metrics.dropped_stale, 1);
        }
        live.then_some(slot as usize)
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
            self.now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => self.drain_inbox(),
                    Token(slot) => {
                        if ev.is_writable() {
                            self.flush(slot);
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            // A FIN or error seen with this event gets no second edge:
                            // read until the socket says so.
                            self.read(slot, ev.is_read_closed() || ev.is_error());
                        }
                    }
                }
            }
            while let Some(slot) = self.resume.pop() {
                self.read(slot, true);
            }
            self.flush_dirty();

            let now = self.now;
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
            self.flush_dirty();
            if let Some(deadline) = self.shutdown_deadline {
                if self.conns.is_empty() || now >= deadline {
                    break;
                }
            }
        }
        let left: Vec<usize> = self.conns.iter().map(|(slot, _)| slot).collect();
        for slot in left {
            self.drop_conn(slot, Some(ConnError::Io("server stopped".into())));
        }
        tracing::debug!(worker = self.index, "worker stopped");
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
                    let deadline = self.now + self.config.handshake_timeout();
                    let (deadline_stamp, now_stamp) =
                        (self.stamp_ceil(deadline), self.stamp(self.now));
                    let deadline = self.instant(deadline_stamp);
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
                    entry.insert(Conn {
                        sock,
                        generation,
                        phase: Phase::Handshake(Vec::new()),
                        out: OutQueue::default(),
                        deadline: Some(deadline_stamp),
                        last_rx: now_stamp,
                        ip: peer.ip(),
                        read_paused: false,
                        write_shut: false,
                        dirty: false,
                    });
                    self.admission.accepted(peer.ip());
                    bump(&self.metrics.connections_open, 1);
                    bump(&self.metrics.connections_total, 1);
                    self.timers.insert(timer_key(slot, generation), deadline);
                    tracing::trace!(worker = self.index, %peer, slot, "accepted");
                }
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

    fn drain_inbox(&mut self) {
        self.env.hub.inner.peers[self.index as usize].clear_wake();
        while let Ok(cmd) = self.inbox.try_recv() {
            match cmd {
                Command::Send { to, frame } => {
                    if let Some(slot) = self.resolve(to) {
                        self.enqueue(slot, Outgoing::Shared(frame));
                    }
                }
                Command::SendMany { to, frame } => {
                    for id in to {
                        if let Some(slot) = self.resolve(id) {
                            self.enqueue(slot, Outgoing::Shared(frame.clone()));
                        }
                    }
                }
                Command::Route { route, frame } => self.deliver_route(route, &frame),
                Command::Group { group, frame } => self.deliver_group(&group, &frame),
                Command::Join { id, group } => {
                    if let Some(slot) = self.resolve(id) {
                        self.join(slot, group);
                    }
                }
                Command::Leave { id, group } => {
                    if let Some(slot) = self.resolve(id) {
                        self.leave(slot, &group);
                    }
                }
                Command::Close { id, code, reason } => {
                    if let Some(slot) = self.resolve(id) {
                        self.close_by_app(slot, code, &reason);
                    }
                }
            }
        }
    }

    /// Reads what the socket has. A read that returns less than the buffer drained the
    /// socket (TCP hands over everything it has), and new data will raise a new edge, so
    /// the loop stops there instead of paying a syscall for `WouldBlock`; with
    /// `until_blocked` it reads on until the kernel says so (EOF must not be missed).
    fn read(&mut self, slot: usize, until_blocked: bool) {
        let mut buf = std::mem::take(&mut self.read_buf);
        let now_stamp = self.stamp(self.now);
        while let Some(conn) = self.conns.get_mut(slot) {
            if conn.read_paused {
                break;
            }
            match conn.sock.read(&mut buf) {
                Ok(0) => {
                    let err = match conn.phase {
                        Phase::Open(_) => {
                            Some(ConnError::Io("closed without a close frame".into()))
                        }
                        _ => None,
                    };
                    self.drop_conn(slot, err);
                    break;
                }
                Ok(n) => {
                    conn.last_rx = now_stamp;
                    bump(&self.metrics.bytes_in, n as u64);
                    self.on_bytes(slot, &buf[..n]);
                    self.flush(slot);
                    if let Some(conn) = self.conns.get_mut(slot) {
                        if conn.out.len() > self.config.write_high_water {
                            conn.read_paused = true;
                        }
                    }
                    if n < buf.len() && !until_blocked {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::debug!(slot, "read error: {e}");
                    self.drop_conn(slot, Some(ConnError::Io(e.to_string())));
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
            Phase::Body(pending) => {
                let (req, need) = &mut **pending;
                let take = (*need - req.body.len()).min(data.len());
                req.body.extend_from_slice(&data[..take]);
                if req.body.len() == *need {
                    let Phase::Body(pending) = std::mem::replace(&mut conn.phase, Phase::Closing)
                    else {
                        return;
                    };
                    self.serve_http(slot, pending.0);
                }
            }
            Phase::Open(_) => self.on_frames(slot, data),
            Phase::Closing => {}
        }
    }

    /// A plain request for an HTTP route: read its body (if it has one), then answer.
    fn start_http(&mut self, slot: usize, mut req: Request, rest: &[u8]) {
        if req.version < 1 {
            return self.reject(slot, HandshakeError::BadVersion(req.version));
        }
        if req.header("Host").is_none() {
            return self.reject(slot, HandshakeError::MissingHost);
        }
        let need = match req.content_length(self.config.max_body_bytes) {
            Ok(n) => n,
            Err(e) => return self.reject(slot, e),
        };
        let take = need.min(rest.len());
        req.body.extend_from_slice(&rest[..take]);
        if req.body.len() == need {
            return self.serve_http(slot, req);
        }
        if let Some(conn) = self.conns.get_mut(slot) {
            conn.phase = Phase::Body(Box::new((req, need)));
        }
    }

    fn serve_http(&mut self, slot: usize, req: Request) {
        let Some(route) = self.env.router.http_route(&req.path) else {
            return self.reject(slot, HandshakeError::NotFound(req.path));
        };
        let resp = route(&req, &self.env.hub);
        self.respond_and_close(slot, resp.to_bytes());
    }

    fn on_request(&mut self, slot: usize, req: Request, rest: &[u8]) {
        if !is_upgrade_request(&req) && self.env.router.http_route(&req.path).is_some() {
            return self.start_http(slot, req, rest);
        }
        if let Err(e) = check_request_line(&req) {
            return self.reject(slot, e);
        }
        let Some(route) = self.env.router.ws_route(&req.path) else {
            return self.reject(slot, HandshakeError::NotFound(req.path));
        };
        if self.shutdown_deadline.is_some() {
            return self.reject(slot, HandshakeError::Unavailable("shutting down"));
        }
        let Some(conn) = self.conns.get(slot) else {
            return;
        };
        if let Err(e) = self.admission.admit(conn.ip) {
            return self.reject(slot, e);
        }
        let generation = conn.generation;
        let upgrade = match validate_upgrade(&req, &self.env.policy) {
            Ok(u) => u,
            Err(e) => return self.reject(slot, e),
        };
        let protocol = upgrade.protocol.as_ref().and_then(|p| {
            self.env
                .policy
                .subprotocols
                .iter()
                .position(|s| s == p)
                .and_then(|i| u8::try_from(i).ok())
        });
        let path = self.intern_path(&req.path);
        let mut open = Box::new(OpenState {
            decoder: Decoder::new(Role::Server, self.decoder_limits),
            route: route as u32,
            protocol,
            path,
            attributes: Attributes::default(),
            groups: None,
        });
        let id = self.conn_id(slot, generation);
        let mut verdict = Ok(());
        let actions = self.env.run(id, &mut open, |h, ctx| {
            verdict = h.on_open(ctx, &req);
        });
        if let Err(resp) = verdict {
            self.env.actions.set(actions);
            bump(
                &self.metrics.handshake_failures
                    [HandshakeFailure::from_status(resp.status) as usize],
                1,
            );
            tracing::debug!(
                worker = self.index,
                slot,
                status = resp.status,
                "handler refused the handshake"
            );
            return self.respond_and_close(slot, resp.to_bytes());
        }
        let now_stamp = self.stamp(self.now);
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        conn.out.push_bytes(upgrade.response);
        conn.phase = Phase::Open(open);
        conn.last_rx = now_stamp;
        tracing::debug!(worker = self.index, slot, "websocket open");
        self.schedule_check(slot);
        self.apply_actions(slot, route, actions);
        if !rest.is_empty() {
            self.on_frames(slot, rest);
        }
    }

    /// The shared copy of a request path: one allocation per distinct path per worker
    /// instead of one per connection.
    fn intern_path(&mut self, path: &str) -> Arc<str> {
        if let Some(p) = self.paths.get(path) {
            return p.clone();
        }
        let shared: Arc<str> = path.into();
        if self.paths.len() < MAX_INTERNED_PATHS {
            self.paths.insert(path.into(), shared.clone());
        }
        shared
    }

    fn reject(&mut self, slot: usize, err: HandshakeError) {
        tracing::debug!(
            worker = self.index,
            slot,
            status = err.status(),
            "handshake rejected: {err}"
        );
        self.metrics
            .handshake_failed(HandshakeFailure::from_status(err.status()));
        self.respond_and_close(slot, err.response().to_bytes());
    }

    fn respond_and_close(&mut self, slot: usize, bytes: Vec<u8>) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        conn.out.push_bytes(bytes);
        conn.phase = Phase::Closing;
        self.set_deadline(slot, self.now + self.config.close_timeout());
        self.mark_dirty(slot);
    }

    fn set_deadline(&mut self, slot: usize, at: Instant) {
        let stamp = self.stamp_ceil(at);
        let at = self.instant(stamp);
        if let Some(conn) = self.conns.get_mut(slot) {
            conn.deadline = Some(stamp);
            self.timers.insert(timer_key(slot, conn.generation), at);
        }
    }

    /// Schedules the next heartbeat/idle look at an open connection.
    fn schedule_check(&mut self, slot: usize) {
        let Some(conn) = self.conns.get(slot) else {
            return;
        };
        let now = self.now;
        let last_rx = self.instant(conn.last_rx);
        let silent = now.saturating_duration_since(last_rx);
        let ping_at =
            self.config.heartbeat_interval().map(
                |hb| {
                    if silent < hb {
                        last_rx + hb
                    } else {
                        now + hb
                    }
                },
            );
        let idle_at = self.config.idle_timeout().map(|idle| last_rx + idle);
        match (ping_at, idle_at) {
            (Some(a), Some(b)) => self.set_deadline(slot, a.min(b)),
            (Some(t), None) | (None, Some(t)) => self.set_deadline(slot, t),
            (None, None) => {
                if let Some(conn) = self.conns.get_mut(slot) {
                    conn.deadline = None;
                }
            }
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
                Ok(Some(Incoming::Ping(p))) => {
                    conn.out.push_frame(OpCode::Pong, p);
                    bump(&self.metrics.frames_out, 1);
                    self.mark_dirty(slot);
                }
                Ok(Some(Incoming::Pong(_))) => {}
                Ok(Some(Incoming::Close(Some((code, reason))))) => {
                    // Echo the peer's code (RFC 6455 §5.5.1).
                    self.start_close(slot, code.to_be_bytes().to_vec(), code, &reason, None);
                    return;
                }
                Ok(Some(Incoming::Close(None))) => {
                    self.start_close(slot, Vec::new(), 1005, "", None);
                    return;
                }
                Err(e) => {
                    let code = e.close_code();
                    let reason = e.to_string();
                    tracing::debug!(worker = self.index, slot, code, "protocol error: {reason}");
                    bump(&self.metrics.protocol_errors, 1);
                    self.start_close(
                        slot,
                        close_payload(code, &reason),
                        code,
                        &reason,
                        Some(ConnError::Protocol(e)),
                    );
                    return;
                }
            }
        }
    }

    fn deliver(&mut self, slot: usize, msg: Message) {
        bump(&self.metrics.frames_in, 1);
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let Phase::Open(open) = &mut conn.phase else {
            return;
        };
        let id = ConnId::new(self.index, slot as u32, conn.generation);
        let route = open.route();
        let actions = self.env.run(id, open, move |h, ctx| h.on_message(ctx, msg));
        self.apply_actions(slot, route, actions);
    }

    fn apply_actions(&mut self, slot: usize, route: usize, mut actions: Vec<Action>) {
        for action in actions.drain(..) {
            match action {
                Action::Send(msg) => {
                    let out = match msg {
                        Message::Text(s) => Outgoing::Frame(OpCode::Text, s.into_bytes()),
                        Message::Binary(b) => Outgoing::Frame(OpCode::Binary, b),
                    };
                    self.enqueue(slot, out);
                }
                Action::Close(code, reason) => self.close_by_app(slot, code, &reason),
                Action::Broadcast(msg) => self.broadcast(route, &msg),
                Action::Join(group) => self.join(slot, group.into()),
                Action::Leave(group) => self.leave(slot, &group),
            }
        }
        self.env.actions.set(actions);
    }

    fn close_by_app(&mut self, slot: usize, code: u16, reason: &str) {
        let code = if is_valid_close_code(code) {
            code
        } else {
            tracing::warn!(
                code,
                "asked to close with a code that may not be sent; using 1000"
            );
            close_code::NORMAL
        };
        self.start_close(slot, close_payload(code, reason), code, reason, None);
    }

    /// Queues a message for an open connection, applying the slow-consumer policy.
    fn enqueue(&mut self, slot: usize, out: Outgoing) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if !matches!(conn.phase, Phase::Open(_)) {
            return;
        }
        if conn.out.len() > self.config.max_queued_bytes {
            match self.config.slow_consumer {
                SlowConsumerPolicy::Drop => bump(&self.metrics.dropped_slow, 1),
                SlowConsumerPolicy::Close => self.close_slow_consumer(slot),
            }
            return;
        }
        match out {
            Outgoing::Frame(op, bytes) => conn.out.push_frame(op, bytes),
            Outgoing::Shared(frame) => conn.out.push_shared(frame),
        }
        bump(&self.metrics.frames_out, 1);
        self.mark_dirty(slot);
    }

    fn close_slow_consumer(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        // Memory stays bounded: what the client has not started to receive is dropped,
        // and only the close frame is queued behind the frame in flight.
        conn.out.discard_unsent();
        bump(&self.metrics.slow_consumer_closes, 1);
        let max = self.config.max_queued_bytes;
        let reason = "slow consumer: outbound queue full";
        tracing::debug!(worker = self.index, slot, "{reason}");
        self.start_close(
            slot,
            close_payload(close_code::POLICY, reason),
            close_code::POLICY,
            reason,
            Some(ConnError::SlowConsumer(max)),
        );
    }

    fn mark_dirty(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get_mut(slot) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(slot);
            }
        }
    }

    fn flush_dirty(&mut self) {
        while let Some(slot) = self.dirty.pop() {
            if let Some(conn) = self.conns.get_mut(slot) {
                conn.dirty = false;
                self.flush(slot);
            }
        }
    }

    /// Queues our close frame, tells the handler, and moves to `Closing`.
    fn start_close(
        &mut self,
        slot: usize,
        payload: Vec<u8>,
        code: u16,
        reason: &str,
        err: Option<ConnError>,
    ) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if !matches!(conn.phase, Phase::Open(_)) {
            return;
        }
        let Phase::Open(mut open) = std::mem::replace(&mut conn.phase, Phase::Closing) else {
            return;
        };
        conn.out.push_frame(OpCode::Close, payload);
        bump(&self.metrics.frames_out, 1);
        let id = ConnId::new(self.index, slot as u32, conn.generation);
        self.set_deadline(slot, self.now + self.config.close_timeout());
        self.mark_dirty(slot);
        self.leave_all(slot, &mut open);
        self.notify_end(slot, id, &mut open, err, code, reason);
    }

    /// Tells the handler the connection is over (`on_error` if there is an error, then
    /// `on_close`) and carries out what it asks of others.
    fn notify_end(
        &mut self,
        slot: usize,
        id: ConnId,
        open: &mut OpenState,
        err: Option<ConnError>,
        code: u16,
        reason: &str,
    ) {
        let actions = self.env.run(id, open, |h, ctx| {
            if let Some(err) = &err {
                h.on_error(ctx, err);
            }
            h.on_close(ctx, code, reason);
        });
        self.apply_actions(slot, open.route(), actions);
    }

    fn broadcast(&mut self, route: usize, msg: &Message) {
        // Encoded once; every recipient on every worker queues a handle to these bytes.
        let frame = encode_shared(msg);
        self.deliver_route(route, &frame);
        for (i, peer) in self.env.hub.inner.peers.iter().enumerate() {
            if i != self.index as usize {
                peer.send(Command::Route {
                    route,
                    frame: frame.clone(),
                });
            }
        }
    }

    fn deliver_route(&mut self, route: usize, frame: &SharedFrame) {
        let mut targets = std::mem::take(&mut self.scratch);
        targets.extend(
            self.conns
                .iter()
                .filter_map(|(slot, conn)| match &conn.phase {
                    Phase::Open(open) if open.route() == route => Some(slot),
                    _ => None,
                }),
        );
        for &slot in &targets {
            self.enqueue(slot, Outgoing::Shared(frame.clone()));
        }
        targets.clear();
        self.scratch = targets;
    }

    fn deliver_group(&mut self, group: &str, frame: &SharedFrame) {
        let mut targets = std::mem::take(&mut self.scratch);
        if let Some(members) = self.groups.get(group) {
            targets.extend(members.iter().copied());
        }
        for &slot in &targets {
            self.enqueue(slot, Outgoing::Shared(frame.clone()));
        }
        targets.clear();
        self.scratch = targets;
    }

    fn join(&mut self, slot: usize, group: Arc<str>) {
        let Some(Phase::Open(open)) = self.conns.get_mut(slot).map(|c| &mut c.phase) else {
            return;
        };
        if open.groups().contains(&group) {
            return;
        }
        open.groups
            .get_or_insert_with(Default::default)
            .push(group.clone());
        self.groups.entry(group).or_default().insert(slot);
    }

    fn leave(&mut self, slot: usize, group: &str) {
        let Some(Phase::Open(open)) = self.conns.get_mut(slot).map(|c| &mut c.phase) else {
            return;
        };
        if let Some(groups) = open.groups.as_mut() {
            groups.retain(|g| &**g != group);
            if groups.is_empty() {
                open.groups = None;
            }
        }
        if let Some(members) = self.groups.get_mut(group) {
            members.remove(&slot);
            if members.is_empty() {
                self.groups.remove(group);
            }
        }
    }

    fn leave_all(&mut self, slot: usize, open: &mut OpenState) {
        for group in open.groups.take().into_iter().flat_map(|g| *g) {
            if let Some(members) = self.groups.get_mut(&group) {
                members.remove(&slot);
                if members.is_empty() {
                    self.groups.remove(&group);
                }
            }
        }
    }

    fn flush(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        match conn.out.flush(&mut conn.sock) {
            Ok((drained, written)) => {
                bump(&self.metrics.bytes_out, written as u64);
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
                self.drop_conn(slot, Some(ConnError::Io(e.to_string())));
            }
        }
    }

    fn on_timer(&mut self, key: u64, now: Instant) {
        let slot = (key >> 32) as usize;
        let generation = key as u32;
        let Some(conn) = self.conns.get(slot) else {
            return;
        };
        let now_stamp = self.stamp(now);
        if conn.generation != generation || conn.deadline.is_none_or(|d| d > now_stamp) {
            return;
        }
        match conn.phase {
            Phase::Handshake(_) | Phase::Body(_) => {
                self.metrics.handshake_failed(HandshakeFailure::Timeout);
                tracing::debug!(worker = self.index, slot, "handshake timeout");
                self.drop_conn(slot, None);
            }
            Phase::Closing => self.drop_conn(slot, None),
            Phase::Open(_) => self.heartbeat(slot, now),
        }
    }

    /// An open connection's check came due: close it if idle too long, else ping it if
    /// silent for a heartbeat interval, then schedule the next check.
    fn heartbeat(&mut self, slot: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let last_rx = self.epoch + Duration::from_millis(conn.last_rx as u64 * STAMP_MS);
        let silent = now.saturating_duration_since(last_rx);
        if let Some(idle) = self.config.idle_timeout() {
            if silent >= idle {
                bump(&self.metrics.idle_timeouts, 1);
                let reason = "idle timeout";
                self.start_close(
                    slot,
                    close_payload(close_code::GOING_AWAY, reason),
                    close_code::GOING_AWAY,
                    reason,
                    Some(ConnError::IdleTimeout(idle.as_millis() as u64)),
                );
                return;
            }
        }
        if let Some(hb) = self.config.heartbeat_interval() {
            if silent >= hb {
                conn.out.push_frame(OpCode::Ping, Vec::new());
                bump(&self.metrics.frames_out, 1);
                self.mark_dirty(slot);
            }
        }
        self.schedule_check(slot);
    }

    /// Removes a connection for good; the handler hears `err` and 1006 if it was open.
    fn drop_conn(&mut self, slot: usize, err: Option<ConnError>) {
        if !self.conns.contains(slot) {
            return;
        }
        let mut conn = self.conns.remove(slot);
        let _ = self.poll.registry().deregister(&mut conn.sock);
        self.admission.released(conn.ip);
        bump(&self.metrics.connections_open, u64::MAX); // wrapping: minus one
        tracing::debug!(worker = self.index, slot, "connection dropped");
        if let Phase::Open(mut open) = conn.phase {
            let id = ConnId::new(self.index, slot as u32, conn.generation);
            self.leave_all(slot, &mut open);
            let err = err.unwrap_or_else(|| ConnError::Io("connection dropped".into()));
            self.notify_end(slot, id, &mut open, Some(err), 1006, "abnormal closure");
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
                Some(Phase::Handshake(_) | Phase::Body(_)) => self.drop_conn(slot, None),
                Some(Phase::Open(_)) => {
                    let reason = "server shutting down";
                    let payload = close_payload(close_code::GOING_AWAY, reason);
                    self.start_close(slot, payload, close_code::GOING_AWAY, reason, None);
                }
                _ => {}
            }
        }
        self.flush_dirty();
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

    #[test]
    fn connection_state_stays_small() {
        // An idle open connection holds a Conn in the slab and a boxed OpenState; keep
        // both in check (see the idle-memory figures in the README).
        assert!(
            std::mem::size_of::<Conn>() <= 160,
            "{}",
            std::mem::size_of::<Conn>()
        );
        assert!(
            std::mem::size_of::<OpenState>() <= 320,
            "{}",
            std::mem::size_of::<OpenState>()
        );
    }
}
