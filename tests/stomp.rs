//! The STOMP broker over real sockets with tungstenite as the WebSocket peer: CONNECT and
//! version negotiation, topics and user destinations, frames split at every byte and
//! several in one message, NUL in a content-length body, bad escapes, a missing NUL,
//! oversize frames, client acks with NACK redelivery, transactions, receipts,
//! DISCONNECT, heart-beat timeout, authentication, and the push API.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::chat::{http, jwt, node, quiet, API_KEY, SECRET};
use common::{set_timeout, Client};
use switchboard::stomp::{Command, Frame, FrameLimits, FrameParser, Parsed};
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

fn open(addr: SocketAddr, query: &str, protocol: Option<&str>) -> Client {
    let mut req = format!("ws://{addr}/stomp{query}")
        .into_client_request()
        .unwrap();
    if let Some(p) = protocol {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse().unwrap());
    }
    let (ws, resp) = tungstenite::connect(req).expect("handshake");
    if protocol.is_some() {
        assert_eq!(
            resp.headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|v| v.to_str().ok()),
            Some("v12.stomp")
        );
    }
    set_timeout(&ws);
    ws
}

/// A client with its own frame parser (frames may share a message).
struct Stomp {
    ws: Client,
    parser: FrameParser,
}

impl Stomp {
    fn raw(&mut self, bytes: &[u8]) {
        let msg = match std::str::from_utf8(bytes) {
            Ok(t) => Message::Text(t.to_owned()),
            Err(_) => Message::Binary(bytes.to_vec()),
        };
        self.ws.send(msg).unwrap();
    }

    fn send(&mut self, f: Frame) {
        let bytes = f.encode(true);
        self.raw(&bytes);
    }

