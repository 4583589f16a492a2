//! The STOMP codec and session machine driven without a network: split independence,
//! escaping round trips, ack ledgers, transactions and heart-beats on a virtual clock.

use proptest::prelude::*;

use super::frame::{Command, Frame, FrameError, FrameLimits, FrameParser, Parsed};
use super::session::{AckMode, Event, Session, SessionConfig};

fn parse_all(reads: &[&[u8]], escapes: bool) -> Vec<Result<Parsed, FrameError>> {
    let mut p = FrameParser::new();
    p.set_escapes(escapes);
    let mut out = Vec::new();
    for r in reads {
        p.push(r);
        while let Some(x) = p.next(&FrameLimits::default()) {
            out.push(x);
        }
    }
    out
}

const STREAM: &[u8] = b"\nSEND\r\ndestination:/topic/a\r\nx:1\r\nx:2\r\n\r\nhello\0\r\n\
SEND\ndestination:/topic/b\ncontent-length:3\n\na\0b\0\nSEND\ndestination:/q\\c1\n\n\0";

#[test]
fn the_same_frames_whatever_the_split() {
    let whole = parse_all(&[STREAM], true);
    assert_eq!(whole.len(), 6, "{whole:?}");
    let Ok(Parsed::Frame(first)) = &whole[1] else {
        panic!("{whole:?}")
    };
    assert_eq!(
        first.get("x"),
        Some("1"),
        "the first of repeated headers wins"
    );
    assert_eq!(first.body, b"hello");
    let Ok(Parsed::Frame(last)) = &whole[5] else {
        panic!()
    };
    assert_eq!(last.get("destination"), Some("/q:1"));
    for cut in 0..=STREAM.len() {
        assert_eq!(
            parse_all(&[&STREAM[..cut], &STREAM[cut..]], true),
            whole,
            "cut {cut}"
        );
    }
    let bytes: Vec<&[u8]> = STREAM.chunks(1).collect();
    assert_eq!(parse_all(&bytes, true), whole);
}

#[test]
fn errors_stop_the_parser() {
    let r = parse_all(&[b"BOGUS\n\n\0SEND\ndestination:/a\n\n\0"], false);
    assert_eq!(r, vec![Err(FrameError::UnknownCommand("BOGUS".into()))]);
    let r = parse_all(&[b"SEND\nnocolon\n\n\0"], false);
    assert_eq!(r, vec![Err(FrameError::HeaderWithoutColon)]);
    let r = parse_all(&[b"SEND\ncontent-length:x\n\n\0"], false);
    assert_eq!(r, vec![Err(FrameError::BadContentLength)]);
    // Escapes are decoded in 1.1/1.2 sessions, but never in CONNECT.
    let r = parse_all(&[b"CONNECT\npasscode:a\\b\n\n\0"], true);
    assert!(matches!(&r[0], Ok(Parsed::Frame(f)) if f.get("passcode") == Some("a\\b")));
}

#[test]
fn limits_are_enforced_before_the_frame_is_whole() {
    let limits = FrameLimits {
        max_header_bytes: 32,
        max_headers: 2,
        max_body_bytes: 8,
    };
    let mut p = FrameParser::new();
    p.push(b"SEND\ndestination:/a\n\n0123456789");
    assert_eq!(p.next(&limits), Some(Err(FrameError::BodyTooLarge(8))));
    let mut p = FrameParser::new();
    p.push(b"SEND\na:1\nb:2\nc:3\n\n\0");
    assert_eq!(p.next(&limits), Some(Err(FrameError::TooManyHeaders(2))));
    let mut p = FrameParser::new();
    p.push(&[b'x'; 40]);
    assert_eq!(p.next(&limits), Some(Err(FrameError::HeadersTooLarge(32))));
}

proptest! {
    #[test]
    fn encode_then_parse_round_trips(
        name in "[a-z:\\\\\r\n-]{1,12}",
        value in "\\PC{0,24}",
        body in proptest::collection::vec(any::<u8>(), 0..64),
        escape in any::<bool>(),
    ) {
        // Unescaped (1.0) headers cannot carry these bytes; the encoder drops them.
        let strip = |s: &str| if escape { s.to_owned() } else { s.replace(['\n', '\r', ':'], "") };
        let name = strip(&name);
        prop_assume!(!name.is_empty() && name != "content-length");
        let f = Frame::new(Command::Message).header(&name, value.clone()).body(body.clone());
        let got = parse_all(&[&f.encode(escape)], escape);
        let Some(Ok(Parsed::Frame(back))) = got.first() else {
            panic!("{got:?}")
        };
        let want = strip(&value);
        prop_assert_eq!(back.get(&name), Some(want.as_str()));
        prop_assert_eq!(&back.body, &body);
    }
}

fn connected(cfg: &SessionConfig, hb: &str) -> (Session, Vec<Vec<u8>>) {
    let mut s = Session::new(0);
    let mut out = Vec::new();
    s.push(
        format!("CONNECT\naccept-version:1.2\nheart-beat:{hb}\n\n\0").as_bytes(),
        0,
    );
    assert!(matches!(s.poll(cfg, &mut out), Some(Event::Connect { .. })));
    assert_eq!(
        s.poll(cfg, &mut out),
        None,
        "nothing until CONNECT is answered"
    );
    s.accept("s1", "u", "test", 0, &mut out);
    (s, out)
}

