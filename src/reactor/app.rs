//! What a worker does for the application: handler calls, the actions they return,
//! commands from other threads, groups and broadcasts.
//!
//! Owns each open connection's [`Session`] (route, path, subprotocol, attributes,
//! groups), the worker's side of named groups, handler timers, `Hub::call`, and the
//! turn's pending route broadcasts (small ones are batched per turn and settled before
//! any other output, see [`PendingRoute`]). It reaches
//! connections only through the WebSocket machine's API (`send`, `close`) and the
//! connection's output queue; it never touches a socket.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use super::session::Session;
use super::worker::{timer_key, Proto, Worker};
use crate::config::SlowConsumerPolicy;
use crate::conn::{Closing, LinkEvent};
use crate::handler::Handler;
use crate::hub::{Action, Command, Context};
use crate::id::ConnId;
use crate::message::{ConnError, Message, Payload};
use crate::metrics::bump;
use crate::ws::{close_code, is_valid_close_code};

/// Something to queue on a connection.
enum Outgoing<'a> {
    Message(Message),
    /// Borrowed: each recipient takes a handle to the payload's encoded frame, not to
    /// the payload (one reference-count increment per recipient, not three).
    Shared(&'a Payload),
    /// Several small frames already encoded back to back (a turn's broadcasts to a
    /// route): one queue entry for all of them, on connections that send plain frames;
    /// the others queue the payloads one by one in their own encoding.
    Frames(&'a Arc<[u8]>, &'a [Payload]),
}

/// Broadcasts to one route made this turn and not yet queued. Consecutive broadcasts of
/// small messages are queued on each connection as one shared buffer instead of one
/// entry per message: with 16 messages a turn to 10,000 connections, one entry per
/// message was 5 MB of queue entries written and read back every turn.
pub(super) struct PendingRoute {
    route: usize,
    /// The payloads, in order.
    payloads: Vec<Payload>,
    /// Their plain frames back to back, once there is a second.
    frames: Vec<u8>,
}

/// Frames at most this large are batched.
const BATCH_FRAME_MAX: usize = 1024;
/// A batch is queued once it holds this many bytes.
const BATCH_BYTES_MAX: usize = 64 * 1024;

