//! Handshake errors, one per rule, each mapped to its HTTP status and response here.

use super::response::HttpResponse;

/// Why an HTTP request did not become a WebSocket connection. Each maps to one status
/// code through [`HandshakeError::status`]; the response always closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The request head grew past `max_handshake_bytes` without ending. 431.
    #[error("request header section exceeds {0} bytes")]
    HeadersTooLarge(usize),
    /// More header lines than `max_headers`. 431.
    #[error("more than {0} request headers")]
    TooManyHeaders(usize),
    /// Bytes that are not an HTTP/1.x request. 400.
    #[error("malformed HTTP request: {0}")]
    Malformed(String),
    /// A method other than GET. 400 (RFC 6455 §4.1: the handshake is a GET).
    #[error("method {0} is not allowed; a WebSocket handshake is a GET")]
    BadMethod(String),
    /// HTTP/1.0: an upgrade needs HTTP/1.1 or later. 400.
    #[error("HTTP/1.{0} cannot upgrade; HTTP/1.1 is required")]
    BadVersion(u8),
    /// No `Host` header (required by HTTP/1.1 and RFC 6455). 400.
    #[error("missing Host header")]
    MissingHost,
    /// `Upgrade: websocket` or `Connection: Upgrade` is missing. 400.
    #[error("not a WebSocket upgrade request (needs Upgrade: websocket and Connection: Upgrade)")]
    NotUpgrade,
    /// `Sec-WebSocket-Key` is missing or not 16 bytes in base64. 400.
    #[error("missing or invalid Sec-WebSocket-Key")]
    BadKey,
    /// `Sec-WebSocket-Version` is missing or not 13. 426 with `Sec-WebSocket-Version: 13`.
    #[error("unsupported Sec-WebSocket-Version; this server speaks 13")]
    UnsupportedVersion,
    /// No route for the path. 404.
    #[error("no route for {0}")]
    NotFound(String),
    /// `Origin` is not in the configured allow-list. 403.
    #[error("origin {0} is not allowed")]
    OriginNotAllowed(String),
    /// A plain request's body is larger than `max_body_bytes`. 413.
    #[error("request body exceeds {0} bytes")]
    BodyTooLarge(usize),
    /// A transfer coding other than `chunked` (or chunked over HTTP/1.0). 411.
    #[error("a Content-Length is required")]
    LengthRequired,
    /// The server is at `max_connections` (or the client at `max_connections_per_ip`),
    /// or shutting down. 503.
    #[error("server is not accepting connections: {0}")]
    Unavailable(&'static str),
}

impl HandshakeError {
    /// The status code this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::HeadersTooLarge(_) | HandshakeError::TooManyHeaders(_) => 431,
            HandshakeError::UnsupportedVersion => 426,
            HandshakeError::NotFound(_) => 404,
            HandshakeError::OriginNotAllowed(_) => 403,
            HandshakeError::Unavailable(_) => 503,
            HandshakeError::BodyTooLarge(_) => 413,
            HandshakeError::LengthRequired => 411,
            HandshakeError::BadMethod(_) => 405,
            _ => 400,
        }
    }

    /// The complete response for this error, with `Connection: close`.
    pub fn response(&self) -> HttpResponse {
        if let HandshakeError::BadMethod(_) = self {
            // RFC 9110 §15.5.6: say what is allowed; no body to misread.
            return HttpResponse {
                status: 405,
                headers: vec![("Allow".into(), "GET".into())],
                body: Vec::new(),
            };
        }
        let mut resp = HttpResponse::text(self.status(), format!("{self}\n"));
        if let HandshakeError::UnsupportedVersion = self {
            resp = resp.header("Sec-WebSocket-Version", "13");
        }
        resp
    }
}
