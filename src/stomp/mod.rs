//! A STOMP 1.0–1.2 broker over WebSocket, with destinations as Spring's simple broker
//! has them (`/topic/**`, `/queue/**`, `/user/**`; `/app/**` for the application), so
//! `@stomp/stompjs`, `stomp.py` and Spring clients connect unchanged.
//!
//! Layers, one way: [`frame`] (wire codec) and [`session`] (one session's rules) are
//! sans-IO; [`destinations`] holds the naming rules and the subscription table; the
//! handler (`handler.rs`) is the shell that runs a session on a connection and fans
//! messages out through the hub. Authentication is the embedder's, through
//! [`Authenticate`]: this module knows no token format.

mod app;
pub mod destinations;
pub mod frame;
mod handler;
pub mod session;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use app::BackendSettings;
pub use destinations::{Prefixes, Target};
pub use frame::{Command, Frame, FrameError, FrameLimits, FrameParser, Parsed};
pub use handler::StompHandler;
pub use session::{AckMode, Event, Session, SessionConfig};

use crate::http::Request;
use crate::hub::Hub;
use crate::id::ConnId;

/// The WebSocket subprotocols a STOMP endpoint speaks, best first.
pub const SUBPROTOCOLS: [&str; 3] = ["v12.stomp", "v11.stomp", "v10.stomp"];

/// Who a STOMP session belongs to. The embedder decides: a JWT, an opaque token
/// checked elsewhere, anonymous.
pub trait Authenticate: Send + Sync + 'static {
    /// Credentials in the handshake (query token, `Authorization`): `Ok(Some(user))`,
    /// `Ok(None)` when it carries none (CONNECT must), `Err(reason)` to refuse the
    /// upgrade with 401.
    fn handshake(&self, req: &Request, conn: ConnId) -> Result<Option<String>, String>;

    /// Credentials in CONNECT, when the handshake had none: the user, or why not
    /// (sent in the `ERROR`).
    fn connect(
        &self,
        login: Option<&str>,
        passcode: Option<&str>,
        token: Option<&str>,
        conn: ConnId,
    ) -> Result<String, String>;
}

/// Everything a STOMP endpoint needs besides the authenticator.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Session limits and heart-beats.
    pub session: SessionConfig,
    /// Destination prefixes.
    pub prefixes: Prefixes,
    /// Time a connection has to send an accepted CONNECT.
    pub connect_timeout: Duration,
    /// The HTTP backend SENDs to application destinations go to; none: they are refused.
    pub app_backend: Option<BackendSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            session: SessionConfig::default(),
            prefixes: Prefixes::default(),
            connect_timeout: Duration::from_secs(10),
            app_backend: None,
        }
    }
}

/// Counters of the broker, for `/metrics`.
#[derive(Debug, Default)]
pub struct StompMetrics {
    /// Sessions whose CONNECT was accepted.
    pub connected: AtomicU64,
    /// Sessions that ended after being connected.
    pub disconnected: AtomicU64,
    /// CONNECTs refused (authentication, version).
    pub refused: AtomicU64,
    /// Frames that were not valid STOMP, or broke a session rule (ERROR sent).
    pub errors: AtomicU64,
    /// SEND frames (and pushes) published to a broker destination.
    pub published: AtomicU64,
    /// MESSAGE frames handed to sessions.
    pub delivered: AtomicU64,
    /// Sessions closed for missing three heart-beats.
    pub heartbeat_timeouts: AtomicU64,
    /// Messages still un-ACKed when their session ended (dropped).
    pub unacked_dropped: AtomicU64,
    /// SENDs to application destinations the backend answered (2xx).
    pub app_forwarded: AtomicU64,
    /// SENDs to application destinations whose backend call failed (status, timeout,
    /// bad answer) or found the queue full.
    pub app_failed: AtomicU64,
}

