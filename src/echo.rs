//! The bare-engine application behind `switchboard echo`: every path echoes, except
//! `/broadcast`, which fans each message out to everyone on `/broadcast`.
//!
//! Owns only these two handlers; it uses the public embedding API like any application.

use crate::{Config, Context, Handler, Message, Server, ServerBuilder};

/// Sends every message back to its sender.
#[derive(Debug, Default, Clone, Copy)]
pub struct Echo;

impl Handler for Echo {
    fn on_message(&self, ctx: &mut Context<'_>, msg: Message) {
        ctx.send(msg);
    }
}

/// Sends every message to every connection on the same route, sender included.
#[derive(Debug, Default, Clone, Copy)]
pub struct Broadcast;

impl Handler for Broadcast {
    fn on_message(&self, ctx: &mut Context<'_>, msg: Message) {
        ctx.broadcast(msg);
    }
}

/// The echo server: `/broadcast` broadcasts, `/healthz` answers 200, `/metrics` serves
/// Prometheus counters, any other path echoes.
pub fn echo_server(config: Config) -> ServerBuilder {
    Server::builder()
        .config(config)
        .metrics_route("/metrics")
        .route("/broadcast", Broadcast)
        .fallback(Echo)
}
