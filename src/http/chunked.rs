//! Decoding a `Transfer-Encoding: chunked` request body (RFC 9112 §7.1), incrementally.
//!
//! Owns the chunk grammar only: sizes, extensions (skipped), data, trailers (skipped). It
//! consumes bytes as they come, in any split, and keeps no copy of what it has already
//! decoded beyond the body it appends to. The body limit is the caller's
//! `max_body_bytes`; trailer lines are bounded by `max_trailer_bytes`.

use super::error::HandshakeError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size.
    Size,
    /// After the size: `;ext` or whitespace until CR.
    Ext,
    /// The LF ending a size line.
    SizeLf,
    /// Chunk data: `left` bytes still to come.
    Data,
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// A trailer line (or the final empty line); `line` counts its bytes.
    Trailer,
    /// The LF ending a trailer line.
    TrailerLf,
    /// The body is complete.
    Done,
}

/// Incremental chunked-body decoder.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// The chunk size being read, or the bytes of chunk data still to come.
    left: u64,
    /// Digits seen in the current size.
    digits: u8,
    /// Bytes in the current trailer line, and in all trailers so far.
    line: usize,
    trailers: usize,
    max_body: usize,
    max_trailer_bytes: usize,
}

impl ChunkedDecoder {
    /// A decoder for one body of at most `max_body` bytes, whose trailer section may take
    /// at most `max_trailer_bytes`.
    pub fn new(max_body: usize, max_trailer_bytes: usize) -> Self {
        ChunkedDecoder {
            state: State::Size,
            left: 0,
            digits: 0,
            line: 0,
            trailers: 0,
            max_body,
            max_trailer_bytes,
        }
    }

    /// Whether the last chunk and the trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes bytes from the front of `input`, appending decoded data to `body`; stops
    /// at the end of the body (bytes after it are left in `input`) or of the input.
    /// Returns whether the body is complete.
    pub fn decode(
        &mut self,
        input: &mut &[u8],
        body: &mut Vec<u8>,
    ) -> Result<bool, HandshakeError> {
        while !input.is_empty() && self.state != State::Done {
            if self.state == State::Data {
                let take = (self.left as usize).min(input.len());
                body.extend_from_slice(&input[..take]);
                *input = &input[take..];
                self.left -= take as u64;
                if self.left == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            let b = input[0];
            *input = &input[1..];
            self.step(b, body.len())?;
        }
        Ok(self.state == State::Done)
    }

    fn step(&mut self, b: u8, have: usize) -> Result<(), HandshakeError> {
        let bad = |what: &str| Err(HandshakeError::Malformed(format!("chunked body: {what}")));
        match self.state {
            State::Size => match (b as char).to_digit(16) {
                Some(d) => {
                    self.digits += 1;
                    if self.digits > 16 {
                        return bad("chunk size too long");
                    }
                    self.left = self.left * 16 + d as u64;
                    if have as u64 + self.left > self.max_body as u64 {
                        return Err(HandshakeError::BodyTooLarge(self.max_body));
                    }
                }
                None if self.digits == 0 => return bad("chunk size expected"),
                None => {
                    self.state = State::Ext;
                    return self.step(b, have);
                }
            },
            State::Ext => match b {
                b'\r' => self.state = State::SizeLf,
                b'\n' => return bad("bare LF"),
                _ => {
                    // Extensions are ignored, but bounded like a trailer line.
                    self.count_trailer()?;
                }
            },
            State::SizeLf => {
                if b != b'\n' {
                    return bad("CR without LF");
                }
                self.digits = 0;
                self.state = if self.left == 0 {
                    self.line = 0;
                    State::Trailer
                } else {
                    State::Data
                };
            }
            State::DataCr if b == b'\r' => self.state = State::DataLf,
            State::DataLf if b == b'\n' => self.state = State::Size,
            State::DataCr | State::DataLf => return bad("chunk data not followed by CRLF"),
            State::Trailer => match b {
                b'\r' => self.state = State::TrailerLf,
                b'\n' => return bad("bare LF"),
                _ => {
                    self.line += 1;
                    self.count_trailer()?;
                }
            },
            State::TrailerLf => {
                if b != b'\n' {
                    return bad("CR without LF");
                }
                self.state = if self.line == 0 {
                    State::Done
                } else {
                    self.line = 0;
                    State::Trailer
                };
            }
            State::Data | State::Done => {}
        }
        Ok(())
    }

    fn count_trailer(&mut self) -> Result<(), HandshakeError> {
        self.trailers += 1;
        if self.trailers > self.max_trailer_bytes {
            return Err(HandshakeError::HeadersTooLarge(self.max_trailer_bytes));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WIRE: &[u8] = b"4\r\nWiki\r\n6;name=x\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";

    #[test]
    fn decodes_the_rfc_example_at_every_split() {
        for split in 0..WIRE.len() {
            let mut d = ChunkedDecoder::new(1024, 1024);
            let mut body = Vec::new();
            let (a, b) = WIRE.split_at(split);
            let mut input = a;
            let mut done = d.decode(&mut input, &mut body).unwrap();
            let rest = if done {
                [input, b].concat()
            } else {
                let mut rest = b;
                done = d.decode(&mut rest, &mut body).unwrap();
                rest.to_vec()
            };
            assert!(done, "split {split}");
            assert_eq!(body, b"Wikipedia in \r\n\r\nchunks.");
            assert_eq!(rest, b"NEXT", "split {split}");
        }
    }

    #[test]
    fn byte_at_a_time() {
        let mut d = ChunkedDecoder::new(1024, 1024);
        let mut body = Vec::new();
        for (i, b) in WIRE.iter().enumerate() {
            let mut one = std::slice::from_ref(b);
            if d.decode(&mut one, &mut body).unwrap() {
                assert_eq!(&WIRE[i + 1..], b"NEXT");
                return;
            }
        }
        panic!("never completed");
    }

    #[test]
    fn limits_and_garbage() {
        let mut body = Vec::new();
        let too_big = ChunkedDecoder::new(10, 100).decode(&mut &b"b\r\n"[..], &mut body);
        assert_eq!(too_big, Err(HandshakeError::BodyTooLarge(10)));
        for bad in [
            &b"x\r\n"[..],
            b"4\nWiki",
            b"4\r\nWikiXX",
            b"00000000000000001\r\n",
        ] {
            let r = ChunkedDecoder::new(1 << 20, 100).decode(&mut &bad[..], &mut Vec::new());
            assert!(
                matches!(r, Err(HandshakeError::Malformed(_))),
                "{bad:?}: {r:?}"
            );
        }
        let long_trailer = [b"0\r\n".as_slice(), &[b'a'; 200]].concat();
        let r = ChunkedDecoder::new(10, 100).decode(&mut &long_trailer[..], &mut Vec::new());
        assert_eq!(r, Err(HandshakeError::HeadersTooLarge(100)));
    }
}
