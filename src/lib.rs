//! Switchboard: a WebSocket server built on a hand-rolled, per-core mio reactor.
//!
//! The crate is layered, and dependencies point one way:
//! - [`http`] and [`ws`]: sans-IO protocol cores (upgrade parsing, RFC 6455 framing).
//! - `reactor`: worker threads, each with its own `mio::Poll`, connection slab, timers
//!   and inbox; it feeds the protocol cores bytes and calls handlers.
//! - [`Server`], [`Handler`], [`Context`]: the embedding API.
//! - [`echo`]: the bare-engine application behind `switchboard echo`.
//!
//! See `README.md` for running the server and the tests.
#![warn(missing_docs, rust_2018_idioms)]

pub mod config;
pub mod echo;
mod handler;
pub mod http;
mod reactor;
mod server;
pub mod ws;

pub use config::{Config, ConfigError};
pub use handler::{Context, Handler, Message};
pub use reactor::ConnId;
pub use server::{HttpHandler, Server, ServerBuilder, ServerError, ServerHandle, Stopper};