    /// The next frame (heart-beats skipped).
    fn next(&mut self) -> Frame {
        loop {
            if let Some(p) = self.parser.next(&FrameLimits::default()) {
                if let Parsed::Frame(f) = p.expect("a valid frame from the broker") {
                    return f;
                }
                continue;
            }
            match self.ws.read().expect("a message") {
                Message::Text(t) => self.parser.push(t.as_bytes()),
                Message::Binary(b) => self.parser.push(&b),
                Message::Ping(_) | Message::Pong(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn expect(&mut self, cmd: Command) -> Frame {
        let f = self.next();
        assert_eq!(f.command, cmd, "{f:?}");
        f
    }

    /// The close code after an ERROR.
    fn closed(&mut self) -> u16 {
        loop {
            match self.ws.read() {
                Ok(Message::Close(Some(f))) => return f.code.into(),
                Ok(_) => {}
                Err(e) => panic!("no close frame: {e}"),
            }
        }
    }
}

fn connect_frame(passcode: &str) -> Frame {
    Frame::new(Command::Connect)
        .header("accept-version", "1.1,1.2")
        .header("host", "localhost")
        .header("login", "x")
        .header("passcode", passcode)
        .header("heart-beat", "0,0")
}

/// Connects `user` (demo mode: the passcode is the user id).
fn login(addr: SocketAddr, user: &str) -> Stomp {
    let mut c = Stomp {
        ws: open(addr, "", Some("v12.stomp, v11.stomp, v10.stomp")),
        parser: FrameParser::new(),
    };
    c.parser.set_escapes(true);
    c.send(connect_frame(user));
    let f = c.expect(Command::Connected);
    assert_eq!(f.get("version"), Some("1.2"));
    assert_eq!(f.get("user-name"), Some(user));
    assert_eq!(f.get("heart-beat"), Some("0,0"));
    assert!(f.get("session").is_some() && f.get("server").is_some());
    c
}

fn subscribe(c: &mut Stomp, id: &str, dest: &str, ack: &str) {
    c.send(
        Frame::new(Command::Subscribe)
            .header("id", id)
            .header("destination", dest)
            .header("ack", ack)
            .header("receipt", format!("r-{id}")),
    );
    let r = c.expect(Command::Receipt);
    assert_eq!(r.get("receipt-id"), Some(format!("r-{id}").as_str()));
}

fn send_to(c: &mut Stomp, dest: &str, body: &str) {
    c.send(
        Frame::new(Command::Send)
            .header("destination", dest)
            .header("content-type", "text/plain")
            .body(body.as_bytes().to_vec()),
    );
}

fn silent(c: &mut Stomp, ms: u64) {
    assert!(c.parser.next(&FrameLimits::default()).is_none());
    quiet(&mut c.ws, ms);
}

#[test]
fn topic_messages_reach_every_subscriber_with_their_headers() {
    let server = node(&[]);
    let addr = server.local_addr();
    let mut a = login(addr, "alice");
    let mut b = login(addr, "bob");
    subscribe(&mut a, "sub-0", "/topic/greetings", "auto");
    subscribe(&mut b, "s7", "/topic/greetings", "auto");
    send_to(&mut b, "/topic/greetings", "hello: world\n");
    for (c, sub) in [(&mut a, "sub-0"), (&mut b, "s7")] {
        let m = c.expect(Command::Message);
        assert_eq!(m.get("destination"), Some("/topic/greetings"));
        assert_eq!(m.get("subscription"), Some(sub));
        assert_eq!(m.get("content-type"), Some("text/plain"));
        assert_eq!(m.get("content-length"), Some("13"));
        assert!(m.get("message-id").is_some());
        assert_eq!(m.body, b"hello: world\n");
    }
    // Unsubscribed: no more. The receipt says the UNSUBSCRIBE was handled before b's
    // SEND, which may run on another worker.
    a.send(
        Frame::new(Command::Unsubscribe)
            .header("id", "sub-0")
            .header("receipt", "u"),
    );
    a.expect(Command::Receipt);
    send_to(&mut b, "/topic/greetings", "again");
    b.expect(Command::Message);
    silent(&mut a, 300);
    server.stop();
}

#[test]
fn user_destinations_reach_every_session_of_that_user_only() {
    let server = node(&[]);
    let addr = server.local_addr();
    let mut bob1 = login(addr, "bob");
    let mut bob2 = login(addr, "bob");
    let mut alice = login(addr, "alice");
    for c in [&mut bob1, &mut bob2, &mut alice] {
        subscribe(c, "sub-0", "/user/queue/reply", "auto");
    }
    send_to(&mut alice, "/user/bob/queue/reply", "for bob");
    for c in [&mut bob1, &mut bob2] {
        let m = c.expect(Command::Message);
        assert_eq!(m.get("destination"), Some("/user/queue/reply"));
        assert_eq!(m.body, b"for bob");
    }
    silent(&mut alice, 300);
    // Nobody subscribes to another user's queue.
    alice.send(
        Frame::new(Command::Subscribe)
            .header("id", "x")
            .header("destination", "/user/bob/queue/reply"),
    );
    let e = alice.expect(Command::Error);
    assert!(
        e.get("message").unwrap().contains("cannot subscribe"),
        "{e:?}"
    );
    assert_eq!(alice.closed(), 1008);
    server.stop();
}

#[test]
fn frames_split_at_every_byte_and_three_in_one_message() {
    let server = node(&[]);
    let addr = server.local_addr();
    let mut sub = login(addr, "s");
    subscribe(&mut sub, "1", "/topic/t", "auto");
    let mut c = Stomp {
        ws: open(addr, "", None),
        parser: FrameParser::new(),
    };
    // CONNECT one byte per WebSocket message, CRLF line ends.
    let connect = b"CONNECT\r\naccept-version:1.2\r\npasscode:p\r\n\r\n\0";
    for b in connect.iter() {
        c.raw(&[*b]);
    }
    c.parser.set_escapes(true);
    c.expect(Command::Connected);
    // Three SENDs in one message, EOLs after each NUL, one body holding NULs.
    let mut three = Vec::new();
    three.extend_from_slice(b"SEND\ndestination:/topic/t\n\none\0\n");
    three.extend_from_slice(b"SEND\ndestination:/topic/t\ncontent-length:5\n\na\0b\0c\0\r\n\n");
    three.extend_from_slice(b"SEND\ndestination:/topic/t\n\nthree\0");
    c.ws.send(Message::Binary(three)).unwrap();
    assert_eq!(sub.expect(Command::Message).body, b"one");
    let m = sub.expect(Command::Message);
    assert_eq!(m.body, b"a\0b\0c");
    assert_eq!(m.get("content-length"), Some("5"));
    assert_eq!(sub.expect(Command::Message).body, b"three");
    server.stop();
}

#[test]
fn header_escapes_round_trip_and_a_bad_escape_is_an_error() {
    let server = node(&[]);
    let addr = server.local_addr();
    let mut a = login(addr, "a");
    subscribe(&mut a, "1", "/topic/esc", "auto");
    a.raw(b"SEND\ndestination:/topic/esc\nx-note:a\\cb\\nc\\\\d\n\nbody\0");
    let m = a.expect(Command::Message);
    assert_eq!(m.get("x-note"), Some("a:b\nc\\d"));
    a.raw(b"SEND\ndestination:/topic/esc\nx-bad:a\\tb\n\nbody\0");
    let e = a.expect(Command::Error);
    assert!(e.get("message").unwrap().contains("escape"), "{e:?}");
    assert_eq!(a.closed(), 1002);
    server.stop();
}

#[test]
fn a_missing_nul_and_oversize_frames_are_errors() {
    let server = node(&["stomp.max_body_bytes=1000", "stomp.max_header_bytes=256"]);
    let addr = server.local_addr();
    let mut a = login(addr, "a");
    a.raw(b"SEND\ndestination:/topic/x\ncontent-length:2\n\nabc\0");
    let e = a.expect(Command::Error);
    assert!(e.get("message").unwrap().contains("NUL"), "{e:?}");
    assert_eq!(a.closed(), 1002);

    let mut b = login(addr, "b");
    b.send(
        Frame::new(Command::Send)
            .header("destination", "/topic/x")
            .body(vec![b'x'; 1001]),
    );
    let e = b.expect(Command::Error);
    assert!(e.get("message").unwrap().contains("over 1000"), "{e:?}");

    let mut c = login(addr, "c");
    c.send(
        Frame::new(Command::Send)
            .header("destination", "/topic/x")
            .header("x-long", "y".repeat(300)),
    );
    let e = c.expect(Command::Error);
    assert!(e.get("message").unwrap().contains("over 256"), "{e:?}");
    server.stop();
}

#[test]
fn versions_are_negotiated_and_none_in_common_is_refused() {
    let server = node(&[]);
    let addr = server.local_addr();
    let mut c = Stomp {
        ws: open(addr, "", None),
        parser: FrameParser::new(),
    };
    c.raw(b"CONNECT\naccept-version:1.0,1.1\npasscode:p\nheart-beat:5000,0\n\n\0");
    let f = c.expect(Command::Connected);
    assert_eq!(f.get("version"), Some("1.1"));
    // We send every max(10 s, 0) = off; we expect the client's every max(5 s, 10 s).
    assert_eq!(f.get("heart-beat"), Some("0,10000"));

    let mut d = Stomp {
        ws: open(addr, "", None),
        parser: FrameParser::new(),
    };
    d.raw(b"STOMP\naccept-version:2.0\n\n\0");
    let e = d.expect(Command::Error);
    assert_eq!(e.get("version"), Some("1.0,1.1,1.2"));
    assert_eq!(d.closed(), 1002);

    // 1.0: no accept-version; no heart-beat header in CONNECTED.
    let mut e10 = Stomp {
        ws: open(addr, "", None),
        parser: FrameParser::new(),
    };
    e10.raw(b"CONNECT\nlogin:x\npasscode:p\n\n\0");
    let f = e10.expect(Command::Connected);
    assert_eq!(f.get("version"), Some("1.0"));
    assert_eq!(f.get("heart-beat"), None);
    server.stop();
}

#[test]
fn client_individual_acks_and_nack_redelivers() {
    let server = node(&[]);
    let addr = server.local_addr();
    let mut a = login(addr, "a");
    subscribe(&mut a, "q", "/queue/work", "client-individual");
    send_to(&mut a, "/queue/work", "job-1");
    send_to(&mut a, "/queue/work", "job-2");
    let m1 = a.expect(Command::Message);
    let m2 = a.expect(Command::Message);
    assert_eq!(
        (m1.body.as_slice(), m2.body.as_slice()),
        (&b"job-1"[..], &b"job-2"[..])
    );
    let ack1 = m1.get("ack").expect("an ack header").to_owned();
    let ack2 = m2.get("ack").unwrap().to_owned();
    a.send(Frame::new(Command::Nack).header("id", &ack1));
    let again = a.expect(Command::Message);
    assert_eq!(again.body, b"job-1");
    assert_eq!(again.get("redelivered"), Some("true"));
    let ack3 = again.get("ack").unwrap().to_owned();
    a.send(
        Frame::new(Command::Ack)
            .header("id", &ack3)
            .header("receipt", "ok"),
    );
    a.send(Frame::new(Command::Ack).header("id", &ack2));
    assert_eq!(a.expect(Command::Receipt).get("receipt-id"), Some("ok"));
    silent(&mut a, 300);
    server.stop();
}

#[test]
fn transactions_hold_sends_until_commit_and_drop_them_on_abort() {
    let server = node(&[]);
    let addr = server.local_addr();
    let mut s = login(addr, "s");
    subscribe(&mut s, "1", "/topic/tx", "auto");
    let mut p = login(addr, "p");
    p.send(Frame::new(Command::Begin).header("transaction", "t1"));
    p.send(
        Frame::new(Command::Send)
            .header("destination", "/topic/tx")
            .header("transaction", "t1")
            .body(b"in t1".to_vec()),
    );
    silent(&mut s, 300);
    p.send(Frame::new(Command::Commit).header("transaction", "t1"));
    let m = s.expect(Command::Message);
    assert_eq!(m.body, b"in t1");
    assert_eq!(m.get("transaction"), None);

    p.send(Frame::new(Command::Begin).header("transaction", "t2"));
    p.send(
        Frame::new(Command::Send)
            .header("destination", "/topic/tx")
            .header("transaction", "t2")
            .body(b"dropped".to_vec()),
    );
    p.send(
        Frame::new(Command::Abort)
            .header("transaction", "t2")
            .header("receipt", "aborted"),
    );
    assert_eq!(
        p.expect(Command::Receipt).get("receipt-id"),
        Some("aborted")
    );
    silent(&mut s, 300);
    // Committing what does not exist is an error.
    p.send(Frame::new(Command::Commit).header("transaction", "t2"));
    p.expect(Command::Error);
    server.stop();
}

#[test]
fn disconnect_gets_its_receipt_then_the_connection_closes() {
    let server = node(&[]);
    let mut a = login(server.local_addr(), "a");
    a.send(Frame::new(Command::Disconnect).header("receipt", "bye"));
    assert_eq!(a.expect(Command::Receipt).get("receipt-id"), Some("bye"));
    assert_eq!(a.closed(), 1000);
    server.stop();
}

#[test]
fn a_silent_client_is_closed_after_three_missed_heart_beats() {
    let server = node(&[
        "stomp.heartbeat_receive=200ms",
        "stomp.heartbeat_send=100ms",
    ]);
    let mut c = Stomp {
        ws: open(server.local_addr(), "", None),
        parser: FrameParser::new(),
    };
    c.raw(b"CONNECT\naccept-version:1.2\npasscode:p\nheart-beat:100,100\n\n\0");
    let f = c.expect(Command::Connected);
    assert_eq!(f.get("heart-beat"), Some("100,200"));
    // The broker's own heart-beats (bare EOLs) arrive, then, with nothing from us, the
    // ERROR and the close.
    let mut eols = 0;
    loop {
        match c.ws.read().expect("a message") {
            Message::Text(t) if t == "\n" => eols += 1,
            Message::Text(t) => {
                assert!(
                    t.starts_with("ERROR\n") && t.contains("heart-beat"),
                    "{t:?}"
                );
                break;
            }
            _ => {}
        }
    }
    assert!(eols >= 1, "heart-beats from the broker");
    assert_eq!(c.closed(), 1008);
    server.stop();
}

#[test]
fn app_destinations_without_a_backend_are_an_error() {
    let server = node(&[]);
    let mut a = login(server.local_addr(), "a");
    send_to(&mut a, "/app/hello", "x");
    let e = a.expect(Command::Error);
    assert!(e.get("message").unwrap().contains("backend"), "{e:?}");
    server.stop();
}

/// A real HTTP server standing in for the application backend: each request's JSON body
/// goes to the channel, and the answer is what `answer` makes of it (status, body).
fn backend(
    answer: impl Fn(&serde_json::Value) -> (u16, String) + Send + 'static,
) -> (String, std::sync::mpsc::Receiver<serde_json::Value>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/stomp/app", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let (mut line, mut len) = (String::new(), 0usize);
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "POST /stomp/app HTTP/1.1\r\n");
            loop {
                line.clear();
                r.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let (status, out) = answer(&v);
            let _ = tx.send(v);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n{out}",
                out.len()
            );
        }
    });
    (url, rx)
}

