//! The vocabulary every layer shares: a data [`Message`] and why a connection ended
//! ([`ConnError`]).
//!
//! Owns these two types only. The connection machines produce them, handlers consume
//! them, the hub carries messages; none of those is depended on from here.

use crate::ws::ProtocolError;

/// A complete data message: a WebSocket message, or what another transport carries
/// as one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Binary(Vec<u8>),
}

impl Message {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(s) => s.as_bytes(),
            Message::Binary(b) => b,
        }
    }
}

impl From<String> for Message {
    fn from(s: String) -> Self {
        Message::Text(s)
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Message::Text(s.to_owned())
    }
}

impl From<Vec<u8>> for Message {
    fn from(b: Vec<u8>) -> Self {
        Message::Binary(b)
    }
}

/// Why a connection is ending abnormally; given to [`Handler::on_error`] just before
/// [`Handler::on_close`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// The peer broke RFC 6455; the server closed with the error's close code.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The socket failed or the peer went away without a close frame.
    #[error("connection lost: {0}")]
    Io(String),
    /// The outbound queue passed `max_queued_bytes` (policy `close`): closed with 1008.
    #[error("slow consumer: more than {0} bytes queued")]
    SlowConsumer(usize),
    /// Nothing arrived within `idle_timeout_ms`, pings included: closed with 1001.
    #[error("idle for {0} ms")]
    IdleTimeout(u64),
}
