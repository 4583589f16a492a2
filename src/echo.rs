//! The bare-engine application behind `switchboard echo`: every path echoes, except
//! `/broadcast`, which fans each message out to everyone on `/broadcast`; with
//! `--sockjs`, the endpoints the SockJS protocol test suite expects.
//!
//! Owns only these handlers; it uses the public embedding API like any application.

use crate::http::{HttpResponse, Request};
#[cfg(feature = "sockjs")]
use crate::sockjs::SockJsConfig;
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

/// Closes every connection as soon as it opens, with `3000 Go away!` (the SockJS test
/// suite's `/close`).
#[derive(Debug, Default, Clone, Copy)]
pub struct CloseAtOnce;

impl Handler for CloseAtOnce {
    fn on_open(&self, ctx: &mut Context<'_>, _req: &Request) -> Result<(), HttpResponse> {
        ctx.close(3000, "Go away!");
        Ok(())
    }

    fn on_message(&self, _ctx: &mut Context<'_>, _msg: Message) {}
}

/// The echo server plus the SockJS protocol test suite's endpoints, as Spring's and
/// sockjs-node's reference test servers set them up: `/echo`, `/close`,
/// `/disabled_websocket_echo` and `/cookie_needed_echo`, each streaming answer ended
/// after 4096 bytes.
#[cfg(feature = "sockjs")]
pub fn sockjs_echo_server(config: Config) -> ServerBuilder {
    let base = SockJsConfig {
        response_limit: 4096,
        ..SockJsConfig::default()
    };
    echo_server(config)
        .route("/echo", Echo)
        .route("/close", CloseAtOnce)
        .route("/disabled_websocket_echo", Echo)
        .route("/cookie_needed_echo", Echo)
        .sockjs("/echo", base.clone())
        .sockjs("/close", base.clone())
        .sockjs(
            "/disabled_websocket_echo",
            SockJsConfig {
                websocket: false,
                ..base.clone()
            },
        )
        .sockjs(
            "/cookie_needed_echo",
            SockJsConfig {
                cookie_needed: true,
                ..base
            },
        )
}
