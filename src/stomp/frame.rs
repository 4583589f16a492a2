//! STOMP frames (1.0, 1.1, 1.2): a streaming parser fed with the bytes of WebSocket
//! messages, and the encoder for the frames the broker sends.
//!
//! Owns the wire grammar only: commands, `EOL` (LF or CRLF), header escaping, the
//! `content-length` rule, heart-beat EOLs between frames and the size limits. It knows
//! nothing of sessions, destinations or sockets. Frames may be split across messages
//! and several frames may share one; the parser gives the same frames however the bytes
//! were cut.

use std::fmt;

/// A STOMP command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Command {
    Connect,
    Stomp,
    Send,
    Subscribe,
    Unsubscribe,
    Ack,
    Nack,
    Begin,
    Commit,
    Abort,
    Disconnect,
    Connected,
    Message,
    Receipt,
    Error,
}

impl Command {
    fn parse(line: &[u8]) -> Option<Command> {
        Some(match line {
            b"CONNECT" => Command::Connect,
            b"STOMP" => Command::Stomp,
            b"SEND" => Command::Send,
            b"SUBSCRIBE" => Command::Subscribe,
            b"UNSUBSCRIBE" => Command::Unsubscribe,
            b"ACK" => Command::Ack,
            b"NACK" => Command::Nack,
            b"BEGIN" => Command::Begin,
            b"COMMIT" => Command::Commit,
            b"ABORT" => Command::Abort,
            b"DISCONNECT" => Command::Disconnect,
            b"CONNECTED" => Command::Connected,
            b"MESSAGE" => Command::Message,
            b"RECEIPT" => Command::Receipt,
            b"ERROR" => Command::Error,
            _ => return None,
        })
    }

    /// The command as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Connect => "CONNECT",
            Command::Stomp => "STOMP",
            Command::Send => "SEND",
            Command::Subscribe => "SUBSCRIBE",
            Command::Unsubscribe => "UNSUBSCRIBE",
            Command::Ack => "ACK",
            Command::Nack => "NACK",
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Abort => "ABORT",
            Command::Disconnect => "DISCONNECT",
            Command::Connected => "CONNECTED",
            Command::Message => "MESSAGE",
            Command::Receipt => "RECEIPT",
            Command::Error => "ERROR",
        }
    }

    /// CONNECT, STOMP and CONNECTED headers are never escaped (STOMP 1.2, "Value
    /// Encoding"), so that a 1.0 peer can read them.
    fn escapes(self) -> bool {
        !matches!(self, Command::Connect | Command::Stomp | Command::Connected)
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One frame: command, headers in the order sent (repeats kept), body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The command.
    pub command: Command,
    /// Headers, decoded, in wire order.
    pub headers: Vec<(String, String)>,
    /// The body (any bytes; may hold NUL when `content-length` framed it).
    pub body: Vec<u8>,
}

impl Frame {
    /// A frame with no headers and no body.
    pub fn new(command: Command) -> Self {
        Frame {
            command,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header (builder style).
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Sets the body (builder style).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The value of the first header called `name`: when a header repeats, the first
    /// one wins (STOMP 1.2, "Repeated Header Entries").
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The wire bytes: headers escaped when `escape` (1.1 and 1.2, never for CONNECTED),
    /// a `content-length` when there is a body and the frame has none, the NUL.
    pub fn encode(&self, escape: bool) -> Vec<u8> {
        let escape = escape && self.command.escapes();
        let mut out = Vec::with_capacity(64 + self.body.len());
        out.extend_from_slice(self.command.as_str().as_bytes());
        out.push(b'\n');
        for (n, v) in &self.headers {
            push_value(&mut out, n, escape);
            out.push(b':');
            push_value(&mut out, v, escape);
            out.push(b'\n');
        }
        if !self.body.is_empty() && self.get("content-length").is_none() {
            out.extend_from_slice(format!("content-length:{}\n", self.body.len()).as_bytes());
        }
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out.push(0);
        out
    }
}

fn push_value(out: &mut Vec<u8>, s: &str, escape: bool) {
    if !escape {
        // Unescaped headers cannot carry these; a CONNECTED header never holds them.
        out.extend(s.bytes().filter(|b| !matches!(b, b'\n' | b'\r' | b':')));
        return;
    }
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b':' => out.extend_from_slice(b"\\c"),
            _ => out.push(b),
        }
    }
}

/// Limits on what a peer may send; over any of them the frame is refused (`ERROR`,
/// then close).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest command line plus headers, in bytes.
    pub max_header_bytes: usize,
    /// Most header lines in one frame.
    pub max_headers: usize,
    /// Largest body, in bytes.
    pub max_body_bytes: usize,
}

impl Default for FrameLimits {
    fn default() -> Self {
        FrameLimits {
            max_header_bytes: 8 * 1024,
            max_headers: 64,
            max_body_bytes: 1024 * 1024,
        }
    }
}

/// Why bytes are not a STOMP frame. Every one of them ends the session with an `ERROR`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The command line is not a STOMP command.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// A header line has no colon.
    #[error("header line without a colon")]
    HeaderWithoutColon,
    /// A backslash followed by anything but `r`, `n`, `c` or `\`.
    #[error("undefined escape sequence in a header")]
    BadEscape,
    /// A header is not UTF-8.
    #[error("header is not UTF-8")]
    NotUtf8,
    /// `content-length` is not a number.
    #[error("content-length is not a number")]
    BadContentLength,
    /// The byte after a `content-length` body is not NUL.
    #[error("frame body not terminated by NUL after content-length bytes")]
    MissingNul,
    /// The command line and headers are over `max_header_bytes`.
    #[error("frame headers over {0} bytes")]
    HeadersTooLarge(usize),
    /// More header lines than `max_headers`.
    #[error("more than {0} headers")]
    TooManyHeaders(usize),
    /// The body is over `max_body_bytes`.
    #[error("frame body over {0} bytes")]
    BodyTooLarge(usize),
}

