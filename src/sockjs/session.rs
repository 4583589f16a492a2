//! One SockJS session as the transport of a virtual connection ([`SessionWire`]): the
//! frames the connection writes become SockJS frames for whichever request is receiving
//! now, messages from `xhr_send` become input, and the session outlives the requests
//! that carry it.
//!
//! Owns a session's state: the receiver (a streaming or polling HTTP answer, or a
//! WebSocket), messages waiting for one, the close frame once there is one, heart-beats,
//! the disconnect delay and the streaming limit. It must not touch the worker or the
//! HTTP machines: it answers through [`HttpReply`]/[`HttpStream`] and the [`Hub`], like
//! any application code.
//!
//! States: `Opening` (the handler has the request) → `Open` (frames flow to the
//! receiver, or wait for one) → `Closed` (the application closed: its close frame goes
//! to every request until the session is forgotten) or gone (no receiver for the
//! disconnect delay, a receiver aborted, a WebSocket receiver closed).

use std::any::Any;
use std::sync::Arc;

use super::endpoint::Shared;
use super::frame::{self, ServerFrame, ServerFrameReader, Wrapping};
use crate::conn::{ticks, Tick};
use crate::http::HttpResponse;
use crate::hub::Hub;
use crate::id::ConnId;
use crate::io::Wire;
use crate::message::Message;
use crate::reply::{HttpReply, HttpStream};

/// How often an HTTP receiver is checked for having gone, in ticks (one second).
const RECEIVER_CHECK: Tick = 10;

/// How long a second receiving request waits to learn whether the first has gone, in
/// ticks: a client that aborts a request and sends the next at once must not be told
/// "another connection still open" because the first one's worker has not read its
/// FIN yet.
const CONTENDER_GRACE: Tick = 2;

/// A request that wants to receive: how to answer it.
pub(crate) struct Attach {
    pub(crate) reply: HttpReply,
    /// Status and headers of the answer (CORS, cookie, content type, no-cache).
    pub(crate) head: HttpResponse,
    pub(crate) wrapping: Wrapping,
    pub(crate) callback: String,
    /// `Some(prelude)` for a streaming transport.
    pub(crate) stream: Option<Vec<u8>>,
}

/// What other threads hand a session (through [`Hub::to_wire`]).
pub(crate) enum WireInput {
    /// A new receiving request.
    Attach(Attach),
    /// Messages from the client, and the answer to give its send request once they are
    /// taken.
    Messages(Vec<String>, Option<(HttpReply, HttpResponse)>),
    /// The WebSocket carrying the session closed.
    WebSocketClosed,
}

enum Receiver {
    WebSocket(ConnId),
    Stream {
        stream: HttpStream,
        wrapping: Wrapping,
        callback: String,
        sent: usize,
    },
    Poll {
        reply: HttpReply,
        head: HttpResponse,
        wrapping: Wrapping,
        callback: String,
    },
}

impl Receiver {
    fn is_over(&self) -> bool {
        match self {
            Receiver::WebSocket(_) => false,
            Receiver::Stream { stream, .. } => stream.is_over(),
            Receiver::Poll { reply, .. } => reply.is_over(),
        }
    }
}

/// A SockJS session carrying a virtual connection.
pub(crate) struct SessionWire {
    shared: Arc<Shared>,
    hub: Hub,
    /// The session id in the endpoint's table (`None` for the WebSocket transport,
    /// whose sessions are never looked up).
    key: Option<String>,
    id: Option<ConnId>,
    reader: ServerFrameReader,
    frames: Vec<ServerFrame>,
    /// Messages written and not yet received, each an encoded JSON string.
    pending: Vec<String>,
    pending_bytes: usize,
    receiver: Option<Receiver>,
    /// The request that opened the session, until the handler's verdict.
    first: Option<Attach>,
    /// A second receiving request, waiting `CONTENDER_GRACE` from the tick given.
    contender: Option<(Attach, Tick)>,
    /// The close frame, once the application closed.
    closed: Option<String>,
    /// Masked client frames for the connection's machine.
    input: Vec<u8>,
    gone: bool,
    now: Tick,
    /// Since when no request has been receiving.
    unattended_since: Option<Tick>,
    next_heartbeat: Tick,
    next_check: Tick,
}

