//! A handler that panics closes only its own connection (1011); the worker and every
//! other connection on it carry on.

mod common;

use common::*;
use switchboard::{Context, Handler, Message, Server};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message as WsMessage;

struct Fragile;
impl Handler for Fragile {
    fn on_message(&self, ctx: &mut Context<'_>, msg: Message) {
        if msg.as_bytes() == b"boom" {
            panic!("handler bug");
        }
        ctx.send(msg);
    }
}

#[test]
fn a_panicking_handler_closes_only_its_connection_with_1011() {
    let server = start(Server::builder().config(config(1)).route("/f", Fragile));
    let addr = server.local_addr();
    let mut victim = connect(addr, "/f");
    let mut other = connect(addr, "/f");
    victim.send(WsMessage::Text("boom".into())).unwrap();
    match victim.read() {
        Ok(WsMessage::Close(Some(f))) => assert_eq!(f.code, CloseCode::Error),
        other => panic!("expected close 1011, got {other:?}"),
    }
    other.send(WsMessage::Text("still fine".into())).unwrap();
    assert_eq!(other.read().unwrap(), WsMessage::Text("still fine".into()));
    // New connections are still accepted by the same (only) worker.
    let mut late = connect(addr, "/f");
    late.send(WsMessage::Text("hi".into())).unwrap();
    assert_eq!(late.read().unwrap(), WsMessage::Text("hi".into()));
    server.stop();
}
