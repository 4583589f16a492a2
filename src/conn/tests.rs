//! Deterministic tests of the connection machines: no sockets, a virtual clock, and every
//! input fed split at every byte (and one byte at a time).

use super::*;
use crate::http::{HttpLimits, HttpResponse};
use crate::message::{ConnError, Message};
use crate::ws::{close_code, encode_client_frame, Decoder, DecoderLimits, Incoming, OpCode, Role};

fn http_cfg() -> Http1Config {
    Http1Config {
        limits: HttpLimits::default(),
        max_body_bytes: 1024,
        request_timeout: 100,
        keepalive_timeout: 600,
        response_timeout: 300,
    }
}

fn drain(out: &mut OutQueue) -> Vec<u8> {
    let mut wire = Vec::new();
    out.flush(&mut wire, &mut StoragePool::default()).unwrap();
    wire
}

/// A request the driver saw: method, path, body.
type Seen = (String, String, Vec<u8>);

/// Feeds `chunks` to a fresh HTTP machine at tick `now`, answering each request with its
/// path as the body. Returns the requests seen, other events, and the bytes sent.
fn drive_http(chunks: &[&[u8]], now: Tick) -> (Vec<Seen>, Vec<HttpEvent>, Vec<u8>, Http1) {
    let cfg = http_cfg();
    let mut m = Http1::new(0);
    let mut out = OutQueue::default();
    let (mut seen, mut other) = (Vec::new(), Vec::new());
    for chunk in chunks {
        let mut input = *chunk;
        while let Some(ev) = m.handle_read(&mut input, now, &cfg, &mut out) {
            match ev {
                HttpEvent::Request(req) => {
                    let resp = HttpResponse::text(200, req.path.clone());
                    m.respond(&resp, false, now, &mut out);
                    seen.push((req.method, req.path, req.body));
                }
                ev => other.push(ev),
            }
        }
        assert!(input.is_empty());
    }
    let wire = drain(&mut out);
    (seen, other, wire, m)
}

const PIPELINE: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n\
HEAD /d HTTP/1.1\r\nHost: x\r\n\r\n\
GET /e HTTP/1.0\r\n\r\n\
GET /never HTTP/1.1\r\nHost: x\r\n\r\n";

fn check_pipeline(seen: &[Seen], wire: &[u8], m: &Http1) {
    let paths: Vec<&str> = seen.iter().map(|s| s.1.as_str()).collect();
    assert_eq!(paths, ["/a", "/b", "/c", "/d", "/e"]);
    assert_eq!(seen[1].2, b"hello");
    assert_eq!(seen[2].2, b"abcde");
    let text = String::from_utf8_lossy(wire);
    let answers: Vec<&str> = text.split("HTTP/1.1 200 OK\r\n").skip(1).collect();
    assert_eq!(answers.len(), 5, "{text}");
    for (answer, path) in answers.iter().zip(["/a", "/b", "/c", "/d", "/e"]) {
        let keep = path != "/e";
        let conn = if keep { "keep-alive" } else { "close" };
        assert!(
            answer.contains(&format!("Connection: {conn}\r\n")),
            "{answer}"
        );
        // HEAD announces the length of the body it leaves out.
        let body = if path == "/d" { "" } else { path };
        assert!(answer.ends_with(&format!("\r\n\r\n{body}")), "{answer}");
    }
    // HTTP/1.0 without keep-alive closed the connection: the last request is not read.
    assert!(m.is_done());
}

#[test]
fn pipelined_requests_are_answered_in_order_at_every_split() {
    let (seen, other, wire, m) = drive_http(&[PIPELINE], 0);
    assert!(other.is_empty(), "{other:?}");
    check_pipeline(&seen, &wire, &m);
    for split in 1..PIPELINE.len() {
        let (a, b) = PIPELINE.split_at(split);
        let (seen2, other2, wire2, m2) = drive_http(&[a, b], 0);
        assert!(other2.is_empty(), "split {split}: {other2:?}");
        assert_eq!(seen2, seen, "split {split}");
        assert_eq!(wire2, wire, "split {split}");
        check_pipeline(&seen2, &wire2, &m2);
    }
    let bytes: Vec<&[u8]> = PIPELINE.chunks(1).collect();
    let (seen3, _, wire3, _) = drive_http(&bytes, 0);
    assert_eq!((seen3, wire3), (seen, wire));
}

