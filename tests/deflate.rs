//! permessage-deflate over real sockets: what the 101 agrees to, compressed messages
//! both ways (checked with an independent deflate, miniz_oxide through flate2), the
//! bomb guard, and the RFC 7692 rules on RSV1.

mod common;

use std::io::Write;
use std::net::TcpStream;

use common::*;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use switchboard::ws::deflate::DeflateConfig;
use switchboard::Config;

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

fn deflate_config(cfg: DeflateConfig) -> Config {
    Config {
        deflate: DeflateConfig {
            enabled: true,
            ..cfg
        },
        ..config(1)
    }
}

/// A raw deflate of `data` as a client would send it: sync flush, trailer removed.
fn client_deflate(data: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn client_inflate(data: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(1 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

fn extensions_of(head: &str) -> Option<String> {
    head.lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Extensions: "))
        .map(str::to_owned)
}

fn open(cfg: DeflateConfig, offer: &str) -> (switchboard::ServerHandle, TcpStream, String) {
    let server = start_echo(deflate_config(cfg));
    let (s, head) = raw_ws_with(server.local_addr(), "/echo", offer);
    (server, s, head)
}

#[test]
fn the_handshake_agrees_to_no_context_takeover_by_default() {
    let (server, _s, head) = open(DeflateConfig::default(), OFFER);
    assert_eq!(
        extensions_of(&head).as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    assert_eq!(server.hub().metrics().deflate_sessions, 1);
    // Without an offer, or with deflate off, no extension.
    let (_s2, head) = raw_ws_with(server.local_addr(), "/echo", "");
    assert_eq!(extensions_of(&head), None);
    server.stop();
    let server = start_echo(config(1));
    let (_s, head) = raw_ws_with(server.local_addr(), "/echo", OFFER);
    assert_eq!(extensions_of(&head), None);
    server.stop();
}

#[test]
fn compressed_messages_are_inflated_and_replies_compressed() {
    let (server, mut s, _) = open(DeflateConfig::default(), OFFER);
    let text = "{\"type\":\"PRIVATE_MESSAGE\",\"body\":{\"content\":\"hello\"}} ".repeat(40);
    // A compressed text message split over three frames: RSV1 on the first only.
    let z = client_deflate(text.as_bytes());
    let (a, rest) = z.split_at(z.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    let mut wire = client_frame(0x41, a);
    wire.extend(client_frame(0x00, b));
    wire.extend(client_frame(0x80, c));
    s.write_all(&wire).unwrap();
    let (b0, payload) = read_server_frame(&mut s);
    assert_eq!(b0, 0xC1, "a compressed text frame (FIN, RSV1, text)");
    assert!(payload.len() < text.len() / 4);
    assert_eq!(client_inflate(&payload), text.as_bytes());

    // A short message goes uncompressed either way.
    s.write_all(&client_frame(0x81, b"hi")).unwrap();
    assert_eq!(read_server_frame(&mut s), (0x81, b"hi".to_vec()));
    // A short compressed one is inflated and echoed plain.
    s.write_all(&client_frame(0xC1, &client_deflate(b"hey")))
        .unwrap();
    assert_eq!(read_server_frame(&mut s), (0x81, b"hey".to_vec()));
    server.stop();
}

#[test]
fn context_takeover_compresses_repeats_against_history() {
    let cfg = DeflateConfig {
        server_context_takeover: true,
        client_context_takeover: true,
        ..DeflateConfig::default()
    };
    let (server, mut s, head) = open(cfg, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
    assert_eq!(extensions_of(&head).as_deref(), Some("permessage-deflate"));
    let msg = "the same message, again and again, with context takeover on; ".repeat(4);
    // The client's side keeps its history too: one compressor, one decompressor.
    let mut comp = Compress::new(Compression::default(), false);
    let mut decomp = Decompress::new(false);
    let mut sizes = Vec::new();
    for _ in 0..3 {
        let mut z = Vec::with_capacity(1024);
        comp.compress_vec(msg.as_bytes(), &mut z, FlushCompress::Sync)
            .unwrap();
        z.truncate(z.len() - 4);
        s.write_all(&client_frame(0xC1, &z)).unwrap();
        let (b0, payload) = read_server_frame(&mut s);
        assert_eq!(b0, 0xC1);
        sizes.push(payload.len());
        let mut input = payload.clone();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(4096);
        decomp
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out, msg.as_bytes());
    }
    assert!(sizes[1] < sizes[0] / 2, "no history used: {sizes:?}");
    server.stop();
}

#[test]
fn a_decompression_bomb_is_closed_with_1009() {
    let cfg = Config {
        max_message_size: 1 << 20,
        ..deflate_config(DeflateConfig::default())
    };
    let server = start_echo(cfg);
    let (mut s, _) = raw_ws_with(server.local_addr(), "/echo", OFFER);
    // 64 MiB of zeros compress to about 64 KiB; its first 4 KiB already inflate past the
    // 1 MiB limit, and the rest of the message never needs to arrive. (How much memory
    // the server spends on it is measured in tests/encode_once.rs.)
    let bomb = client_deflate(&vec![0u8; 64 << 20]);
    s.write_all(&client_frame(0x42, &bomb[..4096])).unwrap();
    assert_eq!(read_close_code(&mut s), 1009);
    server.stop();
}

#[test]
fn rsv1_rules_close_with_their_codes() {
    // RSV1 without the extension.
    let server = start_echo(config(1));
    let mut s = raw_ws(server.local_addr(), "/echo");
    s.write_all(&client_frame(0xC1, &client_deflate(b"hello")))
        .unwrap();
    assert_eq!(read_close_code(&mut s), 1002);
    server.stop();

    let (server, mut s, _) = open(DeflateConfig::default(), OFFER);
    // RSV1 on a continuation frame.
    let mut wire = client_frame(0x01, b"part");
    wire.extend(client_frame(0xC0, b"more"));
    s.write_all(&wire).unwrap();
    assert_eq!(read_close_code(&mut s), 1002);
    // RSV1 on a control frame.
    let (mut s, _) = raw_ws_with(server.local_addr(), "/echo", OFFER);
    s.write_all(&client_frame(0xC9, b"")).unwrap();
    assert_eq!(read_close_code(&mut s), 1002);
    // Data that is not deflate.
    let (mut s, _) = raw_ws_with(server.local_addr(), "/echo", OFFER);
    s.write_all(&client_frame(0xC2, &[0xff; 16])).unwrap();
    assert_eq!(read_close_code(&mut s), 1007);
    // A compressed text message that inflates to bad UTF-8.
    let (mut s, _) = raw_ws_with(server.local_addr(), "/echo", OFFER);
    s.write_all(&client_frame(0xC1, &client_deflate(&[0xc3, 0x28, 0x41])))
        .unwrap();
    assert_eq!(read_close_code(&mut s), 1007);
    server.stop();
}
