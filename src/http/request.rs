//! Parsing an HTTP/1.1 request head from bytes that may arrive split at any point.

use super::error::HandshakeError;

/// Limits on the request head.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Largest request head (request line and headers), in bytes (larger → 431).
    pub max_handshake_bytes: usize,
    /// Most header lines accepted (more → 431).
    pub max_headers: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_handshake_bytes: 8 * 1024,
            max_headers: 64,
        }
    }
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The path, without the query string.
    pub path: String,
    /// The query string after `?`, if any.
    pub query: Option<String>,
    /// The minor version: 1 for HTTP/1.1.
    pub version: u8,
    /// Header names as sent, with their raw values, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The body of a plain HTTP request (up to `max_body_bytes`); empty for an upgrade.
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (case-insensitive), if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// The first query parameter `name`, percent-decoded (`?accessToken=%E8%8A%8B` gives
    /// `芋`). `None` if absent or not valid UTF-8 once decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k)? == name)
                .then(|| percent_decode(v))
                .flatten()
        })
    }

    /// How the body of a plain request is framed (RFC 9112 §6.3): chunked, a
    /// `Content-Length` of at most `max` bytes, or none. A transfer coding other than
    /// `chunked` alone is refused (411), as is a request with both framings (400: the
    /// classic request-smuggling ambiguity).
    pub fn body_framing(&self, max: usize) -> Result<BodyFraming, HandshakeError> {
        let Some(te) = self.header("Transfer-Encoding") else {
            return self.content_length(max).map(BodyFraming::Length);
        };
        if self.header("Content-Length").is_some() {
            return Err(HandshakeError::Malformed(
                "both Transfer-Encoding and Content-Length".into(),
            ));
        }
        if self.version < 1 || !te.eq_ignore_ascii_case("chunked") {
            return Err(HandshakeError::LengthRequired);
        }
        Ok(BodyFraming::Chunked)
    }

    /// The body length a plain request announces with `Content-Length` (0 without one).
    pub fn content_length(&self, max: usize) -> Result<usize, HandshakeError> {
        if self.header("Transfer-Encoding").is_some() {
            return Err(HandshakeError::LengthRequired);
        }
        let mut lengths = self.headers_all("Content-Length");
        let Some(v) = lengths.next() else {
            return Ok(0);
        };
        if lengths.next().is_some() {
            return Err(HandshakeError::Malformed(
                "more than one Content-Length".into(),
            ));
        }
        let n: usize = v
            .parse()
            .map_err(|_| HandshakeError::Malformed("invalid Content-Length".into()))?;
        if n > max {
            return Err(HandshakeError::BodyTooLarge(max));
        }
        Ok(n)
    }

    /// Every header named `name` (case-insensitive) that is valid UTF-8.
    pub fn headers_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
            .map(str::trim)
    }

    /// Whether any comma-separated token of any header `name` equals `token`
    /// (case-insensitive), as for `Connection: keep-alive, Upgrade`.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers_all(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// `Content-Length` bytes (0 when the header is absent).
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Decodes `%XX` escapes and `+` (as a space, the form encoding browsers use in query
/// strings). `None` for a bad escape or bytes that are not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The result of looking at the bytes received so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet; call again with more bytes.
    Partial,
    /// The head is complete and took the first `consumed` bytes; bytes after it belong to
    /// the next protocol (WebSocket frames a client sent right behind its request).
    Complete {
        /// The request.
        request: Request,
        /// Length of the head in bytes.
        consumed: usize,
    },
}

/// Parses the request head at the start of `buf`, all bytes received so far. The same
/// bytes give the same answer however they were split across reads.
pub fn parse_request(buf: &[u8], limits: &HttpLimits) -> Result<Parsed, HandshakeError> {
    let mut storage = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut storage);
    // Only the first `max_handshake_bytes` are ever parsed, so the answer depends on
    // those bytes alone and not on how much arrived behind them in the same read (the
    // fuzzer found 400 and 431 swapping with the split point otherwise).
    let window = &buf[..buf.len().min(limits.max_handshake_bytes)];
    match req.parse(window) {
        Ok(httparse::Status::Partial) => {
            if buf.len() >= limits.max_handshake_bytes {
                Err(HandshakeError::HeadersTooLarge(limits.max_handshake_bytes))
            } else {
                Ok(Parsed::Partial)
            }
        }
        Err(httparse::Error::TooManyHeaders) => {
            Err(HandshakeError::TooManyHeaders(limits.max_headers))
        }
        Err(e) => Err(HandshakeError::Malformed(e.to_string())),
        Ok(httparse::Status::Complete(consumed)) => {
            let target = req.path.unwrap_or("/");
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
                None => (target.to_owned(), None),
            };
            let request = Request {
                method: req.method.unwrap_or("").to_owned(),
                path,
                query,
                version: req.version.unwrap_or(0),
                headers: req
                    .headers
                    .iter()
                    .map(|h| (h.name.to_owned(), h.value.to_vec()))
                    .collect(),
                body: Vec::new(),
            };
            Ok(Parsed::Complete { request, consumed })
        }
    }
}
