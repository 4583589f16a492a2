//! The WebSocket connection machine (server side): an open connection's frames, control
//! obligations, close handshake and liveness checks.
//!
//! Owns the decoder, the time of the last byte received, and whether our close frame has
//! gone out. Pings are answered with pongs queued in order with other output; a close
//! frame is echoed; a protocol error is answered with its close code. Every way the open
//! state ends is one [`LinkEvent::Closed`], reported once. It does not decide what to send
//! (the application does, through the caller) nor apply queue limits (the caller's
//! slow-consumer policy).
//!
//! States: `Open` (frames flow; a ping after `heartbeat` of silence; `Closed` after
//! `idle` of silence, on a close frame, a protocol error or [`Ws::close`]) → `Closed`
//! (our close frame is queued; input is discarded; the caller lingers until the peer
//! closes TCP).

use crate::message::{ConnError, Message, Payload};
use crate::ws::deflate::{Agreement, Compressor, DeflateConfig, Inflater};
use crate::ws::{close_code, spare, Decoder, DecoderLimits, Incoming, OpCode, Role};

use super::{LinkEvent, OutQueue, Tick, TICK};

/// Liveness settings of the WebSocket machine, shared by every connection of a worker.
#[derive(Debug, Clone, Copy, Default)]
pub struct WsConfig {
    /// Frame and message size limits.
    pub limits: DecoderLimits,
    /// Ping after this long without input (`None`: never).
    pub heartbeat: Option<Tick>,
    /// Close with 1001 after this long without input, pongs included (`None`: never).
    pub idle: Option<Tick>,
}

/// One open WebSocket connection.
#[derive(Debug)]
pub struct Ws {
    decoder: Decoder,
    last_rx: Tick,
    closed: bool,
    /// permessage-deflate's state, when negotiated: one box, so a connection without it
    /// pays a pointer.
    deflate: Option<Box<WsDeflate>>,
}

/// Both sides of a connection's permessage-deflate.
#[derive(Debug)]
struct WsDeflate {
    compressor: Compressor,
    inflater: Inflater,
}

impl Ws {
    /// A connection opened at `now` (its 101 already queued by the caller).
    pub fn new(limits: DecoderLimits, now: Tick) -> Self {
        Ws {
            decoder: Decoder::new(Role::Server, limits),
            last_rx: now,
            closed: false,
            deflate: None,
        }
    }

    /// A connection opened at `now` with permessage-deflate as agreed at the handshake.
    pub fn with_deflate(
        limits: DecoderLimits,
        now: Tick,
        agreement: &Agreement,
        cfg: &DeflateConfig,
    ) -> Self {
        Ws {
            decoder: Decoder::new(Role::Server, limits),
            last_rx: now,
            closed: false,
            deflate: Some(Box::new(WsDeflate {
                compressor: Compressor::new(agreement, cfg),
                inflater: Inflater::new(agreement),
            })),
        }
    }

    /// Whether a payload's plain WebSocket frame is what this connection sends (no
    /// compression negotiated), so frames encoded once for many can be queued as they
    /// are.
    pub fn sends_plain_frames(&self) -> bool {
        self.deflate.is_none()
    }

    fn compressor(&mut self) -> Option<&mut Compressor> {
        self.deflate.as_mut().map(|d| &mut d.compressor)
    }

    /// Whether the open state has ended.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Takes frames from `input` until one completes a message or ends the connection,
    /// and returns that; `None` when `input` is used up. Call again with the rest.
    #[inline]
    pub fn handle_read(
        &mut self,
        input: &mut &[u8],
        now: Tick,
        out: &mut OutQueue,
    ) -> Option<LinkEvent> {
        if self.closed {
            *input = &[];
            return None;
        }
        if !input.is_empty() {
            self.last_rx = now;
        }
        loop {
            let inflater = self.deflate.as_mut().map(|d| &mut d.inflater);
            let incoming = match self.decoder.decode_with(input, inflater) {
                Ok(Some(incoming)) => incoming,
                Ok(None) => return None,
                Err(e) => {
                    let code = e.close_code();
                    let reason = e.to_string();
                    *input = &[];
                    return Some(self.end(code, reason, Some(ConnError::Protocol(e)), out));
                }
            };
            match incoming {
                Incoming::Text(s) => return Some(LinkEvent::Message(Message::Text(s))),
                Incoming::Binary(b) => return Some(LinkEvent::Message(Message::Binary(b))),
                Incoming::Ping(p) => out.push_frame(OpCode::Pong, p),
                Incoming::Pong(_) => {}
                Incoming::Close(close) => {
                    *input = &[];
                    let (code, reason) = close.unwrap_or((close_code::NO_STATUS, String::new()));
                    // Echo the peer's code (RFC 6455 §5.5.1); an empty close gets an empty one.
                    let payload = if code == close_code::NO_STATUS {
                        Vec::new()
                    } else {
                        code.to_be_bytes().to_vec()
                    };
                    out.push_frame(OpCode::Close, payload);
                    self.closed = true;
                    return Some(LinkEvent::Closed {
                        code,
                        reason,
                        error: None,
                    });
                }
            }
        }
    }