impl SessionWire {
    /// A session opened by an HTTP request (`first` receives the open frame).
    pub(crate) fn http(shared: Arc<Shared>, hub: Hub, key: String, first: Attach) -> Self {
        let mut w = Self::new(shared, hub, Some(key));
        w.first = Some(first);
        w
    }

    /// A session carried by the WebSocket `ws` (the framed `websocket` transport).
    pub(crate) fn websocket(shared: Arc<Shared>, hub: Hub, ws: ConnId) -> Self {
        let mut w = Self::new(shared, hub, None);
        w.receiver = Some(Receiver::WebSocket(ws));
        w
    }

    fn new(shared: Arc<Shared>, hub: Hub, key: Option<String>) -> Self {
        SessionWire {
            shared,
            hub,
            key,
            id: None,
            reader: ServerFrameReader::default(),
            frames: Vec::new(),
            pending: Vec::new(),
            pending_bytes: 0,
            receiver: None,
            first: None,
            contender: None,
            closed: None,
            input: Vec::new(),
            gone: false,
            now: 0,
            unattended_since: None,
            next_heartbeat: 0,
            next_check: 0,
        }
    }

    fn heartbeat(&self) -> Tick {
        ticks(self.shared.cfg.heartbeat)
    }

    /// Sends `frame` to the receiver, if there is one; a polling answer or a streaming
    /// answer past its limit is finished by it.
    fn send_frame(&mut self, frame: &str) {
        let limit = self.shared.cfg.response_limit;
        let finished = match &mut self.receiver {
            None => return,
            Some(Receiver::WebSocket(ws)) => {
                self.hub.send(*ws, Message::Text(frame.to_owned()));
                false
            }
            Some(Receiver::Stream {
                stream,
                wrapping,
                callback,
                sent,
            }) => {
                let piece = frame::wrap(*wrapping, frame, callback);
                *sent += piece.len();
                stream.send(piece);
                *sent >= limit
            }
            Some(Receiver::Poll { .. }) => true,
        };
        if finished {
            self.detach(Some(frame));
        }
    }

    /// Lets the receiver go: a polling answer is given `last` (its only frame), a
    /// stream is ended.
    fn detach(&mut self, last: Option<&str>) {
        match self.receiver.take() {
            Some(Receiver::Poll {
                reply,
                mut head,
                wrapping,
                callback,
            }) => {
                head.body =
                    frame::wrap(wrapping, last.unwrap_or(frame::HEARTBEAT), &callback).into_bytes();
                reply.send(head);
            }
            Some(Receiver::Stream { stream, .. }) => stream.finish(),
            Some(Receiver::WebSocket(ws)) => {
                self.receiver = Some(Receiver::WebSocket(ws));
                return;
            }
            None => return,
        }
        self.unattended_since = Some(self.now);
        if let Some((next, _)) = self.contender.take() {
            self.attach(next);
        }
    }

    /// Gives the receiver what is waiting: pending messages, then the close frame.
    fn deliver(&mut self) {
        if self.receiver.is_none() {
            return;
        }
        if !self.pending.is_empty() {
            let f = frame::array_frame(self.pending.iter().map(String::as_str));
            self.pending.clear();
            self.pending_bytes = 0;
            self.send_frame(&f);
        }
        if self.receiver.is_none() {
            return;
        }
        if let Some(close) = self.closed.clone() {
            self.send_frame(&close);
            match self.receiver.take() {
                Some(Receiver::WebSocket(ws)) => self.hub.close(ws, 1000, "session closed"),
                Some(Receiver::Stream { stream, .. }) => stream.finish(),
                Some(r @ Receiver::Poll { .. }) => self.receiver = Some(r),
                None => {}
            }
        }
    }

    fn attach(&mut self, a: Attach) {
        if let Some(close) = self.closed.clone() {
            return answer_once(a, &close);
        }
        if let Some(r) = &self.receiver {
            if r.is_over() {
                return self.interrupted(Some(a));
            }
            if self.contender.is_none() && !matches!(r, Receiver::WebSocket(_)) {
                self.contender = Some((a, self.now.saturating_add(CONTENDER_GRACE)));
                return;
            }
            return answer_once(a, &busy_frame());
        }
        self.unattended_since = None;
        self.receiver = Some(match a.stream {
            Some(prelude) => {
                let mut head = a.head;
                head.body = prelude;
                Receiver::Stream {
                    stream: a.reply.start(head),
                    wrapping: a.wrapping,
                    callback: a.callback,
                    sent: 0,
                }
            }
            None => Receiver::Poll {
                reply: a.reply,
                head: a.head,
                wrapping: a.wrapping,
                callback: a.callback,
            },
        });
        self.deliver();
    }

