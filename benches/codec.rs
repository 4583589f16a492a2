//! Codec benchmarks: unmasking (word-at-a-time vs byte-at-a-time), frame decoding with
//! message assembly and UTF-8 validation, handshake parsing, and permessage-deflate's
//! per-message compression (what compress-once saves per recipient).
//!
//! Run: `cargo bench --bench codec`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchboard::http::{parse_request, validate_upgrade, HttpLimits, Parsed, UpgradePolicy};
use switchboard::ws::mask::{apply_mask, apply_mask_bytewise};
use switchboard::ws::utf8::Utf8Validator;
use switchboard::ws::{encode_client_frame, encode_frame, Decoder, DecoderLimits, OpCode, Role};

fn unmask(c: &mut Criterion) {
    let mut g = c.benchmark_group("unmask");
    for size in [125usize, 4096, 65536] {
        let mut buf = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("word", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf), [1, 2, 3, 4], 1))
        });
        g.bench_with_input(BenchmarkId::new("bytewise", size), &size, |b, _| {
            b.iter(|| apply_mask_bytewise(black_box(&mut buf), [1, 2, 3, 4], 1))
        });
    }
    g.finish();
}

fn unmask_alignments(c: &mut Criterion) {
    // The word loop's head depends on the buffer's address: every start offset 0..8 of
    // a 4 KiB payload, word-at-a-time against the byte-at-a-time baseline.
    let mut g = c.benchmark_group("unmask_alignment_4096");
    let mut backing = vec![0x5au8; 4096 + 8];
    g.throughput(Throughput::Bytes(4096));
    for start in 0..8usize {
        g.bench_with_input(BenchmarkId::new("word", start), &start, |b, &st| {
            b.iter(|| apply_mask(black_box(&mut backing[st..st + 4096]), [1, 2, 3, 4], 0))
        });
        g.bench_with_input(BenchmarkId::new("bytewise", start), &start, |b, &st| {
            b.iter(|| apply_mask_bytewise(black_box(&mut backing[st..st + 4096]), [1, 2, 3, 4], 0))
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for size in [16usize, 1024, 65536] {
        let payload = vec![b'x'; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("server_frame", size), &size, |b, _| {
            b.iter(|| black_box(encode_frame(true, OpCode::Binary, black_box(&payload))))
        });
        g.bench_with_input(
            BenchmarkId::new("client_frame_masked", size),
            &size,
            |b, _| {
                b.iter(|| {
                    black_box(encode_client_frame(
                        true,
                        OpCode::Binary,
                        black_box(&payload),
                        [1, 2, 3, 4],
                    ))
                })
            },
        );
    }
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8_validate_64KiB");
    let text: Vec<u8> = "héllo wörld — ✓ 𝄞 plain ascii too "
        .repeat(2048)
        .into_bytes()[..65536]
        .to_vec();
    let valid_prefix = match std::str::from_utf8(&text) {
        Ok(_) => text.len(),
        Err(e) => e.valid_up_to(),
    };
    let text = &text[..valid_prefix];
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("incremental_4KiB_chunks", |b| {
        b.iter(|| {
            let mut v = Utf8Validator::new();
            for chunk in text.chunks(4096) {
                v.feed(black_box(chunk)).unwrap();
            }
            v.finish().unwrap();
        })
    });
    g.bench_function("std_from_utf8_whole", |b| {
        b.iter(|| std::str::from_utf8(black_box(text)).unwrap().len())
    });
    g.finish();
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (name, op, size) in [
        ("text", OpCode::Text, 16usize),
        ("text", OpCode::Text, 1024),
        ("text", OpCode::Text, 65536),
        ("binary", OpCode::Binary, 65536),
    ] {
        let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        // 64 frames back to back, as one read would deliver them.
        let one = encode_client_frame(true, op, &payload, [9, 8, 7, 6]);
        let stream: Vec<u8> = one.iter().copied().cycle().take(one.len() * 64).collect();
        g.throughput(Throughput::Bytes(stream.len() as u64));
        g.bench_function(BenchmarkId::new(name, size), |b| {
            b.iter(|| {
                let mut dec = Decoder::new(Role::Server, DecoderLimits::default());
                let mut input = &stream[..];
                let mut n = 0;
                while let Ok(Some(m)) = dec.decode(&mut input) {
                    black_box(m);
                    n += 1;
                }
                assert_eq!(n, 64);
            })
        });
    }
    g.finish();
}

fn handshake(c: &mut Criterion) {
    let req = b"GET /chat?token=abc HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://example.com\r\nUser-Agent: bench\r\n\r\n";
    let limits = HttpLimits::default();
    let policy = UpgradePolicy::default();
    c.bench_function("handshake/parse_and_validate", |b| {
        b.iter(|| match parse_request(black_box(req), &limits) {
            Ok(Parsed::Complete { request, .. }) => {
                black_box(validate_upgrade(&request, &policy).is_ok())
            }
            _ => unreachable!(),
        })
    });
}

/// One chat-like JSON message of about `size` bytes.
fn json_message(size: usize) -> Vec<u8> {
    let mut m = String::from(
        r#"{"type":"SEND_TO_USER_REQUEST","body":{"msgId":"m1","fromUser":"alice","content":""#,
    );
    let words = [
        "hello",
        "there",
        "switchboard",
        "deflate",
        "message",
        "chat",
    ];
    let mut i = 0;
    while m.len() + 3 < size {
        m.push_str(words[i % words.len()]);
        m.push(' ');
        i += 1;
    }
    m.push_str(r#""}}"#);
    m.into_bytes()
}

fn deflate(c: &mut Criterion) {
    use switchboard::ws::deflate::{Agreement, Compressor, DeflateConfig};
    let agreed = Agreement::no_context_takeover();
    let cfg = DeflateConfig {
        enabled: true,
        ..Default::default()
    };
    let mut g = c.benchmark_group("deflate_message");
    for size in [128usize, 1024, 16 * 1024] {
        let msg = json_message(size);
        g.throughput(Throughput::Bytes(msg.len() as u64));
        // Without context takeover the compressor is reset for every message: this is
        // the cost a broadcast pays once and a private message pays per recipient.
        let mut shared = Compressor::new(&agreed, &cfg);
        g.bench_with_input(BenchmarkId::new("no_takeover", size), &msg, |b, m| {
            b.iter(|| shared.compress(black_box(m)))
        });
        let takeover = Agreement {
            server_no_context_takeover: false,
            ..agreed.clone()
        };
        let mut own = Compressor::new(&takeover, &cfg);
        g.bench_with_input(BenchmarkId::new("takeover", size), &msg, |b, m| {
            b.iter(|| own.compress(black_box(m)))
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    deflate,
    unmask,
    unmask_alignments,
    encode,
    utf8,
    decode,
    handshake
);
criterion_main!(benches);
