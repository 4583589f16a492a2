//! SockJS (protocol 0.3.3) for any WebSocket route: browsers whose network blocks
//! WebSocket fall back to HTTP streaming or polling, and the route's handler sees the
//! same connection either way.
//!
//! Owns the SockJS layer: the URL space under an endpoint's prefix (`endpoint.rs`),
//! framing (`frame.rs`), sessions that outlive the requests carrying them
//! (`session.rs`), and the framed WebSocket transport (`bridge.rs`). A session is a
//! *virtual connection* of the engine (see `io::Wire`): the worker runs the ordinary
//! WebSocket machine and handler for it, and the session turns what it writes into
//! SockJS frames for the request receiving now. It uses the engine's public seams —
//! deferred HTTP answers, the hub, virtual connections — and never touches a socket or
//! a worker's tables.
//!
//! Enabled with [`crate::ServerBuilder::sockjs`] on a prefix that already has a
//! WebSocket route.

mod bridge;
pub mod endpoint;
pub mod frame;
mod session;

use std::time::Duration;

pub(crate) use bridge::Bridge;
use endpoint::refuse_origin;
pub(crate) use endpoint::{serve, Shared};

/// The settings of one SockJS endpoint; every limit is a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SockJsConfig {
    /// Offer the `websocket` transport (`/info` says so; off: 404).
    pub websocket: bool,
    /// Ask load balancers for sticky sessions: `/info` says `cookie_needed` and
    /// transport answers set `JSESSIONID` (the client's, or `dummy`).
    pub cookie_needed: bool,
    /// A heart-beat frame (`h`) goes to the receiving request this often.
    pub heartbeat: Duration,
    /// A session with no receiving request for this long is closed.
    pub disconnect_delay: Duration,
    /// A streaming answer is ended after this many bytes, and the client opens the next
    /// (so the browser can free what it has read).
    pub response_limit: usize,
    /// Most bytes of messages a session holds while no request is receiving; past it
    /// the session is closed (`c[1013,...]`).
    pub max_buffered_bytes: usize,
    /// Most sessions open at once on the endpoint; past it new ones get 503.
    pub max_sessions: usize,
    /// The SockJS client script `/iframe.html` loads.
    pub client_url: String,
    /// Origins allowed to open sessions (`Origin` header, compared ignoring case); `*`
    /// allows any. The engine's `allowed_origins`, when set, must allow it too. `/info`
    /// and the greeting answer everyone; a request without `Origin` (not a browser)
    /// passes, as at the WebSocket handshake.
    pub allowed_origins: Vec<String>,
}

impl Default for SockJsConfig {
    fn default() -> Self {
        SockJsConfig {
            websocket: true,
            cookie_needed: false,
            heartbeat: Duration::from_secs(25),
            disconnect_delay: Duration::from_secs(5),
            response_limit: 128 * 1024,
            max_buffered_bytes: 1024 * 1024,
            max_sessions: 100_000,
            client_url: "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js".into(),
            allowed_origins: vec!["*".into()],
        }
    }
}