    /// The receiving request went away before the server finished it: the session is
    /// over (SockJS: what was sent to it may be lost), and `next`, if any, is told so.
    fn interrupted(&mut self, next: Option<Attach>) {
        self.receiver = None;
        let frame_text = frame::close_frame(1002, "Connection interrupted");
        let waiting = self.contender.take().map(|(a, _)| a);
        for a in next.into_iter().chain(waiting) {
            answer_once(a, &frame_text);
        }
        self.closed = Some(frame_text);
        self.gone = true;
    }

    /// The waiting second receiver's grace is over: the first has gone (the session is
    /// interrupted) or it has not (the second is refused).
    fn settle_contender(&mut self) {
        let Some((a, _)) = self.contender.take() else {
            return;
        };
        match &self.receiver {
            Some(r) if r.is_over() => self.interrupted(Some(a)),
            Some(_) => answer_once(a, &busy_frame()),
            None => self.attach(a),
        }
    }

    fn take_messages(&mut self, msgs: Vec<String>, answer: Option<(HttpReply, HttpResponse)>) {
        for m in msgs {
            frame::push_client_frame(&mut self.input, 0x1, m.as_bytes());
        }
        if let Some((reply, resp)) = answer {
            reply.send(resp);
        }
    }

    fn on_server_frame(&mut self, f: ServerFrame) {
        match f {
            ServerFrame::Message(m) => {
                if self.closed.is_some() {
                    return;
                }
                let mut enc = String::with_capacity(m.len() + 2);
                frame::push_json_string(&mut enc, &m);
                self.pending_bytes += enc.len();
                self.pending.push(enc);
                if self.receiver.is_none()
                    && self.pending_bytes > self.shared.cfg.max_buffered_bytes
                {
                    tracing::info!(
                        limit = self.shared.cfg.max_buffered_bytes,
                        "SockJS session closed: sockjs.max_buffered_bytes waiting for a receiver"
                    );
                    self.pending.clear();
                    self.pending_bytes = 0;
                    self.closed = Some(frame::close_frame(1013, "Too much data waiting"));
                    self.gone = true;
                }
            }
            // A pong as input keeps the machine's liveness checks true: the session is
            // alive as long as the wire keeps it.
            ServerFrame::Ping => frame::push_client_frame(&mut self.input, 0xA, &[]),
            ServerFrame::Close(code, reason) => {
                if self.closed.is_none() {
                    self.closed = Some(frame::close_frame(code, &reason));
                }
            }
        }
    }
}

/// Answers a request that cannot receive with one frame (`c[2010, ..]`, say).
fn busy_frame() -> String {
    frame::close_frame(2010, "Another connection still open")
}

pub(crate) fn answer_once(a: Attach, frame_text: &str) {
    let body = frame::wrap(a.wrapping, frame_text, &a.callback);
    let mut head = a.head;
    match a.stream {
        Some(mut prelude) => {
            head.body = std::mem::take(&mut prelude);
            let stream = a.reply.start(head);
            stream.send(body);
            stream.finish();
        }
        None => {
            head.body = body.into_bytes();
            a.reply.send(head);
        }
    }
}

impl Wire for SessionWire {
    fn opened(&mut self, id: ConnId, now: Tick) {
        self.id = Some(id);
        self.now = now;
        self.next_heartbeat = now.saturating_add(self.heartbeat());
        self.next_check = now.saturating_add(RECEIVER_CHECK);
        if let Some(key) = &self.key {
            self.shared.set_live(key, id);
        }
        if let Some(Receiver::WebSocket(ws)) = &self.receiver {
            let guard = super::bridge::CarryGuard {
                hub: self.hub.clone(),
                session: id,
                done: false,
            };
            self.hub.call(*ws, move |ctx| {
                let mut guard = guard;
                ctx.attributes_mut().insert(super::bridge::Carries(id));
                guard.done = true;
            });
        }
        if let Some(first) = self.first.take() {
            self.attach(first);
        }
        self.send_frame(frame::OPEN);
    }

