//! How application code reaches connections: the [`Hub`] from any thread, the
//! [`Context`] from inside a handler callback, and the worker inboxes they use.
//!
//! Owns the commands other threads may give a worker and the way they travel: a crossbeam
//! channel per worker plus a `mio::Waker`, with wake-ups coalesced so that a burst of
//! commands costs one wake-up. It never touches a connection: the owning worker carries
//! out each command on its own thread. Messages travel as [`Payload`]s, not frames: each
//! recipient's protocol encodes for its own wire, and the payload caches each encoding so
//! every recipient on every worker queues a handle to the same bytes. A context does not
//! touch sockets either: it records what the handler asked for and the worker carries it
//! out after the handler returns, so a handler can never re-enter the reactor.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use mio::{Poll, Token, Waker};

use crate::attributes::Attributes;
use std::any::Any;

use crate::http::{HttpResponse, Request};
use crate::id::ConnId;
use crate::io::Wire;
use crate::message::{Message, Payload};
use crate::metrics::{MetricsSnapshot, WorkerMetrics};

/// The token a worker's waker fires with.
pub(crate) const WAKER: Token = Token(usize::MAX - 2);

/// Work handed to a worker by other threads.
pub(crate) enum Command {
    Send {
        to: ConnId,
        payload: Payload,
    },
    SendMany {
        to: Vec<ConnId>,
        payload: Payload,
    },
    Route {
        route: usize,
        payload: Payload,
    },
    Group {
        group: Arc<str>,
        payload: Payload,
    },
    Join {
        id: ConnId,
        group: Arc<str>,
    },
    Leave {
        id: ConnId,
        group: Arc<str>,
    },
    Close {
        id: ConnId,
        code: u16,
        reason: String,
    },
    Call {
        id: ConnId,
        f: CallFn,
    },
    Http {
        id: ConnId,
        part: HttpPart,
    },
    /// Open a virtual connection on `route` (see [`crate::io::Wire`]).
    #[cfg_attr(not(feature = "sockjs"), allow(dead_code))]
    OpenVirtual {
        route: usize,
        req: Box<Request>,
        ip: std::net::IpAddr,
        wire: Box<dyn Wire>,
    },
    /// Input for a virtual connection's wire.
    #[cfg_attr(not(feature = "sockjs"), allow(dead_code))]
    Wire {
        id: ConnId,
        input: Box<dyn Any + Send>,
    },
}

/// A piece of a deferred HTTP answer (see [`crate::HttpReply`]).
#[derive(Debug)]
pub(crate) enum HttpPart {
    /// The whole response.
    Whole(HttpResponse),
    /// The head of a streamed response; its body, if any, is the first chunk.
    Head(HttpResponse),
    Chunk(Vec<u8>),
    End,
    /// The reply was dropped unanswered.
    Dropped,
}

