//! The HTTP side over real sockets: the upgrade succeeds, and every rejection is a
//! complete response with `Connection: close`, after which the server closes the socket.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::thread::sleep;
use std::time::Duration;

use common::*;
use switchboard::http::HttpResponse;
use switchboard::{Config, Context, Handler, Message, Server};
use tungstenite::client::IntoClientRequest;

struct Echo;
impl Handler for Echo {
    fn on_message(&self, ctx: &mut Context<'_>, msg: Message) {
        ctx.send(msg);
    }
}

/// A server with one route, `/echo`, an origin allow-list and two subprotocols.
fn routed_server(config: Config) -> switchboard::ServerHandle {
    let config = Config {
        allowed_origins: vec!["https://app.example".into()],
        subprotocols: vec!["v2.chat".into(), "v1.chat".into()],
        ..config
    };
    start(Server::builder().config(config).route("/echo", Echo))
}

fn assert_rejected(resp: &str, status: &str) {
    assert!(
        resp.starts_with(&format!("HTTP/1.1 {status}")),
        "expected {status}, got: {resp}"
    );
    assert!(resp.contains("\r\nConnection: close\r\n"), "{resp}");
    assert!(resp.contains("\r\nContent-Length: "), "{resp}");
}

#[test]
fn upgrade_succeeds_and_negotiates_a_subprotocol() {
    let server = routed_server(config(1));
    let addr = server.local_addr();
    let mut req = format!("ws://{addr}/echo").into_client_request().unwrap();
    // No space after the comma: tungstenite splits the offer on "," without trimming.
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "v0.chat,v1.chat".parse().unwrap());
    let (mut ws, resp) = tungstenite::connect(req).unwrap();
    assert_eq!(resp.status(), 101);
    assert_eq!(
        resp.headers().get("Sec-WebSocket-Protocol").unwrap(),
        "v1.chat"
    );
    ws.send(tungstenite::Message::Text("hi".into())).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::Text("hi".into()));
    server.stop();
}

#[test]
fn healthz_answers_200() {
    let server = routed_server(config(1));
    let resp = raw_exchange(
        server.local_addr(),
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.ends_with("\r\n\r\nok\n"), "{resp}");
    server.stop();
}

#[test]
fn each_bad_request_gets_its_status_and_the_socket_closes() {
    let server = routed_server(config(1));
    let addr = server.local_addr();
    let cases: Vec<(String, &str)> = vec![
        (
            upgrade_request("/echo", "").replacen("GET", "POST", 1),
            "405",
        ),
        (
            upgrade_request("/echo", "").replacen("HTTP/1.1", "HTTP/1.0", 1),
            "400",
        ),
        (
            upgrade_request("/echo", "").replace("Upgrade: websocket\r\n", ""),
            "400",
        ),
        (
            upgrade_request("/echo", "").replace("Host: localhost\r\n", ""),
            "400",
        ),
        (
            upgrade_request("/echo", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "bm9wZQ=="),
            "400",
        ),
        ("NOT HTTP AT ALL\r\n\r\n".to_owned(), "400"),
        (
            upgrade_request("/echo", "").replace("Version: 13", "Version: 12"),
            "426",
        ),
        (upgrade_request("/nowhere", ""), "404"),
        (
            upgrade_request("/echo", "Origin: https://evil.example\r\n"),
            "403",
        ),
    ];
    for (req, status) in cases {
        let resp = raw_exchange(addr, req.as_bytes());
        assert_rejected(&resp, status);
        if status == "426" {
            assert!(resp.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{resp}");
        }
    }
    // An allowed origin passes.
    let ok = raw_exchange_head(
        addr,
        &upgrade_request("/echo", "Origin: https://app.example\r\n"),
    );
    assert!(ok.starts_with("HTTP/1.1 101"), "{ok}");
    server.stop();
}

/// Sends a request and returns the response head only (for a 101 the socket stays open).
fn raw_exchange_head(addr: std::net::SocketAddr, req: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    String::from_utf8(head).unwrap()
}

#[test]
fn oversized_headers_get_431() {
    let server = routed_server(config(1));
    let filler = "X-Filler: ".to_owned() + &"a".repeat(100) + "\r\n";
    let req = upgrade_request("/echo", &filler.repeat(90));
    assert!(req.len() > 8192);
    assert_rejected(&raw_exchange(server.local_addr(), req.as_bytes()), "431");
    server.stop();
}

#[test]
fn a_request_dribbled_one_byte_at_a_time_still_upgrades() {
    let server = routed_server(config(1));
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for b in upgrade_request("/echo", "").bytes() {
        s.write_all(&[b]).unwrap();
        sleep(Duration::from_micros(200));
    }
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    server.stop();
}

#[test]
fn a_client_that_never_finishes_its_handshake_is_closed() {
    let server = routed_server(Config {
        handshake_timeout_ms: 300,
        ..config(1)
    });
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /echo HTTP/1.1\r\nHost: loc").unwrap();
    // read_to_close panics if the server keeps the socket open past the read timeout.
    let got = read_to_close(&mut s);
    assert_eq!(got, "", "no response for an unfinished request");
    server.stop();
}

#[test]
fn frames_sent_right_behind_the_request_are_not_lost() {
    let server = routed_server(config(1));
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut bytes = upgrade_request("/echo", "").into_bytes();
    bytes.extend(client_frame(0x81, b"early"));
    s.write_all(&bytes).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert_eq!(read_server_frame(&mut s), (0x81, b"early".to_vec()));
    server.stop();
}

#[test]
fn plain_http_routes_get_their_body() {
    let server = start(
        Server::builder()
            .config(Config {
                max_body_bytes: 100,
                ..config(1)
            })
            .http_route("/len", |req, _hub| {
                HttpResponse::text(200, format!("{} {}\n", req.method, req.body.len()))
            }),
    );
    let addr = server.local_addr();
    // The body arrives in a later write than the head.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"POST /len HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 11\r\n\r\nhello",
    )
    .unwrap();
    sleep(Duration::from_millis(50));
    s.write_all(b" world").unwrap();
    let resp = read_to_close(&mut s);
    assert!(resp.ends_with("\r\n\r\nPOST 11\n"), "{resp}");
    let big = format!(
        "POST /len HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n{}",
        "x".repeat(101)
    );
    assert_rejected(&raw_exchange(addr, big.as_bytes()), "413");
    // A chunked body is decoded, under the same limit.
    let chunked = "POST /len HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let resp = raw_exchange(addr, chunked.as_bytes());
    assert!(resp.ends_with("\r\n\r\nPOST 11\n"), "{resp}");
    let chunked_big = "POST /len HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n";
    assert_rejected(&raw_exchange(addr, chunked_big.as_bytes()), "413");
    let gzip = "POST /len HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n";
    assert_rejected(&raw_exchange(addr, gzip.as_bytes()), "411");
    // A route's own error status is an answer, not a protocol error: the connection
    // stays open unless the client asks otherwise.
    let healthz_post = "POST /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let resp = raw_exchange(addr, healthz_post.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 405"), "{resp}");
    server.stop();
}
