//! The HTTP/1.1 side of a connection, sans-IO: parsing the upgrade request, deciding
//! whether it is a valid WebSocket handshake, and encoding responses.
//!
//! Owns request parsing (via `httparse`), the handshake rules of RFC 6455 §4.2 and the
//! mapping of every rejection to an HTTP status. It holds no sockets and knows nothing of
//! routes' handlers: the reactor asks it about bytes and gets back a request or an error
//! with its response.

mod chunked;
mod error;
mod request;
mod response;
mod upgrade;

pub use chunked::ChunkedDecoder;
pub use error::HandshakeError;
pub use request::{parse_request, percent_decode, BodyFraming, HttpLimits, Parsed, Request};
pub use response::{accept_key, HttpResponse};
pub use upgrade::{
    check_request_line, is_upgrade_request, validate_upgrade, Upgrade, UpgradePolicy,
};

#[cfg(test)]
mod tests;