/// Work another thread runs on a connection's worker (see [`Hub::call`]).
pub(crate) type CallFn = Box<dyn FnOnce(&mut Context<'_>) + Send>;

/// The sending side of one worker's inbox.
pub(crate) struct Peer {
    tx: Sender<Command>,
    waker: Waker,
    /// Set by the first sender after the worker last drained its inbox; later senders
    /// see it set and skip the wake-up syscall.
    wake_pending: AtomicBool,
}

impl Peer {
    /// An inbox for the worker that will run `poll`.
    pub(crate) fn new(poll: &Poll) -> io::Result<(Peer, Receiver<Command>)> {
        let waker = Waker::new(poll.registry(), WAKER)?;
        let (tx, rx) = crossbeam_channel::unbounded();
        Ok((
            Peer {
                tx,
                waker,
                wake_pending: AtomicBool::new(false),
            },
            rx,
        ))
    }

    pub(crate) fn send(&self, cmd: Command) {
        // The receiver lives as long as its worker; once the worker has exited a command
        // for it has nowhere to go.
        if self.tx.send(cmd).is_ok() && !self.wake_pending.swap(true, Ordering::AcqRel) {
            self.wake();
        }
    }

    /// Sends a turn's worth of commands with at most one wake-up.
    pub(crate) fn send_all(&self, cmds: &mut Vec<Command>) {
        let mut sent = false;
        for cmd in cmds.drain(..) {
            sent |= self.tx.send(cmd).is_ok();
        }
        if sent && !self.wake_pending.swap(true, Ordering::AcqRel) {
            self.wake();
        }
    }

    pub(crate) fn wake(&self) {
        if let Err(e) = self.waker.wake() {
            tracing::warn!("waking a worker failed: {e}");
        }
    }

    /// Called by the worker before it drains its inbox.
    pub(crate) fn clear_wake(&self) {
        self.wake_pending.store(false, Ordering::Release);
    }
}

pub(crate) struct HubInner {
    pub(crate) peers: Box<[Peer]>,
    /// The WebSocket routes' paths by route index (the fallback's is empty), for
    /// [`Hub::broadcast`].
    pub(crate) ws_paths: Box<[String]>,
    pub(crate) metrics: Box<[Arc<WorkerMetrics>]>,
}

/// Sends to connections from any thread: one connection, a set, everyone on a route, or
/// a named group. Cheap to clone; every method returns at once, and the owning worker
/// delivers on its own thread, in the order the calls were made from one thread.
///
/// A message for a connection that has closed is dropped and counted
/// (`switchboard_stale_id_drops_total`). A message for a connection whose outbound
/// queue is full follows the `slow_consumer` policy.
///
/// ```no_run
/// use std::time::Duration;
/// use switchboard::{echo::Echo, Message, Server};
///
/// let handle = Server::builder().route("/ticks", Echo).start().unwrap();
/// let hub = handle.hub();
/// std::thread::spawn(move || loop {
///     hub.broadcast("/ticks", Message::Text("tick".into()));
///     std::thread::sleep(Duration::from_secs(1));
/// });
/// handle.join();
/// ```
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<HubInner>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("workers", &self.inner.peers.len())
            .finish()
    }
}

impl Hub {
    fn peer(&self, worker: usize) -> Option<&Peer> {
        self.inner.peers.get(worker)
    }

    fn to_all(&self, mut make: impl FnMut() -> Command) {
        for peer in self.inner.peers.iter() {
            peer.send(make());
        }
    }

    /// Sends `msg` (a [`crate::Message`] or a [`Payload`]) to one connection.
    pub fn send(&self, to: ConnId, msg: impl Into<Payload>) {
        if let Some(peer) = self.peer(to.worker()) {
            peer.send(Command::Send {
                to,
                payload: msg.into(),
            });
        }
    }

    /// Sends `msg` to each of `to`, encoding it once; one command per worker involved.
    pub fn send_many(&self, to: &[ConnId], msg: impl Into<Payload>) {
        let payload = msg.into();
        for (worker, cmd) in send_many_commands(self.workers(), to, &payload) {
            self.inner.peers[worker].send(cmd);
        }
    }

    /// Sends `msg` to every open connection on the WebSocket route `path`. Returns false
    /// if no route has that path.
    pub fn broadcast(&self, path: &str, msg: impl Into<Payload>) -> bool {
        let Some(route) = self
            .inner
            .ws_paths
            .iter()
            .position(|p| !p.is_empty() && p == path)
        else {
            return false;
        };
        let payload = msg.into();
        self.to_all(|| Command::Route {
            route,
            payload: payload.clone(),
        });
        true
    }

    /// Adds a connection to a named group (a chat room, a topic). Joining twice is a
    /// no-op; a connection leaves all its groups when it closes.
    pub fn join(&self, id: ConnId, group: &str) {
        if let Some(peer) = self.peer(id.worker()) {
            peer.send(Command::Join {
                id,
                group: group.into(),
            });
        }
    }

    /// Removes a connection from a group.
    pub fn leave(&self, id: ConnId, group: &str) {
        if let Some(peer) = self.peer(id.worker()) {
            peer.send(Command::Leave {
                id,
                group: group.into(),
            });
        }
    }

    /// Sends `msg` to every member of `group`, on every worker.
    pub fn send_to_group(&self, group: &str, msg: impl Into<Payload>) {
        let payload = msg.into();
        let group: Arc<str> = group.into();
        self.to_all(|| Command::Group {
            group: group.clone(),
            payload: payload.clone(),
        });
    }

    /// Starts the close handshake on a connection with `code` and `reason`.
    pub fn close(&self, id: ConnId, code: u16, reason: &str) {
        if let Some(peer) = self.peer(id.worker()) {
            peer.send(Command::Close {
                id,
                code,
                reason: reason.to_owned(),
            });
        }
    }

