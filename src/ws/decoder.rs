//! The incremental RFC 6455 frame decoder and message assembler (sans-IO).
//!
//! Owns the state between reads: a partial header, the position inside a payload, the
//! fragments of an open message and its UTF-8 validator. It consumes every byte it is
//! given (no re-parsing when more arrives) and hands back one [`Incoming`] at a time. It
//! never writes: the caller decides how to answer pings and closes, so the order of those
//! replies against queued data stays explicit in one place (the reactor).
//!
//! State transitions:
//! - `Header`: collecting the 2–14 header bytes. Next: `Payload`, or a finished frame
//!   when the payload is empty.
//! - `Payload`: unmasking payload bytes into the message or control buffer. Next:
//!   `Header` when the frame's last byte arrived.
//! - `Failed`: a rule was broken; every later call returns the same error.
//!
//! With permessage-deflate negotiated (an [`Inflater`] given to [`Decoder::decode_with`]),
//! a message whose first frame has RSV1 set is inflated as its payload arrives: the inflated size is
//! what `max_message_size` limits, checked as it grows, and the UTF-8 check runs on the
//! inflated text.

use super::deflate::{InflateError, Inflater};
use super::error::ProtocolError;
use super::frame::{is_valid_close_code, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;

/// Which side of the connection the decoder reads for; it decides whether frames must be
/// masked (server reading a client) or must not be (client reading a server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reads frames from clients: they must be masked.
    Server,
    /// Reads frames from a server: they must not be masked.
    Client,
}

/// Limits the decoder enforces.
#[derive(Debug, Clone, Copy)]
pub struct DecoderLimits {
    /// Largest single frame payload, in bytes (larger → 1009).
    pub max_frame_size: usize,
    /// Largest message after reassembly, in bytes (larger → 1009).
    pub max_message_size: usize,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        DecoderLimits {
            max_frame_size: 16 << 20,
            max_message_size: 64 << 20,
        }
    }
}

/// What a peer sent, once complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A whole text message, validated as UTF-8.
    Text(String),
    /// A whole binary message.
    Binary(Vec<u8>),
    /// A ping; the caller owes a pong with the same payload.
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// A close frame: its code and reason, or `None` for an empty payload.
    Close(Option<(u16, String)>),
}

/// The most the decoder reserves up front for a message: a peer that declares a large
/// frame and then sends nothing must not cost that much memory.
const MAX_PREALLOC: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    Payload,
}

/// Incremental decoder; see the module docs for its states.
///
/// Between reads an idle decoder (no partial frame, no open message) holds no state but
/// its role and limits: the working state lives in a box that is created when bytes
/// arrive and released when a read leaves nothing partial, so an idle connection does
/// not pay for it.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    limits: DecoderLimits,
    state: Option<Box<DecoderState>>,
}

impl Decoder {
    /// A decoder for `role` with `limits`.
    pub fn new(role: Role, limits: DecoderLimits) -> Self {
        Decoder {
            role,
            limits,
            state: None,
        }
    }

    /// True when no partial frame or message is held.
    pub fn is_idle(&self) -> bool {
        self.state.as_ref().is_none_or(|s| s.is_idle())
    }

    /// Consumes bytes from the front of `input` until one frame completes something the
    /// caller must see, or `input` is empty (`Ok(None)`). Call again with the rest.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Incoming>, ProtocolError> {
        self.decode_with(input, None)
    }

    /// [`Decoder::decode`] on a connection that agreed to permessage-deflate: compressed
    /// messages (RSV1) are inflated through `inflater`; without one, RSV1 is an error.
    /// The inflater is the caller's so that a connection keeps one allocation for all of
    /// its deflate state.
    pub fn decode_with(
        &mut self,
        input: &mut &[u8],
        inflater: Option<&mut Inflater>,
    ) -> Result<Option<Incoming>, ProtocolError> {
        let (role, limits) = (self.role, self.limits);
        let state = self
            .state
            .get_or_insert_with(|| Box::new(DecoderState::new(role, limits)));
        let result = state.decode(input, inflater);
        // Only when the input is used up: a caller looping over one read's messages
        // keeps the box for all of them.
        if matches!(result, Ok(None)) && state.is_idle() {
            self.state = None;
        }
        result
    }
}

