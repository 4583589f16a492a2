//! Fuzzes the permessage-deflate receive path: the frame decoder with an inflater
//! (`Decoder::decode_with`), and the compressor against it.
//!
//! Input layout: `[cfg][n][n × u8 cut delta][body]`, `n = second byte % 9`.
//! - `cfg & 1`: client context takeover (the inflater keeps its stream between messages).
//! - `cfg & 2`: small limits (message 1,000 bytes) instead of 64 KiB.
//! - `cfg & 4`: round trip: `body` is a message, compressed with the server's compressor
//!   (the same deflate a client would send) and sent as masked RSV1 frames, fragmented
//!   at the cut points; it must come back whole, or fail with 1009 when too large.
//!   Otherwise `body` is taken as compressed data as it is: whatever it inflates to must
//!   respect the limit, and a failure must be 1002, 1007 or 1009.
//!
//! Either way the frame stream is decoded whole and then split at the cut points, one
//! byte at a time too, and the outcome must be the same.
#![no_main]

#[path = "common/deltas.rs"]
mod deltas;

use deltas::split_deltas;
use libfuzzer_sys::fuzz_target;
use switchboard::ws::deflate::{negotiate, Compressor, DeflateConfig, Inflater};
use switchboard::ws::{encode_client_frame, Decoder, DecoderLimits, Incoming, OpCode, Role};

fuzz_target!(|data: &[u8]| {
    let (cfg, deltas, body) = split_deltas(data);

    let takeover = cfg & 1 != 0;
    let limits = if cfg & 2 != 0 {
        DecoderLimits {
            max_frame_size: 4096,
            max_message_size: 1000,
        }
    } else {
        DecoderLimits {
            max_frame_size: 1 << 20,
            max_message_size: 64 * 1024,
        }
    };
    let deflate = DeflateConfig {
        enabled: true,
        client_context_takeover: takeover,
        server_context_takeover: takeover,
        compression_min_size: 0,
        skip_incompressible: false,
        ..DeflateConfig::default()
    };
    let Some(agreement) = negotiate(["permessage-deflate; client_max_window_bits"], &deflate)
    else {
        panic!("an enabled config must accept a plain offer");
    };

    let round_trip = cfg & 4 != 0;
    let compressed = if round_trip {
        Compressor::new(&agreement, &deflate)
            .compress(body)
            .expect("compression is forced")
    } else {
        body.to_vec()
    };
    // The message twice: the second one checks the stream state the first left.
    let mut frames = fragment(&compressed, deltas);
    frames.extend(fragment(&compressed, deltas));

    let whole = decode(&agreement, limits, &frames, &[]);
    let every: Vec<usize> = (1..frames.len()).collect();
    assert_eq!(
        decode(&agreement, limits, &frames, &every),
        whole,
        "byte-at-a-time differs"
    );

    match &whole {
        Ok(msgs) => {
            for m in msgs {
                assert!(m.len() <= limits.max_message_size);
                if round_trip {
                    assert_eq!(m, body, "round trip changed the message");
                }
            }
        }
        Err(code) => {
            assert!(matches!(code, 1002 | 1007 | 1009), "close code {code}");
            if round_trip {
                assert_eq!(*code, 1009, "a valid message failed with {code}");
                assert!(body.len() > limits.max_message_size);
            }
        }
    }
});

/// `payload` as masked client frames: the first with RSV1, split at the cut deltas.
fn fragment(payload: &[u8], deltas: &[u8]) -> Vec<u8> {
    let mut cuts: Vec<usize> = Vec::new();
    let mut pos = 0usize;
    for &d in deltas {
        pos = (pos + d as usize).min(payload.len());
        if pos > cuts.last().copied().unwrap_or(0) && pos < payload.len() {
            cuts.push(pos);
        }
    }
    let mut out = Vec::new();
    let mut start = 0;
    let ends: Vec<usize> = cuts
        .into_iter()
        .chain(std::iter::once(payload.len()))
        .collect();
    for (i, &end) in ends.iter().enumerate() {
        let op = if i == 0 {
            OpCode::Binary
        } else {
            OpCode::Continuation
        };
        let fin = i + 1 == ends.len();
        let mut frame = encode_client_frame(fin, op, &payload[start..end], [7, 3, 1, 9]);
        if i == 0 {
            frame[0] |= 0x40;
        }
        out.extend_from_slice(&frame);
        start = end;
    }
    out
}

/// The binary messages decoded from `stream` fed in pieces, or the close code it failed
/// with.
fn decode(
    agreement: &switchboard::ws::deflate::Agreement,
    limits: DecoderLimits,
    stream: &[u8],
    cuts: &[usize],
) -> Result<Vec<Vec<u8>>, u16> {
    let mut dec = Decoder::new(Role::Server, limits);
    let mut inflater = Inflater::new(agreement);
    let mut msgs = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain(std::iter::once(stream.len())) {
        let mut input = &stream[start..end];
        start = end;
        loop {
            match dec.decode_with(&mut input, Some(&mut inflater)) {
                Ok(Some(Incoming::Binary(b))) => msgs.push(b),
                Ok(Some(other)) => panic!("unexpected {other:?}"),
                Ok(None) => break,
                Err(e) => return Err(e.close_code()),
            }
        }
    }
    Ok(msgs)
}
