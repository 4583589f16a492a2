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

/// A string that is not a connection id (`worker.slot.generation`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a connection id (expected worker.slot.generation): {0:?}")]
pub struct ParseConnIdError(String);

impl std::str::FromStr for ConnId {
    type Err = ParseConnIdError;

    /// Parses the form [`ConnId`]'s `Display` writes, so an id can travel through a
    /// backend and come back (to push to one connection over HTTP, say).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseConnIdError(s.to_owned());
        let mut parts = s.split('.');
        let worker = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let slot = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        let generation = parts.next().and_then(|p| p.parse().ok()).ok_or_else(err)?;
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(ConnId::new(worker, slot, generation))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let id = ConnId::new(1, 42, 7);
        assert_eq!(id.to_string(), "1.42.7");
        assert_eq!("1.42.7".parse::<ConnId>(), Ok(id));
        for bad in ["", "1.2", "1.2.3.4", "a.b.c", "70000.1.1", "1.-2.3"] {
            assert!(bad.parse::<ConnId>().is_err(), "{bad}");
        }
    }
}
