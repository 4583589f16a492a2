//! Fuzzes the raw TCP framings (`rawframe::RawDecoder`): lines and 4-byte length
//! prefixes, with a small limit.
//!
//! Input layout: `[cfg][n][n × u8 cut delta][stream]`, `n = second byte % 9`; `cfg & 1`:
//! length prefix (else lines); `cfg & 2`: round trip — `stream` is cut into messages at
//! its `0x00` bytes, each encoded with `rawframe::encode`, and the decoder must give
//! them back (lines: with `\n` turned to spaces; empty ones skipped).
//!
//! Properties: no panic; every message is within the limit, not empty, and (lines) has
//! no `\n` (one `\r` before the `\n` is dropped, a second one is data); the messages and
//! the error are the same fed whole, split at the cut points, and one byte at a time.
#![no_main]

#[path = "common/deltas.rs"]
mod deltas;

use deltas::split_deltas;
use libfuzzer_sys::fuzz_target;
use switchboard::rawframe::{encode, RawDecoder, RawError, RawFraming};

const MAX: usize = 64;

fn run(framing: RawFraming, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Option<RawError>) {
    let mut d = RawDecoder::new(framing, MAX);
    let mut msgs = Vec::new();
    for chunk in chunks {
        let mut input = *chunk;
        loop {
            match d.decode(&mut input) {
                Ok(Some(m)) => msgs.push(m),
                Ok(None) => break,
                Err(e) => return (msgs, Some(e)),
            }
        }
        assert!(input.is_empty());
    }
    (msgs, None)
}

fuzz_target!(|data: &[u8]| {
    let (cfg, deltas, body) = split_deltas(data);
    let framing = if cfg & 1 != 0 {
        RawFraming::LengthPrefix
    } else {
        RawFraming::Line
    };
    let mut expected = None;
    let stream: Vec<u8> = if cfg & 2 != 0 {
        let parts: Vec<&[u8]> = body.split(|&b| b == 0).collect();
        let mut s = Vec::new();
        let mut want = Vec::new();
        for p in parts {
            s.extend(encode(framing, p));
            let mut m: Vec<u8> = match framing {
                RawFraming::Line => p
                    .iter()
                    .map(|&b| if b == b'\n' { b' ' } else { b })
                    .collect(),
                RawFraming::LengthPrefix => p.to_vec(),
            };
            if framing == RawFraming::Line && m.last() == Some(&b'\r') {
                m.pop();
            }
            if !m.is_empty() {
                want.push(m);
            }
        }
        expected = Some(want);
        s
    } else {
        body.to_vec()
    };

    let whole = run(framing, &[&stream]);
    for m in &whole.0 {
        assert!(m.len() <= MAX);
        assert!(!m.is_empty());
        if framing == RawFraming::Line {
            assert!(!m.contains(&b'\n'));
        }
    }
    if let Some(want) = expected {
        // Encoded messages come back, unless one was over the limit.
        match &whole.1 {
            None => assert_eq!(whole.0, want),
            Some(_) => assert_eq!(whole.0[..], want[..whole.0.len()]),
        }
    }
    let mut chunks = Vec::new();
    let mut rest = &stream[..];
    for &d in deltas {
        let at = (d as usize).min(rest.len());
        chunks.push(&rest[..at]);
        rest = &rest[at..];
    }
    chunks.push(rest);
    assert_eq!(run(framing, &chunks), whole);
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(run(framing, &bytes), whole);
});