impl StompMetrics {
    /// The counters in the Prometheus text format.
    pub fn to_prometheus(&self, destinations: usize) -> String {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let connected = c(&self.connected);
        let open = connected.saturating_sub(c(&self.disconnected));
        let mut s = String::new();
        for (name, help, v) in [
            (
                "stomp_sessions_total",
                "STOMP sessions connected",
                connected,
            ),
            ("stomp_refused_total", "CONNECTs refused", c(&self.refused)),
            (
                "stomp_errors_total",
                "ERROR frames sent for bad frames or rule breaks",
                c(&self.errors),
            ),
            (
                "stomp_published_total",
                "messages published to broker destinations",
                c(&self.published),
            ),
            (
                "stomp_delivered_total",
                "MESSAGE frames handed to sessions",
                c(&self.delivered),
            ),
            (
                "stomp_heartbeat_timeouts_total",
                "sessions closed for missed heart-beats",
                c(&self.heartbeat_timeouts),
            ),
            (
                "stomp_unacked_dropped_total",
                "un-ACKed messages dropped when their session ended",
                c(&self.unacked_dropped),
            ),
            (
                "stomp_app_forwarded_total",
                "SENDs to application destinations answered by the backend",
                c(&self.app_forwarded),
            ),
            (
                "stomp_app_failed_total",
                "SENDs to application destinations whose backend call failed",
                c(&self.app_failed),
            ),
        ] {
            s += &format!("# HELP switchboard_{name} {help}\n# TYPE switchboard_{name} counter\nswitchboard_{name} {v}\n");
        }
        s += &format!("# HELP switchboard_stomp_sessions STOMP sessions open\n# TYPE switchboard_stomp_sessions gauge\nswitchboard_stomp_sessions {open}\n");
        s += &format!("# HELP switchboard_stomp_destinations destinations with a subscriber\n# TYPE switchboard_stomp_destinations gauge\nswitchboard_stomp_destinations {destinations}\n");
        s
    }
}

/// The broker: settings, authenticator, subscription table, counters. One per endpoint,
/// shared by its handler and whoever pushes to it (the push API).
pub struct Stomp {
    pub(crate) settings: Settings,
    pub(crate) auth: Box<dyn Authenticate>,
    pub(crate) table: destinations::Table,
    /// Counters.
    pub metrics: StompMetrics,
    next_message: AtomicU64,
    pub(crate) app: Option<app::Backend>,
}

impl std::fmt::Debug for Stomp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stomp")
            .field("settings", &self.settings)
            .field("table", &self.table)
            .finish()
    }
}

/// Why a push could not be published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The destination is not a broker or user destination.
    #[error("{0}")]
    Destination(String),
}

impl Stomp {
    /// A broker with `settings`, taking users from `auth`. Fails when the application
    /// backend's URL is not `http://host:port/path` or its threads cannot start.
    pub fn new(settings: Settings, auth: impl Authenticate) -> Result<Arc<Self>, String> {
        let app = settings
            .app_backend
            .as_ref()
            .map(app::Backend::start)
            .transpose()?;
        Ok(Arc::new(Stomp {
            settings,
            auth: Box::new(auth),
            table: destinations::Table::default(),
            metrics: StompMetrics::default(),
            next_message: AtomicU64::new(1),
            app,
        }))
    }

    /// The handler to mount on the STOMP WebSocket route.
    pub fn handler(self: &Arc<Self>) -> StompHandler {
        StompHandler(self.clone())
    }

    /// Destinations with at least one subscriber.
    pub fn destinations(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn message_id(&self) -> String {
        self.next_message
            .fetch_add(1, Ordering::Relaxed)
            .to_string()
    }

    /// Publishes `body` to a broker destination from outside any session (the push
    /// API; Spring's `convertAndSend` and, with `/user/<name>/queue/...`,
    /// `convertAndSendToUser`). Returns the MESSAGE frames handed to sessions.
    pub fn push(
        &self,
        hub: &Hub,
        destination: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<usize, PushError> {
        let key = match self.settings.prefixes.send(destination) {
            Ok(Target::Broker { key, .. }) => key,
            Ok(Target::App(d)) => {
                return Err(PushError::Destination(format!(
                    "{d:?} is an application destination; push to a broker or user destination"
                )))
            }
            Err(e) => return Err(PushError::Destination(e)),
        };
        let mut send = Frame::new(Command::Send).header("destination", destination);
        if let Some(ct) = content_type {
            send = send.header("content-type", ct);
        }
        send.body = body.to_vec();
        Ok(handler::publish(self, handler::Via::Hub(hub), &key, &send))
    }
}
