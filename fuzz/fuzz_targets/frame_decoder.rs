//! Fuzzes the RFC 6455 frame decoder (`switchboard::ws::Decoder`).
//!
//! Input layout: `[cfg][n][n × u8 cut delta][stream bytes]`, `n = second byte % 9`.
//! - `cfg & 1`: role, 0 = `Role::Server` (frames must be masked), 1 = `Role::Client`.
//! - `(cfg >> 1) & 3`: limits: 0 = default (16 MiB / 64 MiB), 1 = frame 64 / message 128,
//!   2 = frame 0 / message 0, 3 = frame 200 / message 1000.
//! - `cfg & 8`: also feed the stream one byte at a time.
//!
//! The stream is decoded whole (one `decode` loop until `Ok(None)` or `Err`) and split at
//! the cut points (cumulative deltas, clamped to the stream), feeding each piece the way
//! the reactor does. The sequence of outputs plus the first error must be the same either
//! way. Also checked: `Ok(None)` leaves no input unconsumed, an error is sticky, every
//! error's `close_code()` is 1002, 1007 or 1009, and every output respects the protocol
//! (control payloads <= 125 bytes, valid close codes, messages within the limits).
#![no_main]

#[path = "common/deltas.rs"]
mod deltas;

use deltas::split_deltas;
use libfuzzer_sys::fuzz_target;
use switchboard::ws::{is_valid_close_code, Decoder, DecoderLimits, Incoming, ProtocolError, Role};

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    events: Vec<Incoming>,
    error: Option<ProtocolError>,
}

fuzz_target!(|data: &[u8]| {
    let (cfg, deltas, stream) = split_deltas(data);

    let role = if cfg & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let limits = match (cfg >> 1) & 3 {
        0 => DecoderLimits::default(),
        1 => DecoderLimits {
            max_frame_size: 64,
            max_message_size: 128,
        },
        2 => DecoderLimits {
            max_frame_size: 0,
            max_message_size: 0,
        },
        _ => DecoderLimits {
            max_frame_size: 200,
            max_message_size: 1000,
        },
    };

    let mut cuts = Vec::with_capacity(deltas.len());
    let mut pos = 0usize;
    for &d in deltas {
        pos = (pos + d as usize).min(stream.len());
        cuts.push(pos);
    }

    let whole = decode_pieces(role, limits, stream, &[]);
    check_outcome(&whole, limits);

    let split = decode_pieces(role, limits, stream, &cuts);
    assert_eq!(
        split, whole,
        "{role:?} {limits:?}: split at {cuts:?} differs from the whole stream"
    );

    if cfg & 8 != 0 {
        let every: Vec<usize> = (1..stream.len()).collect();
        let bytewise = decode_pieces(role, limits, stream, &every);
        assert_eq!(
            bytewise, whole,
            "{role:?} {limits:?}: byte-at-a-time differs"
        );
    }
});

/// Feeds `stream` split at `cuts` (sorted, within bounds) as the reactor does: for each
/// piece, `decode` until `Ok(None)`; stop at the first error.
fn decode_pieces(role: Role, limits: DecoderLimits, stream: &[u8], cuts: &[usize]) -> Outcome {
    let mut dec = Decoder::new(role, limits);
    let mut events = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain(std::iter::once(stream.len())) {
        let mut input = &stream[start..end];
        start = end;
        loop {
            match dec.decode(&mut input) {
                Ok(Some(ev)) => events.push(ev),
                Ok(None) => {
                    assert!(
                        input.is_empty(),
                        "Ok(None) left {} bytes unconsumed",
                        input.len()
                    );
                    break;
                }
                Err(e) => {
                    // Sticky: every later call fails the same way, even with no input.
                    let mut rest = input;
                    assert_eq!(dec.decode(&mut rest), Err(e.clone()), "error not sticky");
                    let mut empty: &[u8] = &[];
                    assert_eq!(dec.decode(&mut empty), Err(e.clone()), "error not sticky");
                    return Outcome {
                        events,
                        error: Some(e),
                    };
                }
            }
        }
    }
    Outcome {
        events,
        error: None,
    }
}

fn check_outcome(o: &Outcome, limits: DecoderLimits) {
    if let Some(e) = &o.error {
        let code = e.close_code();
        assert!(
            matches!(code, 1002 | 1007 | 1009),
            "close code {code} for {e:?}"
        );
        let _ = e.to_string();
    }
    for ev in &o.events {
        match ev {
            Incoming::Ping(p) | Incoming::Pong(p) => {
                assert!(p.len() <= 125, "control payload of {} bytes", p.len())
            }
            Incoming::Close(Some((code, _reason))) => {
                assert!(is_valid_close_code(*code), "close code {code} delivered")
            }
            Incoming::Close(None) => {}
            Incoming::Text(s) => assert!(s.len() <= limits.max_message_size),
            Incoming::Binary(b) => assert!(b.len() <= limits.max_message_size),
        }
    }
}
