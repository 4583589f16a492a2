//! Connection ids: (worker, slot, generation).
//!
//! Owns only the id type; the reactor mints ids and resolves them to slots.

use std::fmt;

/// Names one connection for the server's lifetime. The slot is reused after the
/// connection closes, the generation is not, so an id kept after its connection closed
/// never reaches the newcomer in the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    worker: u16,
    slot: u32,
    generation: u32,
}

impl ConnId {
    pub(crate) fn new(worker: u16, slot: u32, generation: u32) -> Self {
        ConnId {
            worker,
            slot,
            generation,
        }
    }

    /// The worker that owns the connection.
    pub fn worker(&self) -> usize {
        self.worker as usize
    }

    pub(crate) fn parts(&self) -> (u16, u32, u32) {
        (self.worker, self.slot, self.generation)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.worker, self.slot, self.generation)
    }
}
