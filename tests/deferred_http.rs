//! Deferred HTTP answers over real sockets: a route answered later from another thread
//! (long polling), a streamed answer (chunked on HTTP/1.1, close-delimited on HTTP/1.0),
//! the response timeout (504), a dropped reply (500), and pipelined requests behind a
//! parked one answered in order.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use switchboard::http::HttpResponse;
use switchboard::{Config, HttpReply, Server, ServerHandle};

/// A server whose `/poll` answers when the test says so (through the channel it gets the
/// replies on), `/stream` streams three pieces from a thread, `/drop` drops its reply and
/// `/never` keeps it forever.
fn server() -> (ServerHandle, mpsc::Receiver<HttpReply>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let kept: Arc<Mutex<Vec<HttpReply>>> = Arc::default();
    let server = start(
        Server::builder()
            .config(Config {
                http_response_timeout_ms: 300,
                ..config(2)
            })
            .http_route_deferred("/poll", move |_, _, reply| {
                let _ = tx.lock().unwrap().send(reply);
            })
            .http_route_deferred("/stream", |_, _, reply| {
                std::thread::spawn(move || {
                    let stream = reply.start(HttpResponse::text(200, "one,"));
                    for piece in ["two,", "three"] {
                        std::thread::sleep(Duration::from_millis(20));
                        stream.send(piece);
                    }
                    stream.finish();
                });
            })
            .http_route_deferred("/drop", |_, _, reply| drop(reply))
            .http_route_deferred("/never", move |_, _, reply| {
                kept.lock().unwrap().push(reply)
            }),
    );
    (server, rx)
}

fn open(addr: std::net::SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

/// Reads one response: (status, headers in lower case, body), decoding a chunked body.
fn read_response(r: &mut BufReader<TcpStream>) -> (u16, String, String) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        head.push_str(&line.to_ascii_lowercase());
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    let status = head[9..12].parse().unwrap();
    let mut body = Vec::new();
    if head.contains("transfer-encoding: chunked") {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        body.resize(len.trim().parse().unwrap(), 0);
        r.read_exact(&mut body).unwrap();
    } else {
        r.read_to_end(&mut body).unwrap();
    }
    (status, head, String::from_utf8(body).unwrap())
}

#[test]
fn a_long_poll_is_answered_later_and_pipelined_requests_wait_their_turn() {
    let (server, replies) = server();
    let (mut s, mut r) = open(server.local_addr());
    s.write_all(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let reply = replies.recv_timeout(Duration::from_secs(10)).unwrap();
    // Answered from another thread.
    std::thread::spawn(move || reply.send(HttpResponse::text(200, "news\n")))
        .join()
        .unwrap();
    assert_eq!(read_response(&mut r).2, "news\n");
    assert_eq!(read_response(&mut r).2, "ok\n");
    // Kept alive afterwards.
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r).0, 200);
    server.stop();
}

#[test]
fn a_stream_is_chunked_on_1_1_and_close_delimited_on_1_0() {
    let (server, _replies) = server();
    let (mut s, mut r) = open(server.local_addr());
    s.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (status, head, body) = read_response(&mut r);
    assert_eq!((status, body.as_str()), (200, "one,two,three"));
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r).2, "ok\n");

    let (mut s, mut r) = open(server.local_addr());
    s.write_all(b"GET /stream HTTP/1.0\r\n\r\n").unwrap();
    let (status, head, body) = read_response(&mut r);
    assert_eq!((status, body.as_str()), (200, "one,two,three"));
    assert!(
        head.contains("connection: close") && !head.contains("chunked"),
        "{head}"
    );
    server.stop();
}

#[test]
fn no_answer_in_time_is_a_504_and_a_dropped_reply_a_500() {
    let (server, _replies) = server();
    let (mut s, mut r) = open(server.local_addr());
    s.write_all(b"GET /never HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r).0, 504);
    s.write_all(b"GET /drop HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r).0, 500);
    // The connection is still good.
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut r).0, 200);
    server.stop();
}

#[test]
fn an_answer_for_a_client_that_left_is_dropped() {
    let (server, replies) = server();
    {
        let (mut s, _r) = open(server.local_addr());
        s.write_all(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
    }
    let reply = replies.recv_timeout(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let before = server.hub().metrics().dropped_stale_id;
    reply.send(HttpResponse::text(200, "too late"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.hub().metrics().dropped_stale_id == before {
        assert!(
            std::time::Instant::now() < deadline,
            "the late answer was not dropped"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    server.stop();
}