    /// Queues a data message, compressed if that was negotiated and pays.
    pub fn send(&mut self, msg: Message, out: &mut OutQueue) {
        let (op, bytes) = match msg {
            Message::Text(s) => (OpCode::Text, s.into_bytes()),
            Message::Binary(b) => (OpCode::Binary, b),
        };
        if let Some(z) = self.compressor().and_then(|c| c.compress(&bytes)) {
            spare::give(bytes);
            return out.push_compressed(op, z);
        }
        out.push_frame(op, bytes);
    }

    /// Queues a shared payload as this connection's wire wants it: the payload's cached
    /// WebSocket frame, encoded by the first connection that needed it. With
    /// permessage-deflate and no context takeover, its compressed frame, compressed by
    /// the first connection that needed it; with context takeover, compressed for this
    /// connection alone.
    pub fn send_payload(&mut self, payload: &Payload, out: &mut OutQueue) {
        let plain = || payload.ws_frame().clone();
        let Some(c) = self.compressor() else {
            return out.push_shared(plain());
        };
        let msg = payload.message();
        if !c.wants(msg.as_bytes().len()) {
            return out.push_shared(plain());
        }
        if c.shares() {
            // Frame against payload length: a header's bytes either way.
            let frame = payload.ws_deflated_frame(c.key());
            let frame = if c.worth_sending(frame.len(), msg.as_bytes().len() + 2) {
                frame
            } else {
                plain()
            };
            return out.push_shared(frame);
        }
        match c.compress(msg.as_bytes()) {
            Some(z) => out.push_compressed(msg.opcode(), z),
            None => out.push_shared(plain()),
        }
    }

    /// Starts the close handshake from our side with `code` (which must be one that may
    /// be sent) and `reason` (cut to 123 bytes). `None` if the open state had already
    /// ended.
    pub fn close(
        &mut self,
        code: u16,
        reason: &str,
        error: Option<ConnError>,
        out: &mut OutQueue,
    ) -> Option<LinkEvent> {
        if self.closed {
            return None;
        }
        Some(self.end(code, reason.to_owned(), error, out))
    }

    fn end(
        &mut self,
        code: u16,
        reason: String,
        error: Option<ConnError>,
        out: &mut OutQueue,
    ) -> LinkEvent {
        out.push_frame(OpCode::Close, close_payload(code, &reason));
        self.closed = true;
        LinkEvent::Closed {
            code,
            reason,
            error,
        }
    }

    /// When [`Ws::handle_timeout`] must next be called, given that it is `now`.
    pub fn poll_timeout(&self, now: Tick, cfg: &WsConfig) -> Option<Tick> {
        if self.closed {
            return None;
        }
        let silent = now.saturating_sub(self.last_rx);
        // After a ping went unanswered, the next one is a whole interval later.
        let ping_at = cfg.heartbeat.map(|hb| {
            if silent < hb {
                self.last_rx.saturating_add(hb)
            } else {
                now.saturating_add(hb)
            }
        });
        let idle_at = cfg.idle.map(|idle| self.last_rx.saturating_add(idle));
        match (ping_at, idle_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Closes the connection if it has been idle too long, else pings it if it has
    /// been silent for a heartbeat interval.
    pub fn handle_timeout(
        &mut self,
        now: Tick,
        cfg: &WsConfig,
        out: &mut OutQueue,
    ) -> Option<LinkEvent> {
        if self.closed {
            return None;
        }
        let silent = now.saturating_sub(self.last_rx);
        if let Some(idle) = cfg.idle {
            if silent >= idle {
                let ms = idle as u64 * TICK.as_millis() as u64;
                let err = Some(ConnError::IdleTimeout(ms));
                return Some(self.end(close_code::GOING_AWAY, "idle timeout".into(), err, out));
            }
        }
        if cfg.heartbeat.is_some_and(|hb| silent >= hb) {
            out.push_frame(OpCode::Ping, Vec::new());
        }
        None
    }
}

/// A close frame payload: the code and as much of `reason` as fits in 123 bytes.
pub(crate) fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut p = Vec::with_capacity(2 + end);
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(&reason.as_bytes()[..end]);
    p
}