fn events(s: &mut Session, cfg: &SessionConfig, bytes: &[u8]) -> (Vec<Event>, Vec<Vec<u8>>) {
    s.push(bytes, 0);
    let mut out = Vec::new();
    let mut evs = Vec::new();
    while let Some(e) = s.poll(cfg, &mut out) {
        evs.push(e);
    }
    (evs, out)
}

#[test]
fn heart_beats_on_a_virtual_clock() {
    let cfg = SessionConfig {
        heartbeat_send_ms: 1000,
        heartbeat_receive_ms: 2000,
        ..SessionConfig::default()
    };
    let (mut s, out) = connected(&cfg, "500,3000");
    let connected = String::from_utf8(out[0].clone()).unwrap();
    // We send every max(1000, 3000); we expect theirs every max(500, 2000).
    assert!(connected.contains("heart-beat:3000,2000\n"), "{connected}");
    assert_eq!(s.poll_timeout(), Some(3000));
    let mut out = Vec::new();
    s.handle_timeout(3000, &mut out).unwrap();
    assert_eq!(out, vec![b"\n".to_vec()]);
    s.push(b"\n", 4000);
    assert_eq!(s.poll_timeout(), Some(6000));
    s.handle_timeout(6000, &mut out).unwrap();
    assert!(
        s.handle_timeout(10_000, &mut out).is_err(),
        "3 × 2000 ms silent"
    );
}

#[test]
fn client_acks_are_cumulative_per_subscription() {
    let cfg = SessionConfig::default();
    let (mut s, _) = connected(&cfg, "0,0");
    events(
        &mut s,
        &cfg,
        b"SUBSCRIBE\nid:a\ndestination:/queue/a\nack:client\n\n\0\
          SUBSCRIBE\nid:b\ndestination:/queue/b\nack:client\n\n\0",
    );
    assert_eq!(s.ack_mode("a"), Some(AckMode::Client));
    let msg = |dest: &str| Frame::new(Command::Message).header("destination", dest);
    for sub in ["a", "b", "a", "a"] {
        s.deliver(sub, msg(sub), &cfg).unwrap();
    }
    assert_eq!(s.pending_acks(), 4);
    // ACK of the second "a" (ack id 3) takes "a" #1 and #3, not "b" #2 nor "a" #4.
    let (evs, _) = events(&mut s, &cfg, b"ACK\nid:3\n\n\0");
    assert!(evs.is_empty());
    assert_eq!(s.pending_acks(), 2);
    // A late ACK for something gone is not an error.
    let (evs, _) = events(&mut s, &cfg, b"ACK\nid:1\n\n\0");
    assert!(evs.is_empty(), "{evs:?}");
}

#[test]
fn nack_redelivers_up_to_the_limit() {
    let cfg = SessionConfig {
        max_redeliveries: 1,
        ..SessionConfig::default()
    };
    let (mut s, _) = connected(&cfg, "0,0");
    events(
        &mut s,
        &cfg,
        b"SUBSCRIBE\nid:a\ndestination:/queue/a\nack:client-individual\n\n\0",
    );
    s.deliver("a", Frame::new(Command::Message), &cfg).unwrap();
    let (evs, _) = events(&mut s, &cfg, b"NACK\nid:1\n\n\0");
    assert!(
        matches!(&evs[..], [Event::Reply(b)] if String::from_utf8_lossy(b).contains("redelivered:true"))
    );
    let (evs, _) = events(&mut s, &cfg, b"NACK\nid:2\n\n\0");
    assert!(evs.is_empty(), "dropped after max_redeliveries");
    assert_eq!(s.pending_acks(), 0);
}

#[test]
fn transaction_limits_and_rules() {
    let cfg = SessionConfig {
        max_transaction_frames: 1,
        ..SessionConfig::default()
    };
    let (mut s, _) = connected(&cfg, "0,0");
    let (evs, _) = events(
        &mut s,
        &cfg,
        b"BEGIN\ntransaction:t\n\n\0SEND\ndestination:/a\ntransaction:t\n\n1\0",
    );
    assert!(evs.is_empty());
    let (evs, out) = events(&mut s, &cfg, b"SEND\ndestination:/a\ntransaction:t\n\n2\0");
    assert!(matches!(&evs[..], [Event::Failed(m)] if m.contains("more than 1 frames")));
    assert!(String::from_utf8_lossy(&out[0]).starts_with("ERROR\n"));
    assert!(s.is_closed());
}

#[test]
fn a_refused_subscription_gets_no_receipt() {
    let cfg = SessionConfig::default();
    let (mut s, _) = connected(&cfg, "0,0");
    s.push(b"SUBSCRIBE\nid:a\ndestination:/x\nreceipt:r\n\n\0", 0);
    let mut out = Vec::new();
    assert!(matches!(
        s.poll(&cfg, &mut out),
        Some(Event::Subscribe { .. })
    ));
    // The handler refuses it: ERROR, and the queued RECEIPT never goes out.
    s.fail("no", None, &mut out);
    assert_eq!(s.poll(&cfg, &mut out), None);
    assert_eq!(out.len(), 1);
}
