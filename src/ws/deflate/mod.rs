//! permessage-deflate (RFC 7692): what was agreed at the handshake, and the compressor
//! and decompressor a connection uses for it. Sans-IO like the rest of `ws`.
//!
//! Owns the extension's settings ([`DeflateConfig`]), the negotiation of an offer into
//! an agreement ([`negotiate`]), inflating a message as its frames arrive with the size
//! limit checked as it grows ([`Inflater`]), and deflating a message for one connection
//! or, once, for every connection that agreed to the same terms ([`Compressor`],
//! [`deflate_shared`]). It does not touch frames' headers beyond the RSV1 bit's meaning
//! (the decoder and the output queue do) and holds no socket.
//!
//! Memory is the reason for most choices here. A zlib compressor with context takeover
//! keeps its history between messages: ≈ 256 KiB at window 15 / memory level 8, against
//! the ~240 B an idle connection costs. So by default the server asks for no context
//! takeover in both directions, and then neither side keeps anything between messages:
//! one compressor per worker thread serves every connection with the same window
//! (reset for each message, so a broadcast is compressed once and the bytes shared),
//! and a decompressor is borrowed from a per-thread pool for the length of one message.
//! Context takeover is there for who wants the better ratio and pays its memory.

mod codec;
mod negotiate;

pub use codec::{deflate_shared, Compressor, InflateError, Inflater, StreamKey};
pub use negotiate::{negotiate, Agreement};

use serde::{Deserialize, Serialize};

/// `[deflate]`: permessage-deflate settings. Sizes in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeflateConfig {
    /// Accept permessage-deflate when a client offers it. Default off (see the README's
    /// "Compression" section for the memory and CPU figures behind that).
    pub enabled: bool,
    /// Keep the server's compression history between messages (better ratio on small
    /// similar messages, ≈ 2^(window+2) + 2^(mem_level+9) bytes per connection that
    /// received a compressed message). Off: the server answers
    /// `server_no_context_takeover` and compresses a broadcast once for everyone.
    pub server_context_takeover: bool,
    /// Let clients keep their compression history between messages: the server then
    /// keeps a decompressor (2^window bytes plus ~7 KiB) per connection. Off: the server
    /// answers `client_no_context_takeover` and borrows a decompressor per message.
    pub client_context_takeover: bool,
    /// Largest window (log2) the server compresses with, 9–15. Default 15.
    pub server_max_window_bits: u8,
    /// Largest window (log2) the server lets a client compress with, 9–15, when the
    /// client offers `client_max_window_bits`. Default 15.
    pub client_max_window_bits: u8,
    /// zlib memory level of the server's compressors, 1–9. Default 8.
    pub mem_level: u8,
    /// Compression level, 0 (store) to 9 (smallest). Default 1: chat messages are
    /// small, and level 1 gives most of the ratio for a fraction of the CPU.
    pub level: u8,
    /// Messages shorter than this are sent uncompressed. Default 128.
    pub compression_min_size: usize,
    /// Without context takeover, send a message uncompressed when deflating does not
    /// make it shorter (RFC 7692 lets each message choose). Default true.
    pub skip_incompressible: bool,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            enabled: false,
            server_context_takeover: false,
            client_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
            mem_level: 8,
            level: 1,
            compression_min_size: 128,
            skip_incompressible: true,
        }
    }
}

impl DeflateConfig {
    /// Why the settings cannot be used, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if !(9..=15).contains(&self.server_max_window_bits) {
            return Err("deflate.server_max_window_bits must be 9 to 15".into());
        }
        if !(9..=15).contains(&self.client_max_window_bits) {
            return Err("deflate.client_max_window_bits must be 9 to 15".into());
        }
        if !(1..=9).contains(&self.mem_level) {
            return Err("deflate.mem_level must be 1 to 9".into());
        }
        if self.level > 9 {
            return Err("deflate.level must be 0 to 9".into());
        }
        Ok(())
    }
}
