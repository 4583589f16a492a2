//! Deflating and inflating messages (RFC 7692 §7.2), with zlib-rs.
//!
//! Owns the zlib streams: a connection's own (context takeover), the per-thread shared
//! compressors and the per-thread pool of decompressors (no context takeover). A
//! message is compressed with a sync flush and its trailing `00 00 ff ff` removed;
//! inflating appends the trailer back once the message's last frame is in.

use std::cell::RefCell;

use zlib_rs::{DeflateConfig as ZConfig, DeflateFlush, InflateFlush, Status};

use super::{Agreement, DeflateConfig};

/// The four bytes a sync flush ends with, which the wire leaves out.
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Decompressors kept per thread for connections without client context takeover.
const POOL_KEEP: usize = 4;

/// Most output one inflate call may produce: bounds the zero-filled room reserved ahead.
const INFLATE_STEP: usize = 64 * 1024;

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// Not a valid deflate stream.
    #[error("invalid compressed data")]
    BadData,
    /// Inflating passed the message size limit.
    #[error("inflated message exceeds the limit of {max} bytes")]
    TooBig {
        /// The limit.
        max: usize,
    },
}

/// What a compressor is made with: connections whose keys are equal and that compress
/// each message on its own produce the same bytes for the same message, so one
/// compressed copy serves them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamKey {
    /// zlib level, 0–9.
    pub level: u8,
    /// Window (log2), 9–15.
    pub window: u8,
    /// zlib memory level, 1–9.
    pub mem_level: u8,
}

thread_local! {
    /// Boxed: a stream is moved into a connection for the length of a message.
    #[allow(clippy::vec_box)]
    static INFLATERS: RefCell<Vec<Box<zlib_rs::Inflate>>> = const { RefCell::new(Vec::new()) };
    /// Shared compressors, by key.
    static DEFLATERS: RefCell<Vec<(StreamKey, zlib_rs::Deflate)>> =
        const { RefCell::new(Vec::new()) };
}

/// A connection's decompressing side.
pub struct Inflater {
    /// The stream: kept for the connection's life with context takeover, else borrowed
    /// from the thread's pool for one message.
    stream: Option<Box<zlib_rs::Inflate>>,
    takeover: bool,
    window: u8,
    /// The current message's stream ended (a final block) before its last frame.
    ended: bool,
}

impl Inflater {
    /// The decompressing side of `agreement`.
    pub fn new(agreement: &Agreement) -> Self {
        Inflater {
            stream: None,
            takeover: !agreement.client_no_context_takeover,
            // zlib deflates a window of 8 as 9 (the "256-byte window bug"), so a peer
            // using zlib at 8 may reach back 512 bytes.
            window: agreement.client_window.max(9),
            ended: false,
        }
    }

    /// Inflates `input` (part of a compressed message) onto the end of `out`, which
    /// must not grow past `max` bytes.
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), InflateError> {
        if self.ended {
            // After a final block only padding may follow; its bytes are not data.
            return Ok(());
        }
        let mut stream = self.stream.take().unwrap_or_else(|| self.fresh_stream());
        let result = inflate_into(&mut stream, input, out, max);
        self.stream = Some(stream);
        match result {
            Ok(ended) => {
                self.ended = ended;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The message's last frame is in: inflates the trailer, then gives a borrowed
    /// stream back to the pool.
    pub fn finish(&mut self, out: &mut Vec<u8>, max: usize) -> Result<(), InflateError> {
        let result = self.feed(&TRAILER, out, max);
        let ended = std::mem::take(&mut self.ended);
        if ended || !self.takeover {
            if let Some(mut stream) = self.stream.take() {
                if self.takeover {
                    // The peer ended its stream; the next message starts a new one.
                    stream.reset(false);
                    self.stream = Some(stream);
                } else if result.is_ok() {
                    give_inflater(stream);
                }
            }
        }
        result
    }

    fn fresh_stream(&self) -> Box<zlib_rs::Inflate> {
        if self.takeover {
            Box::new(zlib_rs::Inflate::new(false, self.window))
        } else {
            take_inflater()
        }
    }
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("takeover", &self.takeover)
            .field("window", &self.window)
            .field("holds_stream", &self.stream.is_some())
            .finish()
    }
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressor")
            .field("key", &self.key)
            .field("takeover", &self.takeover)
            .field("holds_stream", &self.own.is_some())
            .finish()
    }
}