/// The decoder's working state, boxed while bytes are in flight.
#[derive(Debug)]
struct DecoderState {
    role: Role,
    limits: DecoderLimits,
    state: State,
    failed: Option<ProtocolError>,
    header: [u8; MAX_HEADER_LEN],
    header_len: u8,
    // The frame being read.
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    remaining: u64,
    payload_pos: usize,
    // The message being assembled (a data opcode) and its fragments so far.
    message: Option<OpCode>,
    message_buf: Vec<u8>,
    utf8: Utf8Validator,
    control: Vec<u8>,
    /// The open message came with RSV1: its payload is inflated into `message_buf`.
    compressed: bool,
    /// Unmasked compressed bytes on their way to the inflater.
    scratch: Vec<u8>,
}

impl DecoderState {
    fn new(role: Role, limits: DecoderLimits) -> Self {
        DecoderState {
            role,
            limits,
            state: State::Header,
            failed: None,
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            fin: false,
            opcode: OpCode::Continuation,
            mask: None,
            remaining: 0,
            payload_pos: 0,
            message: None,
            message_buf: Vec::new(),
            utf8: Utf8Validator::new(),
            control: Vec::new(),
            compressed: false,
            scratch: Vec::new(),
        }
    }

    fn is_idle(&self) -> bool {
        self.state == State::Header
            && self.header_len == 0
            && self.message.is_none()
            && self.failed.is_none()
    }

