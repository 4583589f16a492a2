//! The vocabulary every layer shares: a data [`Message`], a [`Payload`] (a message on
//! its way to many connections, with its wire encodings cached), and why a connection
//! ended ([`ConnError`]).
//!
//! Owns these types only. The connection machines produce messages and encode payloads
//! for their wire, handlers consume messages, the hub carries payloads; none of those is
//! depended on from here (the WebSocket encoding uses the `ws` codec, below everything).

use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::rawframe::{RawError, RawFraming};
use crate::ws::deflate::StreamKey;
use crate::ws::{FrameHeader, OpCode, ProtocolError};

/// A message on its way to one or many connections: what the hub carries. The message
/// is shared, not copied, between recipients, and each wire encoding of it (the
/// WebSocket frame, with permessage-deflate or without, and a raw TCP framing) is made once,
/// by the first connection that needs it, and shared by every other connection on the
/// same encoding. Cheap to clone.
///
/// Build one with `Payload::from(message)`; every `Hub` send takes `impl Into<Payload>`,
/// so a payload sent several ways (to a group, then to a list) is encoded once for all.
#[derive(Clone)]
pub struct Payload(Arc<PayloadInner>);

struct PayloadInner {
    msg: Message,
    /// The unmasked WebSocket frame: header and payload in one shared buffer.
    ws_frame: OnceLock<Arc<[u8]>>,
    /// The permessage-deflate frame (no context takeover) for one compressor key.
    ws_deflated: OnceLock<DeflatedFrame>,
    /// The message in each raw TCP framing (by [`RawFraming::index`]).
    raw: [OnceLock<Arc<[u8]>>; 2],
}

/// A compressor key (level, window, memory level) and the frame it made.
type DeflatedFrame = (StreamKey, Arc<[u8]>);

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payload")
            .field("text", &matches!(self.0.msg, Message::Text(_)))
            .field("len", &self.0.msg.as_bytes().len())
            .finish()
    }
}

impl Payload {
    /// The message this payload carries.
    pub fn message(&self) -> &Message {
        &self.0.msg
    }

    /// The WebSocket frame for this payload, encoded on first use and shared after.
    pub fn ws_frame(&self) -> &Arc<[u8]> {
        self.0.ws_frame.get_or_init(|| ws_frame_of(&self.0.msg))
    }

    /// The permessage-deflate frame for connections that compress each message on its
    /// own with compressor `key` (level, window, memory level): compressed by the first
    /// of them and shared by the rest. A payload meets one key in practice (one server,
    /// one setting); another key is compressed for its caller.
    pub(crate) fn ws_deflated_frame(&self, key: StreamKey) -> Arc<[u8]> {
        let (cached_key, frame) = self
            .0
            .ws_deflated
            .get_or_init(|| (key, deflated_frame_of(&self.0.msg, key)));
        if *cached_key == key {
            frame.clone()
        } else {
            deflated_frame_of(&self.0.msg, key)
        }
    }
}

impl Payload {
    /// The message framed for a raw TCP listener on `framing`, encoded on first use and
    /// shared after.
    pub(crate) fn raw_frame(&self, framing: RawFraming) -> &Arc<[u8]> {
        self.0.raw[framing.index()]
            .get_or_init(|| Arc::from(crate::rawframe::encode(framing, self.0.msg.as_bytes())))
    }
}

/// `msg` compressed with the shared compressor for `key`, as a whole frame with RSV1.
fn deflated_frame_of(msg: &Message, key: StreamKey) -> Arc<[u8]> {
    let z = crate::ws::deflate::deflate_shared(key, msg.as_bytes());
    let header = FrameHeader::new(true, msg.opcode(), z.len(), None).compressed();
    let mut frame = Vec::with_capacity(header.as_bytes().len() + z.len());
    frame.extend_from_slice(header.as_bytes());
    frame.extend_from_slice(&z);
    Arc::from(frame)
}

/// `msg` as one unmasked WebSocket frame in a shared buffer: the encoding a [`Payload`]
/// caches.
pub(crate) fn ws_frame_of(msg: &Message) -> Arc<[u8]> {
    let (op, bytes) = (msg.opcode(), msg.as_bytes());
    // Built in a Vec and copied: two allocations, but two memcpys; collecting the
    // chained slices straight into the `Arc` went a byte at a time (callgrind: ~6
    // instructions per byte).
    let header = FrameHeader::new(true, op, bytes.len(), None);
    let mut frame = Vec::with_capacity(header.as_bytes().len() + bytes.len());
    frame.extend_from_slice(header.as_bytes());
    frame.extend_from_slice(bytes);
    Arc::from(frame)
}

impl From<Message> for Payload {
    fn from(msg: Message) -> Self {
        Payload(Arc::new(PayloadInner {
            msg,
            ws_frame: OnceLock::new(),
            ws_deflated: OnceLock::new(),
            raw: [OnceLock::new(), OnceLock::new()],
        }))
    }
}

impl From<&Payload> for Payload {
    fn from(p: &Payload) -> Self {
        p.clone()
    }
}

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

    /// The WebSocket opcode of its first frame.
    pub(crate) fn opcode(&self) -> OpCode {
        match self {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
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
    /// A raw TCP connection's input could not be framed (a line over the limit, say).
    #[error("framing error: {0}")]
    Framing(#[from] RawError),
}
