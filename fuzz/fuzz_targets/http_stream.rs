//! Fuzzes the HTTP/1.1 connection machine (`conn::Http1`) on a whole request stream:
//! keep-alive, pipelining, `Content-Length` and chunked bodies, upgrades, errors.
//!
//! Input layout: `[n][n × u16 LE cut][stream bytes]`, with `n = first byte % 8`. The cuts
//! (taken modulo `len + 1`, sorted) split the stream into reads. The machine is driven the
//! way the worker drives it: each request is answered at once (its path and body length
//! as the body), an upgrade is refused with 400. Checked:
//! - the events and the bytes sent are the same for every split and for one byte at a
//!   time as for the whole stream in one read (split independence);
//! - no body is longer than `max_body_bytes`; nothing is reported after the machine is
//!   done; every answer is a complete HTTP/1.1 response;
//! - nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/cuts.rs"]
mod cuts;
use cuts::split_input;
use switchboard::conn::{Http1, Http1Config, HttpEvent, OutQueue, StoragePool};
use switchboard::http::{HttpLimits, HttpResponse};

const CFG: Http1Config = Http1Config {
    limits: HttpLimits {
        max_handshake_bytes: 512,
        max_headers: 8,
    },
    max_body_bytes: 256,
    request_timeout: 100,
    keepalive_timeout: 600,
    response_timeout: 300,
};

fuzz_target!(|data: &[u8]| {
    let (cuts, stream) = split_input(data, 8);
    let whole = drive(&[stream]);
    let mut pieces = Vec::new();
    let mut at = 0;
    for &c in &cuts {
        pieces.push(&stream[at..c]);
        at = c;
    }
    pieces.push(&stream[at..]);
    assert_eq!(drive(&pieces), whole, "split at {cuts:?}");
    if stream.len() <= 2048 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(drive(&bytes), whole, "byte at a time");
    }
});

/// The events (as text) and the bytes the machine sent, for `reads` fed in order.
fn drive(reads: &[&[u8]]) -> (Vec<String>, Vec<u8>) {
    let mut m = Http1::new(0);
    let mut out = OutQueue::default();
    let mut events = Vec::new();
    for read in reads {
        let mut input = *read;
        while let Some(ev) = m.handle_read(&mut input, 0, &CFG, &mut out) {
            assert!(!m.is_done() || !matches!(ev, HttpEvent::Request(_)));
            match ev {
                HttpEvent::Request(req) => {
                    assert!(req.body.len() <= CFG.max_body_bytes);
                    let text = format!("{} {} {}", req.method, req.path, req.body.len());
                    m.respond(&HttpResponse::text(200, text.clone()), false, 0, &mut out);
                    events.push(format!("request {text} v{}", req.version));
                }
                HttpEvent::Upgrade(req) => {
                    m.reject(&HttpResponse::text(400, "no upgrades here"), &mut out);
                    events.push(format!("upgrade {}", req.path));
                }
                HttpEvent::Rejected(e) => events.push(format!("rejected {}", e.status())),
                other => events.push(format!("{other:?}")),
            }
        }
        assert!(input.is_empty());
    }
    let mut wire = Vec::new();
    out.flush(&mut wire, &mut StoragePool::default())
        .expect("a Vec takes everything");
    // Every answer is a whole response: the wire is exactly one response per event.
    assert_eq!(count_responses(&wire, &events), events.len(), "{events:?}");
    (events, wire)
}

/// Walks `wire` response by response (head, then `Content-Length` bytes of body, none
/// for an answer to HEAD) and counts them; panics on anything that is not a complete
/// response. Counting the `HTTP/1.1 ` marks instead was fooled by a body that echoes a
/// path holding them.
fn count_responses(mut wire: &[u8], events: &[String]) -> usize {
    let mut n = 0;
    while !wire.is_empty() {
        assert!(wire.starts_with(b"HTTP/1.1 "), "not a response head");
        let end = wire
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a head ends with an empty line")
            + 4;
        let head = std::str::from_utf8(&wire[..end]).expect("heads are text");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .expect("every answer has a Content-Length")
            .trim()
            .parse()
            .expect("a number");
        let head_only = events
            .get(n)
            .is_some_and(|e| e.starts_with("request HEAD "));
        let len = if head_only { 0 } else { len };
        assert!(wire.len() >= end + len, "body cut short");
        wire = &wire[end + len..];
        n += 1;
    }
    n
}
