//! A client that stops reading: with policy `close` it is closed with 1008, with policy
//! `drop` its messages are dropped and counted; either way the server's resident memory
//! stays bounded and other clients get every message.
//!
//! The server runs as the real binary with a TOML config file, so its RSS is its own.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::process::Child;
use std::time::Duration;

use common::*;
use tungstenite::Message;

struct Server {
    child: Child,
    addr: SocketAddr,
    _dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(policy: &str) -> Server {
    let dir = std::env::temp_dir().join(format!("sb-slow-{}-{policy}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("switchboard.toml");
    std::fs::File::create(&config)
        .unwrap()
        .write_all(
            format!(
                "listen = \"127.0.0.1:0\"\nworkers = 2\nmax_queued_bytes = 1048576\nslow_consumer = \"{policy}\"\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let (child, addr) = spawn_binary(&["echo", "--config", config.to_str().unwrap()]);
    Server {
        child,
        addr,
        _dir: dir,
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn metric(addr: SocketAddr, name: &str) -> u64 {
    let body = raw_exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("switchboard_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no metric {name} in {body}"))
}

/// Pushes `count` broadcasts of `size` bytes through `/broadcast` while `stalled` (also on
/// `/broadcast`) never reads; the sender and a bystander read everything. Returns the
/// peak RSS of the server seen during the run, in KiB, and the stalled socket.
fn push_past_a_stalled_client(
    server: &Server,
    count: usize,
    size: usize,
) -> (u64, std::net::TcpStream) {
    // The stalled client: a raw socket that never reads, with a small receive buffer so
    // the kernel cannot absorb the flood for it.
    let stalled = {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(4096).unwrap();
        s.connect(&server.addr.into()).unwrap();
        let mut s: std::net::TcpStream = s.into();
        s.write_all(upgrade_request("/broadcast", "").as_bytes())
            .unwrap();
        s
    };
    let mut sender = connect(server.addr, "/broadcast");
    let mut bystander = connect(server.addr, "/broadcast");
    let pid = server.child.id();
    let mut peak = 0;
    // Lockstep: each message is read by the sender (it gets its own broadcast back) and
    // the bystander before the next goes out, so only the stalled client falls behind.
    for i in 0..count {
        sender.send(Message::Binary(vec![i as u8; size])).unwrap();
        for ws in [&mut sender, &mut bystander] {
            match ws.read().unwrap() {
                Message::Binary(b) => assert_eq!((b[0], b.len()), (i as u8, size)),
                other => panic!("reader got {other:?} at message {i}"),
            }
        }
        if i % 50 == 0 {
            peak = peak.max(rss_kib(pid));
        }
    }
    peak = peak.max(rss_kib(pid));
    (peak, stalled)
}

const COUNT: usize = 1000;
const SIZE: usize = 64 * 1024;
/// 1000 × 64 KiB = 62.5 MiB goes to the stalled client; without a bound its queue alone
/// would hold that. With the bound the whole server stays far below it.
const RSS_BOUND_KIB: u64 = 40 * 1024;

#[test]
fn stalled_client_is_closed_with_1008_and_memory_stays_bounded() {
    let server = spawn_server("close");
    let (peak, mut stalled) = push_past_a_stalled_client(&server, COUNT, SIZE);
    eprintln!("server RSS peak: {peak} KiB");
    assert!(peak < RSS_BOUND_KIB, "server RSS peaked at {peak} KiB");
    assert_eq!(metric(server.addr, "slow_consumer_closes_total"), 1);
    // Now read what the stalled client was sent: the 101, some frames, then close 1008.
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        std::io::Read::read_exact(&mut stalled, &mut b).unwrap();
        head.push(b[0]);
    }
    assert_eq!(read_close_code(&mut stalled), 1008);
}

#[test]
fn with_policy_drop_messages_are_dropped_and_counted() {
    let server = spawn_server("drop");
    let (peak, _stalled) = push_past_a_stalled_client(&server, COUNT, SIZE);
    eprintln!("server RSS peak: {peak} KiB");
    assert!(peak < RSS_BOUND_KIB, "server RSS peaked at {peak} KiB");
    assert_eq!(metric(server.addr, "slow_consumer_closes_total"), 0);
    let dropped = metric(server.addr, "dropped_messages_total");
    assert!(dropped > COUNT as u64 / 2, "only {dropped} dropped");
    // The stalled connection is still open: a new client sees a normal server, and
    // the stalled one was not closed.
    let mut c = connect(server.addr, "/");
    c.send(Message::Text("ok".into())).unwrap();
    assert_eq!(c.read().unwrap(), Message::Text("ok".into()));
}
