//! A hashed timer wheel for per-connection deadlines (request, heartbeat, close linger)
//! and for the timers handlers set.
//!
//! Owns (key, due tick) entries in buckets of `TICK` each. Inserting is O(1) and
//! cancelling is free: an entry is never removed early, the owner checks on expiry
//! whether the deadline still applies (the connection may have moved on or gone).

use std::time::{Duration, Instant};

/// Timer resolution. Deadlines here are seconds long; firing up to one tick late is fine.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// Buckets in the wheel: 512 ticks ≈ 51 s per turn. Longer deadlines wait out extra turns.
const SLOTS: usize = 512;

pub(crate) struct TimerWheel<T = u64> {
    start: Instant,
    /// The last tick whose bucket was processed.
    current: u64,
    slots: Vec<Vec<(T, u64)>>,
    len: usize,
}

impl<T> TimerWheel<T> {
    pub(crate) fn new(now: Instant) -> Self {
        TimerWheel {
            start: now,
            current: 0,
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            len: 0,
        }
    }

    fn tick_of(&self, t: Instant) -> u64 {
        (t.saturating_duration_since(self.start).as_millis() / TICK.as_millis()) as u64
    }

    /// Schedules `key` to be returned by [`TimerWheel::expire`] at or after `at`.
    pub(crate) fn insert(&mut self, key: T, at: Instant) {
        // Round up so an entry never fires before its deadline.
        let due = (self.tick_of(at) + 1).max(self.current + 1);
        self.slots[(due as usize) % SLOTS].push((key, due));
        self.len += 1;
    }

    /// How long the event loop may sleep before the next tick needs processing.
    pub(crate) fn next_timeout(&self, now: Instant) -> Option<Duration> {
        if self.len == 0 {
            return None;
        }
        let next = self.start + TICK * (self.current as u32 + 1);
        Some(next.saturating_duration_since(now))
    }

    /// Moves every entry due by `now` into `out`.
    pub(crate) fn expire(&mut self, now: Instant, out: &mut Vec<T>) {
        if self.len == 0 {
            // Nothing to find (the handler-timer wheel, most of the time): not even the
            // clock is read. `current` may fall behind; the first expire after an insert
            // then walks at most one turn of empty buckets.
            return;
        }
        let now_tick = self.tick_of(now);
        // After a long stall, one turn of the wheel visits every bucket.
        let from = self.current + 1;
        let to = now_tick.min(self.current + SLOTS as u64);
        for tick in from..=to {
            let slot = &mut self.slots[(tick as usize) % SLOTS];
            let before = slot.len();
            let mut i = 0;
            while i < slot.len() {
                if slot[i].1 <= now_tick {
                    out.push(slot.swap_remove(i).0);
                } else {
                    i += 1;
                }
            }
            self.len -= before - slot.len();
        }
        if now_tick > self.current {
            self.current = now_tick;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_after_deadline_not_before() {
        let t0 = Instant::now();
        let mut w: TimerWheel = TimerWheel::new(t0);
        w.insert(1, t0 + Duration::from_millis(250));
        w.insert(2, t0 + Duration::from_secs(120));
        let mut out = Vec::new();
        w.expire(t0 + Duration::from_millis(200), &mut out);
        assert!(out.is_empty());
        w.expire(t0 + Duration::from_millis(400), &mut out);
        assert_eq!(out, vec![1]);
        out.clear();
        // Past one full turn: the long deadline is still not due.
        w.expire(t0 + Duration::from_secs(60), &mut out);
        assert!(out.is_empty());
        w.expire(t0 + Duration::from_secs(121), &mut out);
        assert_eq!(out, vec![2]);
        assert_eq!(w.next_timeout(t0), None);
    }
}
