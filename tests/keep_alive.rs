//! HTTP/1.1 done right, over real sockets: keep-alive by default, pipelined requests
//! answered in order, HTTP/1.0 for plain routes, chunked request bodies, and the idle
//! keep-alive timeout.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::chat::*;
use common::http::read_response;
use common::*;
use serde_json::json;
use switchboard::{Config, Server};

fn open(addr: std::net::SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

fn push_request(body: &str) -> String {
    format!(
        "POST /api/v1/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn a_thousand_push_calls_share_one_connection() {
    let server = node(&["notify_join=false"]);
    let addr = server.local_addr();
    let (mut ann, _) = login(addr, "ann");
    let before = server.hub().metrics().connections_total;
    let (mut s, mut r) = open(addr);
    for i in 0..1000 {
        let body = json!({"to": {"userId": "ann"}, "type": "NOTICE", "body": {"i": i}});
        s.write_all(push_request(&body.to_string()).as_bytes())
            .unwrap();
        let resp = read_response(&mut r);
        assert_eq!(resp.status, 200, "{}", resp.body);
        assert_eq!(resp.header("Connection"), Some("keep-alive"));
        assert_eq!(resp.body, r#"{"sessions":1}"#);
    }
    for i in 0..1000 {
        assert_eq!(next_of(&mut ann, "NOTICE")["body"]["i"], i);
    }
    // One connection for all of them.
    assert_eq!(server.hub().metrics().connections_total, before + 1);
    server.stop();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = start(
        Server::builder()
            .config(config(1))
            .metrics_route("/metrics"),
    );
    let (mut s, mut r) = open(server.local_addr());
    s.write_all(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n\
          HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let first = read_response(&mut r);
    assert_eq!((first.status, first.body.as_str()), (200, "ok\n"));
    let second = read_response(&mut r);
    assert!(second.body.contains("switchboard_connections_open"));
    // HEAD: the length of the body it does not carry.
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    assert!(head.contains("Content-Length: 3\r\n"), "{head}");
    let last = read_response(&mut r);
    assert_eq!(last.header("Connection"), Some("close"));
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    server.stop();
}

#[test]
fn http_1_0_health_checks_get_200_and_a_close() {
    let server = start(Server::builder().config(config(1)));
    let resp = raw_exchange(server.local_addr(), b"GET /healthz HTTP/1.0\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.contains("Connection: close\r\n"), "{resp}");
    assert!(resp.ends_with("\r\n\r\nok\n"), "{resp}");
    // An HTTP/1.0 client that asks for keep-alive gets it.
    let (mut s, mut r) = open(server.local_addr());
    for _ in 0..2 {
        s.write_all(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let resp = read_response(&mut r);
        assert_eq!(
            (resp.status, resp.header("Connection")),
            (200, Some("keep-alive"))
        );
    }
    server.stop();
}

#[test]
fn a_chunked_push_body_is_accepted() {
    let server = node(&["notify_join=false"]);
    let addr = server.local_addr();
    let (mut bob, _) = login(addr, "bob");
    let body =
        json!({"to": {"userId": "bob"}, "type": "NOTICE", "body": {"n": "chunked"}}).to_string();
    let (a, b) = body.split_at(body.len() / 2);
    let req = format!(
        "POST /api/v1/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let (mut s, mut r) = open(addr);
    // Sent in pieces, as a streaming client would.
    for piece in req.as_bytes().chunks(7) {
        s.write_all(piece).unwrap();
    }
    let resp = read_response(&mut r);
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (200, r#"{"sessions":1}"#)
    );
    assert_eq!(next_of(&mut bob, "NOTICE")["body"]["n"], "chunked");
    server.stop();
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let server = start(Server::builder().config(Config {
        keepalive_timeout_ms: 200,
        ..config(1)
    }));
    let (mut s, mut r) = open(server.local_addr());
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r).status, 200);
    // Nothing more is sent: the server closes (EOF) rather than waiting forever.
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    server.stop();
}
