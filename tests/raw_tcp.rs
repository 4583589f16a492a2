//! The chat protocol over a raw TCP listener (`[tcp]`): a plain TCP client, one JSON
//! message per line or behind a 4-byte length, talks with WebSocket users through the
//! same auth, registry and delivery; bad input gets a last `ERROR` and a close; TLS too.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::chat::*;
use serde_json::{json, Value};

/// A line-framed chat client on a plain socket.
struct LineClient {
    reader: BufReader<TcpStream>,
}

impl LineClient {
    fn connect(addr: SocketAddr) -> LineClient {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        LineClient {
            reader: BufReader::new(s),
        }
    }

    fn send(&mut self, kind: &str, body: Value, rid: &str) {
        let m = json!({ "type": kind, "body": body, "requestId": rid });
        let line = format!("{m}\n");
        self.reader.get_mut().write_all(line.as_bytes()).unwrap();
    }

    /// The next line as JSON; `None` at EOF.
    fn next(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line).unwrap() {
            0 => None,
            _ => Some(serde_json::from_str(line.trim_end()).expect("a JSON line")),
        }
    }

    fn next_of(&mut self, kind: &str) -> Value {
        for _ in 0..50 {
            let m = self
                .next()
                .unwrap_or_else(|| panic!("EOF waiting for {kind}"));
            if m["type"] == kind {
                return m;
            }
        }
        panic!("no {kind}");
    }

    fn assert_eof(&mut self) {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    }
}

