//! What an application plugs into the server: the [`Handler`] trait, the [`Message`]
//! type, per-connection [`Attributes`] and the per-event [`Context`].
//!
//! Owns the application-facing vocabulary only. A context does not touch sockets: it
//! records what the handler asked for and the worker carries it out after the handler
//! returns, so a handler can never re-enter the reactor.

use std::any::{Any, TypeId};
use std::fmt;

use crate::http::{HttpResponse, Request};
use crate::hub::Hub;
use crate::id::ConnId;
pub use crate::message::{ConnError, Message};

/// Typed per-connection values, one per type: what Spring keeps in
/// `session.getAttributes()`. Set them in `on_open` (a user id from the token, say) and
/// read them in later events.
#[derive(Default)]
pub struct Attributes {
    // A few entries at most in practice: a vector beats a hash map. Boxed and created on
    // first insert, so a connection without attributes pays one pointer for them.
    // The box is the point: 8 bytes per connection instead of a `Vec`'s 24.
    #[allow(clippy::box_collection)]
    entries: Option<Box<Vec<Entry>>>,
}

/// One attribute: its type and its value.
type Entry = (TypeId, Box<dyn Any + Send>);

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attributes")
            .field("len", &self.entries.as_ref().map_or(0, |e| e.len()))
            .finish()
    }
}

impl Attributes {
    /// Stores `value`, returning the previous value of the same type.
    pub fn insert<T: Any + Send>(&mut self, value: T) -> Option<T> {
        let id = TypeId::of::<T>();
        let old = self.remove::<T>();
        self.entries
            .get_or_insert_with(Default::default)
            .push((id, Box::new(value)));
        old
    }

    /// The value of type `T`, if set.
    pub fn get<T: Any + Send>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.entries
            .as_ref()?
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| v.downcast_ref())
    }

    /// The value of type `T`, mutably.
    pub fn get_mut<T: Any + Send>(&mut self) -> Option<&mut T> {
        let id = TypeId::of::<T>();
        self.entries
            .as_mut()?
            .iter_mut()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| v.downcast_mut())
    }

    /// Removes and returns the value of type `T`.
    pub fn remove<T: Any + Send>(&mut self) -> Option<T> {
        let id = TypeId::of::<T>();
        let entries = self.entries.as_mut()?;
        let pos = entries.iter().position(|(t, _)| *t == id)?;
        let (_, v) = entries.swap_remove(pos);
        if entries.is_empty() {
            self.entries = None;
        }
        v.downcast().ok().map(|b| *b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_by_type() {
        let mut a = Attributes::default();
        assert_eq!(a.get::<u32>(), None);
        assert_eq!(a.insert(7u32), None);
        assert_eq!(a.insert(String::from("x")), None);
        assert_eq!(a.insert(8u32), Some(7));
        *a.get_mut::<u32>().unwrap() += 1;
        assert_eq!(a.get::<u32>(), Some(&9));
        assert_eq!(a.remove::<String>(), Some("x".into()));
        assert_eq!(a.remove::<u32>(), Some(9));
        assert!(a.entries.is_none());
    }
}

/// Application code for one WebSocket route. One instance serves every connection on the
/// route, on every worker, so it is `Send + Sync`; each call runs on the worker thread
/// that owns the connection and must not block.
pub trait Handler: Send + Sync + 'static {
    /// A valid upgrade request arrived for this route. Return `Err(response)` to refuse
    /// it with that HTTP response (401 for a bad token, say); `Ok(())` accepts, and what
    /// the context was asked to send goes out right after the 101.
    fn on_open(&self, _ctx: &mut Context<'_>, _req: &Request) -> Result<(), HttpResponse> {
        Ok(())
    }

    /// A whole message arrived.
    fn on_message(&self, ctx: &mut Context<'_>, msg: Message);

    /// The connection is ending for `err`; `on_close` follows.
    fn on_error(&self, _ctx: &mut Context<'_>, _err: &ConnError) {}

    /// The connection left the open state: `code` is the peer's close code (1005 if its
    /// close frame had none), the server's own when it closed first, or 1006 when TCP
    /// went away without a close frame. Sends are ignored from here on; broadcasts and
    /// group sends to others still go out.
    fn on_close(&self, _ctx: &mut Context<'_>, _code: u16, _reason: &str) {}

    /// A timer set with [`Context::set_timer`] came due; `token` is the value it was set
    /// with. Runs on the connection's worker like every other callback. There is no
    /// cancel: a handler that no longer wants the timer ignores it (check the state the
    /// timer was for, in the attributes). Timers of a closed connection never fire.
    fn on_timer(&self, _ctx: &mut Context<'_>, _token: u64) {}
}

/// What a handler asked for, carried out by the worker after the handler returns.
#[derive(Debug)]
pub(crate) enum Action {
    Send(Message),
    Close(u16, String),
    Broadcast(Message),
    Join(String),
    Leave(String),
    SetTimer(std::time::Duration, u64),
}

/// The connection a handler is called for, and what it can ask of the server.
pub struct Context<'a> {
    pub(crate) id: ConnId,
    pub(crate) remote_ip: std::net::IpAddr,
    pub(crate) path: &'a str,
    pub(crate) protocol: Option<&'a str>,
    pub(crate) attributes: &'a mut Attributes,
    pub(crate) actions: &'a mut Vec<Action>,
    pub(crate) hub: &'a Hub,
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

    /// The client's address: the peer of the TCP connection, or, behind a proxy listed
    /// in `trusted_proxies`, the address it forwarded.
    pub fn remote_ip(&self) -> std::net::IpAddr {
        self.remote_ip
    }

    /// The request path the connection was opened on.
    pub fn path(&self) -> &str {
        self.path
    }

    /// The negotiated subprotocol, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol
    }

    /// This connection's attributes.
    pub fn attributes(&self) -> &Attributes {
        self.attributes
    }

    /// This connection's attributes, to set or change.
    pub fn attributes_mut(&mut self) -> &mut Attributes {
        self.attributes
    }

    /// The hub, to reach other connections and groups.
    pub fn hub(&self) -> &Hub {
        self.hub
    }

    /// Sends a message to this connection.
    pub fn send(&mut self, msg: Message) {
        self.actions.push(Action::Send(msg));
    }

    /// Sends a text message to this connection.
    pub fn send_text(&mut self, text: impl Into<String>) {
        self.send(Message::Text(text.into()));
    }

    /// Starts the close handshake with `code` and `reason` (at most 123 bytes are sent;
    /// a code that may not be sent on the wire becomes 1000).
    pub fn close(&mut self, code: u16, reason: &str) {
        self.actions.push(Action::Close(code, reason.to_owned()));
    }

    /// Sends a message to every open connection on this route, on every worker,
    /// including this one. The frame is encoded once and shared.
    pub fn broadcast(&mut self, msg: Message) {
        self.actions.push(Action::Broadcast(msg));
    }

    /// Adds this connection to a named group (see [`Hub::send_to_group`]).
    pub fn join(&mut self, group: &str) {
        self.actions.push(Action::Join(group.to_owned()));
    }

    /// Removes this connection from a group.
    pub fn leave(&mut self, group: &str) {
        self.actions.push(Action::Leave(group.to_owned()));
    }

    /// Calls [`Handler::on_timer`] with `token` for this connection once `after` has
    /// passed (to within the reactor's 100 ms tick), on this connection's worker. Cheap
    /// enough for one per connection: an entry in the worker's timer wheel.
    pub fn set_timer(&mut self, after: std::time::Duration, token: u64) {
        self.actions.push(Action::SetTimer(after, token));
    }
}
