//! Internals exposed for `benches/` only; not part of the API and not semver-stable.

pub use crate::bench::conn::{next_frame, RawFrame};
use crate::conn::OutQueue;
use crate::handler::Message;
use crate::message::ws_frame_of;
use crate::ws::OpCode;

/// `n` connection queues, to measure fan-out into them.
#[derive(Debug)]
pub struct FanoutQueues(Vec<OutQueue>);

impl FanoutQueues {
    /// `n` empty queues.
    pub fn new(n: usize) -> Self {
        FanoutQueues((0..n).map(|_| OutQueue::default()).collect())
    }

    /// What a broadcast does: encode once (as the payload's cache does), queue a shared
    /// handle on every queue.
    pub fn push_shared(&mut self, msg: &Message) {
        let frame = ws_frame_of(msg);
        for q in &mut self.0 {
            q.push_shared(frame.clone());
        }
    }

    /// The alternative: encode a copy of the frame for every queue.
    pub fn push_copied(&mut self, msg: &Message) {
        for q in &mut self.0 {
            q.push_frame(OpCode::Binary, msg.as_bytes().to_vec());
        }
    }

    /// Empties every queue (as a flush would).
    pub fn clear(&mut self) {
        for q in &mut self.0 {
            *q = OutQueue::default();
        }
    }

    /// Bytes queued in all queues.
    pub fn queued(&self) -> usize {
        self.0.iter().map(OutQueue::len).sum()
    }
}