#[test]
fn a_tcp_device_and_a_websocket_user_talk_both_ways() {
    let server = node(&["tcp.listen=\"127.0.0.1:0\"", "notify_join=false"]);
    let raw = server.raw_addr().expect("a raw listener");
    let mut dev = LineClient::connect(raw);
    // The first line arrives one byte per write (and per TCP segment, with nodelay): the
    // server must put it back together.
    let auth = json!({"type": "AUTH_REQUEST", "body": {"accessToken": "dev1"}, "requestId": "a"});
    for b in format!("{auth}\r\n").bytes() {
        dev.reader.get_mut().write_all(&[b]).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    let a = dev.next_of("AUTH_RESPONSE");
    assert_eq!(a["body"]["code"], 0, "{a}");
    assert_eq!(a["body"]["userId"], "dev1");

    let (mut alice, _) = login(server.local_addr(), "alice");
    dev.send(
        "SEND_TO_ONE_REQUEST",
        json!({"toUser": "alice", "msgId": "d1", "content": "temp=21.5\nok"}),
        "r1",
    );
    assert_eq!(dev.next_of("SEND_RESPONSE")["body"]["code"], 0);
    let m = next_of(&mut alice, "SEND_TO_USER_REQUEST");
    assert_eq!(m["body"]["content"], "temp=21.5\nok");
    assert_eq!(m["body"]["fromUser"], "dev1");

    send(
        &mut alice,
        "SEND_TO_ONE_REQUEST",
        json!({"toUser": "dev1", "msgId": "a1", "content": {"cmd": "reboot"}}),
        "r2",
    );
    let m = dev.next_of("SEND_TO_USER_REQUEST");
    assert_eq!(m["body"]["content"], json!({"cmd": "reboot"}));
    assert_eq!(m["body"]["fromUser"], "alice");

    // A message to everyone reaches both wires, each in its own framing.
    send(
        &mut alice,
        "SEND_TO_ALL_REQUEST",
        json!({"msgId": "g1", "content": "all hands"}),
        "r3",
    );
    assert_eq!(
        dev.next_of("SEND_TO_USER_REQUEST")["body"]["content"],
        "all hands"
    );
    assert_eq!(
        next_of(&mut alice, "SEND_TO_USER_REQUEST")["body"]["content"],
        "all hands"
    );

    // The protocol's own ping is the keep-alive on a wire without ping frames.
    dev.send("PING", json!({}), "p");
    assert_eq!(dev.next_of("PONG")["requestId"], "p");
    server.stop();
    let bye = dev.next_of("ERROR");
    assert_eq!(bye["body"]["close"], 1001, "{bye}");
    dev.assert_eof();
}

#[test]
fn a_line_over_the_limit_gets_an_error_and_the_connection_closes() {
    let server = node(&["tcp.listen=\"127.0.0.1:0\"", "tcp.max_message_bytes=1000"]);
    let mut dev = LineClient::connect(server.raw_addr().unwrap());
    // No newline in sight: refused as soon as it passes the limit.
    dev.reader.get_mut().write_all(&[b'x'; 1500]).unwrap();
    let e = dev.next_of("ERROR");
    assert_eq!(e["body"]["code"], 6, "{e}");
    assert_eq!(e["body"]["close"], 1009, "{e}");
    dev.assert_eof();

    // Other connections are untouched.
    let mut other = LineClient::connect(server.raw_addr().unwrap());
    other.send("AUTH_REQUEST", json!({"accessToken": "ok"}), "a");
    assert_eq!(other.next_of("AUTH_RESPONSE")["body"]["code"], 0);
    server.stop();
}

#[test]
fn a_device_that_never_authenticates_is_told_and_closed() {
    let server = node(&["tcp.listen=\"127.0.0.1:0\"", "auth.timeout=\"300ms\""]);
    let mut dev = LineClient::connect(server.raw_addr().unwrap());
    dev.send(
        "SEND_TO_ALL_REQUEST",
        json!({"msgId": "x", "content": 1}),
        "r",
    );
    assert_eq!(dev.next_of("ERROR")["body"]["code"], 2);
    let e = dev.next_of("ERROR");
    assert_eq!(e["body"]["close"], 1008, "{e}");
    assert_eq!(e["body"]["code"], 2, "{e}");
    dev.assert_eof();
    server.stop();
}

/// Reads one length-prefixed message as JSON.
fn read_prefixed(s: &mut impl Read) -> Value {
    let mut len = [0; 4];
    s.read_exact(&mut len).unwrap();
    let mut msg = vec![0; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut msg).unwrap();
    serde_json::from_slice(&msg).unwrap()
}

fn write_prefixed(s: &mut impl Write, v: &Value) {
    let msg = v.to_string();
    s.write_all(&(msg.len() as u32).to_be_bytes()).unwrap();
    s.write_all(msg.as_bytes()).unwrap();
}

#[test]
fn the_length_prefix_framing_carries_the_same_protocol() {
    let server = node(&[
        "tcp.listen=\"127.0.0.1:0\"",
        "tcp.framing=\"length_prefix\"",
        "notify_join=false",
    ]);
    let mut s = TcpStream::connect(server.raw_addr().unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Two messages in one write, the second cut across two.
    let auth = json!({"type": "AUTH_REQUEST", "body": {"accessToken": "pump7"}, "requestId": "a"});
    let ping = json!({"type": "PING", "requestId": "p"});
    let mut bytes = Vec::new();
    write_prefixed(&mut bytes, &auth);
    write_prefixed(&mut bytes, &ping);
    let cut = bytes.len() - 5;
    s.write_all(&bytes[..cut]).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    s.write_all(&bytes[cut..]).unwrap();
    assert_eq!(read_prefixed(&mut s)["body"]["userId"], "pump7");
    assert_eq!(read_prefixed(&mut s)["type"], "PONG");

    let (mut bob, _) = login(server.local_addr(), "bob");
    send(
        &mut bob,
        "SEND_TO_ONE_REQUEST",
        json!({"toUser": "pump7", "msgId": "b1", "content": "line1\nline2"}),
        "r",
    );
    let m = read_prefixed(&mut s);
    assert_eq!(m["body"]["content"], "line1\nline2", "{m}");
    server.stop();
}

#[test]
fn the_raw_listener_speaks_tls_with_the_tls_certificate() {
    use common::tls::{temp_dir, tls_connect, TestCa};
    let ca = TestCa::new("raw");
    let dir = temp_dir("raw");
    let (cert, key, _) = ca.write_server_files(&dir, "localhost");
    let server = node(&[
        &format!("tls.cert=\"{}\"", cert.display()),
        &format!("tls.key=\"{}\"", key.display()),
        "tls.listen=\"127.0.0.1:0\"",
        "tcp.listen=\"127.0.0.1:0\"",
        "tcp.tls=true",
        "notify_join=false",
    ]);
    let raw = server.raw_addr().unwrap();
    let mut s = BufReader::new(tls_connect(raw, ca.client_config()));
    let auth =
        json!({"type": "AUTH_REQUEST", "body": {"accessToken": "secure1"}, "requestId": "a"});
    s.get_mut()
        .write_all(format!("{auth}\n").as_bytes())
        .unwrap();
    let mut line = String::new();
    s.read_line(&mut line).unwrap();
    let a: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(a["body"]["userId"], "secure1", "{a}");
    // The plain WebSocket listener is still plain.
    let (mut carol, _) = login(server.local_addr(), "carol");
    send(
        &mut carol,
        "SEND_TO_ONE_REQUEST",
        json!({"toUser": "secure1", "msgId": "c1", "content": "over tls"}),
        "r",
    );
    line.clear();
    s.read_line(&mut line).unwrap();
    let m: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(m["body"]["content"], "over tls", "{m}");
    server.stop();
}
