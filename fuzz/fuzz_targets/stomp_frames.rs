//! Fuzzes the STOMP frame parser and session machine on a whole byte stream.
//!
//! Input layout: `[n][n × u16 LE cut][stream bytes]` (see `common/cuts.rs`); the cuts
//! split the stream into WebSocket messages. Checked:
//! - the parser gives the same heart-beats, frames and error for every split and for one
//!   byte at a time as for the whole stream (split independence), with or without
//!   escape decoding;
//! - no frame breaks a limit; re-encoding a parsed frame parses back to it;
//! - a session fed the same stream (CONNECT accepted, every client-ack subscription
//!   delivered to, NACKs answered) never panics, and sends nothing after its ERROR.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/cuts.rs"]
mod cuts;
use cuts::split_input;
use switchboard::stomp::{
    Command, Event, Frame, FrameLimits, FrameParser, Parsed, Session, SessionConfig,
};

const LIMITS: FrameLimits = FrameLimits {
    max_header_bytes: 256,
    max_headers: 8,
    max_body_bytes: 512,
};

fuzz_target!(|data: &[u8]| {
    let (cuts, stream) = split_input(data, 8);
    let mut pieces = Vec::new();
    let mut at = 0;
    for &c in &cuts {
        pieces.push(&stream[at..c]);
        at = c;
    }
    pieces.push(&stream[at..]);
    for escapes in [false, true] {
        let whole = parse(&[stream], escapes);
        assert_eq!(parse(&pieces, escapes), whole, "split at {cuts:?}");
        if stream.len() <= 1024 {
            let bytes: Vec<&[u8]> = stream.chunks(1).collect();
            assert_eq!(parse(&bytes, escapes), whole, "byte at a time");
        }
    }
    drive_session(&pieces);
});

fn parse(reads: &[&[u8]], escapes: bool) -> Vec<String> {
    let mut p = FrameParser::new();
    p.set_escapes(escapes);
    let mut out = Vec::new();
    for r in reads {
        p.push(r);
        while let Some(x) = p.next(&LIMITS) {
            match x {
                Ok(Parsed::Frame(f)) => {
                    assert!(f.body.len() <= LIMITS.max_body_bytes);
                    assert!(f.headers.len() <= LIMITS.max_headers);
                    check_round_trip(&f, escapes);
                    out.push(format!("{f:?}"));
                }
                Ok(Parsed::HeartBeat) => out.push("heart-beat".into()),
                Err(e) => out.push(format!("error {e}")),
            }
        }
    }
    out
}

/// A frame the parser accepted, encoded again, parses back to the same frame (when its
/// headers can be written at all: unescaped ones cannot hold EOL or colon).
fn check_round_trip(f: &Frame, escapes: bool) {
    let escaped = escapes && !matches!(f.command, Command::Connect | Command::Stomp);
    let writable = escaped
        || f.headers
            .iter()
            .all(|(n, v)| !format!("{n}{v}").contains(['\n', '\r', ':']));
    let lengths: Vec<_> = f
        .headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .collect();
    if !writable || lengths.is_empty() && f.body.contains(&0) {
        return;
    }
    let mut p = FrameParser::new();
    p.set_escapes(escapes);
    p.push(&f.encode(escapes));
    let big = FrameLimits {
        max_header_bytes: 1 << 20,
        max_headers: 1 << 10,
        max_body_bytes: 1 << 20,
    };
    match p.next(&big) {
        Some(Ok(Parsed::Frame(mut back))) => {
            // The encoder adds a content-length to a body that had none.
            if lengths.is_empty() {
                back.headers.retain(|(n, _)| n != "content-length");
            }
            assert_eq!(&back, f)
        }
        other => panic!("re-encoded frame did not parse: {other:?}"),
    }
}

fn drive_session(reads: &[&[u8]]) {
    let cfg = SessionConfig {
        limits: LIMITS,
        max_subscriptions: 4,
        max_pending_acks: 4,
        max_transaction_frames: 4,
        max_transactions: 2,
        max_redeliveries: 2,
        ..SessionConfig::default()
    };
    let mut s = Session::new(0);
    let mut now = 0;
    let mut subs: Vec<String> = Vec::new();
    for r in reads {
        now += 100;
        s.push(r, now);
        let mut out = Vec::new();
        while let Some(ev) = s.poll(&cfg, &mut out) {
            let closed_before = s.is_closed();
            match ev {
                Event::Connect { .. } => s.accept("s", "u", "fuzz", now, &mut out),
                Event::Subscribe { id, .. } => subs.push(id),
                Event::Unsubscribe { id, .. } => subs.retain(|x| *x != id),
                Event::Send(f) => {
                    for sub in &subs {
                        let m = Frame::new(Command::Message).body(f.body.clone());
                        let _ = s.deliver(sub, m, &cfg);
                    }
                }
                Event::Reply(_) | Event::Disconnect | Event::Failed(_) => {}
            }
            assert!(!closed_before || out.is_empty() || s.is_closed());
        }
        let _ = s.handle_timeout(now, &mut out);
    }
}
