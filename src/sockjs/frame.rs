//! SockJS framing, sans-IO: the frames a server sends (`o`, `h`, `a[...]`, `c[...]`),
//! the JSON a client sends, each transport's wrapping of a frame, and the two
//! WebSocket-frame conversions a virtual connection needs (reading the server frames its
//! machine writes, writing the masked client frames it reads).
//!
//! Owns bytes only: no sessions, no clocks, no HTTP. Fuzzed (`sockjs_requests`).

use serde_json::Value;

/// The open frame.
pub const OPEN: &str = "o";
/// The heartbeat frame.
pub const HEARTBEAT: &str = "h";

/// Appends `s` as a JSON string literal, escaping what SockJS servers must escape beyond
/// JSON (characters some browsers mangle on the way: U+200C–U+200F, U+2028–U+202F,
/// U+2060–U+206F, U+FFF0–U+FFFF).
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn needs_escape(c: char) -> bool {
    matches!(c as u32,
        0x00..=0x1f | 0x200c..=0x200f | 0x2028..=0x202f | 0x2060..=0x206f | 0xfff0..=0xffff)
}

/// An array frame of already-encoded JSON string literals: `a["x","y"]`.
pub fn array_frame<'a>(encoded: impl IntoIterator<Item = &'a str>) -> String {
    let mut f = String::from("a[");
    for (i, e) in encoded.into_iter().enumerate() {
        if i > 0 {
            f.push(',');
        }
        f.push_str(e);
    }
    f.push(']');
    f
}

/// A close frame: `c[3000,"Go away!"]`.
pub fn close_frame(code: u16, reason: &str) -> String {
    let mut f = format!("c[{code},");
    push_json_string(&mut f, reason);
    f.push(']');
    f
}

/// Why a client's payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Nothing was sent (SockJS: "Payload expected.").
    #[error("Payload expected.")]
    Empty,
    /// Not a JSON string or array of strings (SockJS: "Broken JSON encoding.").
    #[error("Broken JSON encoding.")]
    BrokenJson,
}

/// The messages of a client payload: a JSON array of strings (or one string, which
/// some clients send over WebSocket).
pub fn parse_payload(body: &[u8]) -> Result<Vec<String>, PayloadError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Empty);
    }
    match serde_json::from_slice::<Value>(body).map_err(|_| PayloadError::BrokenJson)? {
        Value::String(s) => Ok(vec![s]),
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                _ => Err(PayloadError::BrokenJson),
            })
            .collect(),
        _ => Err(PayloadError::BrokenJson),
    }
}

/// How a transport wraps each frame on its response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrapping {
    /// `frame\n` (xhr, xhr_streaming).
    Line,
    /// `data: frame\r\n\r\n` (eventsource).
    EventSource,
    /// `<script>\np("frame");\n</script>\r\n` (htmlfile).
    HtmlFile,
    /// `callback("frame");\r\n` (jsonp).
    Jsonp,
}

/// `frame` wrapped for its transport; `callback` for htmlfile and jsonp.
pub fn wrap(w: Wrapping, frame: &str, callback: &str) -> String {
    match w {
        Wrapping::Line => format!("{frame}\n"),
        Wrapping::EventSource => format!("data: {frame}\r\n\r\n"),
        Wrapping::HtmlFile => {
            let mut s = String::from("<script>\np(");
            push_json_string(&mut s, frame);
            s.push_str(");\n</script>\r\n");
            s
        }
        Wrapping::Jsonp => {
            let mut s = format!("{callback}(");
            push_json_string(&mut s, frame);
            s.push_str(");\r\n");
            s
        }
    }
}

/// Whether `cb` is a safe JSONP / htmlfile callback name (letters, digits, `_`, `.`).
pub fn valid_callback(cb: &str) -> bool {
    !cb.is_empty()
        && cb.len() <= 64
        && cb
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// What a server WebSocket frame held.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerFrame {
    /// A data message (text; binary is passed on as lossy UTF-8, SockJS carries text).
    Message(String),
    /// A ping (answered by the wire with a pong, so liveness checks hold).
    Ping,
    /// A close frame.
    Close(u16, String),
}

/// Reassembles the server frames a connection machine writes, cut anywhere.
#[derive(Debug, Default)]
pub struct ServerFrameReader {
    buf: Vec<u8>,
    /// A fragmented message being assembled.
    partial: Option<Vec<u8>>,
}

impl ServerFrameReader {
    /// Takes `bytes` and returns each frame they complete, in order.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<ServerFrame>) {
        self.buf.extend_from_slice(bytes);
        let mut at = 0;
        while let Some((fin, op, start, end)) = frame_bounds(&self.buf[at..]) {
            let payload = &self.buf[at + start..at + end];
            match op {
                0x0..=0x2 => {
                    let msg = self.partial.get_or_insert_with(Vec::new);
                    msg.extend_from_slice(payload);
                    if fin {
                        let msg = self.partial.take().unwrap_or_default();
                        out.push(ServerFrame::Message(String::from_utf8(msg).unwrap_or_else(
                            |e| String::from_utf8_lossy(e.as_bytes()).into(),
                        )));
                    }
                }
                0x8 => {
                    let (code, reason) = match payload {
                        [a, b, rest @ ..] => (
                            u16::from_be_bytes([*a, *b]),
                            String::from_utf8_lossy(rest).into_owned(),
                        ),
                        _ => (1000, String::new()),
                    };
                    out.push(ServerFrame::Close(code, reason));
                }
                0x9 => out.push(ServerFrame::Ping),
                _ => {}
            }
            at += end;
        }
        self.buf.drain(..at);
    }
}

