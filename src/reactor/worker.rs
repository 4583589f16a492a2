//! One worker: its event loop and the connections it owns — the shell around the
//! connection machines.
//!
//! Owns a `mio::Poll`, a listener, the `Slab` of connections, a read buffer shared by all
//! of them, two timer wheels (connection deadlines, handler timers) and an inbox. Its
//! work is mechanical: accept, move bytes between each connection's [`Io`] and its
//! protocol machine ([`Http1`] until an upgrade, then a [`Link`]: a WebSocket; a raw
//! listener's connections start as a raw `Link`), keep each machine's
//! deadline in the wheel, and hand events to `app` (routes and handlers) and `upgrade`
//! (the handshake). It makes no protocol decision itself: framing, keep-alive, ping and
//! close rules live in `conn`.
//!
//! A connection's protocol (`Proto`): `Http` → `Open` (upgrade accepted) or `Closing`
//! (the HTTP side is done); `Open` → `Closing` (either side closed, a protocol error, idle,
//! slow consumer, shutdown). `Closing`: our last bytes are flushed, the write side is
//! shut, and input is discarded until the peer closes or `close_timeout_ms` passes.
//!
//! Output is queued and the connection marked dirty; dirty connections are flushed once
//! per loop turn, in the order they became dirty, so many messages for one connection
//! leave in one write (a read that queues 16 KiB or more is written at once, while its
//! bytes are in the cache). Output-queue storage and the gather buffer come from the
//! worker's pool. What handlers send to other workers waits in the outbox until the end
//! of the turn: one batch and at most one wake-up per worker.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::accept::{listener_of, WorkerListener, LISTENER_BASE};
use super::admission::Admission;
use super::session::{HandlerEnv, Session};
use super::timer::TimerWheel;
use crate::config::Config;
use crate::conn::{
    ticks, Closing, Http1, Http1Config, HttpEvent, Link, OutQueue, StoragePool, Tick, WsConfig,
    TICK,
};
use crate::hub::{Command, Hub, WAKER};

/// A WebSocket connection's output waits for the end of the loop turn only while less
/// than this is queued (see `Worker::read`).
const CORK_MAX: usize = 16 * 1024;
use crate::id::ConnId;
use crate::io::{Io, ReadOutcome};
use crate::message::ConnError;
use crate::metrics::{bump, HandshakeFailure, WorkerMetrics};
use crate::router::Router;
use crate::ws::close_code;

/// An open connection (a WebSocket, or raw TCP): its machine and what the application
/// keeps with it, in one box so an idle connection costs one allocation besides its slab
/// entry.
pub(super) struct Open {
    pub(super) link: Link,
    pub(super) session: Session,
}

/// Which protocol machine a connection is in.
pub(super) enum Proto {
    Http(Box<Http1>),
    Open(Box<Open>),
    Closing(Closing),
}

pub(super) struct Conn {
    pub(super) io: Io,
    pub(super) generation: u32,
    pub(super) proto: Proto,
    pub(super) out: OutQueue,
    /// The earliest pending wheel entry for this connection. Entries that fire when it
    /// is later are stale (lazy cancel); a machine whose deadline moved later is looked
    /// at early and rescheduled.
    pub(super) deadline: Option<Tick>,
    pub(super) ip: IpAddr,
    pub(super) read_paused: bool,
    pub(super) write_shut: bool,
    pub(super) dirty: bool,
}

impl Conn {
    /// A connection on `io` in machine `proto`, with nothing queued or scheduled yet.
    pub(super) fn new(io: Io, generation: u32, proto: Proto, ip: IpAddr) -> Conn {
        Conn {
            io,
            generation,
            proto,
            out: OutQueue::default(),
            deadline: None,
            ip,
            read_paused: false,
            write_shut: false,
            dirty: false,
        }
    }

    /// The open WebSocket, if this connection is one and has not begun to close.
    pub(super) fn open_mut(&mut self) -> Option<&mut Open> {
        match &mut self.proto {
            Proto::Open(open) if !open.link.is_closed() => Some(open),
            _ => None,
        }
    }
}

