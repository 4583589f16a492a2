//! The framings of a raw TCP listener, sans-IO: one message per line, or a 4-byte
//! big-endian length before each message. What devices and services that cannot speak
//! WebSocket use to carry the same messages.
//!
//! Owns the byte format only — the incremental [`RawDecoder`] with its size limit, and
//! [`encode`]. It knows nothing of connections, clocks or what the messages mean; the
//! connection machine (`conn::raw`) drives it. Below everything, like the `ws` codec.

use serde::{Deserialize, Serialize};

/// How a raw TCP listener cuts its byte stream into messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawFraming {
    /// One message per line, ended by `\n` (a `\r` before it is dropped). Empty lines
    /// are ignored (keep-alives). A message sent on this framing has any `\n` in it
    /// replaced by a space: JSON never needs one (inside strings it is escaped; between
    /// tokens it is whitespace).
    #[default]
    Line,
    /// A 4-byte big-endian length, then that many bytes. A zero length is ignored.
    LengthPrefix,
}

impl RawFraming {
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Why the input cannot be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RawError {
    /// A message longer than the listener's limit (a line with no end in sight counts
    /// as soon as it passes the limit).
    #[error("message longer than {limit} bytes")]
    TooLong {
        /// The limit, in bytes.
        limit: usize,
    },
    /// A message that is not UTF-8 on the line framing, which carries text.
    #[error("message is not valid UTF-8")]
    NotUtf8,
}

/// Cuts a raw byte stream into messages, holding a partial message between reads.
#[derive(Debug, Clone)]
pub struct RawDecoder {
    /// The start of a message whose end has not arrived; empty (no allocation) between
    /// messages.
    partial: Vec<u8>,
    /// The length announced by a prefix whose message is still arriving; 0 while the
    /// prefix itself is awaited (a zero length announces nothing, and is skipped).
    want: u32,
    max: u32,
    framing: RawFraming,
}

impl RawDecoder {
    /// A decoder for `framing` refusing messages over `max` bytes (capped at 1 GiB).
    pub fn new(framing: RawFraming, max: usize) -> Self {
        RawDecoder {
            partial: Vec::new(),
            want: 0,
            max: max.min(1 << 30) as u32,
            framing,
        }
    }

    /// The framing this decoder reads.
    pub fn framing(&self) -> RawFraming {
        self.framing
    }

