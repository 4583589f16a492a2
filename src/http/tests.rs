//! Handshake parser tests: byte-split invariance and one test per rejection.

use super::*;
use proptest::prelude::*;

const GOOD: &str = "GET /chat?token=abc HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n";

/// Feeds `input` as the reactor does: bytes accumulate, the parser looks at all of them
/// after each read.
fn parse_split(input: &[u8], cuts: &[usize]) -> Result<Parsed, HandshakeError> {
    let limits = HttpLimits::default();
    let mut buf = Vec::new();
    let mut bounds: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    bounds.sort_unstable();
    bounds.push(input.len());
    let mut start = 0;
    let mut last = Ok(Parsed::Partial);
    for end in bounds {
        let end = end.max(start);
        buf.extend_from_slice(&input[start..end]);
        start = end;
        last = parse_request(&buf, &limits);
        if !matches!(last, Ok(Parsed::Partial)) {
            return last;
        }
    }
    last
}

fn policy() -> UpgradePolicy {
    UpgradePolicy {
        allowed_origins: vec!["http://example.com".into()],
        subprotocols: vec!["superchat".into(), "chat".into()],
        deflate: Default::default(),
    }
}

fn request(text: &str) -> Request {
    match parse_request(text.as_bytes(), &HttpLimits::default()) {
        Ok(Parsed::Complete { request, .. }) => request,
        other => panic!("not a complete request: {other:?}"),
    }
}

#[test]
fn every_split_of_a_handshake_gives_the_same_request() {
    let whole = parse_split(GOOD.as_bytes(), &[]);
    assert!(matches!(whole, Ok(Parsed::Complete { .. })));
    for i in 0..GOOD.len() {
        assert_eq!(parse_split(GOOD.as_bytes(), &[i]), whole, "split at {i}");
    }
    let every: Vec<usize> = (0..GOOD.len()).collect();
    assert_eq!(parse_split(GOOD.as_bytes(), &every), whole);
}

proptest! {
    #[test]
    fn random_splits_give_the_same_request(cuts in proptest::collection::vec(0usize..300, 0..10)) {
        prop_assert_eq!(parse_split(GOOD.as_bytes(), &cuts), parse_split(GOOD.as_bytes(), &[]));
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(Parsed::Complete { request, .. }) = parse_request(&data, &HttpLimits::default()) {
            let _ = validate_upgrade(&request, &policy());
        }
    }
}