/// A worker thread's state. Built on the spawning thread, run on its own.
pub(crate) struct Worker {
    pub(super) index: u16,
    pub(super) poll: Poll,
    /// Listening sockets, one per listener spec (empty once shutting down).
    pub(super) listeners: Vec<WorkerListener>,
    pub(super) conns: Slab<Conn>,
    next_generation: u32,
    read_buf: Vec<u8>,
    timers: TimerWheel,
    /// Handler timers: (connection key, the handler's token).
    pub(super) app_timers: TimerWheel<(u64, u64)>,
    inbox: Receiver<Command>,
    /// Router, hub, upgrade policy and the actions scratch, lent to handler calls.
    pub(super) env: HandlerEnv,
    pub(super) metrics: Arc<WorkerMetrics>,
    shutdown: Arc<AtomicBool>,
    pub(super) admission: Arc<Admission>,
    pub(super) config: Arc<Config>,
    pub(super) http_cfg: Http1Config,
    pub(super) ws_cfg: WsConfig,
    /// Group name → slots of this worker's members.
    pub(super) groups: HashMap<Arc<str>, HashSet<usize>>,
    /// Request paths shared by the connections that asked for them.
    pub(super) paths: HashMap<Box<str>, Arc<str>>,
    /// Connections with queued output not yet flushed this turn.
    dirty: Vec<usize>,
    /// Spare output-queue storage for this worker's connections.
    pub(super) out_pool: StoragePool,
    /// When a poll last reported events.
    busy_at: Instant,
    /// This turn's broadcasts not yet queued (see `app::PendingRoute`).
    pub(super) pending_route: Option<super::app::PendingRoute>,
    /// Commands handlers sent to other workers this turn, by worker.
    pub(super) outbox: Vec<Vec<Command>>,
    /// Connections whose reads were paused and whose queues have drained.
    resume: Vec<usize>,
    pub(super) scratch: Vec<usize>,
    /// Input taken from a virtual connection's wire, reused.
    pub(super) wire_scratch: Vec<u8>,
    /// The origin of this worker's [`Tick`]s.
    epoch: Instant,
    pub(super) now: Instant,
    /// `now` as a [`Tick`].
    now_tick: Tick,
    pub(super) shutdown_deadline: Option<Instant>,
    pub(super) accept_retry_at: Option<Instant>,
}

pub(super) fn timer_key(slot: usize, generation: u32) -> u64 {
    ((slot as u64) << 32) | generation as u64
}

