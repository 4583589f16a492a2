//! The durable-delivery messages (`ACK_REQUEST`, `PULL_REQUEST`, `SUBSCRIBE_REQUEST` with
//! `sinceSeq`, `AUTH_REQUEST` with `lastSeq`): the first byte picks the type, the rest is
//! the body's text, so most inputs reach the number and list parsers. Whatever arrives
//! is a request or a code-1 answer, never a panic; numbers are never negative or
//! fractional; and the text the store sends for a stored body is JSON with that `seq`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::chat::protocol::{code, parse, Request};
use switchboard::chat::store::delivery_text;

const TYPES: [&str; 4] = [
    "ACK_REQUEST",
    "PULL_REQUEST",
    "SUBSCRIBE_REQUEST",
    "AUTH_REQUEST",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let Ok(body) = std::str::from_utf8(rest) else {
        return;
    };
    let kind = TYPES[pick as usize % TYPES.len()];
    let text = format!(r#"{{"type":"{kind}","body":{body}}}"#);
    match parse(&text).1 {
        Err(bad) => assert_eq!(bad.code, code::BAD_REQUEST),
        Ok(Request::Ack { upto, each }) => assert!(upto.is_some() || !each.is_empty()),
        Ok(_) => {}
    }
    // A body the node stored (an object it wrote) comes out as JSON with its number.
    if let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(body) {
        if obj.contains_key("seq") {
            return;
        }
        let seq = u64::from(pick) * 1_000_003;
        let out = delivery_text(kind, &serde_json::Value::Object(obj).to_string(), seq);
        let v: serde_json::Value = serde_json::from_str(&out).expect("deliveries are JSON");
        assert_eq!(v["body"]["seq"].as_u64(), Some(seq));
        assert_eq!(v["type"].as_str(), Some(kind));
    }
});
