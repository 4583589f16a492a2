//! Protocol errors of the frame decoder, one variant per RFC 6455 rule, and the close
//! code each maps to. The mapping lives here and nowhere else.

use super::frame::close_code;

/// A rule of RFC 6455 (or a configured limit) that the peer's bytes broke. The connection
/// must be failed with [`ProtocolError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// RSV1–3 set while no extension that defines them was negotiated (§5.2).
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// Opcodes 0x3–0x7 and 0xB–0xF are reserved (§5.2).
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// Every client-to-server frame must be masked (§5.1).
    #[error("client frame is not masked")]
    UnmaskedFrame,
    /// A server must not mask its frames (§5.1); seen only by a client-role decoder.
    #[error("server frame is masked")]
    MaskedFrame,
    /// Control frames must not be fragmented (§5.5).
    #[error("control frame with FIN clear")]
    FragmentedControl,
    /// Control frames carry at most 125 bytes (§5.5).
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlTooLong(u8),
    /// A continuation frame arrived with no fragmented message open (§5.4).
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new text or binary frame arrived while a fragmented message was open (§5.4).
    #[error("data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// The 64-bit length has its most significant bit set (§5.2).
    #[error("payload length has its most significant bit set")]
    InvalidLength,
    /// A frame is larger than `max_frame_size`.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooBig {
        /// Declared payload length.
        len: u64,
        /// Configured limit.
        max: usize,
    },
    /// A message (all its fragments) is larger than `max_message_size`.
    #[error("message exceeds the limit of {max} bytes")]
    MessageTooBig {
        /// Configured limit.
        max: usize,
    },
    /// A text message is not valid UTF-8 (§8.1).
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// A close payload of exactly one byte cannot hold a status code (§5.5.1).
    #[error("close frame payload of one byte")]
    CloseTooShort,
    /// A close code that must not appear on the wire (§7.4).
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// The close reason is not valid UTF-8 (§5.5.1).
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// RSV1 on a continuation or control frame: permessage-deflate marks only a
    /// message's first frame (RFC 7692 §6.1).
    #[error("RSV1 set on a continuation or control frame")]
    CompressedBitMisplaced,
    /// A compressed message is not a valid deflate stream (RFC 7692 §6.2).
    #[error("compressed message is not valid deflate data")]
    BadCompressedData,
}

impl ProtocolError {
    /// The close code the server sends when failing the connection for this error.
    pub fn close_code(&self) -> u16 {
        match self {
            ProtocolError::InvalidUtf8
            | ProtocolError::InvalidCloseReason
            | ProtocolError::BadCompressedData => close_code::INVALID_PAYLOAD,
            ProtocolError::FrameTooBig { .. } | ProtocolError::MessageTooBig { .. } => {
                close_code::TOO_BIG
            }
            _ => close_code::PROTOCOL_ERROR,
        }
    }
}