    /// Runs `f` on the worker that owns connection `id`, with that connection's
    /// [`Context`], as if it were a handler callback: what it sends is ordered with the
    /// connection's other output, and it can read and change the attributes. How work
    /// done on another thread (a storage write, a backend call, a message from a
    /// cluster) comes back to a connection. If the connection has closed by then, `f` is
    /// dropped without running and the drop is counted like a stale send.
    ///
    /// ```no_run
    /// # use switchboard::{Hub, ConnId};
    /// # fn demo(hub: Hub, id: ConnId) {
    /// std::thread::spawn(move || {
    ///     let stored = 42; // a slow lookup, off the worker
    ///     hub.call(id, move |ctx| ctx.send_text(format!("stored as {stored}")));
    /// });
    /// # }
    /// ```
    pub fn call(&self, id: ConnId, f: impl FnOnce(&mut Context<'_>) + Send + 'static) {
        if let Some(peer) = self.peer(id.worker()) {
            peer.send(Command::Call { id, f: Box::new(f) });
        }
    }

    /// Sends a piece of a deferred HTTP answer to the worker that owns `id`.
    pub(crate) fn http(&self, id: ConnId, part: HttpPart) {
        if let Some(peer) = self.peer(id.worker()) {
            peer.send(Command::Http { id, part });
        }
    }

    /// Opens a virtual connection on worker `worker` (taken modulo the worker count) for
    /// the WebSocket route `route`: the route's `on_open` sees `req`, and the wire hears
    /// the verdict.
    #[cfg_attr(not(feature = "sockjs"), allow(dead_code))]
    pub(crate) fn open_virtual(
        &self,
        worker: usize,
        route: usize,
        req: Request,
        ip: std::net::IpAddr,
        wire: Box<dyn Wire>,
    ) {
        if let Some(peer) = self.peer(worker % self.workers().max(1)) {
            peer.send(Command::OpenVirtual {
                route,
                req: Box::new(req),
                ip,
                wire,
            });
        }
    }

    /// Hands `input` to the wire of the virtual connection `id`; dropped if it is gone.
    #[cfg_attr(not(feature = "sockjs"), allow(dead_code))]
    pub(crate) fn to_wire(&self, id: ConnId, input: Box<dyn Any + Send>) {
        if let Some(peer) = self.peer(id.worker()) {
            peer.send(Command::Wire { id, input });
        }
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.inner.peers.len()
    }

    /// All workers' counters, added up.
    pub fn metrics(&self) -> MetricsSnapshot {
        MetricsSnapshot::collect(&self.inner.metrics)
    }

    /// Wakes every worker so it notices a shutdown request.
    pub(crate) fn wake_all(&self) {
        for peer in self.inner.peers.iter() {
            peer.wake();
        }
    }
}

/// `to` split by owning worker: one `Send` or `SendMany` command per worker involved.
fn send_many_commands(
    workers: usize,
    to: &[ConnId],
    payload: &Payload,
) -> impl Iterator<Item = (usize, Command)> {
    let mut by_worker: Vec<Vec<ConnId>> = vec![Vec::new(); workers];
    for id in to {
        if let Some(list) = by_worker.get_mut(id.worker()) {
            list.push(*id);
        }
    }
    let payload = payload.clone();
    by_worker
        .into_iter()
        .enumerate()
        .filter(|(_, ids)| !ids.is_empty())
        .map(move |(worker, ids)| {
            let cmd = match ids[..] {
                [one] => Command::Send {
                    to: one,
                    payload: payload.clone(),
                },
                _ => Command::SendMany {
                    to: ids,
                    payload: payload.clone(),
                },
            };
            (worker, cmd)
        })
}

/// A command a handler gave (its closure, for `Call`, has no `Debug`).
pub(crate) struct Forwarded(pub(crate) Command);

impl fmt::Debug for Forwarded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Forwarded")
    }
}

/// What a handler asked for, carried out by the worker after the handler returns.
#[derive(Debug)]
pub(crate) enum Action {
    Send(Message),
    /// A hub command for worker `.0`: this worker carries it out after the handler
    /// returns, without an inbox hop; another worker gets it with the rest of this
    /// turn's, one wake-up per worker.
    Command(usize, Forwarded),
    Close(u16, String),
    Broadcast(Message),
    Join(String),
    Leave(String),
    SetTimer(std::time::Duration, u64),
}

