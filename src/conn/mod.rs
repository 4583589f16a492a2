//! Per-connection protocol machines, sans-IO: what a connection *is* once bytes arrive.
//!
//! Owns the state of one connection's protocol — an HTTP/1.1 exchange ([`Http1`]: requests,
//! keep-alive, pipelining, chunked bodies, the upgrade request), an open WebSocket
//! ([`Ws`]: frames, ping/pong, the close handshake, heartbeat and idle checks), an open
//! raw TCP connection ([`Raw`]: lines or length-prefixed messages, idle checks) — the
//! two behind one [`Link`] — or the linger after the last word ([`Closing`]) — and the
//! queue of bytes it owes the peer ([`OutQueue`]). It holds no socket, no clock and no
//! thread, and knows nothing of routes, handlers or the hub: the reactor feeds it bytes
//! and the current [`Tick`], and gets back events and queued output.
//!
//! # How a machine is driven
//!
//! The model is quinn-proto's (bytes and `now` in, transmits and events out), with two
//! deliberate differences, both to keep an idle connection at a few hundred bytes and
//! the write path free of copies:
//! - **Events are pulled out of the input.** `handle_read(&mut input, now, out)`
//!   consumes bytes until it has one event to report (or the input is used up) and
//!   returns it; the caller calls again with what is left (and with an empty input
//!   until it gets `None`, for events made of bytes already buffered). No event queue is
//!   stored per connection, and the caller handles each event before the next is
//!   decoded, so a handler's reply is ordered against the bytes that follow.
//! - **Transmits go straight into the connection's [`OutQueue`]** instead of being
//!   handed out one `poll_transmit` at a time: a broadcast frame shared by a thousand
//!   connections is queued by reference and leaves with the connection's other output in
//!   one vectored write. The I/O layer drains the queue.
//!
//! Timers: each machine reports the next [`Tick`] it must be woken at
//! (`poll_timeout`), and the caller calls `handle_timeout(now, ..)` at or after it. An
//! early call is harmless: the machine re-checks the time itself.
//!
//! Machines are tested without sockets in `tests.rs`: input split at every byte, and a
//! virtual clock that jumps.

mod closing;
mod http1;
mod link;
mod outq;
mod raw;
mod ws;

#[cfg(test)]
mod tests;

pub use closing::Closing;
pub use http1::{AnswerWatch, Http1, Http1Config, HttpEvent};
pub use link::{Link, LinkEvent};
pub use outq::{OutQueue, StoragePool};
pub use raw::Raw;
pub use ws::{Ws, WsConfig};

use std::time::Duration;

/// A point in time, in units of [`TICK`] since an origin the driver picks (a worker's
/// start; zero in tests). Four bytes instead of an `Instant`'s sixteen in every open
/// connection, enough for 13 years, and the same resolution as the reactor's timer
/// wheel, so nothing is lost by storing it.
pub type Tick = u32;

/// The length of one [`Tick`].
pub const TICK: Duration = Duration::from_millis(100);

/// `d` in ticks, rounded up (a timeout never fires early), saturating.
pub fn ticks(d: Duration) -> Tick {
    let t = d.as_millis().div_ceil(TICK.as_millis());
    t.min(Tick::MAX as u128) as Tick
}
