//! Codec benchmarks: unmasking (word-at-a-time vs byte-at-a-time), frame decoding with
//! message assembly and UTF-8 validation, and handshake parsing.
//!
//! Run: `cargo bench --bench codec`.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use switchboard::http::{parse_request, validate_upgrade, HttpLimits, Parsed, UpgradePolicy};
use switchboard::ws::mask::{apply_mask, apply_mask_bytewise};
use switchboard::ws::{encode_client_frame, Decoder, DecoderLimits, OpCode, Role};

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

criterion_group!(benches, unmask, decode, handshake);
criterion_main!(benches);
