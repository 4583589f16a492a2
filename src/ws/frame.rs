//! Frame vocabulary (RFC 6455 §5.2): opcodes, header encoding, close codes.
//!
//! Owns the bytes of a frame header and the rules on close status codes. It does not
//! read from or write to anything; the decoder and the reactor's write queue use it.

/// A frame opcode that RFC 6455 defines. Reserved opcodes never become an `OpCode`:
/// the decoder rejects them with 1002.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0: the next fragment of a message.
    Continuation,
    /// 0x1: the first frame of a UTF-8 text message.
    Text,
    /// 0x2: the first frame of a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl OpCode {
    /// Parses the low four bits of a frame's first byte; `None` for reserved values.
    pub fn from_u8(v: u8) -> Option<OpCode> {
        Some(match v {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// The wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong: at most 125 bytes, never fragmented.
    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// Largest payload of a control frame (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Largest frame header: 2 bytes, 8 of extended length, 4 of mask.
pub const MAX_HEADER_LEN: usize = 14;

/// An encoded frame header, kept inline so a queued frame needs no allocation for it.
#[derive(Debug, Clone, Copy)]
pub struct FrameHeader {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl FrameHeader {
    /// Encodes the header of a frame with `payload_len` bytes. `mask` is `Some` only for
    /// frames a client sends; the caller masks the payload itself.
    pub fn new(fin: bool, opcode: OpCode, payload_len: usize, mask: Option<[u8; 4]>) -> Self {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        bytes[0] = (if fin { 0x80 } else { 0 }) | opcode.as_u8();
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        let mut len = 2;
        if payload_len < 126 {
            bytes[1] = mask_bit | payload_len as u8;
        } else if payload_len <= u16::MAX as usize {
            bytes[1] = mask_bit | 126;
            bytes[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
            len = 4;
        } else {
            bytes[1] = mask_bit | 127;
            bytes[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            len = 10;
        }
        if let Some(key) = mask {
            bytes[len..len + 4].copy_from_slice(&key);
            len += 4;
        }
        FrameHeader {
            bytes,
            len: len as u8,
        }
    }

    /// The same header with RSV1 set: the first frame of a message compressed with
    /// permessage-deflate (RFC 7692 §6).
    pub fn compressed(mut self) -> Self {
        self.bytes[0] |= 0x40;
        self
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// Encodes a whole unmasked (server-to-client) frame into one buffer.
pub fn encode_frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let header = FrameHeader::new(fin, opcode, payload.len(), None);
    let mut out = Vec::with_capacity(header.as_bytes().len() + payload.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// Close status codes the server itself sends.
pub mod close_code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message or close reason was not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Reported when a close frame carried no status code; never sent on the wire.
    pub const NO_STATUS: u16 = 1005;
    /// Reported when the connection went away without a close frame; never sent.
    pub const ABNORMAL: u16 = 1006;
    /// The message violates the server's policy.
    pub const POLICY: u16 = 1008;
    /// A frame or message exceeds the configured size limit.
    pub const TOO_BIG: u16 = 1009;
    /// The server hit an unexpected condition.
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Whether a peer may send `code` in a close frame (RFC 6455 §7.4, IANA registry).
///
/// 1004 is reserved, 1005, 1006 and 1015 must never appear on the wire, 1016–2999 are
/// unassigned or reserved for extensions; 3000–4999 belong to libraries and applications.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_lengths() {
        assert_eq!(
            FrameHeader::new(true, OpCode::Text, 125, None).as_bytes(),
            &[0x81, 125]
        );
        assert_eq!(
            FrameHeader::new(true, OpCode::Binary, 126, None).as_bytes(),
            &[0x82, 126, 0, 126]
        );
        assert_eq!(
            FrameHeader::new(false, OpCode::Binary, 65536, None).as_bytes(),
            &[0x02, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
        assert_eq!(
            FrameHeader::new(true, OpCode::Ping, 0, Some([1, 2, 3, 4])).as_bytes(),
            &[0x89, 0x80, 1, 2, 3, 4]
        );
    }

    #[test]
    fn close_codes() {
        for ok in [1000, 1001, 1002, 1003, 1007, 1011, 3000, 3999, 4000, 4999] {
            assert!(is_valid_close_code(ok), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_close_code(bad), "{bad}");
        }
    }
}
