//! The raw TCP connection machine: an open connection whose messages are framed by a
//! line or a length prefix (`rawframe`) instead of WebSocket frames — the second
//! protocol on the reactor, for devices and services that cannot speak WebSocket.
//!
//! Owns the decoder, the time of the last byte received, and whether the open state has
//! ended. It reports the same [`LinkEvent`]s as the WebSocket machine, so the worker and
//! handlers treat both alike. There is no ping and no close frame on this wire: liveness
//! is the idle timeout alone (clients send their protocol's own ping), and a close is
//! the caller queuing a last message (the handler's [`crate::Handler::close_notice`])
//! and ending TCP. It does not decide what to send nor apply queue limits.

use crate::message::{ConnError, Message, Payload};
use crate::rawframe::{encode, RawDecoder, RawError, RawFraming};
use crate::ws::close_code;

use super::{LinkEvent, OutQueue, Tick, WsConfig, TICK};

/// One open raw TCP connection.
#[derive(Debug)]
pub struct Raw {
    decoder: RawDecoder,
    last_rx: Tick,
    closed: bool,
}

impl Raw {
    /// A connection on `framing`, opened at `now`, refusing messages over `max` bytes.
    pub fn new(framing: RawFraming, max: usize, now: Tick) -> Self {
        Raw {
            decoder: RawDecoder::new(framing, max),
            last_rx: now,
            closed: false,
        }
    }

    /// Whether the open state has ended.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Takes bytes from `input` until one message is whole or the input cannot be
    /// framed, and reports that; `None` when `input` is used up.
    pub fn handle_read(&mut self, input: &mut &[u8], now: Tick) -> Option<LinkEvent> {
        if self.closed {
            *input = &[];
            return None;
        }
        if !input.is_empty() {
            self.last_rx = now;
        }
        let bytes = match self.decoder.decode(input) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return None,
            Err(e) => return Some(self.refuse(input, e)),
        };
        match String::from_utf8(bytes) {
            Ok(text) => Some(LinkEvent::Message(Message::Text(text))),
            Err(e) if self.decoder.framing() == RawFraming::LengthPrefix => {
                Some(LinkEvent::Message(Message::Binary(e.into_bytes())))
            }
            Err(_) => Some(self.refuse(input, RawError::NotUtf8)),
        }
    }

    fn refuse(&mut self, input: &mut &[u8], e: RawError) -> LinkEvent {
        *input = &[];
        let code = match e {
            RawError::TooLong { .. } => close_code::TOO_BIG,
            RawError::NotUtf8 => close_code::INVALID_PAYLOAD,
        };
        let reason = e.to_string();
        self.end(code, reason, Some(ConnError::Framing(e)))
    }

    /// Queues a message in this connection's framing.
    pub fn send(&mut self, msg: &Message, out: &mut OutQueue) {
        out.push_bytes(encode(self.decoder.framing(), msg.as_bytes()));
    }

    /// Queues a shared payload: its encoding in this framing, made by the first
    /// connection that needed it.
    pub fn send_payload(&mut self, payload: &Payload, out: &mut OutQueue) {
        out.push_shared(payload.raw_frame(self.decoder.framing()).clone());
    }

    /// Ends the open state from our side; `None` if it had already ended. Nothing is
    /// queued: a raw wire has no close frame.
    pub fn close(
        &mut self,
        code: u16,
        reason: &str,
        error: Option<ConnError>,
    ) -> Option<LinkEvent> {
        if self.closed {
            return None;
        }
        Some(self.end(code, reason.to_owned(), error))
    }

    fn end(&mut self, code: u16, reason: String, error: Option<ConnError>) -> LinkEvent {
        self.closed = true;
        LinkEvent::Closed {
            code,
            reason,
            error,
        }
    }

    /// When [`Raw::handle_timeout`] must next be called.
    pub fn poll_timeout(&self, cfg: &WsConfig) -> Option<Tick> {
        if self.closed {
            return None;
        }
        cfg.idle.map(|idle| self.last_rx.saturating_add(idle))
    }

    /// Ends a connection that has been silent for the idle timeout.
    pub fn handle_timeout(&mut self, now: Tick, cfg: &WsConfig) -> Option<LinkEvent> {
        let idle = cfg.idle?;
        if self.closed || now.saturating_sub(self.last_rx) < idle {
            return None;
        }
        let ms = idle as u64 * TICK.as_millis() as u64;
        let err = Some(ConnError::IdleTimeout(ms));
        Some(self.end(close_code::GOING_AWAY, "idle timeout".into(), err))
    }
}
