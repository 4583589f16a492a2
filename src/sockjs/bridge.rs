//! The framed `websocket` transport (`/{server}/{session}/websocket`): a real WebSocket
//! whose messages are SockJS frames. Its handler opens a virtual connection for the
//! application and relays: client payloads (JSON arrays of strings) become the
//! session's input, the session's frames go out as text messages.
//!
//! Owns that relay only. The session itself (`session.rs`) is the same as for the HTTP
//! transports, so the application sees one kind of connection whatever the transport.

use std::sync::Arc;

use super::endpoint::Shared;
use super::frame;
use super::session::{SessionWire, WireInput};
use crate::handler::{Context, Handler, Message};
use crate::http::{HttpResponse, Request};
use crate::id::ConnId;

/// The handler of a SockJS endpoint's framed WebSocket transport.
pub(crate) struct Bridge(pub(crate) Arc<Shared>);

/// On the carrying WebSocket: the virtual connection it carries.
pub(crate) struct Carries(pub(crate) ConnId);

/// Whether `path` is `<prefix>/<server>/<session>/websocket` with valid ids.
fn is_transport_path(prefix: &str, path: &str) -> bool {
    let Some(rest) = path.strip_prefix(prefix).and_then(|r| r.strip_prefix('/')) else {
        return false;
    };
    let parts: Vec<&str> = rest.split('/').collect();
    matches!(parts.as_slice(), [server, session, "websocket"]
        if [server, session].iter().all(|s| !s.is_empty() && !s.contains('.')))
}

impl Handler for Bridge {
    fn on_open(&self, ctx: &mut Context<'_>, req: &Request) -> Result<(), HttpResponse> {
        let shared = &self.0;
        if !shared.cfg.websocket || !is_transport_path(&shared.prefix, &req.path) {
            return Err(HttpResponse::text(404, "Not found\n"));
        }
        if let Some(refused) = super::refuse_origin(shared, req) {
            return Err(refused);
        }
        let hub = ctx.hub().clone();
        let wire = SessionWire::websocket(shared.clone(), hub.clone(), ctx.id());
        let worker = ctx.id().worker();
        hub.open_virtual(
            worker,
            shared.route,
            req.clone(),
            ctx.remote_ip(),
            Box::new(wire),
        );
        Ok(())
    }

    fn on_message(&self, ctx: &mut Context<'_>, msg: Message) {
        let Message::Text(text) = msg else {
            return ctx.close(1003, "SockJS frames are text");
        };
        // SockJS servers ignore empty messages.
        if text.is_empty() {
            return;
        }
        match frame::parse_payload(text.as_bytes()) {
            Ok(msgs) => {
                if let Some(Carries(id)) = ctx.attributes().get::<Carries>() {
                    let id = *id;
                    ctx.hub()
                        .to_wire(id, Box::new(WireInput::Messages(msgs, None)));
                }
            }
            Err(e) => ctx.close(1002, &e.to_string()),
        }
    }

    fn on_close(&self, ctx: &mut Context<'_>, _code: u16, _reason: &str) {
        if let Some(Carries(id)) = ctx.attributes().get::<Carries>() {
            let id = *id;
            ctx.hub().to_wire(id, Box::new(WireInput::WebSocketClosed));
        }
    }
}

/// Sent to the carrying WebSocket once the session is open; if the WebSocket is gone
/// before it runs, dropping it tells the session.
pub(crate) struct CarryGuard {
    pub(crate) hub: crate::hub::Hub,
    pub(crate) session: ConnId,
    pub(crate) done: bool,
}

impl Drop for CarryGuard {
    fn drop(&mut self) {
        if !self.done {
            self.hub
                .to_wire(self.session, Box::new(WireInput::WebSocketClosed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_paths() {
        assert!(is_transport_path("/echo", "/echo/000/abc/websocket"));
        assert!(!is_transport_path("/echo", "/echo/000/a.c/websocket"));
        assert!(!is_transport_path("/echo", "/echo//abc/websocket"));
        assert!(!is_transport_path("/echo", "/echo/abc/websocket"));
        assert!(!is_transport_path("/echo", "/echox/0/abc/websocket"));
    }
}
