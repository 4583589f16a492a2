//! What the server allocates, measured with a counting global allocator over the whole
//! process (server threads included): a broadcast is encoded once (a 1 MiB message to
//! 100 connections allocates about one copy of it, not 100), with permessage-deflate it
//! is compressed once, and a decompression bomb costs the server about its size limit,
//! not what it would inflate to. The tests take turns, so each counts only itself.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use switchboard::{Config, Message};

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator; only adds a counter.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const CLIENTS: usize = 100;
const SIZE: usize = 1 << 20;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn a_broadcast_to_100_connections_allocates_one_copy_of_the_frame() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = start_echo(Config {
        // The queued bytes per connection go over 1 MiB; keep the policy out of the way.
        max_queued_bytes: 4 << 20,
        ..config(2)
    });
    let addr = server.local_addr();
    let hub = server.hub();
    let mut clients: Vec<_> = (0..CLIENTS).map(|_| raw_ws(addr, "/broadcast")).collect();
    let before_frames = hub.metrics().frames_out;
    let message = Message::Binary(vec![0xab; SIZE]);

    let before = ALLOCATED.load(Ordering::Relaxed);
    assert!(hub.broadcast("/broadcast", message));
    // Wait until every worker has queued it for every connection.
    let deadline = Instant::now() + Duration::from_secs(30);
    while hub.metrics().frames_out < before_frames + CLIENTS as u64 {
        assert!(Instant::now() < deadline, "broadcast not delivered");
        std::thread::sleep(Duration::from_millis(5));
    }
    let allocated = ALLOCATED.load(Ordering::Relaxed) - before;

    // One frame buffer (plus the shared copy it becomes) and small bookkeeping; a copy
    // per recipient would be 100 MiB.
    assert!(
        allocated < 4 * SIZE,
        "broadcast allocated {allocated} bytes for {CLIENTS} recipients"
    );
    eprintln!("broadcast of {SIZE} bytes to {CLIENTS} connections allocated {allocated} bytes");

    // And everyone does get the whole frame.
    let mut buf = vec![0u8; 64 * 1024];
    for c in clients.iter_mut() {
        let (b0, payload) = read_server_frame(c);
        assert_eq!(b0, 0x82);
        assert_eq!(payload.len(), SIZE);
        let _ = c.set_nonblocking(true);
        let _ = c.read(&mut buf);
    }
    server.stop();
}

/// Text that deflates well but not to nothing: 1 MiB of numbered JSON-like lines.
fn compressible(size: usize) -> String {
    let mut s = String::with_capacity(size + 64);
    let mut i = 0u64;
    while s.len() < size {
        s.push_str(&format!(
            "{{\"seq\":{i},\"user\":\"u{}\",\"text\":\"hello\"}}\n",
            i % 97
        ));
        i += 1;
    }
    s.truncate(size);
    s
}

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate\r\n";

fn deflate_config(max_message_size: usize) -> Config {
    Config {
        max_queued_bytes: 4 << 20,
        max_message_size,
        deflate: switchboard::ws::deflate::DeflateConfig {
            enabled: true,
            ..Default::default()
        },
        ..config(2)
    }
}

#[test]
fn a_deflated_broadcast_to_100_connections_is_compressed_once() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = start_echo(deflate_config(64 << 20));
    let addr = server.local_addr();
    let hub = server.hub();
    let mut clients: Vec<_> = (0..CLIENTS)
        .map(|_| raw_ws_with(addr, "/broadcast", OFFER).0)
        .collect();
    assert_eq!(hub.metrics().deflate_sessions, CLIENTS as u64);
    let text = compressible(SIZE);
    let before_frames = hub.metrics().frames_out;

    let before = ALLOCATED.load(Ordering::Relaxed);
    assert!(hub.broadcast("/broadcast", Message::Text(text.clone())));
    let deadline = Instant::now() + Duration::from_secs(30);
    while hub.metrics().frames_out < before_frames + CLIENTS as u64 {
        assert!(Instant::now() < deadline, "broadcast not delivered");
        std::thread::sleep(Duration::from_millis(5));
    }
    let allocated = ALLOCATED.load(Ordering::Relaxed) - before;
    // The compressor's output room (about the input's size), the compressed frame, and
    // each worker's shared compressor (~300 KiB, made on first use); compressing per
    // recipient would allocate over 100 MiB.
    assert!(
        allocated < 4 * SIZE,
        "deflated broadcast allocated {allocated} bytes for {CLIENTS} recipients"
    );
    eprintln!(
        "deflated broadcast of {SIZE} bytes to {CLIENTS} connections allocated {allocated} bytes"
    );

    let mut first: Option<Vec<u8>> = None;
    for c in clients.iter_mut() {
        let (b0, payload) = read_server_frame(c);
        assert_eq!(b0, 0xC1, "a compressed text frame");
        assert!(payload.len() < SIZE / 4, "{}", payload.len());
        // Every recipient got the same compressed bytes.
        match &first {
            Some(f) => assert_eq!(f, &payload),
            None => first = Some(payload),
        }
    }
    let mut d = flate2::Decompress::new(false);
    let mut input = first.unwrap();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(2 * SIZE);
    d.decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
        .unwrap();
    assert_eq!(out, text.as_bytes());
    server.stop();
}

#[test]
fn a_decompression_bomb_costs_about_the_message_limit() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const LIMIT: usize = 1 << 20;
    let server = start_echo(deflate_config(LIMIT));
    let (mut s, _) = raw_ws_with(server.local_addr(), "/echo", OFFER);
    // 64 MiB of zeros, compressed: about 64 KiB, sent whole in one frame.
    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
    let mut bomb = Vec::with_capacity(1 << 20);
    c.compress_vec(&vec![0u8; 64 << 20], &mut bomb, flate2::FlushCompress::Sync)
        .unwrap();
    bomb.truncate(bomb.len() - 4);
    let frame = client_frame(0x42, &bomb);

    let before = ALLOCATED.load(Ordering::Relaxed);
    s.write_all(&frame).unwrap();
    assert_eq!(read_close_code(&mut s), 1009);
    let allocated = ALLOCATED.load(Ordering::Relaxed) - before;
    // Inflating stops a byte past the limit: the message buffer grows by doubling to
    // about twice the limit, plus the compressed frame and a decompressor.
    assert!(
        allocated < 6 * LIMIT,
        "a bomb of {} bytes made the server allocate {allocated} bytes",
        bomb.len()
    );
    eprintln!(
        "a {} byte bomb (64 MiB inflated) allocated {allocated} bytes",
        bomb.len()
    );
    server.stop();
}