fn take_inflater() -> Box<zlib_rs::Inflate> {
    INFLATERS
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| Box::new(zlib_rs::Inflate::new(false, 15)))
}

fn give_inflater(mut stream: Box<zlib_rs::Inflate>) {
    // `reset` goes back to a raw stream with a window of 15, as pooled ones are made.
    stream.reset(false);
    INFLATERS.with_borrow_mut(|pool| {
        if pool.len() < POOL_KEEP {
            pool.push(stream);
        }
    });
}

/// Inflates all of `input` onto `out`; whether the deflate stream ended.
fn inflate_into(
    stream: &mut zlib_rs::Inflate,
    mut input: &[u8],
    out: &mut Vec<u8>,
    max: usize,
) -> Result<bool, InflateError> {
    loop {
        let len = out.len();
        // One byte past the limit tells "exactly full" from "more to come".
        let room = (max + 1).saturating_sub(len).min(INFLATE_STEP);
        let room = room.min(input.len().saturating_mul(8).max(256));
        out.resize(len + room, 0);
        let (in_before, out_before) = (stream.total_in(), stream.total_out());
        let status = stream.decompress(input, &mut out[len..], InflateFlush::SyncFlush);
        let used = (stream.total_in() - in_before) as usize;
        let made = (stream.total_out() - out_before) as usize;
        out.truncate(len + made);
        input = &input[used..];
        if out.len() > max {
            return Err(InflateError::TooBig { max });
        }
        match status {
            Ok(Status::StreamEnd) => return Ok(true),
            Ok(_) if input.is_empty() && made < room => return Ok(false),
            Ok(Status::BufError) if used == 0 && made == 0 => {
                // No progress with room to spare: zlib wants more input.
                return Ok(false);
            }
            Ok(_) => {}
            Err(_) => return Err(InflateError::BadData),
        }
    }
}

/// A connection's compressing side.
pub struct Compressor {
    /// Level, window and memory level of the stream used.
    key: StreamKey,
    min_size: u32,
    /// Send a message as it is when deflating it does not make it shorter.
    skip_incompressible: bool,
    /// With context takeover: the connection's own stream, made at the first message
    /// compressed. Without: `None`, and the thread's shared stream is used.
    own: Option<Box<zlib_rs::Deflate>>,
    takeover: bool,
}

impl Compressor {
    /// The compressing side of `agreement` under `cfg`.
    pub fn new(agreement: &Agreement, cfg: &DeflateConfig) -> Self {
        Compressor {
            key: stream_key(cfg, agreement.server_window),
            min_size: u32::try_from(cfg.compression_min_size).unwrap_or(u32::MAX),
            skip_incompressible: cfg.skip_incompressible,
            own: None,
            takeover: !agreement.server_no_context_takeover,
        }
    }

    /// Whether messages are compressed on their own (no context takeover), so one
    /// compressed copy of a broadcast serves every connection with the same key.
    pub fn shares(&self) -> bool {
        !self.takeover
    }

    /// The level, window and memory level this side compresses with: connections with
    /// the same key and no context takeover can share one compressed copy.
    pub fn key(&self) -> StreamKey {
        self.key
    }

    /// Whether a message compressed to `compressed` bytes from `plain` should go out
    /// compressed (only for messages compressed on their own).
    pub fn worth_sending(&self, compressed: usize, plain: usize) -> bool {
        !self.skip_incompressible || compressed < plain
    }

    /// Whether a message of `len` bytes is long enough to be compressed.
    pub fn wants(&self, len: usize) -> bool {
        len as u64 >= u64::from(self.min_size)
    }

    /// `data` compressed for this connection (RSV1 payload), or `None` to send it as is
    /// (too short, or not smaller when compressed).
    pub fn compress(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        if !self.wants(data.len()) {
            return None;
        }

        if !self.takeover {
            let z = deflate_shared(self.key, data);
            return self.worth_sending(z.len(), data.len()).then_some(z);
        }
        let key = self.key;
        let stream = self.own.get_or_insert_with(|| new_stream(key));
        // With context takeover the bytes are in both histories now: they must go out
        // compressed even when that is not shorter.
        Some(deflate_with(stream, data))
    }
}