/// The connection a handler is called for, and what it can ask of the server.
pub struct Context<'a> {
    pub(crate) id: ConnId,
    pub(crate) remote_ip: std::net::IpAddr,
    pub(crate) path: &'a str,
    pub(crate) protocol: Option<&'a str>,
    pub(crate) attributes: &'a mut Attributes,
    pub(crate) actions: &'a mut Vec<Action>,
    pub(crate) hub: &'a Hub,
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("id", &self.id)
            .field("path", &self.path)
            .finish()
    }
}

impl Context<'_> {
    /// The connection's id, unique for the server's lifetime.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The client's address: the peer of the TCP connection, or, behind a proxy listed
    /// in `trusted_proxies`, the address it forwarded.
    pub fn remote_ip(&self) -> std::net::IpAddr {
        self.remote_ip
    }

    /// The request path the connection was opened on.
    pub fn path(&self) -> &str {
        self.path
    }

    /// The negotiated subprotocol, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol
    }

    /// This connection's attributes.
    pub fn attributes(&self) -> &Attributes {
        self.attributes
    }

    /// This connection's attributes, to set or change.
    pub fn attributes_mut(&mut self) -> &mut Attributes {
        self.attributes
    }

    /// The hub, to reach other connections and groups.
    pub fn hub(&self) -> &Hub {
        self.hub
    }

    /// Sends a message to this connection.
    pub fn send(&mut self, msg: Message) {
        self.actions.push(Action::Send(msg));
    }

    /// Sends a text message to this connection.
    pub fn send_text(&mut self, text: impl Into<String>) {
        self.send(Message::Text(text.into()));
    }

    /// Sends `msg` to each of `to`, on any worker, encoding it once: what
    /// [`Hub::send_many`] does, but recipients on this connection's worker get it as soon
    /// as the callback returns, in order with this connection's own sends, without a trip
    /// through the worker's inbox; recipients on other workers get it through their
    /// inbox with everything else this turn sends them, for one wake-up per worker per
    /// turn. Handlers that route messages between users (a chat) should send this way.
    pub fn send_many(&mut self, to: &[ConnId], msg: impl Into<Payload>) {
        let payload = msg.into();
        let workers = self.hub.workers();
        if let [one] = to {
            // The usual case (one recipient) without the split's allocations.
            let cmd = Command::Send { to: *one, payload };
            self.actions
                .push(Action::Command(one.worker(), Forwarded(cmd)));
            return;
        }
        for (worker, cmd) in send_many_commands(workers, to, &payload) {
            self.actions.push(Action::Command(worker, Forwarded(cmd)));
        }
    }

    /// Sends `msg` to every member of `group` on every worker, as
    /// [`Hub::send_to_group`] does; this worker's members get it when the callback
    /// returns, without an inbox hop.
    pub fn send_to_group(&mut self, group: &str, msg: impl Into<Payload>) {
        let payload = msg.into();
        let group: Arc<str> = group.into();
        for worker in 0..self.hub.workers() {
            let cmd = Command::Group {
                group: group.clone(),
                payload: payload.clone(),
            };
            self.actions.push(Action::Command(worker, Forwarded(cmd)));
        }
    }

    /// Starts the close handshake with `code` and `reason` (at most 123 bytes are sent;
    /// a code that may not be sent on the wire becomes 1000).
    pub fn close(&mut self, code: u16, reason: &str) {
        self.actions.push(Action::Close(code, reason.to_owned()));
    }

    /// Sends a message to every open connection on this route, on every worker,
    /// including this one. The frame is encoded once and shared.
    pub fn broadcast(&mut self, msg: Message) {
        self.actions.push(Action::Broadcast(msg));
    }

    /// Adds this connection to a named group (see [`Hub::send_to_group`]).
    pub fn join(&mut self, group: &str) {
        self.actions.push(Action::Join(group.to_owned()));
    }

    /// Removes this connection from a group.
    pub fn leave(&mut self, group: &str) {
        self.actions.push(Action::Leave(group.to_owned()));
    }

    /// Calls [`Handler::on_timer`] with `token` for this connection once `after` has
    /// passed (to within the reactor's 100 ms tick), on this connection's worker. Cheap
    /// enough for one per connection: an entry in the worker's timer wheel.
    pub fn set_timer(&mut self, after: std::time::Duration, token: u64) {
        self.actions.push(Action::SetTimer(after, token));
    }
}