    fn decode(
        &mut self,
        input: &mut &[u8],
        inflater: Option<&mut Inflater>,
    ) -> Result<Option<Incoming>, ProtocolError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match self.decode_inner(input, inflater) {
            Err(err) => {
                self.failed = Some(err.clone());
                Err(err)
            }
            ok => ok,
        }
    }

    fn decode_inner(
        &mut self,
        input: &mut &[u8],
        mut inflater: Option<&mut Inflater>,
    ) -> Result<Option<Incoming>, ProtocolError> {
        loop {
            match self.state {
                State::Header => {
                    if !self.read_header(input, inflater.is_some())? {
                        return Ok(None);
                    }
                    if self.remaining == 0 {
                        if let Some(done) = self.finish_frame(inflater.as_deref_mut())? {
                            return Ok(Some(done));
                        }
                    } else {
                        self.state = State::Payload;
                    }
                }
                State::Payload => {
                    if input.is_empty() {
                        return Ok(None);
                    }
                    let n = (self.remaining.min(input.len() as u64)) as usize;
                    let (chunk, rest) = input.split_at(n);
                    *input = rest;
                    self.take_payload(chunk, inflater.as_deref_mut())?;
                    self.remaining -= n as u64;
                    if self.remaining == 0 {
                        self.state = State::Header;
                        if let Some(done) = self.finish_frame(inflater.as_deref_mut())? {
                            return Ok(Some(done));
                        }
                    }
                }
            }
        }
    }

    /// Collects header bytes; true once the whole header is in and validated.
    fn read_header(&mut self, input: &mut &[u8], deflate: bool) -> Result<bool, ProtocolError> {
        // The usual case, a whole header in the input, is copied in one go: collecting
        // it a byte at a time was a fifth of the instructions of a 32-byte echo.
        if self.header_len == 0 && input.len() >= 2 {
            self.header[..2].copy_from_slice(&input[..2]);
            self.header_len = 2;
            let need = self.header_needed();
            if input.len() >= need {
                self.check_first_byte(deflate)?;
                self.check_second_byte()?;
                self.header[2..need].copy_from_slice(&input[2..need]);
                self.header_len = need as u8;
                *input = &input[need..];
                self.start_frame()?;
                self.header_len = 0;
                return Ok(true);
            }
            self.header_len = 0;
        }
        loop {
            let have = self.header_len as usize;
            let need = self.header_needed();
            if have == need {
                break;
            }
            let Some((&b, rest)) = input.split_first() else {
                return Ok(false);
            };
            *input = rest;
            self.header[have] = b;
            self.header_len += 1;
            // Check the first two bytes as soon as each arrives, so a bad frame fails
            // without waiting for bytes that may never come.
            match have {
                0 => self.check_first_byte(deflate)?,
                1 => self.check_second_byte()?,
                _ => {}
            }
        }
        self.start_frame()?;
        self.header_len = 0;
        Ok(true)
    }

    fn header_needed(&self) -> usize {
        if self.header_len < 2 {
            return 2;
        }
        let b1 = self.header[1];
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
        2 + ext + mask
    }

    /// `deflate`: permessage-deflate was negotiated, so RSV1 may mark a message.
    fn check_first_byte(&mut self, deflate: bool) -> Result<(), ProtocolError> {
        let b0 = self.header[0];
        let rsv1 = b0 & 0x40 != 0;
        if b0 & 0x30 != 0 || (rsv1 && !deflate) {
            return Err(ProtocolError::ReservedBits);
        }
        let op = OpCode::from_u8(b0 & 0x0f).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0f))?;
        if rsv1 && !matches!(op, OpCode::Text | OpCode::Binary) {
            return Err(ProtocolError::CompressedBitMisplaced);
        }
        let fin = b0 & 0x80 != 0;
        if op.is_control() && !fin {
            return Err(ProtocolError::FragmentedControl);
        }
        match op {
            OpCode::Continuation if self.message.is_none() => {
                Err(ProtocolError::UnexpectedContinuation)
            }
            OpCode::Text | OpCode::Binary if self.message.is_some() => {
                Err(ProtocolError::ExpectedContinuation)
            }
            _ => {
                self.fin = fin;
                self.opcode = op;
                if matches!(op, OpCode::Text | OpCode::Binary) {
                    self.compressed = rsv1;
                }
                Ok(())
            }
        }
    }

    fn check_second_byte(&self) -> Result<(), ProtocolError> {
        let b1 = self.header[1];
        let masked = b1 & 0x80 != 0;
        match (self.role, masked) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        let len7 = b1 & 0x7f;
        if self.opcode.is_control() && len7 as usize > MAX_CONTROL_PAYLOAD {
            return Err(ProtocolError::ControlTooLong(len7));
        }
        Ok(())
    }

    /// The header is complete: read the length and mask and open the frame.
    fn start_frame(&mut self) -> Result<(), ProtocolError> {
        let h = &self.header;
        let (len, mask_at) = match h[1] & 0x7f {
            126 => (u16::from_be_bytes([h[2], h[3]]) as u64, 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&h[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (n as u64, 2),
        };
        if len >> 63 != 0 {
            return Err(ProtocolError::InvalidLength);
        }
        self.mask = if h[1] & 0x80 != 0 {
            Some([h[mask_at], h[mask_at + 1], h[mask_at + 2], h[mask_at + 3]])
        } else {
            None
        };
        if self.opcode.is_control() {
            self.control.clear();
        } else {
            if len > self.limits.max_frame_size as u64 {
                return Err(ProtocolError::FrameTooBig {
                    len,
                    max: self.limits.max_frame_size,
                });
            }
            // A compressed frame's length says nothing of the message's: the inflater
            // checks that as it inflates.
            if !self.compressed
                && self.message_buf.len() as u64 + len > self.limits.max_message_size as u64
            {
                return Err(ProtocolError::MessageTooBig {
                    max: self.limits.max_message_size,
                });
            }
            if self.opcode != OpCode::Continuation {
                self.message = Some(self.opcode);
                self.utf8 = Utf8Validator::new();
            }
            let want = (len as usize).min(MAX_PREALLOC);
            if self.message_buf.capacity() == 0 {
                self.message_buf = super::spare::take(want);
            } else {
                self.message_buf.reserve(want);
            }
        }
        self.remaining = len;
        self.payload_pos = 0;
        Ok(())
    }

    fn take_payload(
        &mut self,
        chunk: &[u8],
        inflater: Option<&mut Inflater>,
    ) -> Result<(), ProtocolError> {
        if self.compressed && !self.opcode.is_control() {
            return self.inflate_payload(chunk, inflater);
        }
        let dest = if self.opcode.is_control() {
            &mut self.control
        } else {
            &mut self.message_buf
        };
        let start = dest.len();
        dest.extend_from_slice(chunk);
        let fresh = &mut dest[start..];
        if let Some(key) = self.mask {
            apply_mask(fresh, key, self.payload_pos);
        }
        self.payload_pos += chunk.len();
        if !self.opcode.is_control() && self.message == Some(OpCode::Text) {
            self.utf8
                .feed(fresh)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    /// Unmasks a compressed chunk and inflates it onto the message.
    fn inflate_payload(
        &mut self,
        chunk: &[u8],
        inflater: Option<&mut Inflater>,
    ) -> Result<(), ProtocolError> {
        let Some(inflater) = inflater else {
            return Err(ProtocolError::ReservedBits);
        };
        self.scratch.clear();
        self.scratch.extend_from_slice(chunk);
        if let Some(key) = self.mask {
            apply_mask(&mut self.scratch, key, self.payload_pos);
        }
        self.payload_pos += chunk.len();
        let start = self.message_buf.len();
        let max = self.limits.max_message_size;
        inflater
            .feed(&self.scratch, &mut self.message_buf, max)
            .map_err(|e| self.inflate_error(e))?;
        self.check_inflated(start)
    }

    /// Runs the UTF-8 check over what inflating added after `start`.
    fn check_inflated(&mut self, start: usize) -> Result<(), ProtocolError> {
        if self.message == Some(OpCode::Text) {
            self.utf8
                .feed(&self.message_buf[start..])
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    fn inflate_error(&self, e: InflateError) -> ProtocolError {
        match e {
            InflateError::BadData => ProtocolError::BadCompressedData,
            InflateError::TooBig { max } => ProtocolError::MessageTooBig { max },
        }
    }

    fn finish_frame(
        &mut self,
        inflater: Option<&mut Inflater>,
    ) -> Result<Option<Incoming>, ProtocolError> {
        match self.opcode {
            OpCode::Ping => Ok(Some(Incoming::Ping(std::mem::take(&mut self.control)))),
            OpCode::Pong => Ok(Some(Incoming::Pong(std::mem::take(&mut self.control)))),
            OpCode::Close => parse_close(&self.control).map(|c| Some(Incoming::Close(c))),
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                if !self.fin {
                    return Ok(None);
                }
                if std::mem::take(&mut self.compressed) {
                    let Some(inflater) = inflater else {
                        return Err(ProtocolError::ReservedBits);
                    };
                    let start = self.message_buf.len();
                    let max = self.limits.max_message_size;
                    inflater
                        .finish(&mut self.message_buf, max)
                        .map_err(|e| self.inflate_error(e))?;
                    self.check_inflated(start)?;
                    self.scratch = Vec::new();
                }
                let buf = std::mem::take(&mut self.message_buf);
                match self.message.take() {
                    Some(OpCode::Text) => {
                        self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                        // Every byte of `buf` went through `self.utf8` as it arrived (in
                        // `take_payload`), and `finish` saw no code point left open, so
                        // validating the whole message again would be the same work twice
                        // (`benches/codec.rs` decode/text: see the commit that added this).
                        debug_assert!(std::str::from_utf8(&buf).is_ok());
                        // SAFETY: `buf` is exactly the concatenation of the chunks fed to
                        // the incremental validator for this message, which accepted each
                        // one, and `finish` confirmed the message ends on a code-point
                        // boundary; so `buf` is valid UTF-8. The property tests in
                        // `ws::utf8` check the validator against `std::str::from_utf8` for
                        // any chunking, and the `frame_decoder` fuzz target runs with this
                        // debug assertion on.
                        let text = unsafe { String::from_utf8_unchecked(buf) };
                        Ok(Some(Incoming::Text(text)))
                    }
                    _ => Ok(Some(Incoming::Binary(buf))),
                }
            }
        }
    }
}

/// Parses and checks a close payload: empty, or a valid code and a UTF-8 reason.
pub fn parse_close(payload: &[u8]) -> Result<Option<(u16, String)>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::CloseTooShort),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| ProtocolError::InvalidCloseReason)?
                .to_owned();
            Ok(Some((code, reason)))
        }
    }
}
