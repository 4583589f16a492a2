//! The WebSocket protocol core (RFC 6455), sans-IO.
//!
//! Owns framing: the incremental [`Decoder`], header encoding, masking, UTF-8 validation
//! and close-code rules. It holds no sockets, no clock and no threads; the reactor feeds
//! it bytes and writes what it encodes. Nothing here may depend on `reactor` or `server`.

mod decoder;
pub mod deflate;
mod error;
pub mod frame;
pub mod mask;
pub(crate) mod spare;
pub mod utf8;

#[cfg(test)]
mod tests;

pub use decoder::{parse_close, Decoder, DecoderLimits, Incoming, Role};
pub use error::ProtocolError;
pub use frame::{close_code, encode_frame, is_valid_close_code, FrameHeader, OpCode};

/// Encodes a masked (client-to-server) frame: what a client sends. Used by the bench
/// client and by tests that need to craft frames a library client would refuse to send.
pub fn encode_client_frame(fin: bool, opcode: OpCode, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let header = FrameHeader::new(fin, opcode, payload.len(), Some(key));
    let mut out = Vec::with_capacity(header.as_bytes().len() + payload.len());
    out.extend_from_slice(header.as_bytes());
    let start = out.len();
    out.extend_from_slice(payload);
    mask::apply_mask(&mut out[start..], key, 0);
    out
}
