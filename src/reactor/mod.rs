//! The event loop: sockets, readiness, timers and per-worker connection tables.
//!
//! Owns every socket. Each worker thread has its own `mio::Poll`, listener, `Slab` of
//! connections, read buffer, timer wheels and group table; other threads reach a worker
//! only through its inbox (see `hub`). Bytes move through the `io` layer; protocol
//! decisions are the sans-IO connection machines' (`conn`); application behavior is the
//! route's handler's. The worker (`worker.rs`) is the shell; `http_side.rs` routes the
//! HTTP machine's events and performs the upgrade; `app.rs` carries out what handlers ask;
//! `session.rs` holds each open connection's application state and makes handler calls;
//! `raw_side.rs` opens a raw TCP listener's connections.
//!
//! Accepting: each worker has its own `SO_REUSEPORT` listener on the same address, so the
//! kernel spreads new connections across workers and no accept thread or hand-off channel
//! sits on the connection path. An acceptor thread would add a cross-thread hop and a
//! wake-up per connection; with reuseport, a handshake touches one thread only.
//! Measured (2-core machine, 2026-11-22): `cargo bench --bench hub -- accept` takes
//! 98–122 µs per sequential connect + upgrade + reset with one worker and 129–136 µs with two
//! (the second worker shares a core with the client there); `switchboard bench connect
//! -c 50` against one pinned worker does ~20.5k handshakes/s, limited by the client
//! (BENCHMARKS.md). The acceptor-thread design was not built, so there is no
//! side-by-side figure for it.

mod accept;
mod admission;
mod app;
mod http_side;
mod listener;
mod raw_side;
mod session;
mod timer;
mod virtual_conn;
mod worker;

pub(crate) use accept::{ListenerSpec, RawSpec, WorkerListener, MAX_LISTENERS};
pub(crate) use admission::Admission;
pub(crate) use listener::bind_listeners;
pub(crate) use worker::Worker;
