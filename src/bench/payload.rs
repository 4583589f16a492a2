//! Bench message payloads: who sent it, its sequence number and send time, then a pattern
//! derived from those, so every byte of an echo or delivery can be checked without
//! keeping a copy of what was sent.

/// Bytes of the header every payload starts with: source (u32), sequence (u64), send
/// time in nanoseconds since the run started (u64).
pub(crate) const HEADER: usize = 20;

/// 0, 1, …, 255, 0, 1, …, 255: any 256-byte window of the pattern is a slice of this.
static RAMP: [u8; 512] = {
    let mut r = [0u8; 512];
    let mut i = 0;
    while i < 512 {
        r[i] = i as u8;
        i += 1;
    }
    r
};

/// The pattern of a payload from `source` with `seq` is a byte ramp starting here; it
/// repeats every 256 bytes, so writing and checking it are `memcpy` and `memcmp` of
/// slices of [`RAMP`], not a computation per byte.
fn ramp_start(source: u32, seq: u64) -> usize {
    ((source as u64)
        .wrapping_mul(31)
        .wrapping_add(seq.wrapping_mul(7))
        & 0xff) as usize
}

/// Writes a payload of `buf.len()` bytes (at least [`HEADER`]).
pub(crate) fn write(buf: &mut [u8], source: u32, seq: u64, sent_ns: u64) {
    buf[0..4].copy_from_slice(&source.to_le_bytes());
    buf[4..12].copy_from_slice(&seq.to_le_bytes());
    buf[12..20].copy_from_slice(&sent_ns.to_le_bytes());
    let start = ramp_start(source, seq);
    for chunk in buf[HEADER..].chunks_mut(256) {
        chunk.copy_from_slice(&RAMP[start..start + chunk.len()]);
    }
}

/// A received payload's header, if its length and every pattern byte are right.
pub(crate) fn check(buf: &[u8], expected_len: usize) -> Option<(u32, u64, u64)> {
    if buf.len() != expected_len || buf.len() < HEADER {
        return None;
    }
    let source = u32::from_le_bytes(buf[0..4].try_into().ok()?);
    let seq = u64::from_le_bytes(buf[4..12].try_into().ok()?);
    let sent = u64::from_le_bytes(buf[12..20].try_into().ok()?);
    let start = ramp_start(source, seq);
    let body_ok = buf[HEADER..]
        .chunks(256)
        .all(|chunk| chunk == &RAMP[start..start + chunk.len()]);
    body_ok.then_some((source, seq, sent))
}

/// Bytes of the header of a text payload: source, sequence and send time in hex.
pub(crate) const TEXT_HEADER: usize = 40;

/// Writes a text payload of `buf.len()` bytes (at least [`TEXT_HEADER`]): the header in
/// hex, then letters derived from it (for protocols whose bodies are text, like STOMP
/// frames a browser reads).
pub(crate) fn write_text(buf: &mut [u8], source: u32, seq: u64, sent_ns: u64) {
    use std::io::Write;
    let mut head = &mut buf[..TEXT_HEADER];
    let _ = write!(head, "{source:08x}{seq:016x}{sent_ns:016x}");
    let start = ramp_start(source, seq);
    for (i, b) in buf[TEXT_HEADER..].iter_mut().enumerate() {
        *b = b'a' + ((start + i) % 26) as u8;
    }
}

/// A received text payload's header, if its length and every pattern byte are right.
pub(crate) fn check_text(buf: &[u8], expected_len: usize) -> Option<(u32, u64, u64)> {
    if buf.len() != expected_len || buf.len() < TEXT_HEADER {
        return None;
    }
    let hex = std::str::from_utf8(&buf[..TEXT_HEADER]).ok()?;
    let source = u32::from_str_radix(&hex[..8], 16).ok()?;
    let seq = u64::from_str_radix(&hex[8..24], 16).ok()?;
    let sent = u64::from_str_radix(&hex[24..], 16).ok()?;
    let start = ramp_start(source, seq);
    let body_ok = buf[TEXT_HEADER..]
        .iter()
        .enumerate()
        .all(|(i, &b)| b == b'a' + ((start + i) % 26) as u8);
    body_ok.then_some((source, seq, sent))
}

/// Tracks what one receiver got from one source: in-order arrivals, gaps filled late
/// (reordered), and repeats (duplicates), over a window of recent sequence numbers.
#[derive(Debug, Clone)]
pub(crate) struct SeqTracker {
    /// The next sequence number expected in order.
    next: u64,
    /// Bit `s % WINDOW` set when `s` (in `next..next+WINDOW`) arrived ahead of order.
    ahead: Vec<u64>,
    pub(crate) unique: u64,
    pub(crate) duplicates: u64,
    pub(crate) reordered: u64,
}

const WINDOW: u64 = 4096;

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker {
            next: 0,
            ahead: vec![0; (WINDOW / 64) as usize],
            unique: 0,
            duplicates: 0,
            reordered: 0,
        }
    }
}

impl SeqTracker {
    fn slot(seq: u64) -> (usize, u64) {
        let i = (seq % WINDOW) as usize;
        (i / 64, 1u64 << (i % 64))
    }

    /// Records `seq`; false if it was a duplicate.
    pub(crate) fn record(&mut self, seq: u64) -> bool {
        if seq < self.next {
            self.duplicates += 1;
            return false;
        }
        if seq >= self.next + WINDOW {
            // Too far ahead to track: treat as reordered (the gap will count as lost if
            // it never fills).
            self.reordered += 1;
            self.unique += 1;
            return true;
        }
        let (w, mask) = Self::slot(seq);
        if self.ahead[w] & mask != 0 {
            self.duplicates += 1;
            return false;
        }
        self.unique += 1;
        if seq == self.next {
            self.next += 1;
            // Slide over anything that had arrived ahead.
            loop {
                let (w, mask) = Self::slot(self.next);
                if self.ahead[w] & mask == 0 {
                    break;
                }
                self.ahead[w] &= !mask;
                self.next += 1;
            }
        } else {
            self.reordered += 1;
            self.ahead[w] |= mask;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_payloads_round_trip_and_catch_a_changed_byte() {
        let mut b = vec![0u8; 100];
        write_text(&mut b, 7, 123_456, 99);
        assert_eq!(check_text(&b, 100), Some((7, 123_456, 99)));
        b[60] ^= 1;
        assert_eq!(check_text(&b, 100), None);
    }

    #[test]
    fn payload_round_trip_and_corruption() {
        let mut buf = vec![0u8; 64];
        write(&mut buf, 7, 42, 1234);
        assert_eq!(check(&buf, 64), Some((7, 42, 1234)));
        buf[40] ^= 1;
        assert_eq!(check(&buf, 64), None);
        assert_eq!(check(&buf[..63], 64), None);
    }

    #[test]
    fn every_byte_is_checked() {
        let mut buf = vec![0u8; 1000];
        write(&mut buf, 3, 9, 0);
        for i in HEADER..buf.len() {
            let mut bad = buf.clone();
            bad[i] = bad[i].wrapping_add(1);
            assert_eq!(check(&bad, 1000), None, "byte {i}");
        }
    }

    #[test]
    fn tracker_classifies() {
        let mut t = SeqTracker::default();
        for s in [0, 1, 3, 2, 2, 4, 0] {
            t.record(s);
        }
        assert_eq!((t.unique, t.duplicates, t.reordered), (5, 2, 1));
    }
}
