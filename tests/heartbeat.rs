//! Heartbeats: a silent client gets pings; one that never answers is closed after
//! `idle_timeout_ms`; one that answers (tungstenite does, automatically) stays open.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::*;
use switchboard::Config;
use tungstenite::Message;

fn server() -> switchboard::ServerHandle {
    start_echo(Config {
        heartbeat_interval_ms: 200,
        idle_timeout_ms: 700,
        ..config(1)
    })
}

#[test]
fn a_client_that_never_answers_pings_is_closed_after_the_idle_timeout() {
    let server = server();
    let mut s = raw_ws(server.local_addr(), "/");
    let mut pings = 0;
    let code = loop {
        let (b0, payload) = read_server_frame(&mut s);
        match b0 & 0x0f {
            0x9 => pings += 1,
            0x8 => break u16::from_be_bytes([payload[0], payload[1]]),
            op => panic!("unexpected opcode {op}"),
        }
    };
    assert!(pings >= 1, "no ping before the idle close");
    assert_eq!(code, 1001);
    // The server closes TCP after its close frame (no close reply needed: it lingers at
    // most close_timeout_ms, but half-closes at once).
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert_eq!(server.hub().metrics().idle_timeouts, 1);
    server.stop();
}

#[test]
fn a_client_that_answers_pings_stays_open_past_the_idle_timeout() {
    let server = server();
    let mut ws = connect(server.local_addr(), "/");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
    }
    let until = Instant::now() + Duration::from_millis(1500);
    let mut pings = 0;
    while Instant::now() < until {
        // tungstenite answers each ping with a pong while reading.
        match ws.read() {
            Ok(Message::Ping(_)) => pings += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::Io(e))
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("connection ended: {e}"),
        }
        let _ = ws.flush();
    }
    assert!(pings >= 2, "expected repeated pings, got {pings}");
    set_timeout(&ws);
    ws.send(Message::Text("still open".into())).unwrap();
    loop {
        match ws.read().unwrap() {
            Message::Ping(_) => {}
            m => {
                assert_eq!(m, Message::Text("still open".into()));
                break;
            }
        }
    }
    assert_eq!(server.hub().metrics().idle_timeouts, 0);
    server.stop();
}