/// What the parser found next in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A whole frame.
    Frame(Frame),
    /// A bare EOL between frames: a heart-beat from the peer.
    HeartBeat,
}

/// A streaming frame parser: [`push`](Self::push) the bytes of each WebSocket message,
/// then call [`next`](Self::next) until it returns `None`.
#[derive(Debug, Default)]
pub struct FrameParser {
    buf: Vec<u8>,
    /// Decode header escapes (set once a 1.1 or 1.2 session is connected).
    escapes: bool,
    failed: bool,
}

impl FrameParser {
    /// A parser that does not decode escapes until told to.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decode header escapes from now on (1.1 and 1.2; never in CONNECT or STOMP).
    pub fn set_escapes(&mut self, on: bool) {
        self.escapes = on;
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if !self.failed {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Bytes held for a frame not complete yet.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next heart-beat or frame, `None` until more bytes arrive, or an error, after
    /// which the parser returns `None` for ever.
    pub fn next(&mut self, limits: &FrameLimits) -> Option<Result<Parsed, FrameError>> {
        if self.failed {
            return None;
        }
        match self.parse(limits) {
            Ok(Some((parsed, used))) => {
                self.buf.drain(..used);
                if self.buf.is_empty() && self.buf.capacity() > 4096 {
                    self.buf = Vec::new();
                }
                Some(Ok(parsed))
            }
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                self.buf = Vec::new();
                Some(Err(e))
            }
        }
    }

    fn parse(&self, limits: &FrameLimits) -> Result<Option<(Parsed, usize)>, FrameError> {
        let buf = &self.buf[..];
        match buf.first() {
            None => return Ok(None),
            Some(b'\n') => return Ok(Some((Parsed::HeartBeat, 1))),
            Some(b'\r') => {
                return match buf.get(1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some((Parsed::HeartBeat, 2))),
                    Some(_) => Err(FrameError::UnknownCommand("\r".into())),
                }
            }
            Some(_) => {}
        }
        let Some(head) = split_head(buf, limits)? else {
            return Ok(None);
        };
        let command = Command::parse(head.lines[0]).ok_or_else(|| {
            FrameError::UnknownCommand(String::from_utf8_lossy(head.lines[0]).into_owned())
        })?;
        let decode = self.escapes && command.escapes();
        let mut headers = Vec::with_capacity(head.lines.len() - 1);
        for line in &head.lines[1..] {
            let colon = line
                .iter()
                .position(|&b| b == b':')
                .ok_or(FrameError::HeaderWithoutColon)?;
            headers.push((
                header_text(&line[..colon], decode)?,
                header_text(&line[colon + 1..], decode)?,
            ));
        }
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.trim().parse::<usize>())
            .transpose()
            .map_err(|_| FrameError::BadContentLength)?;
        let rest = &buf[head.len..];
        let body_len = match length {
            Some(n) if n > limits.max_body_bytes => {
                return Err(FrameError::BodyTooLarge(limits.max_body_bytes))
            }
            Some(n) => match rest.get(n) {
                None => return Ok(None),
                Some(0) => n,
                Some(_) => return Err(FrameError::MissingNul),
            },
            None => match rest.iter().position(|&b| b == 0) {
                Some(n) if n <= limits.max_body_bytes => n,
                Some(_) => return Err(FrameError::BodyTooLarge(limits.max_body_bytes)),
                None if rest.len() > limits.max_body_bytes => {
                    return Err(FrameError::BodyTooLarge(limits.max_body_bytes))
                }
                None => return Ok(None),
            },
        };
        let frame = Frame {
            command,
            headers,
            body: rest[..body_len].to_vec(),
        };
        Ok(Some((Parsed::Frame(frame), head.len + body_len + 1)))
    }
}

/// The command line and header lines of a frame (CR stripped), and the bytes they take
/// with the blank line.
struct Head<'a> {
    lines: Vec<&'a [u8]>,
    len: usize,
}

/// Splits the head off `buf`: `None` while the blank line has not arrived.
fn split_head<'a>(buf: &'a [u8], limits: &FrameLimits) -> Result<Option<Head<'a>>, FrameError> {
    let mut lines = Vec::new();
    let mut at = 0;
    loop {
        let window = &buf[at..buf.len().min(limits.max_header_bytes + 2)];
        let Some(nl) = window.iter().position(|&b| b == b'\n') else {
            if buf.len() > limits.max_header_bytes + 1 {
                return Err(FrameError::HeadersTooLarge(limits.max_header_bytes));
            }
            return Ok(None);
        };
        let mut line = &buf[at..at + nl];
        if let Some(l) = line.strip_suffix(b"\r") {
            line = l;
        }
        at += nl + 1;
        if line.is_empty() {
            return Ok(Some(Head { lines, len: at }));
        }
        if lines.len() > limits.max_headers {
            return Err(FrameError::TooManyHeaders(limits.max_headers));
        }
        lines.push(line);
    }
}

fn header_text(raw: &[u8], decode: bool) -> Result<String, FrameError> {
    let text = std::str::from_utf8(raw).map_err(|_| FrameError::NotUtf8)?;
    if !decode || !text.contains('\\') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match chars.next() {
            Some('n') => '\n',
            Some('r') => '\r',
            Some('c') => ':',
            Some('\\') => '\\',
            _ => return Err(FrameError::BadEscape),
        });
    }
    Ok(out)
}