impl Worker {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        index: usize,
        poll: Poll,
        mut listeners: Vec<WorkerListener>,
        inbox: Receiver<Command>,
        hub: Hub,
        shutdown: Arc<AtomicBool>,
        admission: Arc<Admission>,
        router: Arc<Router>,
        config: Arc<Config>,
    ) -> io::Result<Worker> {
        for (i, l) in listeners.iter_mut().enumerate() {
            poll.registry()
                .register(&mut l.sock, Token(LISTENER_BASE - i), Interest::READABLE)?;
        }
        let now = Instant::now();
        let workers = hub.workers();
        Ok(Worker {
            index: index as u16,
            poll,
            listeners,
            conns: Slab::new(),
            next_generation: 0,
            read_buf: vec![0; config.read_buffer_size],
            timers: TimerWheel::new(now),
            app_timers: TimerWheel::new(now),
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
            http_cfg: Http1Config {
                limits: config.http_limits(),
                max_body_bytes: config.max_body_bytes,
                request_timeout: ticks(config.handshake_timeout()),
                keepalive_timeout: ticks(config.keepalive_timeout()),
                response_timeout: ticks(config.http_response_timeout()),
            },
            ws_cfg: WsConfig {
                limits: config.decoder_limits(),
                heartbeat: config.heartbeat_interval().map(ticks),
                idle: config.idle_timeout().map(ticks),
            },
            config,
            groups: HashMap::new(),
            paths: HashMap::new(),
            dirty: Vec::new(),
            out_pool: StoragePool::default(),
            busy_at: Instant::now(),
            outbox: (0..workers).map(|_| Vec::new()).collect(),
            pending_route: None,
            resume: Vec::new(),
            scratch: Vec::new(),
            wire_scratch: Vec::new(),
            epoch: now,
            now,
            now_tick: 0,
            shutdown_deadline: None,
            accept_retry_at: None,
        })
    }

    /// `now` as a tick, rounded down (computed once per loop turn).
    pub(super) fn tick(&self) -> Tick {
        self.now_tick
    }

    /// Reads the clock: `now` and its tick, for the whole loop turn.
    fn update_now(&mut self) {
        self.now = Instant::now();
        let ms = self.now.saturating_duration_since(self.epoch).as_millis();
        self.now_tick = (ms / TICK.as_millis()).min(Tick::MAX as u128) as Tick;
    }

    fn instant(&self, t: Tick) -> Instant {
        self.epoch + TICK * t
    }

    pub(super) fn conn_id(&self, slot: usize, generation: u32) -> ConnId {
        ConnId::new(self.index, slot as u32, generation)
    }

    /// The slot of `id` if it names an open connection of this worker; otherwise the
    /// command is dropped and counted (the connection closed, or is closing).
    pub(super) fn resolve(&mut self, id: ConnId) -> Option<usize> {
        let (worker, slot, generation) = id.parts();
        let live = worker == self.index
            && self
                .conns
                .get_mut(slot as usize)
                .is_some_and(|c| c.generation == generation && c.open_mut().is_some());
        if !live {
            bump(&self.metrics.dropped_stale, 1);
        }
        live.then_some(slot as usize)
    }

    /// Runs the event loop until shutdown completes.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut expired = Vec::new();
        let mut app_expired = Vec::new();
        loop {
            let now = Instant::now();
            let timeout = [
                self.timers.next_timeout(now),
                self.app_timers.next_timeout(now),
                self.shutdown_deadline
                    .map(|d| d.saturating_duration_since(now)),
                self.accept_retry_at
                    .map(|d| d.saturating_duration_since(now)),
                // Wake up to free spare output storage (below) even with no timers.
                self.out_pool
                    .holds_memory()
                    .then_some(Duration::from_secs(1)),
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
            self.update_now();
            // Spare output storage is freed once the worker has had nothing to do for a
            // second (not on every idle poll: a lightly loaded worker would otherwise
            // allocate it again and again).
            if !events.is_empty() {
                self.busy_at = self.now;
            } else if self.now.duration_since(self.busy_at) >= Duration::from_secs(1) {
                self.out_pool.clear();
            }
            for ev in events.iter() {
                let token = ev.token();
                if token == WAKER {
                    self.drain_inbox();
                } else if let Some(which) = listener_of(token) {
                    self.accept(which);
                } else {
                    let slot = token.0;
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
                self.accept_all();
            }
            self.timers.expire(now, &mut expired);
            for key in expired.drain(..) {
                self.on_timer(key);
            }
            self.app_timers.expire(now, &mut app_expired);
            for (key, token) in app_expired.drain(..) {
                self.on_app_timer(key, token);
            }
            self.flush_dirty();
            self.send_outbox();
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

    /// The generation for a new connection.
    pub(super) fn take_generation(&mut self) -> u32 {
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        generation
    }

    /// Hands other workers what this turn's handlers sent them: one batch, and at most
    /// one wake-up, per worker per turn (a wake-up is a syscall, and a sleeping worker's
    /// wake-up far more).
    fn send_outbox(&mut self) {
        for (worker, cmds) in self.outbox.iter_mut().enumerate() {
            if cmds.is_empty() {
                continue;
            }
            match self.env.hub.inner.peers.get(worker) {
                Some(peer) => peer.send_all(cmds),
                None => cmds.clear(),
            }
        }
    }

    fn drain_inbox(&mut self) {
        self.env.hub.inner.peers[self.index as usize].clear_wake();
        while let Ok(cmd) = self.inbox.try_recv() {
            self.on_command(cmd);
        }
    }

    /// Reads what the transport has, feeding each read to the connection's machine; the
    /// I/O layer says when to stop (see `io`).
    fn read(&mut self, slot: usize, until_blocked: bool) {
        let mut buf = std::mem::take(&mut self.read_buf);
        while let Some(conn) = self.conns.get_mut(slot) {
            if conn.read_paused {
                break;
            }
            match conn.io.read(&mut buf, until_blocked) {
                Ok(ReadOutcome::Data { n, more }) => {
                    bump(&self.metrics.bytes_in, n as u64);
                    // Whatever the bytes make us queue (an HTTP answer, a pong, a
                    // reply) goes into pooled storage, which the flush gives back: the
                    // pool then never holds more than the queues busy at one time.
                    conn.out.unpark_storage(&mut self.out_pool);
                    let was_ws = matches!(conn.proto, Proto::Open(_));
                    self.on_bytes(slot, &buf[..n]);
                    // A WebSocket's output is written at the end of the loop turn with
                    // everything else this turn queued for it (messages from other
                    // connections included): one write per connection per turn, as uWS
                    // "corks". HTTP answers (the 101 included) leave at once, so a
                    // handshake's buffers are freed before the next connection's (idle
                    // memory per connection measured higher when they waited), and so
                    // do large replies, while their bytes are still in the cache (64 KiB
                    // echoes ran at half speed when they waited for the end of the turn).
                    let queued = self.conns.get(slot).map_or(0, |c| c.out.len());
                    if was_ws && queued < CORK_MAX {
                        self.mark_dirty(slot);
                    } else {
                        self.flush(slot);
                    }
                    if let Some(conn) = self.conns.get_mut(slot) {
                        if conn.out.len() > self.config.write_high_water {
                            conn.read_paused = true;
                        }
                    }
                    if !more {
                        break;
                    }
                }
                Ok(ReadOutcome::Eof) => {
                    // A raw connection has no close frame: EOF is its normal end.
                    let err = match &conn.proto {
                        Proto::Open(open) if !open.link.is_raw() => {
                            Some(ConnError::Io("closed without a close frame".into()))
                        }
                        _ => None,
                    };
                    self.drop_conn(slot, err);
                    break;
                }
                Ok(ReadOutcome::Blocked) => {
                    // A TLS handshake's own messages (no plaintext yet) go out with the
                    // turn's writes.
                    if conn.io.wants_write() {
                        self.mark_dirty(slot);
                    }
                    break;
                }
                Err(e) => {
                    self.count_transport_error(&e);
                    tracing::debug!(slot, "read error: {e}");
                    self.drop_conn(slot, Some(ConnError::Io(e.to_string())));
                    break;
                }
            }
        }
        if let Some(conn) = self.conns.get_mut(slot) {
            if conn.io.take_handshake_done() {
                bump(&self.metrics.tls_handshakes, 1);
            }
        }
        self.read_buf = buf;
    }

    /// Counts a client that spoke plain HTTP to a TLS port.
    fn count_transport_error(&self, e: &io::Error) {
        #[cfg(feature = "tls")]
        if crate::io::tls::failure_of(e) == Some(crate::io::tls::TlsFailure::PlainHttp) {
            bump(&self.metrics.tls_plain_http, 1);
        }
        let _ = e;
    }

    /// Feeds bytes to the connection's machine and handles each event it reports, in
    /// order, before the next is decoded.
    pub(super) fn on_bytes(&mut self, slot: usize, data: &[u8]) {
        let mut input = data;
        let now = self.tick();
        loop {
            let Some(conn) = self.conns.get_mut(slot) else {
                return;
            };
            match &mut conn.proto {
                Proto::Http(http) => {
                    match http.handle_read(&mut input, now, &self.http_cfg, &mut conn.out) {
                        Some(ev) => self.on_http_event(slot, ev),
                        None => return,
                    }
                }
                // Pongs the machine queued go out with the caller's flush (`read` marks
                // the connection dirty after every read).
                Proto::Open(open) => match open.link.handle_read(&mut input, now, &mut conn.out) {
                    Some(ev) => self.on_link_event(slot, ev),
                    None => return,
                },
                Proto::Closing(closing) => return closing.handle_read(&mut input),
            }
        }
    }

    /// After an HTTP event: close if the machine is done, else keep its deadline.
    pub(super) fn after_http(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if let Proto::Http(http) = &conn.proto {
            if http.is_done() {
                self.enter_closing(slot);
                return;
            }
        }
        self.mark_dirty(slot);
        self.reschedule(slot);
    }

    /// Moves a connection to `Closing`: flush what is queued, shut the write side, and
    /// drop it when the peer closes or `close_timeout_ms` passes.
    pub(super) fn enter_closing(&mut self, slot: usize) {
        let closing = Closing::new(self.tick(), ticks(self.config.close_timeout()));
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        conn.proto = Proto::Closing(closing);
        self.reschedule(slot);
        self.mark_dirty(slot);
    }

    /// Puts the machine's next deadline in the wheel if it is earlier than the entry the
    /// connection already has (a later one is found when that entry fires).
    pub(super) fn reschedule(&mut self, slot: usize) {
        let now = self.tick();
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let due = match &conn.proto {
            Proto::Http(http) => http.poll_timeout(&self.http_cfg),
            Proto::Open(open) => open.link.poll_timeout(now, &self.ws_cfg),
            Proto::Closing(closing) => Some(closing.poll_timeout()),
        };
        let wire_due = conn.io.wire().and_then(|w| w.poll_timeout());
        let due = match (due, wire_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let Some(due) = due else {
            return;
        };
        if conn.deadline.is_some_and(|d| d <= due) {
            return;
        }
        conn.deadline = Some(due);
        let key = timer_key(slot, conn.generation);
        let at = self.instant(due);
        self.timers.insert(key, at);
    }

    pub(super) fn mark_dirty(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get_mut(slot) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(slot);
            }
        }
    }

    /// Writes every dirty connection, in the order they became dirty: a reply queued
    /// before a fan-out to hundreds goes out before the fan-out's writes, not after.
    fn flush_dirty(&mut self) {
        self.settle_broadcasts();
        let mut dirty = std::mem::take(&mut self.dirty);
        let mut next = 0;
        loop {
            while let Some(&slot) = dirty.get(next) {
                next += 1;
                if let Some(conn) = self.conns.get_mut(slot) {
                    conn.dirty = false;
                    self.flush(slot);
                }
            }
            // Flushing marks nothing dirty today; if that changes, those go next.
            if self.dirty.is_empty() {
                break;
            }
            dirty.append(&mut self.dirty);
        }
        dirty.clear();
        self.dirty = dirty;
    }

    fn flush(&mut self, slot: usize) {
        let now = self.tick();
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        match conn.io.write_from(&mut conn.out, &mut self.out_pool, now) {
            Ok((drained, written)) => {
                bump(&self.metrics.bytes_out, written as u64);
                if drained {
                    conn.out.park_storage(&mut self.out_pool);
                }
                if drained && matches!(conn.proto, Proto::Closing(_)) && !conn.write_shut {
                    // Our last bytes are out: half-close so the peer sees EOF, but keep
                    // reading until it closes, so unread input does not turn our close
                    // into a reset that could destroy the bytes we just sent.
                    conn.io.shutdown_write();
                    conn.write_shut = true;
                    if conn.io.wire().is_some() {
                        // No peer will close a virtual connection's socket: done.
                        return self.drop_conn(slot, None);
                    }
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

    fn on_timer(&mut self, key: u64) {
        let slot = (key >> 32) as usize;
        let generation = key as u32;
        let now = self.tick();
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        if conn.generation != generation || conn.deadline.is_none_or(|d| d > now) {
            return;
        }
        conn.deadline = None;
        if let Some(wire) = conn.io.wire() {
            if wire.poll_timeout().is_some_and(|d| d <= now) {
                wire.handle_timeout(now);
                self.pump_wire(slot);
            }
        }
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        match &mut conn.proto {
            Proto::Closing(closing) if closing.handle_timeout(now) => self.drop_conn(slot, None),
            Proto::Closing(_) => self.reschedule(slot),
            Proto::Http(http) => match http.handle_timeout(now, &self.http_cfg) {
                Some(HttpEvent::RequestTimeout) => {
                    self.metrics.handshake_failed(HandshakeFailure::Timeout);
                    tracing::debug!(worker = self.index, slot, "request timeout");
                    self.drop_conn(slot, None);
                }
                Some(ev @ HttpEvent::ResponseTimeout) => self.on_http_event(slot, ev),
                Some(_) => self.drop_conn(slot, None),
                None => self.reschedule(slot),
            },
            Proto::Open(open) => {
                let before = conn.out.len();
                let ev = open.link.handle_timeout(now, &self.ws_cfg, &mut conn.out);
                if conn.out.len() > before && ev.is_none() {
                    bump(&self.metrics.frames_out, 1);
                    self.mark_dirty(slot);
                }
                match ev {
                    Some(ev) => self.on_link_event(slot, ev),
                    None => self.reschedule(slot),
                }
            }
        }
    }

    fn on_app_timer(&mut self, key: u64, token: u64) {
        let slot = (key >> 32) as usize;
        let generation = key as u32;
        let live = self
            .conns
            .get_mut(slot)
            .is_some_and(|c| c.generation == generation && c.open_mut().is_some());
        if live {
            self.run_handler(slot, |h, ctx| h.on_timer(ctx, token));
        }
    }

    /// Removes a connection for good; the handler hears `err` and 1006 if it was open.
    pub(super) fn drop_conn(&mut self, slot: usize, err: Option<ConnError>) {
        if !self.conns.contains(slot) {
            return;
        }
        let mut conn = self.conns.remove(slot);
        if conn.io.tls_unfinished() {
            // A broken or refused handshake, plain HTTP, or a client that left early.
            bump(&self.metrics.tls_failures, 1);
            tracing::debug!(worker = self.index, ip = %conn.ip, "TLS handshake did not complete");
        }
        // Virtual connections have no socket and are not counted by admission.

        if let Some(source) = conn.io.source() {
            let _ = self.poll.registry().deregister(source);
            self.admission.released(conn.ip);
        }
        bump(&self.metrics.connections_open, u64::MAX); // wrapping: minus one
        tracing::debug!(worker = self.index, slot, "connection dropped");
        if let Proto::Open(mut open) = conn.proto {
            if !open.link.is_closed() {
                let id = self.conn_id(slot, conn.generation);
                let (err, code, reason) = match err {
                    None if open.link.is_raw() => {
                        (None, close_code::NORMAL, "closed by the client")
                    }
                    err => (
                        Some(err.unwrap_or_else(|| ConnError::Io("connection dropped".into()))),
                        close_code::ABNORMAL,
                        "abnormal closure",
                    ),
                };
                self.end_session(slot, id, conn.ip, &mut open.session, err, code, reason);
            }
        }
    }

    fn begin_shutdown(&mut self, now: Instant) {
        tracing::info!(
            worker = self.index,
            open = self.conns.len(),
            "shutting down"
        );
        for mut listener in std::mem::take(&mut self.listeners) {
            let _ = self.poll.registry().deregister(&mut listener.sock);
        }
        self.accept_retry_at = None;
        self.shutdown_deadline = Some(now + self.config.shutdown_timeout());
        let slots: Vec<usize> = self.conns.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            match self.conns.get(slot).map(|c| &c.proto) {
                Some(Proto::Http(_)) => self.drop_conn(slot, None),
                Some(Proto::Open(_)) => {
                    self.close_with(slot, close_code::GOING_AWAY, "server shutting down", None)
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
    fn timer_keys_round_trip() {
        let k = timer_key(123_456, 0xdead_beef);
        assert_eq!((k >> 32) as usize, 123_456);
        assert_eq!(k as u32, 0xdead_beef);
    }

    #[test]
    fn connection_state_stays_small() {
        // An idle open connection holds a Conn in the slab and a boxed Open; keep both
        // in check (see the idle-memory figures in the README).
        assert!(
            std::mem::size_of::<Conn>() <= 120,
            "{}",
            std::mem::size_of::<Conn>()
        );
        // 88 bytes is the largest that malloc serves from its 96-byte chunks: one more
        // word (permessage-deflate's state once took two) cost ~25 B per idle connection.
        assert!(
            std::mem::size_of::<Open>() <= 88,
            "{}",
            std::mem::size_of::<Open>()
        );
    }
}