    /// Takes bytes from `input` until one message is whole, and returns it; `Ok(None)`
    /// when `input` is used up. Call again with the rest.
    pub fn decode(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, RawError> {
        match self.framing {
            RawFraming::Line => self.decode_line(input),
            RawFraming::LengthPrefix => self.decode_prefixed(input),
        }
    }

    fn too_long(&self) -> RawError {
        RawError::TooLong {
            limit: self.max as usize,
        }
    }

    fn decode_line(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, RawError> {
        while !input.is_empty() {
            let Some(end) = input.iter().position(|&b| b == b'\n') else {
                self.keep(input)?;
                return Ok(None);
            };
            let (head, rest) = (&input[..end], &input[end + 1..]);
            *input = rest;
            let mut line = if self.partial.is_empty() {
                head.to_vec()
            } else {
                let mut l = std::mem::take(&mut self.partial);
                l.extend_from_slice(head);
                l
            };
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.len() > self.max as usize {
                return Err(self.too_long());
            }
            if !line.is_empty() {
                return Ok(Some(line));
            }
        }
        Ok(None)
    }

    /// Keeps the start of a line, refusing it once it is longer than a line may be
    /// (one byte of slack for a `\r` before the `\n`).
    fn keep(&mut self, input: &mut &[u8]) -> Result<(), RawError> {
        if self.partial.len() + input.len() > self.max as usize + 1 {
            return Err(self.too_long());
        }
        self.partial.extend_from_slice(input);
        *input = &[];
        Ok(())
    }

    fn decode_prefixed(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, RawError> {
        loop {
            let want = match self.want {
                0 => {
                    let need = 4 - self.partial.len();
                    let take = need.min(input.len());
                    self.partial.extend_from_slice(&input[..take]);
                    *input = &input[take..];
                    if self.partial.len() < 4 {
                        return Ok(None);
                    }
                    let mut len = [0; 4];
                    len.copy_from_slice(&self.partial);
                    self.partial = Vec::new();
                    let n = u32::from_be_bytes(len);
                    if n > self.max {
                        return Err(self.too_long());
                    }
                    if n == 0 {
                        continue;
                    }
                    self.want = n;
                    n as usize
                }
                n => n as usize,
            };
            let need = want - self.partial.len();
            if self.partial.is_empty() && input.len() >= want {
                // The whole message in this read: one copy, no growth.
                let msg = input[..want].to_vec();
                *input = &input[want..];
                self.want = 0;
                return Ok(Some(msg));
            }
            let take = need.min(input.len());
            if self.partial.capacity() == 0 {
                self.partial.reserve_exact(want);
            }
            self.partial.extend_from_slice(&input[..take]);
            *input = &input[take..];
            if self.partial.len() < want {
                return Ok(None);
            }
            self.want = 0;
            return Ok(Some(std::mem::take(&mut self.partial)));
        }
    }
}

/// `msg` framed for the wire.
pub fn encode(framing: RawFraming, msg: &[u8]) -> Vec<u8> {
    match framing {
        RawFraming::Line => {
            let mut out = Vec::with_capacity(msg.len() + 1);
            out.extend(msg.iter().map(|&b| if b == b'\n' { b' ' } else { b }));
            out.push(b'\n');
            out
        }
        RawFraming::LengthPrefix => {
            let mut out = Vec::with_capacity(msg.len() + 4);
            // A message is at most 1 GiB (the engine's limits), so its length fits.
            out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
            out.extend_from_slice(msg);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message `input` holds, fed to a decoder in pieces of `step` bytes.
    fn all(
        framing: RawFraming,
        max: usize,
        input: &[u8],
        step: usize,
    ) -> Result<Vec<Vec<u8>>, RawError> {
        let mut d = RawDecoder::new(framing, max);
        let mut out = Vec::new();
        for chunk in input.chunks(step.max(1)) {
            let mut rest = chunk;
            while let Some(m) = d.decode(&mut rest)? {
                out.push(m);
            }
            assert!(rest.is_empty());
        }
        Ok(out)
    }

    #[test]
    fn lines_split_at_every_byte_give_the_same_messages() {
        let input = b"{\"a\":1}\r\n\n{\"b\":\"x y\"}\nlast\n";
        let want: Vec<Vec<u8>> = vec![
            b"{\"a\":1}".to_vec(),
            b"{\"b\":\"x y\"}".to_vec(),
            b"last".to_vec(),
        ];
        for step in 1..=input.len() {
            assert_eq!(
                all(RawFraming::Line, 64, input, step).unwrap(),
                want,
                "step {step}"
            );
        }
    }

    #[test]
    fn prefixed_messages_split_at_every_byte_give_the_same_messages() {
        let mut input = encode(RawFraming::LengthPrefix, b"hello");
        input.extend_from_slice(&[0, 0, 0, 0]);
        input.extend(encode(RawFraming::LengthPrefix, b"with\nnewline"));
        for step in 1..=input.len() {
            let got = all(RawFraming::LengthPrefix, 64, &input, step).unwrap();
            assert_eq!(
                got,
                vec![b"hello".to_vec(), b"with\nnewline".to_vec()],
                "step {step}"
            );
        }
    }

    #[test]
    fn a_line_over_the_limit_is_refused_before_its_end_arrives() {
        let mut d = RawDecoder::new(RawFraming::Line, 8);
        let mut part: &[u8] = b"12345678";
        assert_eq!(d.decode(&mut part), Ok(None));
        let mut more: &[u8] = b"9";
        assert_eq!(d.decode(&mut more), Ok(None), "room for a \\r");
        let mut more: &[u8] = b"0";
        assert_eq!(d.decode(&mut more), Err(RawError::TooLong { limit: 8 }));
        // Exactly the limit, with CRLF, passes.
        assert_eq!(
            all(RawFraming::Line, 8, b"12345678\r\n", 1).unwrap().len(),
            1
        );
        assert!(all(RawFraming::Line, 8, b"123456789\n", 3).is_err());
    }

    #[test]
    fn a_prefix_over_the_limit_is_refused_at_once() {
        let mut d = RawDecoder::new(RawFraming::LengthPrefix, 8);
        let mut input: &[u8] = &[0, 0, 0, 9];
        assert_eq!(d.decode(&mut input), Err(RawError::TooLong { limit: 8 }));
        let mut big: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        let mut d = RawDecoder::new(RawFraming::LengthPrefix, usize::MAX);
        assert_eq!(
            d.decode(&mut big),
            Err(RawError::TooLong { limit: 1 << 30 })
        );
    }

    #[test]
    fn the_line_framing_never_sends_a_newline_inside_a_message() {
        assert_eq!(encode(RawFraming::Line, b"{\"a\":\n1}"), b"{\"a\": 1}\n");
    }

    #[test]
    fn a_decoder_holds_nothing_between_messages() {
        let mut d = RawDecoder::new(RawFraming::Line, 64);
        let mut input: &[u8] = b"abc";
        d.decode(&mut input).unwrap();
        let mut input: &[u8] = b"def\n";
        assert_eq!(d.decode(&mut input).unwrap(), Some(b"abcdef".to_vec()));
        assert_eq!(d.partial.capacity(), 0);
    }
}
