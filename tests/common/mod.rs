//! Shared helpers for black-box tests: start a server on port 0, connect real clients.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use switchboard::{Config, ServerBuilder, ServerHandle};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::WebSocket;

pub type Client = WebSocket<MaybeTlsStream<TcpStream>>;

/// A config for tests: loopback, port 0, `workers` workers.
pub fn config(workers: usize) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        workers,
        // Tests often stop the server with clients that will never answer close 1001.
        shutdown_timeout_ms: 500,
        ..Config::default()
    }
}

/// Starts the echo application with `config`.
pub fn start_echo(config: Config) -> ServerHandle {
    switchboard::echo::echo_server(config)
        .start()
        .expect("server starts")
}

pub fn start(builder: ServerBuilder) -> ServerHandle {
    builder.start().expect("server starts")
}

/// Connects a tungstenite client to `path`.
pub fn connect(addr: SocketAddr, path: &str) -> Client {
    let (ws, resp) = tungstenite::connect(format!("ws://{addr}{path}")).expect("handshake");
    assert_eq!(resp.status(), 101);
    set_timeout(&ws);
    ws
}

pub fn set_timeout(ws: &Client) {
    if let MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
}

/// Sends raw bytes and reads everything until the server closes; the response text.
pub fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    read_to_close(&mut s)
}

/// Reads until EOF (the server closed); panics on timeout, so a test fails if the server
/// leaves the connection open.
pub fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("server did not close the connection: {e}"),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A valid upgrade request for `path` with extra header lines.
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Opens a raw TCP connection and completes the handshake on `path`; returns the stream
/// positioned right after the 101 response.
pub fn raw_ws(addr: SocketAddr, path: &str) -> TcpStream {
    raw_ws_with(addr, path, "").0
}

/// [`raw_ws`] with `extra` header lines in the request; also returns the 101's head.
pub fn raw_ws_with(addr: SocketAddr, path: &str, extra: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(upgrade_request(path, extra).as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (s, head)
}

/// A masked client frame, built by hand (independent of the server's codec).
pub fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![b0];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// Reads one unmasked server frame by hand: (first byte, payload).
pub fn read_server_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).unwrap();
    assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).unwrap();
    (h[0], p)
}

/// Reads the server's close frame: its code.
pub fn read_close_code(s: &mut TcpStream) -> u16 {
    loop {
        let (b0, p) = read_server_frame(s);
        if b0 & 0x0f == 0x8 {
            assert!(p.len() >= 2, "close frame without a code");
            return u16::from_be_bytes([p[0], p[1]]);
        }
    }
}
#[cfg(feature = "cli")]
pub mod chat;
pub mod http;
pub mod tls;

/// A store path under the temp directory for a `switchboard serve` a test starts, so
/// no test writes a database into the source tree.
pub fn test_store_path() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir()
        .join(format!("switchboard-bin-{}-{n}", std::process::id()))
        .join("store.db")
}

/// Starts the `switchboard` binary with `args` (which should listen on port 0) and
/// returns it with the address it reports in its "listening local_addr=…" log line. Its
/// stderr keeps being drained so the child never blocks on a full pipe.
#[cfg(feature = "cli")]
pub fn spawn_binary(args: &[&str]) -> (std::process::Child, SocketAddr) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env("RUST_LOG", "info")
        .env("SWITCHBOARD__STORE__PATH", test_store_path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited early"
        );
        if let Some(rest) = line.split("local_addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in stderr.lines() {});
    (child, addr)
}
