//! Switchboard: a WebSocket server built on a hand-rolled, per-core mio reactor.
//!
//! The crate is layered, and dependencies point one way:
//! - [`http`], [`ws`] and [`rawframe`]: sans-IO codecs (request heads and bodies, the
//!   upgrade rules, RFC 6455 framing and permessage-deflate, raw TCP lines and length
//!   prefixes).
//! - [`conn`]: sans-IO connection machines (HTTP/1.1 with keep-alive, WebSocket, raw
//!   TCP) driven with bytes and a clock; `io`: the transport under each connection
//!   (plain TCP or TLS).
//! - `reactor`: worker threads, each with its own `mio::Poll`, connection slab, timers
//!   and inbox; a shell that moves bytes between `io` and `conn` and calls handlers.
//! - [`Server`], [`Handler`], [`Context`], [`Hub`]: the embedding API; the hub reaches
//!   connections from any thread through the workers' inboxes.
//! - [`echo`]: the bare-engine application behind `switchboard echo`.
//! - `chat` and `stomp` (feature `chat`): the chat and push node, and the STOMP broker
//!   it serves beside it; applications of the public API above.
//!
//! See `README.md` for running the server and the tests.
#![deny(missing_docs, missing_debug_implementations)]
#![warn(rust_2018_idioms)]

mod attributes;
#[cfg(feature = "bench")]
pub mod bench;
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod bench_support;
#[cfg(feature = "chat")]
pub mod chat;
pub mod config;
pub mod conn;
pub mod echo;
mod handler;
pub mod http;
mod hub;
mod id;
mod io;
mod message;
pub mod metrics;
pub mod rawframe;
mod reactor;
mod reply;
mod router;
mod server;
#[cfg(feature = "sockjs")]
pub mod sockjs;
#[cfg(feature = "chat")]
pub mod stomp;
pub mod ws;

pub use attributes::Attributes;
pub use config::{Config, ConfigError, RawListenerConfig, SlowConsumerPolicy, TlsConfig};
pub use handler::Handler;
pub use hub::{Context, Hub};
pub use id::{ConnId, ParseConnIdError};
pub use message::{ConnError, Message, Payload};
pub use metrics::MetricsSnapshot;
pub use reply::{HttpReply, HttpStream};
pub use router::{DeferredHttpHandler, HttpHandler};
pub use server::{Server, ServerBuilder, ServerError, ServerHandle, Stopper};

/// Compiles the README's Rust examples as doctests, so the README stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
