//! An open connection's machine, whichever wire it speaks: [`Link`] is a WebSocket
//! ([`Ws`]) or a raw TCP connection ([`Raw`]), and [`LinkEvent`] what either reports.
//!
//! Owns the dispatch only, so the worker drives every open connection through one API
//! (read, send, close, timers) and handlers cannot tell the wires apart. Each machine's
//! rules stay in its own file.

use crate::message::{ConnError, Message, Payload};

use super::{OutQueue, Raw, Tick, Ws, WsConfig};

/// What an open connection's machine reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// A whole data message.
    Message(Message),
    /// The open state ended. On a WebSocket our close frame (an echo of the peer's, or
    /// our own) is queued. `code` is the peer's code (1005 if its close frame had none)
    /// or ours; `error` says why when it was not a normal close.
    Closed {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
        /// Why, when the connection ended abnormally.
        error: Option<ConnError>,
    },
}

/// An open connection's protocol machine.
#[derive(Debug)]
pub enum Link {
    /// RFC 6455.
    Ws(Ws),
    /// Lines or length-prefixed messages on a raw TCP listener. Boxed so that an open
    /// WebSocket, the common case, stays the size it was (the enum fits in `Ws`'s
    /// spare bit patterns; a raw connection pays one more allocation).
    Raw(Box<Raw>),
}

impl Link {
    /// Whether the open state has ended.
    #[inline]
    pub fn is_closed(&self) -> bool {
        match self {
            Link::Ws(ws) => ws.is_closed(),
            Link::Raw(raw) => raw.is_closed(),
        }
    }

    /// Whether this is a raw TCP connection (no close frame: see [`Link::farewell`]).
    pub fn is_raw(&self) -> bool {
        matches!(self, Link::Raw(_))
    }

    /// Takes bytes from `input` until one event is ready; `None` when it is used up.
    #[inline]
    pub fn handle_read(
        &mut self,
        input: &mut &[u8],
        now: Tick,
        out: &mut OutQueue,
    ) -> Option<LinkEvent> {
        match self {
            Link::Ws(ws) => ws.handle_read(input, now, out),
            Link::Raw(raw) => raw.handle_read(input, now),
        }
    }

    /// Queues a data message.
    pub fn send(&mut self, msg: Message, out: &mut OutQueue) {
        match self {
            Link::Ws(ws) => ws.send(msg, out),
            Link::Raw(raw) => raw.send(&msg, out),
        }
    }

    /// Queues a shared payload in this connection's encoding.
    #[inline]
    pub fn send_payload(&mut self, payload: &Payload, out: &mut OutQueue) {
        match self {
            Link::Ws(ws) => ws.send_payload(payload, out),
            Link::Raw(raw) => raw.send_payload(payload, out),
        }
    }

    /// Whether a payload's plain WebSocket frame is what this connection sends.
    #[inline]
    pub fn sends_plain_frames(&self) -> bool {
        match self {
            Link::Ws(ws) => ws.sends_plain_frames(),
            Link::Raw(_) => false,
        }
    }

    /// Ends the open state from our side (a close frame on a WebSocket); `None` if it
    /// had already ended.
    pub fn close(
        &mut self,
        code: u16,
        reason: &str,
        error: Option<ConnError>,
        out: &mut OutQueue,
    ) -> Option<LinkEvent> {
        match self {
            Link::Ws(ws) => ws.close(code, reason, error, out),
            Link::Raw(raw) => raw.close(code, reason, error),
        }
    }

    /// A raw connection's last message, queued after the open state ended: what stands
    /// in for a close frame's reason. Ignored on a WebSocket, which has its close frame.
    pub fn farewell(&mut self, msg: &Message, out: &mut OutQueue) {
        if let Link::Raw(raw) = self {
            raw.send(msg, out);
        }
    }

    /// When [`Link::handle_timeout`] must next be called, given that it is `now`.
    pub fn poll_timeout(&self, now: Tick, cfg: &WsConfig) -> Option<Tick> {
        match self {
            Link::Ws(ws) => ws.poll_timeout(now, cfg),
            Link::Raw(raw) => raw.poll_timeout(cfg),
        }
    }

    /// Liveness checks: a ping or an idle close on a WebSocket, an idle close on raw.
    pub fn handle_timeout(
        &mut self,
        now: Tick,
        cfg: &WsConfig,
        out: &mut OutQueue,
    ) -> Option<LinkEvent> {
        match self {
            Link::Ws(ws) => ws.handle_timeout(now, cfg, out),
            Link::Raw(raw) => raw.handle_timeout(now, cfg),
        }
    }
}
