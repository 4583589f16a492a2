//! The chat and push node behind `switchboard serve`: token auth at the handshake, a
//! session registry, the seeds' `{type, body}` JSON protocol, an HTTP push API for
//! backends, and a demo page.
//!
//! Owns the application layer only. It uses the public embedding API (routes, handler,
//! hub) like any application, and never reaches into the reactor.

mod api;
pub mod auth;
pub mod config;
mod durable;
mod inflight;
pub mod metrics;
mod node;
pub mod protocol;
pub mod registry;
mod stomp_auth;
pub mod store;

use std::sync::Arc;

pub use config::ChatConfig;
pub use node::{ChatHandler, ChatNode, CLOSE_SESSION_LIMIT, CLOSE_TOKEN_EXPIRED};

use crate::config::ConfigError;
use crate::http::HttpResponse;
use crate::stomp::Stomp;
use crate::{Server, ServerBuilder};
use stomp_auth::StompAuth;

/// The demo page: self-contained but for the node's own client script.
pub const DEMO_PAGE: &str = include_str!("demo.html");

/// The browser client (`/switchboard.js`): reconnect, resume, ACK, pull, request/reply.
pub const CLIENT_JS: &str = include_str!("switchboard.js");

/// Builds the chat node: the WebSocket endpoint at `ws_path`, the push API under
/// `/api/v1/`, the demo page at `/`, `/healthz` and `/metrics`.
pub fn chat_server(cfg: ChatConfig) -> Result<(ServerBuilder, Arc<ChatNode>), ConfigError> {
    cfg.validate()?;
    if cfg.auth.mode == config::AuthMode::Demo {
        let loopback = cfg
            .listen
            .parse::<std::net::SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback());
        if !loopback {
            tracing::warn!(
                listen = %cfg.listen,
                "auth.mode = \"demo\" trusts any token as a user id: use it for local trials only"
            );
        }
    }
    let engine = cfg.engine_config();
    let ws_path = cfg.ws_path.clone();
    let stomp_cfg = cfg.stomp.clone();
    let sockjs = cfg.sockjs.clone();
    let sockjs_cfg = sockjs.settings()?;
    let node = ChatNode::start(cfg)?;
    let stomp = if stomp_cfg.enabled {
        Some(
            Stomp::new(stomp_cfg.settings()?, StompAuth(node.clone()))
                .map_err(ConfigError::Invalid)?,
        )
    } else {
        None
    };
    let (s1, s2) = (stomp.clone(), stomp.clone());
    let (n1, n2, n3, n4, n5) = (
        node.clone(),
        node.clone(),
        node.clone(),
        node.clone(),
        node.clone(),
    );
    let builder = Server::builder()
        .config(engine)
        .route(&ws_path, ChatHandler(node.clone()))
        .http_route("/metrics", move |_, hub| {
            if let Some(d) = &n4.durable {
                let depth = d.depth() as u64;
                n4.metrics
                    .durable
                    .queue_depth
                    .store(depth, std::sync::atomic::Ordering::Relaxed);
            }
            let mut text = hub.metrics().to_prometheus() + &n4.metrics.to_prometheus(&n4.registry);
            if let Some(s) = &s2 {
                text += &s.metrics.to_prometheus(s.destinations());
            }
            HttpResponse::text(200, text).header("X-Content-Type-Options", "nosniff")
        })
        .http_route("/", |req, _| match req.method.as_str() {
            "GET" | "HEAD" => {
                HttpResponse::html(200, DEMO_PAGE).header("Cache-Control", "no-store")
            }
            _ => HttpResponse::text(405, "use GET\n").header("Allow", "GET"),
        })
        .http_route("/switchboard.js", |req, _| match req.method.as_str() {
            "GET" | "HEAD" => HttpResponse {
                status: 200,
                headers: vec![
                    (
                        "Content-Type".into(),
                        "text/javascript; charset=utf-8".into(),
                    ),
                    ("Cache-Control".into(), "no-cache".into()),
                ],
                body: CLIENT_JS.as_bytes().to_vec(),
            },
            _ => HttpResponse::text(405, "use GET\n").header("Allow", "GET"),
        })
        .http_route_deferred("/api/v1/send", move |req, hub, reply| {
            api::send(&n1, s1.as_deref(), req, hub, reply)
        })
        .http_route_deferred("/api/v1/messages", move |req, hub, reply| {
            api::messages(&n5, req, hub, reply)
        })
        .http_route("/api/v1/presence", move |req, hub| {
            api::presence(&n2, req, hub)
        })
        .http_route("/api/v1/stats", move |req, hub| api::stats(&n3, req, hub));
    let builder = match &stomp {
        Some(s) => builder.route(&stomp_cfg.path, s.handler()),
        None => builder,
    };
    let builder = match sockjs.chat {
        true => builder.sockjs(&ws_path, sockjs_cfg.clone()),
        false => builder,
    };
    let builder = match sockjs.stomp && stomp.is_some() {
        true => builder.sockjs(&stomp_cfg.path, sockjs_cfg),
        false => builder,
    };
    Ok((builder, node))
}
