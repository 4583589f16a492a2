//! The chat node's message parser (`chat::protocol::parse`): whatever a client sends, it
//! returns a request or a bad-message answer with a code, never panics; and a reply built
//! with the request id is valid JSON carrying that id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::chat::protocol::{code, error, parse};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (rid, result) = parse(text);
    if let Err(bad) = &result {
        assert_eq!(bad.code, code::BAD_REQUEST);
        assert!(!bad.message.is_empty());
        let reply = error(bad.code, &bad.message, rid.as_deref());
        let v: serde_json::Value = serde_json::from_str(&reply).expect("replies are JSON");
        if let Some(r) = &rid {
            assert_eq!(v["requestId"].as_str(), Some(r.as_str()));
        }
    }
});
