//! One session's view of its user's stored messages: what was pushed and not yet
//! acknowledged (to resend after `ack_timeout`), the highest number it was sent, and the
//! pushes held back while the session's replay is being read at login.
//!
//! Owns that bookkeeping only, sans-IO: callers pass `now` and get back what to send.
//! It lives in the connection's attributes and is touched only on its worker.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::message::Payload;

/// A push that waits for its acknowledgement.
#[derive(Debug)]
struct Tracked {
    seq: u64,
    payload: Payload,
    sent_at: Instant,
    attempts: u32,
}

/// What [`Inflight::due`] decided.
#[derive(Debug, Default)]
pub(crate) struct Due {
    /// Pushes to repeat now.
    pub resend: Vec<Payload>,
    /// Messages given up on (max attempts): they stay in the store for pull.
    pub given_up: u64,
}

/// An acknowledgement for a number this session was never sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NeverSent(pub u64);

/// One session's delivery state.
#[derive(Debug)]
pub(crate) struct Inflight {
    track: bool,
    cap: usize,
    pending: VecDeque<Tracked>,
    /// Pushes that arrived while the login replay was being read.
    held: Option<Vec<(u64, Payload)>>,
    max_sent: u64,
    /// The cursor last reported to the store.
    reported: u64,
    /// True while a resend timer is set.
    pub timer_armed: bool,
}

impl Inflight {
    /// `track`: remember pushes for resending (`delivery.mode = "ack"`), at most `cap`.
    /// `resuming`: hold pushes until [`Inflight::resumed`].
    pub(crate) fn new(track: bool, cap: usize, resuming: bool) -> Self {
        Inflight {
            track,
            cap: cap.max(1),
            pending: VecDeque::new(),
            held: resuming.then(Vec::new),
            max_sent: 0,
            reported: 0,
            timer_armed: false,
        }
    }

    /// A live push of message `seq`: the payload to send now, if any (none while the
    /// replay is pending, or for a number already sent). The second value counts
    /// messages dropped from tracking to stay under the cap.
    pub(crate) fn push(
        &mut self,
        seq: u64,
        payload: Payload,
        now: Instant,
    ) -> (Option<Payload>, u64) {
        if let Some(held) = &mut self.held {
            held.push((seq, payload));
            return (None, 0);
        }
        if seq <= self.max_sent {
            return (None, 0);
        }
        (Some(payload.clone()), self.sent(seq, payload, now))
    }

    /// Records a push of `seq` as sent; returns how many tracked pushes were dropped.
    fn sent(&mut self, seq: u64, payload: Payload, now: Instant) -> u64 {
        self.max_sent = self.max_sent.max(seq);
        if !self.track {
            return 0;
        }
        self.pending.push_back(Tracked {
            seq,
            payload,
            sent_at: now,
            attempts: 1,
        });
        let mut dropped = 0;
        while self.pending.len() > self.cap {
            self.pending.pop_front();
            dropped += 1;
        }
        dropped
    }

    /// The login replay was read: send it, then the pushes held meanwhile that it does
    /// not already hold. Returns the payloads in order and the count dropped by the cap.
    pub(crate) fn resumed(
        &mut self,
        replay: Vec<(u64, Payload)>,
        now: Instant,
    ) -> (Vec<Payload>, u64) {
        let held = self.held.take().unwrap_or_default();
        let mut out = Vec::with_capacity(replay.len() + held.len());
        let mut dropped = 0;
        for (seq, payload) in replay.into_iter().chain(held) {
            if seq > self.max_sent {
                out.push(payload.clone());
                dropped += self.sent(seq, payload, now);
            }
        }
        (out, dropped)
    }

    /// Messages up to `seq` were pulled by this session: it has been sent them.
    pub(crate) fn pulled_upto(&mut self, seq: u64) {
        self.max_sent = self.max_sent.max(seq);
    }

    /// The client has everything up to `seq`. Returns how many tracked pushes that
    /// settles.
    pub(crate) fn ack_upto(&mut self, seq: u64) -> Result<u64, NeverSent> {
        if seq > self.max_sent {
            return Err(NeverSent(seq));
        }
        let before = self.pending.len();
        self.pending.retain(|t| t.seq > seq);
        Ok((before - self.pending.len()) as u64)
    }