impl Worker {
    pub(super) fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Send { to, payload } => {
                if let Some(slot) = self.resolve(to) {
                    self.enqueue(slot, Outgoing::Shared(&payload));
                }
            }
            Command::SendMany { to, payload } => {
                for id in to {
                    if let Some(slot) = self.resolve(id) {
                        self.enqueue(slot, Outgoing::Shared(&payload));
                    }
                }
            }
            Command::Route { route, payload } => self.deliver_route(route, &payload),
            Command::Group { group, payload } => self.deliver_group(&group, &payload),
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
            Command::Http { id, part } => self.on_http_part(id, part),
            Command::OpenVirtual {
                route,
                req,
                ip,
                wire,
            } => self.open_virtual(route, &req, ip, wire),
            Command::Wire { id, input } => self.wire_input(id, input),
            Command::Call { id, f } => {
                if let Some(slot) = self.resolve(id) {
                    self.run_handler(slot, |_, ctx| f(ctx));
                }
            }
        }
    }

    /// Runs `f` with the handler and a context for the open connection in `slot`, then
    /// carries out what it asked for.
    #[inline]
    pub(super) fn run_handler(
        &mut self,
        slot: usize,
        f: impl FnOnce(&dyn Handler, &mut Context<'_>),
    ) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let (generation, ip) = (conn.generation, conn.ip);
        let Some(open) = conn.open_mut() else {
            return;
        };
        // Not `self.conn_id`: the connection is borrowed from the slab here.
        let id = ConnId::new(self.index, slot as u32, generation);
        let route = open.session.route();
        let actions = self.env.run(id, ip, &mut open.session, f);
        self.apply_actions(slot, route, actions);
    }

    pub(super) fn on_link_event(&mut self, slot: usize, ev: LinkEvent) {
        match ev {
            LinkEvent::Message(msg) => {
                bump(&self.metrics.frames_in, 1);
                self.run_handler(slot, move |h, ctx| h.on_message(ctx, msg));
            }
            LinkEvent::Closed {
                code,
                reason,
                error,
            } => {
                // Our close frame (echo or our own), or a raw connection's last word,
                // is queued.
                self.farewell(slot, code, &reason);
                bump(&self.metrics.frames_out, 1);
                match &error {
                    Some(ConnError::Protocol(_)) => {
                        tracing::debug!(
                            worker = self.index,
                            slot,
                            code,
                            "protocol error: {reason}"
                        );
                        bump(&self.metrics.protocol_errors, 1);
                    }
                    Some(ConnError::IdleTimeout(_)) => bump(&self.metrics.idle_timeouts, 1),
                    _ => {}
                }
                self.finish_open(slot, code, &reason, error);
            }
        }
    }

    /// Queues a raw connection's last message (the handler's `close_notice`), what a
    /// WebSocket's close frame says.
    fn farewell(&mut self, slot: usize, code: u16, reason: &str) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let (generation, ip) = (conn.generation, conn.ip);
        let Proto::Open(open) = &mut conn.proto else {
            return;
        };
        if !open.link.is_raw() {
            return;
        }
        let id = ConnId::new(self.index, slot as u32, generation);
        let mut notice = None;
        let mut actions = self.env.run(id, ip, &mut open.session, |h, ctx| {
            notice = h.close_notice(ctx, code, reason);
        });
        actions.clear();
        self.env.actions.set(actions);
        if let Some(msg) = notice {
            conn.out.unpark_storage(&mut self.out_pool);
            open.link.farewell(&msg, &mut conn.out);
        }
    }

    /// The open state ended: leave groups, tell the handler, and linger in `Closing`.
    fn finish_open(&mut self, slot: usize, code: u16, reason: &str, err: Option<ConnError>) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let (generation, ip) = (conn.generation, conn.ip);
        let placeholder = Proto::Closing(Closing::new(0, 0));
        let Proto::Open(mut open) = std::mem::replace(&mut conn.proto, placeholder) else {
            return;
        };
        self.enter_closing(slot);
        let id = self.conn_id(slot, generation);
        self.end_session(slot, id, ip, &mut open.session, err, code, reason);
    }

    /// Tells the handler the connection is over (`on_error` if there is an error, then
    /// `on_close`) and carries out what it asks of others.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn end_session(
        &mut self,
        slot: usize,
        id: ConnId,
        ip: IpAddr,
        session: &mut Session,
        err: Option<ConnError>,
        code: u16,
        reason: &str,
    ) {
        self.leave_all(slot, session);
        let actions = self.env.run(id, ip, session, |h, ctx| {
            if let Some(err) = &err {
                h.on_error(ctx, err);
            }
            h.on_close(ctx, code, reason);
        });
        self.apply_actions(slot, session.route(), actions);
    }

    pub(super) fn apply_actions(&mut self, slot: usize, route: usize, mut actions: Vec<Action>) {
        for action in actions.drain(..) {
            match action {
                Action::Send(msg) => self.enqueue(slot, Outgoing::Message(msg)),
                Action::Command(worker, cmd) if worker == self.index as usize => {
                    self.on_command(cmd.0)
                }
                Action::Command(worker, cmd) => {
                    if let Some(out) = self.outbox.get_mut(worker) {
                        out.push(cmd.0);
                    }
                }
                Action::Close(code, reason) => self.close_by_app(slot, code, &reason),
                Action::Broadcast(msg) => self.broadcast(route, msg),
                Action::Join(group) => self.join(slot, group.into()),
                Action::Leave(group) => self.leave(slot, &group),
                Action::SetTimer(after, token) => self.set_app_timer(slot, after, token),
            }
        }
        self.env.actions.set(actions);
    }

    fn set_app_timer(&mut self, slot: usize, after: Duration, token: u64) {
        let Some(conn) = self.conns.get(slot) else {
            return;
        };
        let key = timer_key(slot, conn.generation);
        self.app_timers.insert((key, token), self.now + after);
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
        self.close_with(slot, code, reason, None);
    }

    /// Starts the close handshake from our side, if the connection is still open.
    pub(super) fn close_with(
        &mut self,
        slot: usize,
        code: u16,
        reason: &str,
        err: Option<ConnError>,
    ) {
        // Broadcasts made before the close reach the connection before its close frame.
        self.settle_broadcasts();
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let Proto::Open(open) = &mut conn.proto else {
            return;
        };
        if let Some(ev) = open.link.close(code, reason, err, &mut conn.out) {
            self.on_link_event(slot, ev);
        }
    }

    /// Queues a message for an open connection, applying the slow-consumer policy.
    fn enqueue(&mut self, slot: usize, out: Outgoing<'_>) {
        // Whatever was broadcast before this goes first.
        self.settle_broadcasts();
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let Proto::Open(open) = &mut conn.proto else {
            return;
        };
        if open.link.is_closed() {
            return;
        }
        if conn.out.len() > self.config.max_queued_bytes {
            match self.config.slow_consumer {
                SlowConsumerPolicy::Drop => bump(&self.metrics.dropped_slow, 1),
                SlowConsumerPolicy::Close => self.close_slow_consumer(slot),
            }
            return;
        }
        conn.out.unpark_storage(&mut self.out_pool);
        let frames = match out {
            Outgoing::Message(msg) => {
                open.link.send(msg, &mut conn.out);
                1
            }
            Outgoing::Shared(payload) => {
                open.link.send_payload(payload, &mut conn.out);
                1
            }
            Outgoing::Frames(bytes, payloads) if open.link.sends_plain_frames() => {
                conn.out.push_shared(bytes.clone());
                payloads.len() as u64
            }
            Outgoing::Frames(_, payloads) => {
                for p in payloads {
                    open.link.send_payload(p, &mut conn.out);
                }
                payloads.len() as u64
            }
        };
        bump(&self.metrics.frames_out, frames);
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
        self.close_with(
            slot,
            close_code::POLICY,
            reason,
            Some(ConnError::SlowConsumer(max)),
        );
    }

    fn broadcast(&mut self, route: usize, msg: Message) {
        // Encoded once; every recipient on every worker queues a handle to these bytes.
        let payload = Payload::from(msg);
        self.deliver_route(route, &payload);
        for (i, peer) in self.env.hub.inner.peers.iter().enumerate() {
            if i != self.index as usize {
                peer.send(Command::Route {
                    route,
                    payload: payload.clone(),
                });
            }
        }
    }

    /// Delivers `payload` to every connection on `route`: small frames join this turn's
    /// batch for the route (queued by [`Worker::settle_broadcasts`] before any other
    /// output, any change of who is on the route, and the turn's writes).
    fn deliver_route(&mut self, route: usize, payload: &Payload) {
        // The message's length, not its frame's: connections that compress need no
        // plain frame.
        if payload.message().as_bytes().len() > BATCH_FRAME_MAX {
            self.settle_broadcasts();
            return self.deliver_route_now(route, || Outgoing::Shared(payload));
        }
        match &mut self.pending_route {
            Some(p) if p.route == route && p.frames.len() < BATCH_BYTES_MAX => {
                if p.frames.is_empty() {
                    p.frames.extend_from_slice(p.payloads[0].ws_frame());
                }
                p.frames.extend_from_slice(payload.ws_frame());
                p.payloads.push(payload.clone());
            }
            _ => {
                self.settle_broadcasts();
                self.pending_route = Some(PendingRoute {
                    route,
                    payloads: vec![payload.clone()],
                    frames: Vec::new(),
                });
            }
        }
    }

    /// Queues the pending broadcasts (see [`PendingRoute`]). Inlined: every enqueue
    /// calls it, and there is usually nothing pending.
    #[inline]
    pub(super) fn settle_broadcasts(&mut self) {
        if self.pending_route.is_some() {
            self.settle_pending();
        }
    }

    #[cold]
    fn settle_pending(&mut self) {
        let Some(p) = self.pending_route.take() else {
            return;
        };
        if let [only] = &p.payloads[..] {
            return self.deliver_route_now(p.route, || Outgoing::Shared(only));
        }
        let frames: Arc<[u8]> = Arc::from(p.frames);
        self.deliver_route_now(p.route, || Outgoing::Frames(&frames, &p.payloads));
    }

    /// Queues `out()` on every connection on `route`.
    fn deliver_route_now<'a>(&mut self, route: usize, out: impl Fn() -> Outgoing<'a>) {
        let mut targets = std::mem::take(&mut self.scratch);
        targets.extend(
            self.conns
                .iter()
                .filter_map(|(slot, conn)| match &conn.proto {
                    Proto::Open(open) if open.session.route() == route => Some(slot),
                    _ => None,
                }),
        );
        for &slot in &targets {
            self.enqueue(slot, out());
        }
        targets.clear();
        self.scratch = targets;
    }

    fn deliver_group(&mut self, group: &str, payload: &Payload) {
        let mut targets = std::mem::take(&mut self.scratch);
        if let Some(members) = self.groups.get(group) {
            targets.extend(members.iter().copied());
        }
        for &slot in &targets {
            self.enqueue(slot, Outgoing::Shared(payload));
        }
        targets.clear();
        self.scratch = targets;
    }

    fn join(&mut self, slot: usize, group: Arc<str>) {
        let Some(open) = self.conns.get_mut(slot).and_then(|c| c.open_mut()) else {
            return;
        };
        let session = &mut open.session;
        if session.groups().contains(&group) {
            return;
        }
        session
            .groups
            .get_or_insert_with(Default::default)
            .push(group.clone());
        self.groups.entry(group).or_default().insert(slot);
    }

    fn leave(&mut self, slot: usize, group: &str) {
        let Some(open) = self.conns.get_mut(slot).and_then(|c| c.open_mut()) else {
            return;
        };
        if let Some(groups) = open.session.groups.as_mut() {
            groups.retain(|g| &**g != group);
            if groups.is_empty() {
                open.session.groups = None;
            }
        }
        if let Some(members) = self.groups.get_mut(group) {
            members.remove(&slot);
            if members.is_empty() {
                self.groups.remove(group);
            }
        }
    }

    fn leave_all(&mut self, slot: usize, session: &mut Session) {
        for group in session.groups.take().into_iter().flat_map(|g| *g) {
            if let Some(members) = self.groups.get_mut(&group) {
                members.remove(&slot);
                if members.is_empty() {
                    self.groups.remove(&group);
                }
            }
        }
    }
}