/// Waits (5 s at most) until `/metrics` has the line `want`: backend calls end on their
/// own threads.
fn metric_reaches(addr: SocketAddr, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, metrics) = http(addr, "GET", "/metrics", None, "");
        if metrics.lines().any(|l| l == want) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {want:?} in {metrics}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn app_destinations_go_to_the_backend_and_its_answer_to_send_to_or_send_to_user() {
    let (url, calls) = backend(|v| match v["destination"].as_str() {
        // @SendTo default: /app/greet -> /topic/greet.
        Some("/app/greet") => (
            200,
            format!(r#"{{"body":"hello, {}"}}"#, v["body"].as_str().unwrap()),
        ),
        // @SendToUser("/queue/reply"): the sender's sessions only.
        Some("/app/whoami") => (
            200,
            format!(
                r#"{{"destination":"/user/queue/reply","body":{{"you":"{}"}}}}"#,
                v["user"].as_str().unwrap()
            ),
        ),
        Some("/app/quiet") => (204, String::new()),
        _ => (500, "oops".into()),
    });
    let backend_url = format!("stomp.app_backend={url}");
    let server = node(&[&backend_url]);
    let addr = server.local_addr();
    let mut alice = login(addr, "alice");
    let mut bob = login(addr, "bob");
    subscribe(&mut bob, "t", "/topic/greet", "auto");
    subscribe(&mut alice, "r", "/user/queue/reply", "auto");
    subscribe(&mut bob, "r", "/user/queue/reply", "auto");

    alice.send(
        Frame::new(Command::Send)
            .header("destination", "/app/greet")
            .header("x-trace", "t1")
            .body(b"world".to_vec()),
    );
    let call = calls.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(call["user"], "alice");
    assert_eq!(call["body"], "world");
    assert_eq!(call["headers"]["x-trace"], "t1");
    assert!(call["session"].as_str().is_some_and(|s| !s.is_empty()));
    let m = bob.expect(Command::Message);
    assert_eq!(m.get("destination"), Some("/topic/greet"));
    assert_eq!(m.body, b"hello, world");

    send_to(&mut alice, "/app/whoami", "");
    calls.recv_timeout(Duration::from_secs(5)).unwrap();
    let m = alice.expect(Command::Message);
    assert_eq!(m.get("destination"), Some("/user/queue/reply"));
    assert_eq!(m.get("content-type"), Some("application/json"));
    assert_eq!(m.body, br#"{"you":"alice"}"#);

    // No answer, and a failing backend: nothing is sent and the session goes on.
    send_to(&mut alice, "/app/quiet", "");
    send_to(&mut alice, "/app/broken", "");
    calls.recv_timeout(Duration::from_secs(5)).unwrap();
    calls.recv_timeout(Duration::from_secs(5)).unwrap();
    silent(&mut bob, 300);
    subscribe(&mut alice, "after", "/topic/after", "auto");
    metric_reaches(addr, "switchboard_stomp_app_failed_total 1");
    metric_reaches(addr, "switchboard_stomp_app_forwarded_total 3");
    server.stop();
}

#[test]
fn an_app_backend_that_is_down_is_counted_and_the_node_stays_up() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let set = format!("stomp.app_backend=http://127.0.0.1:{port}/app");
    let server = node(&[&set, "stomp.app_timeout=500ms"]);
    let addr = server.local_addr();
    let mut a = login(addr, "a");
    send_to(&mut a, "/app/x", "lost");
    metric_reaches(addr, "switchboard_stomp_app_failed_total 1");
    subscribe(&mut a, "still", "/topic/up", "auto");
    server.stop();
}

#[test]
fn jwt_auth_at_the_handshake_or_in_connect() {
    let server = node(&["auth.mode=jwt", &format!("auth.jwt_secret={SECRET}")]);
    let addr = server.local_addr();
    // A bad token in the handshake: 401 before any STOMP.
    let req = format!("ws://{addr}/stomp?token=nope")
        .into_client_request()
        .unwrap();
    match tungstenite::connect(req) {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    // A good one in the handshake: CONNECT needs nothing.
    let token = jwt("alice", 60, serde_json::json!({}));
    let mut a = Stomp {
        ws: open(addr, &format!("?token={token}"), None),
        parser: FrameParser::new(),
    };
    a.raw(b"CONNECT\naccept-version:1.2\n\n\0");
    assert_eq!(a.expect(Command::Connected).get("user-name"), Some("alice"));
    // In CONNECT, as stompjs users send it.
    let mut b = Stomp {
        ws: open(addr, "", None),
        parser: FrameParser::new(),
    };
    b.send(
        Frame::new(Command::Connect)
            .header("accept-version", "1.2")
            .header(
                "Authorization",
                format!("Bearer {}", jwt("bob", 60, serde_json::json!({}))),
            ),
    );
    assert_eq!(b.expect(Command::Connected).get("user-name"), Some("bob"));
    // A bad one in CONNECT: ERROR that says why, then close.
    let mut c = Stomp {
        ws: open(addr, "", None),
        parser: FrameParser::new(),
    };
    c.send(connect_frame("not-a-jwt"));
    let e = c.expect(Command::Error);
    assert!(e.get("message").unwrap().contains("invalid token"), "{e:?}");
    assert_eq!(c.closed(), 1008);
    server.stop();
}

#[test]
fn the_push_api_sends_to_a_topic_and_to_a_user_queue() {
    let server = node(&[]);
    let addr = server.local_addr();
    let mut a = login(addr, "alice");
    subscribe(&mut a, "t", "/topic/news", "auto");
    subscribe(&mut a, "u", "/user/queue/notice", "auto");
    let (status, body) = http(
        addr,
        "POST",
        "/api/v1/send",
        Some(API_KEY),
        r#"{"destination": "/topic/news", "body": {"title": "hi"}}"#,
    );
    assert_eq!((status, body.as_str()), (200, r#"{"sessions":1}"#));
    let m = a.expect(Command::Message);
    assert_eq!(m.get("destination"), Some("/topic/news"));
    assert_eq!(m.get("content-type"), Some("application/json"));
    assert_eq!(m.body, br#"{"title":"hi"}"#);
    let (status, _) = http(
        addr,
        "POST",
        "/api/v1/send",
        Some(API_KEY),
        r#"{"destination": "/user/alice/queue/notice", "body": "just you"}"#,
    );
    assert_eq!(status, 200);
    let m = a.expect(Command::Message);
    assert_eq!(m.get("destination"), Some("/user/queue/notice"));
    assert_eq!(m.get("subscription"), Some("u"));
    assert_eq!(m.body, b"just you");
    let (status, body) = http(
        addr,
        "POST",
        "/api/v1/send",
        Some(API_KEY),
        r#"{"destination": "/app/x", "body": "no"}"#,
    );
    assert_eq!(status, 400, "{body}");
    server.stop();
}

#[test]
fn frames_before_connect_and_a_slow_connect_are_refused() {
    let server = node(&["stomp.connect_timeout=300ms"]);
    let addr = server.local_addr();
    let mut a = Stomp {
        ws: open(addr, "", None),
        parser: FrameParser::new(),
    };
    a.raw(b"SEND\ndestination:/topic/x\n\nhi\0");
    let e = a.expect(Command::Error);
    assert!(
        e.get("message").unwrap().contains("before CONNECT"),
        "{e:?}"
    );
    let mut b = Stomp {
        ws: open(addr, "", None),
        parser: FrameParser::new(),
    };
    std::thread::sleep(Duration::from_millis(600));
    let e = b.expect(Command::Error);
    assert!(e.get("message").unwrap().contains("no CONNECT"), "{e:?}");
    assert_eq!(b.closed(), 1008);
    server.stop();
}
