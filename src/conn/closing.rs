//! The last state of every connection: our final bytes (a close frame, an error
//! response, a `Connection: close` answer) are queued, and we wait for the peer to close
//! TCP, for at most `linger`.
//!
//! Owns that wait only. Input is discarded: reading on (rather than closing at once)
//! keeps unread input from turning our close into a reset that could destroy the bytes
//! we just sent. Shutting the write side once the queue drains is the I/O layer's.

use super::Tick;

/// A connection that has said its last word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closing {
    until: Tick,
}

impl Closing {
    /// Starts lingering at `now` for at most `linger`.
    pub fn new(now: Tick, linger: Tick) -> Self {
        Closing {
            until: now.saturating_add(linger),
        }
    }

    /// Discards what the peer sends.
    pub fn handle_read(&mut self, input: &mut &[u8]) {
        *input = &[];
    }

    /// When [`Closing::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Tick {
        self.until
    }

    /// Whether the peer has had its time: drop the connection.
    pub fn handle_timeout(&self, now: Tick) -> bool {
        now >= self.until
    }
}
