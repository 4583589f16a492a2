//! Fuzzes what a SockJS endpoint makes of a request before any session sees it, and the
//! frames a session reads back from its connection.
//!
//! Input layout: `[method][n][n × u16 LE cut][path \0 body]` (cuts: `common/cuts.rs`).
//! Checked:
//! - `classify` never panics, and a session target names a session that is non-empty,
//!   has no `.` or `/`, and sits where the path says;
//! - a send body's messages, encoded as the server encodes strings, parse back to the
//!   same messages (raw and form bodies);
//! - the server-frame reader gives the same frames for every split of the body as for
//!   the whole, and never panics on bytes that are not frames.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/cuts.rs"]
mod cuts;
use cuts::split_input;
use switchboard::sockjs::endpoint::{classify, send_payload, Target};
use switchboard::sockjs::frame::{self, ServerFrameReader};

const METHODS: [&str; 5] = ["GET", "POST", "OPTIONS", "HEAD", "PUT"];

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let method = METHODS[m as usize % METHODS.len()];
    let (cuts, input) = split_input(rest, 8);
    let (path, body) = match input.iter().position(|&b| b == 0) {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &[][..]),
    };
    let path = String::from_utf8_lossy(path);
    check_target(&path, classify(&path, method));

    for form in [false, true] {
        if let Ok(msgs) = send_payload(body, form) {
            let encoded: Vec<String> = msgs
                .iter()
                .map(|m| {
                    let mut e = String::new();
                    frame::push_json_string(&mut e, m);
                    e
                })
                .collect();
            let array = frame::array_frame(encoded.iter().map(String::as_str));
            let back = frame::parse_payload(&array.as_bytes()[1..]).expect("our encoding parses");
            assert_eq!(back, msgs);
        }
    }

    let whole = read_frames(&[body]);
    let mut pieces = Vec::new();
    let mut at = 0;
    for &c in &cuts {
        let c = c.min(body.len()).max(at);
        pieces.push(&body[at..c]);
        at = c;
    }
    pieces.push(&body[at..]);
    assert_eq!(read_frames(&pieces), whole, "split at {cuts:?}");
});

fn check_target(path: &str, t: Target<'_>) {
    let session = match t {
        Target::Send { session, .. } | Target::Receive { session, .. } => session,
        _ => return,
    };
    assert!(!session.is_empty() && !session.contains('.') && !session.contains('/'));
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    assert_eq!(parts.len(), 3, "{path}");
    assert_eq!(parts[1], session);
}

fn read_frames(pieces: &[&[u8]]) -> Vec<String> {
    let mut r = ServerFrameReader::default();
    let mut out = Vec::new();
    for p in pieces {
        r.push(p, &mut out);
    }
    out.iter().map(|f| format!("{f:?}")).collect()
}