    fn refused(&mut self, resp: HttpResponse) {
        let why = String::from_utf8_lossy(&resp.body).trim().to_owned();
        if let Some(key) = &self.key {
            self.shared.forget(key);
        }
        if let Some(first) = self.first.take() {
            let mut head = first.head;
            head.status = resp.status;
            head.body = resp.body;
            head.headers
                .retain(|(n, _)| !n.eq_ignore_ascii_case("Content-Type"));
            head.headers.extend(resp.headers);
            first.reply.send(head);
        }
        if let Some(Receiver::WebSocket(ws)) = self.receiver.take() {
            self.hub.close(ws, 1008, &why);
        }
        self.gone = true;
    }

    fn write(&mut self, bytes: &[u8], now: Tick) {
        self.now = now;
        let mut frames = std::mem::take(&mut self.frames);
        self.reader.push(bytes, &mut frames);
        for f in frames.drain(..) {
            self.on_server_frame(f);
        }
        self.frames = frames;
        self.deliver();
    }

    fn shutdown(&mut self) {
        self.deliver();
    }

    fn input(&mut self, input: Box<dyn Any + Send>, now: Tick) {
        self.now = now;
        let Ok(input) = input.downcast::<WireInput>() else {
            return;
        };
        match *input {
            WireInput::Attach(a) => self.attach(a),
            WireInput::Messages(msgs, answer) => self.take_messages(msgs, answer),
            WireInput::WebSocketClosed => {
                self.receiver = None;
                self.gone = true;
            }
        }
    }

    fn take_input(&mut self, into: &mut Vec<u8>) {
        into.append(&mut self.input);
    }

    fn is_gone(&self) -> bool {
        self.gone
    }

    fn poll_timeout(&self) -> Option<Tick> {
        if self.gone || self.id.is_none() {
            return None;
        }
        let delay = ticks(self.shared.cfg.disconnect_delay);
        let expire = self.unattended_since.map(|t| t.saturating_add(delay));
        let check = matches!(
            self.receiver,
            Some(Receiver::Stream { .. } | Receiver::Poll { .. })
        )
        .then_some(self.next_check);
        let contender = self.contender.as_ref().map(|(_, at)| *at);
        [Some(self.next_heartbeat), expire, check, contender]
            .into_iter()
            .flatten()
            .min()
    }

    fn handle_timeout(&mut self, now: Tick) {
        self.now = now;
        if self.contender.as_ref().is_some_and(|(_, at)| now >= *at) {
            self.settle_contender();
            if self.gone {
                return;
            }
        }
        if now >= self.next_check {
            self.next_check = now.saturating_add(RECEIVER_CHECK);
            if self.receiver.as_ref().is_some_and(Receiver::is_over) {
                return self.interrupted(None);
            }
        }
        let delay = ticks(self.shared.cfg.disconnect_delay);
        if self
            .unattended_since
            .is_some_and(|t| now >= t.saturating_add(delay))
        {
            tracing::debug!(session = ?self.key, "SockJS session expired: no receiver");
            self.gone = true;
            return;
        }
        if now >= self.next_heartbeat {
            self.next_heartbeat = now.saturating_add(self.heartbeat());
            if self.receiver.is_some() {
                // A session someone is receiving is alive even if the client never
                // sends: keep the machine's idle check (engine idle_timeout_ms) quiet
                // when the engine's own pings are off.
                frame::push_client_frame(&mut self.input, 0xA, &[]);
            }
            self.send_frame(frame::HEARTBEAT);
        }
    }
}

impl Drop for SessionWire {
    fn drop(&mut self) {
        if let Some((a, _)) = self.contender.take() {
            answer_once(a, &busy_frame());
        }
        if let Some(key) = &self.key {
            match &self.closed {
                Some(close) if self.id.is_some() => self.shared.set_closed(key, close.clone()),
                _ => self.shared.forget(key),
            }
        }
        let close = self
            .closed
            .clone()
            .unwrap_or_else(|| frame::close_frame(3000, "Go away!"));
        match self.receiver.take() {
            Some(Receiver::WebSocket(ws)) => {
                self.hub.send(ws, Message::Text(close));
                self.hub.close(ws, 1000, "session closed");
            }
            Some(r) => {
                self.receiver = Some(r);
                self.send_frame(&close);
                self.detach(None);
            }
            None => {}
        }
    }
}
