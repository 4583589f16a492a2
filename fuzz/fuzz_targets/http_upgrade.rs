//! Fuzzes the HTTP upgrade path: `parse_request`, then `check_request_line` and
//! `validate_upgrade` on whatever parses.
//!
//! Input layout: `[n][n × u16 LE cut][request bytes]`, with `n = first byte % 5`. The cut
//! positions (taken modulo `len + 1`, sorted) split the request bytes into pieces that
//! are fed as the reactor feeds a handshake: accumulate, call `parse_request` on
//! everything received so far after each piece, stop at the first non-`Partial`. That
//! result must equal `parse_request` on the whole input ("the same bytes give the same
//! answer however they were split across reads"). Every input is checked under
//! `HttpLimits::default()` and under small limits (256 bytes, 8 headers).
//!
//! History: this check found two split-dependent answers in `parse_request` (400 vs 431,
//! and `TooManyHeaders` vs `HeadersTooLarge`); fixed by parsing only the first
//! `max_handshake_bytes` bytes (reproducers: `corpus/http_upgrade/seed-regression-*`).
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/cuts.rs"]
mod cuts;
use cuts::split_input;
use switchboard::http::{
    check_request_line, parse_request, validate_upgrade, HandshakeError, HttpLimits, Parsed,
    UpgradePolicy,
};

const SMALL: HttpLimits = HttpLimits {
    max_handshake_bytes: 256,
    max_headers: 8,
};

fuzz_target!(|data: &[u8]| {
    let (cuts, body) = split_input(data, 5);
    let policy = UpgradePolicy {
        allowed_origins: vec!["http://a.test".into()],
        subprotocols: vec!["chat".into()],
        // Offers in fuzzed headers go through the permessage-deflate negotiation too.
        deflate: switchboard::ws::deflate::DeflateConfig {
            enabled: true,
            ..Default::default()
        },
    };
    for limits in [HttpLimits::default(), SMALL] {
        check(body, &cuts, &limits, &policy);
    }
});

fn check(body: &[u8], cuts: &[usize], limits: &HttpLimits, policy: &UpgradePolicy) {
    let whole = parse_request(body, limits);

    match &whole {
        Ok(Parsed::Partial) => {
            assert!(
                body.len() < limits.max_handshake_bytes,
                "Partial for {} bytes with max_handshake_bytes {}",
                body.len(),
                limits.max_handshake_bytes
            );
        }
        Ok(Parsed::Complete { request, consumed }) => {
            let consumed = *consumed;
            assert!(
                consumed <= body.len(),
                "consumed {consumed} > input {}",
                body.len()
            );
            assert!(consumed <= limits.max_handshake_bytes);
            assert!(request.headers.len() <= limits.max_headers);
            assert!(
                body[..consumed].ends_with(b"\n"),
                "a head ends with a newline: {:?}",
                String::from_utf8_lossy(&body[..consumed])
            );
            // The head alone parses to the same request: bytes after it (frames a client
            // sent right behind its request) play no part.
            assert_eq!(
                parse_request(&body[..consumed], limits),
                whole,
                "head alone parses differently"
            );
            check_request(request, policy);
        }
        Err(e) => check_error(e),
    }

    // Reactor-style incremental feed.
    let mut buf = Vec::with_capacity(body.len());
    let mut start = 0;
    let mut incremental = Ok(Parsed::Partial);
    for end in cuts.iter().copied().chain(std::iter::once(body.len())) {
        buf.extend_from_slice(&body[start..end]);
        start = end;
        incremental = parse_request(&buf, limits);
        if incremental != Ok(Parsed::Partial) {
            break;
        }
    }
    assert_eq!(
        incremental,
        whole,
        "split at {cuts:?} (limits {limits:?}) differs from the whole input; first {} of {} bytes received",
        buf.len(),
        body.len()
    );
}

fn check_request(request: &switchboard::http::Request, policy: &UpgradePolicy) {
    let line = check_request_line(request);
    if let Err(e) = &line {
        check_error(e);
    }
    match validate_upgrade(request, policy) {
        Ok(up) => {
            assert!(
                line.is_ok(),
                "upgrade accepted but request line rejected: {line:?}"
            );
            assert!(
                up.response.starts_with(b"HTTP/1.1 101 "),
                "101 response: {:?}",
                String::from_utf8_lossy(&up.response)
            );
            assert!(up.response.ends_with(b"\r\n\r\n"));
            if let Some(p) = &up.protocol {
                assert!(
                    policy.subprotocols.contains(p),
                    "chose unoffered protocol {p:?}"
                );
            }
            if let Some(origin) = request.header("Origin") {
                assert!(
                    policy
                        .allowed_origins
                        .iter()
                        .any(|o| o.eq_ignore_ascii_case(origin)),
                    "accepted origin {origin:?}"
                );
            }
        }
        Err(e) => {
            check_error(&e);
            if let Err(first) = line {
                // validate_upgrade checks the request line first.
                assert_eq!(e, first);
            }
        }
    }
}

fn check_error(e: &HandshakeError) {
    let status = e.status();
    assert!(
        matches!(status, 400 | 403 | 404 | 405 | 426 | 431 | 503),
        "unexpected status {status} for {e:?}"
    );
    // 405 is exactly the bad method, and says what is allowed.
    assert_eq!(status == 405, matches!(e, HandshakeError::BadMethod(_)), "{e:?}");
    if status == 405 {
        assert!(e.response().headers.iter().any(|(n, v)| n == "Allow" && v == "GET"));
    }
    let resp = e.response().to_bytes();
    let prefix = format!("HTTP/1.1 {status} ");
    assert!(
        resp.starts_with(prefix.as_bytes()),
        "{:?}",
        String::from_utf8_lossy(&resp)
    );
}
