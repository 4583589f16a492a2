//! Connection limits answer 503, and /metrics reports what happened.

mod common;

use common::*;
use switchboard::Config;
use tungstenite::Message;

#[test]
fn handshakes_past_max_connections_get_503() {
    let server = start_echo(Config {
        max_connections: 3,
        ..config(2)
    });
    let addr = server.local_addr();
    let mut held: Vec<_> = (0..3).map(|_| connect(addr, "/")).collect();
    let resp = raw_exchange(addr, upgrade_request("/", "").as_bytes());
    assert!(
        resp.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{resp}"
    );
    assert!(resp.contains("max_connections"), "{resp}");
    // Room again once one leaves.
    let mut one = held.pop().unwrap();
    one.close(None).unwrap();
    while one.read().is_ok() {}
    drop(one);
    let mut ok = None;
    for _ in 0..50 {
        if let Ok((ws, _)) = tungstenite::connect(format!("ws://{addr}/")) {
            ok = Some(ws);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut ws = ok.expect("a slot freed up");
    ws.send(Message::Text("in".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("in".into()));
    server.stop();
}

#[test]
fn handshakes_past_max_connections_per_ip_get_503() {
    let server = start_echo(Config {
        max_connections_per_ip: 2,
        ..config(1)
    });
    let addr = server.local_addr();
    let _held: Vec<_> = (0..2).map(|_| connect(addr, "/")).collect();
    let resp = raw_exchange(addr, upgrade_request("/", "").as_bytes());
    assert!(resp.starts_with("HTTP/1.1 503"), "{resp}");
    assert!(resp.contains("max_connections_per_ip"), "{resp}");
    server.stop();
}

#[test]
fn metrics_endpoint_reports_counters_in_prometheus_text() {
    let server = start_echo(config(2));
    let addr = server.local_addr();
    let mut ws = connect(addr, "/");
    ws.send(Message::Text("one".into())).unwrap();
    ws.read().unwrap();
    raw_exchange(
        addr,
        upgrade_request("/", "")
            .replace("Version: 13", "Version: 12")
            .as_bytes(),
    );
    let body = raw_exchange(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(body.starts_with("HTTP/1.1 200 OK\r\n"), "{body}");
    for line in [
        "# TYPE switchboard_connections_open gauge",
        "switchboard_messages_in_total 1",
        "switchboard_handshake_failures_total{reason=\"upgrade_required\"} 1",
    ] {
        assert!(body.contains(line), "missing {line:?} in\n{body}");
    }
    let open: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("switchboard_connections_open "))
        .unwrap()
        .parse()
        .unwrap();
    // The websocket and the /metrics request itself.
    assert!(open >= 2, "{open}");
    server.stop();
}

/// Opens a raw connection with `extra` headers; the status line of the answer and the
/// socket (kept open so the connection keeps counting).
fn handshake_status(addr: std::net::SocketAddr, extra: &str) -> (String, std::net::TcpStream) {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(upgrade_request("/", extra).as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(s.try_clone().unwrap())
        .read_line(&mut line)
        .unwrap();
    (line, s)
}

#[test]
fn behind_a_trusted_proxy_the_forwarded_address_is_the_client() {
    let server = start_echo(Config {
        max_connections_per_ip: 1,
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
        ..config(1)
    });
    let addr = server.local_addr();
    let (a, _a) = handshake_status(addr, "X-Forwarded-For: 198.51.100.7, 203.0.113.1\r\n");
    let (b, _b) = handshake_status(addr, "X-Real-IP: 203.0.113.2\r\n");
    assert!(
        a.starts_with("HTTP/1.1 101") && b.starts_with("HTTP/1.1 101"),
        "{a} {b}"
    );
    let (c, _c) = handshake_status(addr, "X-Forwarded-For: 203.0.113.1\r\n");
    assert!(c.starts_with("HTTP/1.1 503"), "{c}");
    server.stop();

    // From an address that is not a trusted proxy the headers mean nothing.
    let server = start_echo(Config {
        max_connections_per_ip: 1,
        ..config(1)
    });
    let addr = server.local_addr();
    let (a, _a) = handshake_status(addr, "X-Forwarded-For: 203.0.113.1\r\n");
    let (b, _b) = handshake_status(addr, "X-Forwarded-For: 203.0.113.2\r\n");
    assert!(a.starts_with("HTTP/1.1 101"), "{a}");
    assert!(b.starts_with("HTTP/1.1 503"), "{b}");
    server.stop();
}
