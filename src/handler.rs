//! What an application plugs into the server: the [`Handler`] trait, the [`Message`]
//! type and the per-event [`Context`].
//!
//! Owns the application-facing vocabulary only. A context does not touch sockets: it
//! records what the handler asked for and the worker carries it out after the handler
//! returns, so a handler can never re-enter the reactor.

use std::fmt;

use crate::reactor::ConnId;

/// A complete WebSocket data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Binary(Vec<u8>),
}

impl Message {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(s) => s.as_bytes(),
            Message::Binary(b) => b,
        }
    }
}

/// Application code for one WebSocket route. One instance serves every connection on the
/// route, on every worker, so it is `Send + Sync`; each call runs on the worker thread
/// that owns the connection and should not block.
pub trait Handler: Send + Sync + 'static {
    /// The connection is open (the 101 response is queued).
    fn on_open(&self, _ctx: &mut Context<'_>) {}

    /// A whole message arrived.
    fn on_message(&self, ctx: &mut Context<'_>, msg: Message);

    /// The connection left the open state: `code` is the peer's close code, the server's
    /// own when it closed first, or 1006 when TCP went away without a close frame.
    fn on_close(&self, _ctx: &mut Context<'_>, _code: u16, _reason: &str) {}
}

/// What a handler asked for, carried out by the worker after the handler returns.
#[derive(Debug)]
pub(crate) enum Action {
    Send(Message),
    Close(u16, String),
    Broadcast(Message),
}

/// The connection a handler is called for, and what it can ask of the server.
pub struct Context<'a> {
    pub(crate) id: ConnId,
    pub(crate) path: &'a str,
    pub(crate) protocol: Option<&'a str>,
    pub(crate) actions: &'a mut Vec<Action>,
}

impl fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("id", &self.id)
            .field("path", &self.path)
            .finish()
    }
}

impl Context<'_> {
    /// The connection's id, unique for the server's lifetime.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The request path the connection was opened on.
    pub fn path(&self) -> &str {
        self.path
    }

    /// The negotiated subprotocol, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol
    }

    /// Sends a message to this connection.
    pub fn send(&mut self, msg: Message) {
        self.actions.push(Action::Send(msg));
    }

    /// Sends a text message to this connection.
    pub fn send_text(&mut self, text: impl Into<String>) {
        self.send(Message::Text(text.into()));
    }

    /// Starts the close handshake with `code` and `reason` (at most 123 bytes are sent).
    pub fn close(&mut self, code: u16, reason: &str) {
        self.actions.push(Action::Close(code, reason.to_owned()));
    }

    /// Sends a message to every open connection on this route, on every worker,
    /// including this one. The frame is encoded once and shared.
    pub fn broadcast(&mut self, msg: Message) {
        self.actions.push(Action::Broadcast(msg));
    }
}