#[test]
fn connection_close_and_errors_end_the_machine() {
    let (seen, _, wire, m) = drive_http(
        &[b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\n\r\n"],
        0,
    );
    assert_eq!(seen.len(), 1);
    assert!(String::from_utf8_lossy(&wire).contains("Connection: close\r\n"));
    assert!(m.is_done());

    let cases: [(&[u8], u16); 5] = [
        (b"GARBAGE\x01 / HTTP/1.1\r\n\r\n", 400),
        (b"GET /a HTTP/1.1\r\n\r\n", 400),
        (
            b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n",
            413,
        ),
        (
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
            411,
        ),
        (
            b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n",
            400,
        ),
    ];
    for (input, status) in cases {
        for split in 1..input.len() {
            let (a, b) = input.split_at(split);
            let (seen, other, wire, m) = drive_http(&[a, b], 0);
            assert!(seen.is_empty());
            match other.as_slice() {
                [HttpEvent::Rejected(e)] => assert_eq!(e.status(), status),
                other => panic!("{other:?}"),
            }
            assert!(wire.starts_with(format!("HTTP/1.1 {status}").as_bytes()));
            assert!(m.is_done());
        }
    }
}

#[test]
fn an_upgrade_hands_over_the_bytes_behind_the_head() {
    let head = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let frame = encode_client_frame(true, OpCode::Text, b"early", [1, 2, 3, 4]);
    let wire = [head.as_slice(), &frame].concat();
    for split in 1..wire.len() {
        let cfg = http_cfg();
        let mut m = Http1::new(0);
        let mut out = OutQueue::default();
        let mut rest: Option<Vec<u8>> = None;
        for part in [&wire[..split], &wire[split..]] {
            let mut input = part;
            if rest.is_some() {
                // The caller owns the connection now; the machine only discards.
                assert!(m.handle_read(&mut input, 0, &cfg, &mut out).is_none());
                if let Some(r) = rest.as_mut() {
                    r.extend_from_slice(part);
                }
                continue;
            }
            while let Some(ev) = m.handle_read(&mut input, 0, &cfg, &mut out) {
                match ev {
                    HttpEvent::Upgrade(req) => {
                        assert_eq!(req.path, "/ws");
                        rest = Some(m.take_upgrade());
                    }
                    ev => panic!("{ev:?}"),
                }
            }
        }
        assert_eq!(rest.as_deref(), Some(frame.as_slice()), "split {split}");
        assert!(drain(&mut out).is_empty());
    }
}

#[test]
fn request_and_keepalive_timeouts_follow_the_virtual_clock() {
    let cfg = http_cfg();
    let mut out = OutQueue::default();
    // A connection that never sends: the request timeout runs from its start.
    let mut m = Http1::new(10);
    assert_eq!(m.poll_timeout(&cfg), Some(110));
    assert!(m.handle_timeout(109, &cfg).is_none());
    assert!(matches!(
        m.handle_timeout(110, &cfg),
        Some(HttpEvent::RequestTimeout)
    ));
    assert!(m.is_done());

    // One answered request, then idle: the keep-alive timeout runs from the answer.
    let mut m = Http1::new(0);
    let mut input: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let Some(HttpEvent::Request(_)) = m.handle_read(&mut input, 50, &cfg, &mut out) else {
        panic!("no request");
    };
    assert_eq!(
        m.poll_timeout(&cfg),
        None,
        "the application has the request"
    );
    m.respond(&HttpResponse::text(200, "ok"), false, 60, &mut out);
    assert_eq!(m.poll_timeout(&cfg), Some(660));
    // A partial request at 500 moves the deadline to 500 + request timeout.
    let mut input: &[u8] = b"GET / HT";
    assert!(m.handle_read(&mut input, 500, &cfg, &mut out).is_none());
    assert_eq!(m.poll_timeout(&cfg), Some(600));
    assert!(m.handle_timeout(599, &cfg).is_none());
    assert!(matches!(
        m.handle_timeout(10_000, &cfg),
        Some(HttpEvent::RequestTimeout)
    ));

    let mut m = Http1::new(0);
    let mut input: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    m.handle_read(&mut input, 0, &cfg, &mut out);
    m.respond(&HttpResponse::text(200, "ok"), false, 0, &mut out);
    assert!(matches!(
        m.handle_timeout(600, &cfg),
        Some(HttpEvent::KeepAliveTimeout)
    ));
}

#[test]
fn a_caller_can_refuse_to_keep_alive() {
    let cfg = http_cfg();
    let mut out = OutQueue::default();
    let mut m = Http1::new(0);
    let mut input: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    m.handle_read(&mut input, 0, &cfg, &mut out);
    m.respond(&HttpResponse::text(200, "bye"), true, 0, &mut out);
    assert!(m.is_done());
    assert!(String::from_utf8_lossy(&drain(&mut out)).contains("Connection: close"));
}

/// Reads the next request from what is buffered or in `input`.
fn next_request(m: &mut Http1, input: &mut &[u8], now: Tick, out: &mut OutQueue) -> String {
    match m.handle_read(input, now, &http_cfg(), out) {
        Some(HttpEvent::Request(req)) => req.path,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_parked_answer_keeps_pipelined_requests_in_order() {
    let cfg = http_cfg();
    let mut out = OutQueue::default();
    let mut m = Http1::new(0);
    let mut input: &[u8] =
        b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(next_request(&mut m, &mut input, 0, &mut out), "/slow");
    m.park(10, None);
    // The second request waits behind the parked one.
    assert!(m.handle_read(&mut input, 10, &cfg, &mut out).is_none());
    assert_eq!(m.poll_timeout(&cfg), Some(310));
    m.respond(&HttpResponse::text(200, "late"), false, 50, &mut out);
    assert_eq!(next_request(&mut m, &mut &b""[..], 50, &mut out), "/next");
    m.respond(&HttpResponse::text(200, "next"), false, 50, &mut out);
    let wire = String::from_utf8(drain(&mut out)).unwrap();
    let late = wire.find("late").unwrap();
    assert!(late < wire.find("next").unwrap(), "{wire}");
}

#[test]
fn an_unanswered_parked_request_times_out_once() {
    let cfg = http_cfg();
    let mut out = OutQueue::default();
    let mut m = Http1::new(0);
    let mut input: &[u8] = b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
    next_request(&mut m, &mut input, 0, &mut out);
    m.park(0, None);
    assert!(m.handle_timeout(299, &cfg).is_none());
    assert!(matches!(
        m.handle_timeout(300, &cfg),
        Some(HttpEvent::ResponseTimeout)
    ));
    // The caller answers (504); the timeout does not fire again meanwhile.
    assert!(m.is_responding());
    assert!(m.handle_timeout(10_000, &cfg).is_none());
    m.respond(&HttpResponse::text(504, "late"), false, 300, &mut out);
    assert!(drain(&mut out).starts_with(b"HTTP/1.1 504"));
}

#[test]
fn streamed_answers_are_chunked_on_1_1_and_close_delimited_on_1_0() {
    let mut out = OutQueue::default();
    let mut m = Http1::new(0);
    let mut input: &[u8] = b"GET /s HTTP/1.1\r\nHost: x\r\n\r\nGET /t HTTP/1.1\r\nHost: x\r\n\r\n";
    next_request(&mut m, &mut input, 0, &mut out);
    m.park(0, None);
    m.start_stream(&HttpResponse::text(200, ""), false, &mut out);
    m.send_chunk(b"hello ", &mut out);
    m.send_chunk(b"", &mut out);
    m.send_chunk(b"world", &mut out);
    m.finish_stream(5, &mut out);
    let wire = String::from_utf8(drain(&mut out)).unwrap();
    assert!(wire.contains("Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"), "{wire}");
    assert!(!wire.contains("Content-Length"), "{wire}");
    // Kept alive: the next request is read.
    assert_eq!(next_request(&mut m, &mut input, 5, &mut out), "/t");

    let mut m = Http1::new(0);
    let mut input: &[u8] = b"GET /s HTTP/1.0\r\n\r\n";
    next_request(&mut m, &mut input, 0, &mut out);
    m.start_stream(&HttpResponse::text(200, ""), false, &mut out);
    m.send_chunk(b"raw", &mut out);
    m.finish_stream(0, &mut out);
    let wire = String::from_utf8(drain(&mut out)).unwrap();
    assert!(wire.ends_with("Connection: close\r\n\r\nraw"), "{wire}");
    assert!(m.is_done());
}

#[test]
fn endless_pipelining_behind_a_parked_answer_is_bounded() {
    let cfg = http_cfg();
    let mut out = OutQueue::default();
    let mut m = Http1::new(0);
    let mut input: &[u8] = b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";
    next_request(&mut m, &mut input, 0, &mut out);
    m.park(0, None);
    let more = b"GET /more HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2_000);
    for piece in more.chunks(4096) {
        assert!(m.handle_read(&mut &piece[..], 0, &cfg, &mut out).is_none());
    }
    // The answer closes the connection: what did not fit was dropped.
    m.respond(&HttpResponse::text(200, "ok"), false, 0, &mut out);
    assert!(m.is_done());
    assert!(String::from_utf8_lossy(&drain(&mut out)).contains("Connection: close"));
}

// ---- WebSocket -------------------------------------------------------------------

fn ws_cfg() -> WsConfig {
    WsConfig {
        limits: DecoderLimits::default(),
        heartbeat: Some(300),
        idle: Some(750),
    }
}

/// Decodes what the server sent.
fn server_frames(wire: &[u8]) -> Vec<Incoming> {
    let mut d = Decoder::new(Role::Client, DecoderLimits::default());
    let mut input = wire;
    let mut out = Vec::new();
    while let Some(f) = d.decode(&mut input).unwrap() {
        out.push(f);
    }
    out
}

fn client_stream() -> Vec<u8> {
    let k = [9, 8, 7, 6];
    [
        encode_client_frame(false, OpCode::Text, b"hel", k),
        encode_client_frame(true, OpCode::Ping, b"p", k),
        encode_client_frame(true, OpCode::Continuation, b"lo", k),
        encode_client_frame(true, OpCode::Binary, &[0, 1, 2], k),
        encode_client_frame(true, OpCode::Close, &[3, 232, b'b', b'y', b'e'], k),
        encode_client_frame(true, OpCode::Text, b"after close", k),
    ]
    .concat()
}

fn drive_ws(chunks: &[&[u8]]) -> (Vec<LinkEvent>, Vec<u8>) {
    let mut m = Ws::new(DecoderLimits::default(), 0);
    let mut out = OutQueue::default();
    let mut events = Vec::new();
    for chunk in chunks {
        let mut input = *chunk;
        while let Some(ev) = m.handle_read(&mut input, 0, &mut out) {
            events.push(ev);
        }
        assert!(input.is_empty());
    }
    assert!(m.is_closed());
    (events, drain(&mut out))
}

#[test]
fn websocket_events_and_obligations_at_every_split() {
    let wire = client_stream();
    let want = vec![
        LinkEvent::Message(Message::Text("hello".into())),
        LinkEvent::Message(Message::Binary(vec![0, 1, 2])),
        LinkEvent::Closed {
            code: 1000,
            reason: "bye".into(),
            error: None,
        },
    ];
    for split in 0..wire.len() {
        let (events, out) = drive_ws(&[&wire[..split], &wire[split..]]);
        assert_eq!(events, want, "split {split}");
        // The pong, then the close echo; nothing for the frame after the close.
        let sent = server_frames(&out);
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0], Incoming::Pong(b"p".to_vec()));
        assert_eq!(sent[1], Incoming::Close(Some((1000, String::new()))));
    }
    let bytes: Vec<&[u8]> = wire.chunks(1).collect();
    assert_eq!(drive_ws(&bytes).0, want);
}

#[test]
fn a_protocol_error_closes_with_its_code() {
    // Unmasked: a client must mask (1002).
    let wire = crate::ws::encode_frame(true, OpCode::Text, b"x");
    let (events, out) = drive_ws(&[&wire]);
    match events.as_slice() {
        [LinkEvent::Closed {
            code: 1002,
            error: Some(ConnError::Protocol(_)),
            ..
        }] => {}
        other => panic!("{other:?}"),
    }
    match server_frames(&out).as_slice() {
        [Incoming::Close(Some((1002, _)))] => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn heartbeat_and_idle_follow_the_virtual_clock() {
    let cfg = ws_cfg();
    let mut m = Ws::new(DecoderLimits::default(), 0);
    let mut out = OutQueue::default();
    assert_eq!(m.poll_timeout(0, &cfg), Some(300));
    // Early: nothing.
    assert!(m.handle_timeout(299, &cfg, &mut out).is_none());
    assert!(drain(&mut out).is_empty());
    // Silent for a heartbeat: a ping, and the next one an interval later.
    assert!(m.handle_timeout(300, &cfg, &mut out).is_none());
    assert_eq!(server_frames(&drain(&mut out)), [Incoming::Ping(vec![])]);
    assert_eq!(m.poll_timeout(300, &cfg), Some(600));
    // A pong at 400 restarts both clocks.
    let pong = encode_client_frame(true, OpCode::Pong, b"", [1, 1, 1, 1]);
    assert!(m.handle_read(&mut pong.as_slice(), 400, &mut out).is_none());
    assert_eq!(m.poll_timeout(450, &cfg), Some(700));
    // A jump far past the idle limit: closed once, with 1001.
    let ev = m.handle_timeout(5_000, &cfg, &mut out);
    assert_eq!(
        ev,
        Some(LinkEvent::Closed {
            code: close_code::GOING_AWAY,
            reason: "idle timeout".into(),
            error: Some(ConnError::IdleTimeout(75_000)),
        })
    );
    match server_frames(&drain(&mut out)).as_slice() {
        [Incoming::Close(Some((1001, r)))] => assert_eq!(r, "idle timeout"),
        other => panic!("{other:?}"),
    }
    assert!(m.is_closed());
    assert_eq!(m.poll_timeout(5_000, &cfg), None);
    assert!(m.handle_timeout(9_000, &cfg, &mut out).is_none());
    assert!(m.close(1000, "again", None, &mut out).is_none());
}

// ---- Closing ---------------------------------------------------------------------

#[test]
fn after_our_close_the_peer_gets_close_timeout_and_its_bytes_are_ignored() {
    // Our close at 100 (idle timeout here), with a 50-tick linger.
    let cfg = ws_cfg();
    let mut ws = Ws::new(DecoderLimits::default(), 0);
    let mut out = OutQueue::default();
    let Some(LinkEvent::Closed { code: 1001, .. }) = ws.handle_timeout(750, &cfg, &mut out) else {
        panic!("no idle close");
    };
    let mut closing = Closing::new(750, 50);
    assert_eq!(closing.poll_timeout(), 800);
    // Whatever the peer still sends, split anyhow, is discarded.
    let late = client_stream();
    for piece in late.chunks(3) {
        let mut input = piece;
        closing.handle_read(&mut input);
        assert!(input.is_empty());
    }
    assert!(!closing.handle_timeout(799));
    assert!(closing.handle_timeout(800));
    assert!(closing.handle_timeout(60_000));
}

/// Every event a raw machine reports for `input` fed in pieces of `step` bytes.
fn drive_raw(framing: crate::rawframe::RawFraming, input: &[u8], step: usize) -> Vec<LinkEvent> {
    let mut m = Raw::new(framing, 16, 0);
    let mut events = Vec::new();
    for chunk in input.chunks(step) {
        let mut rest = chunk;
        while let Some(ev) = m.handle_read(&mut rest, 0) {
            events.push(ev);
        }
    }
    events
}

#[test]
fn raw_lines_at_every_split_and_a_line_over_the_limit() {
    use crate::rawframe::RawFraming;
    let input = b"{\"type\":\"PING\"}\r\n\n0123456789abcdefX\nnever\n";
    for step in 1..=input.len() {
        let events = drive_raw(RawFraming::Line, input, step);
        assert_eq!(events.len(), 2, "step {step}: {events:?}");
        assert_eq!(
            events[0],
            LinkEvent::Message(Message::Text("{\"type\":\"PING\"}".into()))
        );
        let LinkEvent::Closed { code, error, .. } = &events[1] else {
            panic!("{events:?}");
        };
        assert_eq!(*code, close_code::TOO_BIG);
        assert!(matches!(error, Some(ConnError::Framing(_))));
    }
    // A line that is not UTF-8 closes with 1007; on the length prefix it is binary.
    let events = drive_raw(RawFraming::Line, b"\xff\xfe\n", 1);
    assert!(matches!(&events[0], LinkEvent::Closed { code: 1007, .. }));
    let events = drive_raw(RawFraming::LengthPrefix, b"\0\0\0\x02\xff\xfe", 1);
    assert_eq!(
        events,
        vec![LinkEvent::Message(Message::Binary(vec![0xff, 0xfe]))]
    );
}

#[test]
fn raw_connections_close_when_idle_and_send_in_their_framing() {
    use crate::rawframe::RawFraming;
    let cfg = WsConfig {
        limits: DecoderLimits::default(),
        heartbeat: Some(10),
        idle: Some(30),
    };
    let mut m = Raw::new(RawFraming::LengthPrefix, 16, 0);
    assert_eq!(m.poll_timeout(&cfg), Some(30));
    let mut input: &[u8] = b"\0\0";
    assert_eq!(m.handle_read(&mut input, 20), None);
    assert_eq!(m.poll_timeout(&cfg), Some(50), "input moves the deadline");
    assert_eq!(m.handle_timeout(49, &cfg), None);
    let ev = m.handle_timeout(50, &cfg);
    assert!(
        matches!(ev, Some(LinkEvent::Closed { code: 1001, .. })),
        "{ev:?}"
    );
    assert!(m.is_closed() && m.poll_timeout(&cfg).is_none());
    let mut out = OutQueue::default();
    m.send(&Message::Text("hi".into()), &mut out);
    let payload = crate::message::Payload::from(Message::Text("yo".into()));
    m.send_payload(&payload, &mut out);
    assert_eq!(drain(&mut out), b"\0\0\0\x02hi\0\0\0\x02yo");
}
