//! The WebSocket opening handshake rules (RFC 6455 §4.2.1) applied to a parsed request.

use base64::Engine as _;

use super::error::HandshakeError;
use super::request::Request;
use super::response::{accept_key, switching_protocols};
use crate::ws::deflate::{negotiate, Agreement, DeflateConfig};

/// What the server allows in a handshake.
#[derive(Debug, Clone, Default)]
pub struct UpgradePolicy {
    /// Allowed `Origin` values (exact, case-insensitive). Empty: any origin.
    ///
    /// A request without an `Origin` header is let through: browsers always send one, so
    /// its absence means a non-browser client, which could forge any value anyway. The
    /// check exists to stop other web sites' pages from connecting with a user's cookies.
    pub allowed_origins: Vec<String>,
    /// Subprotocols the server speaks, in order of preference.
    pub subprotocols: Vec<String>,
    /// permessage-deflate settings; with `enabled`, a client's offer is answered.
    pub deflate: DeflateConfig,
}

/// An accepted handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// The subprotocol chosen, if the client offered one the server speaks.
    pub protocol: Option<String>,
    /// The permessage-deflate terms agreed, if any.
    pub deflate: Option<Agreement>,
    /// The 101 response to send.
    pub response: Vec<u8>,
}

/// Checks what every request must satisfy before routing: GET over HTTP/1.1.
pub fn check_request_line(req: &Request) -> Result<(), HandshakeError> {
    if req.method != "GET" {
        return Err(HandshakeError::BadMethod(req.method.clone()));
    }
    if req.version < 1 {
        return Err(HandshakeError::BadVersion(req.version));
    }
    if req.header("Host").is_none() {
        return Err(HandshakeError::MissingHost);
    }
    Ok(())
}

/// Whether the request asks for a WebSocket upgrade at all (as opposed to a plain GET).
pub fn is_upgrade_request(req: &Request) -> bool {
    req.has_token("Upgrade", "websocket")
}

/// Validates the upgrade headers of a request already routed to a WebSocket endpoint and
/// builds the 101 response.
pub fn validate_upgrade(req: &Request, policy: &UpgradePolicy) -> Result<Upgrade, HandshakeError> {
    check_request_line(req)?;
    if !is_upgrade_request(req) || !req.has_token("Connection", "upgrade") {
        return Err(HandshakeError::NotUpgrade);
    }
    // Drafts hybi-07 to -17 (versions 7 and 8) frame and shake hands as RFC 6455 does;
    // the SockJS protocol suite and a few old clients still send them.
    if !matches!(req.header("Sec-WebSocket-Version"), Some("13" | "8" | "7")) {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = req
        .header("Sec-WebSocket-Key")
        .ok_or(HandshakeError::BadKey)?;
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(HandshakeError::BadKey),
    }
    if !policy.allowed_origins.is_empty() {
        if let Some(origin) = req.header("Origin") {
            if !policy
                .allowed_origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin))
            {
                return Err(HandshakeError::OriginNotAllowed(origin.to_owned()));
            }
        }
    }
    // The first protocol the client lists that the server speaks; none if no overlap,
    // which leaves the client to decide whether to go on (RFC 6455 §4.2.2).
    let protocol = req
        .headers_all("Sec-WebSocket-Protocol")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|offered| policy.subprotocols.iter().any(|p| p == offered))
        .map(str::to_owned);
    let deflate = negotiate(req.headers_all("Sec-WebSocket-Extensions"), &policy.deflate);
    let extensions = deflate.as_ref().map(|a| a.response.as_str());
    let response = switching_protocols(&accept_key(key), protocol.as_deref(), extensions);
    Ok(Upgrade {
        protocol,
        deflate,
        response,
    })
}