/// `(fin, opcode, payload start, payload end)` of the unmasked frame at the start of
/// `b`, if it is all there.
fn frame_bounds(b: &[u8]) -> Option<(bool, u8, usize, usize)> {
    let (&b0, &b1) = (b.first()?, b.get(1)?);
    let (len, head): (usize, usize) = match b1 & 0x7f {
        126 => (u16::from_be_bytes([*b.get(2)?, *b.get(3)?]) as usize, 4),
        127 => {
            let mut l = [0u8; 8];
            l.copy_from_slice(b.get(2..10)?);
            (usize::try_from(u64::from_be_bytes(l)).ok()?, 10)
        }
        n => (n as usize, 2),
    };
    let end = head.checked_add(len)?;
    (b.len() >= end).then_some((b0 & 0x80 != 0, b0 & 0x0f, head, end))
}

/// Appends a masked client frame (mask key zero: the bytes travel in the clear, and
/// the machine's unmasking leaves them as they are).
pub fn push_client_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::OutQueue;
    use crate::ws::OpCode;

    #[test]
    fn strings_escape_what_sockjs_requires() {
        let mut s = String::new();
        push_json_string(&mut s, "a\"\\\n\u{1}\u{2028}\u{fff0}é");
        assert_eq!(s, r#""a\"\\\n\u0001\u2028\ufff0é""#);
        assert_eq!(array_frame([r#""a""#, r#""b""#]), r#"a["a","b"]"#);
        assert_eq!(close_frame(3000, "Go away!"), r#"c[3000,"Go away!"]"#);
    }

    #[test]
    fn payloads_parse_or_say_why() {
        assert_eq!(parse_payload(br#"["a","b"]"#).unwrap(), vec!["a", "b"]);
        assert_eq!(parse_payload(br#""a""#).unwrap(), vec!["a"]);
        assert_eq!(parse_payload(b" "), Err(PayloadError::Empty));
        assert_eq!(parse_payload(b"[\"x"), Err(PayloadError::BrokenJson));
        assert_eq!(parse_payload(b"[1]"), Err(PayloadError::BrokenJson));
    }

    #[test]
    fn wrappings() {
        assert_eq!(wrap(Wrapping::Line, "o", ""), "o\n");
        assert_eq!(wrap(Wrapping::EventSource, "o", ""), "data: o\r\n\r\n");
        assert_eq!(
            wrap(Wrapping::Jsonp, "a[\"x\"]", "cb"),
            "cb(\"a[\\\"x\\\"]\");\r\n"
        );
        assert!(valid_callback("jQuery_1.x") && !valid_callback("a(b)") && !valid_callback(""));
    }

    #[test]
    fn server_frames_are_read_back_cut_anywhere() {
        let mut q = OutQueue::default();
        q.push_frame(OpCode::Text, b"hello".to_vec());
        q.push_frame(OpCode::Text, vec![b'x'; 70_000]);
        q.push_frame(OpCode::Ping, Vec::new());
        q.push_frame(OpCode::Close, [&3000u16.to_be_bytes()[..], b"bye"].concat());
        let mut bytes = Vec::new();
        let mut pool = Default::default();
        q.flush(&mut bytes, &mut pool).unwrap();
        for cut in [1, 2, 3, 7, 1000] {
            let mut r = ServerFrameReader::default();
            let mut got = Vec::new();
            for piece in bytes.chunks(cut) {
                r.push(piece, &mut got);
            }
            assert_eq!(got.len(), 4, "cut {cut}");
            assert_eq!(got[0], ServerFrame::Message("hello".into()));
            assert_eq!(got[2], ServerFrame::Ping);
            assert_eq!(got[3], ServerFrame::Close(3000, "bye".into()));
        }
    }

    #[test]
    fn client_frames_decode_as_sent() {
        use crate::ws::{Decoder, DecoderLimits, Incoming, Role};
        let mut bytes = Vec::new();
        push_client_frame(&mut bytes, 1, b"hi");
        push_client_frame(&mut bytes, 1, &vec![b'y'; 300]);
        let mut d = Decoder::new(Role::Server, DecoderLimits::default());
        let mut input = &bytes[..];
        assert!(matches!(d.decode(&mut input), Ok(Some(Incoming::Text(t))) if t == "hi"));
        assert!(matches!(d.decode(&mut input), Ok(Some(Incoming::Text(t))) if t.len() == 300));
    }
}
