//! What an application plugs into the server: the [`Handler`] trait, called on a
//! connection's worker with a [`Context`] for each event of that connection.
//!
//! Owns the callback contract only (which events, in which order, what each may do).
//! The context lives with the hub (`hub.rs`), the attributes in `attributes.rs`.

use crate::http::{HttpResponse, Request};
pub use crate::hub::Context;
pub use crate::message::{ConnError, Message};

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

    /// The server is closing a raw TCP connection (a [`crate::RawListenerConfig`]
    /// listener's) with `code` and `reason`: a line over the limit (1009), an idle
    /// timeout (1001), [`Context::close`], shutdown. A raw wire has no close frame, so
    /// the message returned here is sent as the connection's last, in its framing (the
    /// chat node sends an `ERROR`). `on_close` follows; sends made here are ignored.
    /// Never called for WebSockets. Default: nothing is sent.
    fn close_notice(&self, _ctx: &mut Context<'_>, _code: u16, _reason: &str) -> Option<Message> {
        None
    }
}
