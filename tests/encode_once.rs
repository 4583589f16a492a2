//! A broadcast is encoded once: sending a 1 MiB message to 100 connections allocates
//! about one copy of it, not 100. Measured with a counting global allocator over the
//! whole process (server threads included).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
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

#[test]
fn a_broadcast_to_100_connections_allocates_one_copy_of_the_frame() {
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