    /// The client has each of `seqs`.
    pub(crate) fn ack_each(&mut self, seqs: &[u64]) -> Result<u64, NeverSent> {
        if let Some(&bad) = seqs.iter().find(|&&s| s > self.max_sent || s == 0) {
            return Err(NeverSent(bad));
        }
        let before = self.pending.len();
        self.pending.retain(|t| !seqs.contains(&t.seq));
        Ok((before - self.pending.len()) as u64)
    }

    /// How far the user's cursor may move for this session: every push up to it is
    /// acknowledged. `None` when that is no further than last reported.
    pub(crate) fn cursor(&mut self) -> Option<u64> {
        let c = match self.pending.front() {
            Some(t) => t.seq - 1,
            None => self.max_sent,
        };
        (c > self.reported).then(|| {
            self.reported = c;
            c
        })
    }

    /// Pushes not acknowledged within `timeout`: resent, or given up on after
    /// `max_attempts`.
    pub(crate) fn due(&mut self, now: Instant, timeout: Duration, max_attempts: u32) -> Due {
        let mut due = Due::default();
        self.pending.retain_mut(|t| {
            if now.duration_since(t.sent_at) < timeout {
                return true;
            }
            if t.attempts >= max_attempts {
                due.given_up += 1;
                return false;
            }
            t.attempts += 1;
            t.sent_at = now;
            due.resend.push(t.payload.clone());
            true
        });
        due
    }

    /// True while anything waits for an acknowledgement.
    pub(crate) fn waiting(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    fn p(n: u64) -> Payload {
        Payload::from(Message::Text(format!("m{n}")))
    }

    fn text(p: &Payload) -> String {
        String::from_utf8_lossy(p.message().as_bytes()).into_owned()
    }

    #[test]
    fn pushes_held_during_replay_follow_it_without_repeats() {
        let now = Instant::now();
        let mut f = Inflight::new(true, 10, true);
        assert!(f.push(5, p(5), now).0.is_none());
        assert!(f.push(6, p(6), now).0.is_none());
        let (out, _) = f.resumed(vec![(4, p(4)), (5, p(5))], now);
        assert_eq!(out.iter().map(text).collect::<Vec<_>>(), ["m4", "m5", "m6"]);
        assert!(f.push(6, p(6), now).0.is_none(), "already sent");
        assert_eq!(text(&f.push(7, p(7), now).0.unwrap()), "m7");
    }

    #[test]
    fn unacknowledged_pushes_come_back_until_given_up() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(1);
        let mut f = Inflight::new(true, 10, false);
        f.push(1, p(1), t0);
        f.push(2, p(2), t0);
        assert_eq!(f.ack_upto(1), Ok(1));
        assert!(f.due(t0, timeout, 2).resend.is_empty());
        let d = f.due(t0 + timeout, timeout, 2);
        assert_eq!(d.resend.iter().map(text).collect::<Vec<_>>(), ["m2"]);
        let d = f.due(t0 + timeout * 2, timeout, 2);
        assert_eq!((d.resend.len(), d.given_up), (0, 1));
        assert!(!f.waiting());
        assert_eq!(f.ack_upto(3), Err(NeverSent(3)));
    }

    #[test]
    fn the_cursor_stops_below_the_first_gap() {
        let now = Instant::now();
        let mut f = Inflight::new(true, 10, false);
        for n in 1..=4 {
            f.push(n, p(n), now);
        }
        assert_eq!(f.ack_each(&[1, 3]), Ok(2));
        assert_eq!(f.cursor(), Some(1));
        assert_eq!(f.cursor(), None, "reported once");
        assert_eq!(f.ack_each(&[2, 4]), Ok(2));
        assert_eq!(f.cursor(), Some(4));
        assert_eq!(f.ack_each(&[9]), Err(NeverSent(9)));
    }

    #[test]
    fn without_tracking_only_the_highest_number_is_kept() {
        let now = Instant::now();
        let mut f = Inflight::new(false, 10, false);
        f.push(3, p(3), now);
        assert!(!f.waiting());
        assert_eq!(f.ack_upto(3), Ok(0));
        assert_eq!(f.cursor(), Some(3));
    }
}