/// `data` compressed with the thread's shared stream for `key`, reset first (no context
/// takeover).
pub fn deflate_shared(key: StreamKey, data: &[u8]) -> Vec<u8> {
    DEFLATERS.with_borrow_mut(|streams| {
        let i = match streams.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                streams.push((key, *new_stream(key)));
                streams.len() - 1
            }
        };
        let stream = &mut streams[i].1;
        stream.reset();
        deflate_with(stream, data)
    })
}

/// The stream key for `cfg` and an agreed server window. A window of 8 is below what
/// zlib can deflate with; level 0 (stored blocks, no back-references) fits any window.
pub(crate) fn stream_key(cfg: &DeflateConfig, window: u8) -> StreamKey {
    let (level, window) = if window < 9 {
        (0, 9)
    } else {
        (cfg.level, window)
    };
    StreamKey {
        level,
        window,
        mem_level: cfg.mem_level,
    }
}

fn new_stream(key: StreamKey) -> Box<zlib_rs::Deflate> {
    Box::new(zlib_rs::Deflate::new_with_config(ZConfig {
        level: i32::from(key.level),
        window_bits: -i32::from(key.window),
        mem_level: i32::from(key.mem_level),
        ..ZConfig::default()
    }))
}

/// Compresses all of `data` with a sync flush and drops the trailer.
fn deflate_with(stream: &mut zlib_rs::Deflate, mut data: &[u8]) -> Vec<u8> {
    // Room for the whole output up front (a sync flush adds a few bytes to the bound);
    // more only if that was not enough.
    let mut out = Vec::with_capacity(zlib_rs::compress_bound(data.len()) + 64);
    loop {
        let len = out.len();
        if out.capacity() - len < 64 {
            out.reserve(out.capacity().max(64));
        }
        let room = out.capacity() - len;
        out.resize(len + room, 0);

        let (in_before, out_before) = (stream.total_in(), stream.total_out());
        let status = stream.compress(data, &mut out[len..], DeflateFlush::SyncFlush);
        let used = (stream.total_in() - in_before) as usize;
        let made = (stream.total_out() - out_before) as usize;
        out.truncate(len + made);
        data = &data[used..];
        // Done when the input is in and the flush did not fill the room given.
        if data.is_empty() && made < room || status.is_err() {
            break;
        }
    }
    if out.ends_with(&TRAILER) {
        out.truncate(out.len() - TRAILER.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::deflate::negotiate;

    fn agreement(offer: &str, cfg: &DeflateConfig) -> Agreement {
        negotiate([offer], cfg).unwrap()
    }

    fn cfg() -> DeflateConfig {
        DeflateConfig {
            enabled: true,
            compression_min_size: 0,
            ..DeflateConfig::default()
        }
    }

    fn inflate_all(
        inf: &mut Inflater,
        parts: &[&[u8]],
        max: usize,
    ) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        for p in parts {
            inf.feed(p, &mut out, max)?;
        }
        inf.finish(&mut out, max)?;
        Ok(out)
    }

    #[test]
    fn round_trips_with_and_without_context_takeover() {
        for (offer, c) in [
            ("permessage-deflate", cfg()),
            (
                "permessage-deflate",
                DeflateConfig {
                    server_context_takeover: true,
                    client_context_takeover: true,
                    ..cfg()
                },
            ),
            ("permessage-deflate; server_max_window_bits=9", cfg()),
            (
                "permessage-deflate; server_max_window_bits=10",
                DeflateConfig {
                    server_context_takeover: true,
                    ..cfg()
                },
            ),
        ] {
            let a = agreement(offer, &c);
            let mut comp = Compressor::new(&a, &c);
            // The client's side of the same agreement, seen from the client.
            let mut inf = Inflater::new(&Agreement {
                client_no_context_takeover: a.server_no_context_takeover,
                client_window: a.server_window,
                ..a.clone()
            });
            for i in 0..5 {
                let msg = format!(
                    "{{\"type\":\"PRIVATE\",\"body\":{{\"text\":\"hello {i} hello {i} hello\"}}}}"
                )
                .repeat(20);
                let z = comp.compress(msg.as_bytes()).expect("compressible");
                assert!(z.len() < msg.len());
                // Split anywhere: the inflater takes frames as they come.
                let (a1, a2) = z.split_at(z.len() / 3);
                let back = inflate_all(&mut inf, &[a1, a2], 1 << 20).unwrap();
                assert_eq!(back, msg.as_bytes(), "{offer}");
            }
        }
    }

    #[test]
    fn a_window_of_8_is_sent_uncompressed() {
        // zlib cannot deflate with 256 bytes of window; stored blocks fit but are never
        // shorter, so the message goes out as it is, which the agreement allows.
        let a = agreement("permessage-deflate; server_max_window_bits=8", &cfg());
        let mut comp = Compressor::new(&a, &cfg());
        assert_eq!((comp.key().level, comp.key().window), (0, 9));
        assert_eq!(comp.compress(&b"abcabcabc".repeat(100)), None);
    }

    #[test]
    fn context_takeover_makes_repeats_smaller() {
        let c = DeflateConfig {
            server_context_takeover: true,
            ..cfg()
        };
        let a = agreement("permessage-deflate", &c);
        let mut comp = Compressor::new(&a, &c);
        let msg = b"{\"type\":\"PRIVATE_MESSAGE\",\"body\":{\"toUser\":\"bob\",\"content\":\"hi there\"}}";
        let first = comp.compress(msg).unwrap().len();
        let second = comp.compress(msg).unwrap().len();
        assert!(second < first / 2, "{first} then {second}");
    }

    #[test]
    fn short_or_incompressible_messages_go_as_they_are() {
        let c = DeflateConfig {
            compression_min_size: 100,
            ..cfg()
        };
        let a = agreement("permessage-deflate", &c);
        let mut comp = Compressor::new(&a, &c);
        assert_eq!(comp.compress(&[b'a'; 99]), None);
        assert!(comp.compress(&[b'a'; 100]).is_some());
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert_eq!(comp.compress(&noise), None);
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let c = cfg();
        let a = agreement("permessage-deflate", &c);
        let zeros = vec![0u8; 10 << 20];
        let best = StreamKey {
            level: 9,
            window: 15,
            mem_level: 9,
        };
        let z = deflate_shared(best, &zeros);
        assert!(z.len() < 16 * 1024, "{}", z.len());
        let mut inf = Inflater::new(&a);
        let mut out = Vec::new();
        let err = inf.feed(&z, &mut out, 1 << 20).unwrap_err();
        assert_eq!(err, InflateError::TooBig { max: 1 << 20 });
        // It stopped one byte past the limit, not after inflating 10 MiB (the buffer
        // grows by doubling, so it holds at most twice the limit).
        assert_eq!(out.len(), (1 << 20) + 1);
        assert!(out.capacity() <= 2 << 20, "{}", out.capacity());
    }

    #[test]
    fn garbage_is_bad_data() {
        let a = agreement("permessage-deflate", &cfg());
        let mut inf = Inflater::new(&a);
        let err = inflate_all(&mut inf, &[&[0xff, 0xff, 0xff, 0xff, 0x00]], 1 << 20).unwrap_err();
        assert_eq!(err, InflateError::BadData);
    }

    #[test]
    fn a_message_ending_its_stream_is_accepted() {
        // Some clients end each message with a final block (BFINAL=1).
        let data = b"final block message final block message".repeat(4);
        let mut z = zlib_rs::Deflate::new(1, false, 15);
        let mut out = vec![0u8; 512];
        z.compress(&data, &mut out, DeflateFlush::Finish).unwrap();
        out.truncate(z.total_out() as usize);
        let a = agreement("permessage-deflate", &cfg());
        let mut inf = Inflater::new(&a);
        assert_eq!(inflate_all(&mut inf, &[&out], 1 << 20).unwrap(), data);
        // And the next message still inflates.
        let z2 = deflate_shared(stream_key(&cfg(), 15), &data);
        assert_eq!(inflate_all(&mut inf, &[&z2], 1 << 20).unwrap(), data);
    }
}