#[test]
fn bytes_after_the_head_are_left_for_the_websocket() {
    let mut input = GOOD.as_bytes().to_vec();
    input.extend_from_slice(&[0x81, 0x80, 1, 2, 3, 4]);
    match parse_request(&input, &HttpLimits::default()) {
        Ok(Parsed::Complete { consumed, .. }) => assert_eq!(consumed, GOOD.len()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn good_handshake_is_accepted_with_a_protocol() {
    let req = request(GOOD);
    assert_eq!(req.path, "/chat");
    assert_eq!(req.query.as_deref(), Some("token=abc"));
    let up = validate_upgrade(&req, &policy()).unwrap();
    // The client's order decides among protocols both sides speak.
    assert_eq!(up.protocol.as_deref(), Some("chat"));
    let text = String::from_utf8(up.response).unwrap();
    assert!(text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"));
    assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(text.contains("Sec-WebSocket-Protocol: chat\r\n"));
}

#[test]
fn oversized_head_is_431() {
    let mut big = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    while big.len() < 9000 {
        big.push_str("X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let e = parse_split(big.as_bytes(), &[100, 5000]).unwrap_err();
    assert_eq!(e.status(), 431);
}

#[test]
fn too_many_headers_is_431() {
    let mut req = String::from("GET / HTTP/1.1\r\n");
    for i in 0..70 {
        req.push_str(&format!("H{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let e = parse_request(req.as_bytes(), &HttpLimits::default()).unwrap_err();
    assert_eq!(e, HandshakeError::TooManyHeaders(64));
    assert_eq!(e.status(), 431);
}

#[test]
fn garbage_is_400() {
    let e = parse_request(
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        &HttpLimits::default(),
    )
    .unwrap_err();
    assert_eq!(e.status(), 400);
}

fn rejection(text: &str) -> HandshakeError {
    validate_upgrade(&request(text), &policy()).unwrap_err()
}

#[test]
fn bad_method_is_405_with_allow_and_no_body() {
    let e = rejection(&GOOD.replacen("GET", "POST", 1));
    assert_eq!(e, HandshakeError::BadMethod("POST".into()));
    assert_eq!(e.status(), 405);
    let resp = e.response();
    assert!(resp.headers.contains(&("Allow".into(), "GET".into())));
    assert!(resp.body.is_empty());
}

#[test]
fn draft_versions_7_and_8_shake_hands_like_13() {
    for v in ["7", "8"] {
        let req = request(&GOOD.replace("Version: 13", &format!("Version: {v}")));
        assert!(validate_upgrade(&req, &policy()).is_ok(), "{v}");
    }
}

#[test]
fn http_1_0_is_400() {
    let e = rejection(&GOOD.replacen("HTTP/1.1", "HTTP/1.0", 1));
    assert_eq!(e, HandshakeError::BadVersion(0));
    assert_eq!(e.status(), 400);
}

#[test]
fn missing_upgrade_headers_are_400() {
    assert_eq!(
        rejection(&GOOD.replace("Upgrade: websocket\r\n", "")),
        HandshakeError::NotUpgrade
    );
    assert_eq!(
        rejection(&GOOD.replace("keep-alive, Upgrade", "keep-alive")),
        HandshakeError::NotUpgrade
    );
    assert_eq!(
        rejection(&GOOD.replace("Host: example.com\r\n", "")).status(),
        400
    );
}

#[test]
fn bad_key_is_400() {
    let e = rejection(&GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="));
    assert_eq!(e, HandshakeError::BadKey);
    assert_eq!(e.status(), 400);
}

#[test]
fn wrong_version_is_426_naming_13() {
    let e = rejection(&GOOD.replace("Version: 13", "Version: 12"));
    assert_eq!(e.status(), 426);
    let bytes = e.response().to_bytes();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
    assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
    assert!(text.contains("Connection: close\r\n"));
}

#[test]
fn foreign_origin_is_403_and_missing_origin_passes() {
    let e = rejection(&GOOD.replace("http://example.com", "http://evil.test"));
    assert_eq!(e.status(), 403);
    let req = request(&GOOD.replace("Origin: http://example.com\r\n", ""));
    assert!(validate_upgrade(&req, &policy()).is_ok());
}

#[test]
fn no_common_protocol_means_none() {
    let req = request(&GOOD.replace("chat, superchat", "mqtt"));
    assert_eq!(validate_upgrade(&req, &policy()).unwrap().protocol, None);
}

/// Regressions the fuzzer found: the answer changed with where the read boundary fell
/// when more than `max_handshake_bytes` arrived in one read.
#[test]
fn answer_does_not_depend_on_read_boundaries_past_the_limit() {
    let limits = HttpLimits {
        max_handshake_bytes: 256,
        max_headers: 8,
    };
    let split = |input: &[u8], at: usize| {
        let first = parse_request(&input[..at], &limits);
        if !matches!(first, Ok(Parsed::Partial)) {
            return first;
        }
        parse_request(input, &limits)
    };
    let mut bad_token = vec![0x01];
    bad_token.extend(std::iter::repeat_n(b'A', 300));
    assert_eq!(split(&bad_token, 1), parse_request(&bad_token, &limits));
    assert_eq!(split(&bad_token, 1).unwrap_err().status(), 400);

    let mut many = String::from("GET / HTTP/1.1\r\n");
    for _ in 0..8 {
        many.push_str(&format!("H: {}\r\n", "a".repeat(27)));
    }
    many.push_str("I: b\r\n\r\n");
    assert_eq!(
        split(many.as_bytes(), 260),
        parse_request(many.as_bytes(), &limits)
    );
}
