//! The JSON message protocol: `{"type", "body", "requestId"}` both ways, the seeds'
//! message type names, and the reply codes.
//!
//! Owns parsing of client messages into typed requests and the shape of every message the
//! node sends. It knows nothing of sessions or sockets.

use serde_json::{json, Value};

/// Reply codes (`code` in `AUTH_RESPONSE`, `SEND_RESPONSE`, `*_RESPONSE` and `ERROR`).
pub mod code {
    /// Success.
    pub const OK: i64 = 0;
    /// Malformed JSON, unknown type or a missing or mistyped field.
    pub const BAD_REQUEST: i64 = 1;
    /// Not authenticated, or the token was refused.
    pub const UNAUTHORIZED: i64 = 2;
    /// The recipient user has no open session.
    pub const USER_OFFLINE: i64 = 3;
    /// Not allowed (e.g. a second `AUTH_REQUEST` as another user, or the session limit).
    pub const FORBIDDEN: i64 = 4;
    /// Too many bad messages; the connection is about to be closed (1008).
    pub const RATE_LIMITED: i64 = 5;
    /// The message is larger than `limits.max_message_bytes`.
    pub const TOO_LARGE: i64 = 6;
}

/// A client message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `AUTH_REQUEST {accessToken}`.
    Auth {
        /// The token.
        token: String,
    },
    /// `SEND_TO_ONE_REQUEST {toUser, msgId, content}`.
    SendToOne {
        /// Recipient user id.
        to_user: String,
        /// Client's message id.
        msg_id: String,
        /// Any JSON.
        content: Value,
    },
    /// `SEND_TO_ALL_REQUEST {msgId, content}`.
    SendToAll {
        /// Client's message id.
        msg_id: String,
        /// Any JSON.
        content: Value,
    },
    /// `SUBSCRIBE_REQUEST {channel}`.
    Subscribe {
        /// Channel name.
        channel: String,
    },
    /// `UNSUBSCRIBE_REQUEST {channel}`.
    Unsubscribe {
        /// Channel name.
        channel: String,
    },
    /// `SEND_TO_CHANNEL_REQUEST {channel, msgId, content}`.
    SendToChannel {
        /// Channel name.
        channel: String,
        /// Client's message id.
        msg_id: String,
        /// Any JSON.
        content: Value,
    },
    /// `PING` or `ping`.
    Ping,
}

impl Request {
    /// The message type's name on the wire (`PING` for both spellings).
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Auth { .. } => "AUTH_REQUEST",
            Request::SendToOne { .. } => "SEND_TO_ONE_REQUEST",
            Request::SendToAll { .. } => "SEND_TO_ALL_REQUEST",
            Request::Subscribe { .. } => "SUBSCRIBE_REQUEST",
            Request::Unsubscribe { .. } => "UNSUBSCRIBE_REQUEST",
            Request::SendToChannel { .. } => "SEND_TO_CHANNEL_REQUEST",
            Request::Ping => "PING",
        }
    }

    /// The client's message id, for the types that carry one.
    pub fn msg_id(&self) -> Option<&str> {
        match self {
            Request::SendToOne { msg_id, .. }
            | Request::SendToAll { msg_id, .. }
            | Request::SendToChannel { msg_id, .. } => Some(msg_id),
            _ => None,
        }
    }
}

/// A message that could not be understood: the code and text for the `ERROR` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMessage {
    /// Reply code.
    pub code: i64,
    /// What was wrong.
    pub message: String,
}

fn bad(message: impl Into<String>) -> BadMessage {
    BadMessage {
        code: code::BAD_REQUEST,
        message: message.into(),
    }
}

fn field<'a>(body: &'a Value, name: &str) -> Result<&'a str, BadMessage> {
    match body.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(bad(format!("body.{name} is empty"))),
        Some(_) => Err(bad(format!("body.{name} must be a string"))),
        None => Err(bad(format!("body.{name} is missing"))),
    }
}

/// An id field (`msgId`, `toUser`): a string, or an integer as Java clients send a
/// `Long`, taken as its decimal string.
fn id_field(body: &Value, name: &str) -> Result<String, BadMessage> {
    match body.get(name) {
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Some(Value::Number(_)) => Err(bad(format!("body.{name} must be a string or an integer"))),
        _ => field(body, name).map(str::to_owned),
    }
}

fn content(body: &Value) -> Result<Value, BadMessage> {
    body.get("content")
        .cloned()
        .ok_or_else(|| bad("body.content is missing"))
}

/// Parses one text frame: the request and its `requestId` (echoed in the reply).
pub fn parse(text: &str) -> (Option<String>, Result<Request, BadMessage>) {
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return (None, Err(bad(format!("not JSON: {e}")))),
    };
    if !v.is_object() {
        return (None, Err(bad("message must be a JSON object")));
    }
    let request_id = v.get("requestId").and_then(|r| match r {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let Some(kind) = v.get("type").and_then(Value::as_str) else {
        return (request_id, Err(bad("type is missing")));
    };
    let empty = Value::Object(Default::default());
    let body = v.get("body").unwrap_or(&empty);
    if !body.is_object() {
        return (request_id, Err(bad("body must be an object")));
    }
    let req = (|| {
        Ok(match kind {
            // A missing or empty token is the handler's to answer (AUTH_RESPONSE code 1,
            // as seed 000 does), not a malformed message.
            "AUTH_REQUEST" => Request::Auth {
                token: body
                    .get("accessToken")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            },
            "SEND_TO_ONE_REQUEST" => Request::SendToOne {
                to_user: id_field(body, "toUser")?,
                msg_id: id_field(body, "msgId")?,
                content: content(body)?,
            },
            "SEND_TO_ALL_REQUEST" => Request::SendToAll {
                msg_id: id_field(body, "msgId")?,
                content: content(body)?,
            },
            "SUBSCRIBE_REQUEST" => Request::Subscribe {
                channel: field(body, "channel")?.to_owned(),
            },
            "UNSUBSCRIBE_REQUEST" => Request::Unsubscribe {
                channel: field(body, "channel")?.to_owned(),
            },
            "SEND_TO_CHANNEL_REQUEST" => Request::SendToChannel {
                channel: field(body, "channel")?.to_owned(),
                msg_id: id_field(body, "msgId")?,
                content: content(body)?,
            },
            "PING" | "ping" => Request::Ping,
            other => return Err(bad(format!("unknown type {other:?}"))),
        })
    })();
    (request_id, req)
}

/// A message from the node: `{"type", "body"}` plus `requestId` when replying.
pub fn message(kind: &str, body: Value, request_id: Option<&str>) -> String {
    let mut m = json!({ "type": kind, "body": body });
    if let (Some(r), Some(obj)) = (request_id, m.as_object_mut()) {
        obj.insert("requestId".into(), Value::String(r.to_owned()));
    }
    m.to_string()
}

/// `ERROR {code, message}`.
pub fn error(code: i64, text: &str, request_id: Option<&str>) -> String {
    message(
        "ERROR",
        json!({ "code": code, "message": text }),
        request_id,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_seed_messages() {
        let (rid, r) = parse(
            r#"{"type":"SEND_TO_ONE_REQUEST","body":{"toUser":"番茄","msgId":"m1","content":"hi"},"requestId":"7"}"#,
        );
        assert_eq!(rid.as_deref(), Some("7"));
        assert_eq!(
            r,
            Ok(Request::SendToOne {
                to_user: "番茄".into(),
                msg_id: "m1".into(),
                content: json!("hi")
            })
        );
        assert_eq!(parse(r#"{"type":"ping"}"#).1, Ok(Request::Ping));
    }

    #[test]
    fn java_longs_are_ids_too() {
        let (_, r) = parse(
            r#"{"type":"SEND_TO_ONE_REQUEST","body":{"toUser":1024,"msgId":9007199254740993,"content":{}}}"#,
        );
        assert_eq!(
            r,
            Ok(Request::SendToOne {
                to_user: "1024".into(),
                msg_id: "9007199254740993".into(),
                content: json!({})
            })
        );
        let (_, r) = parse(r#"{"type":"SEND_TO_ALL_REQUEST","body":{"msgId":1.5,"content":1}}"#);
        assert!(r.unwrap_err().message.contains("string or an integer"));
        let (_, r) = parse(r#"{"type":"AUTH_REQUEST","body":{"accessToken":""}}"#);
        assert_eq!(r, Ok(Request::Auth { token: "".into() }));
    }

    #[test]
    fn bad_messages_say_what_is_wrong() {
        for (text, needle) in [
            ("nope", "not JSON"),
            ("[1,2]", "must be a JSON object"),
            ("7", "must be a JSON object"),
            (r#"{"body":{}}"#, "type is missing"),
            (r#"{"type":"X"}"#, "unknown type"),
            (
                r#"{"type":"SEND_TO_ALL_REQUEST","body":{"content":1}}"#,
                "msgId is missing",
            ),
            (
                r#"{"type":"SUBSCRIBE_REQUEST","body":{"channel":5}}"#,
                "must be a string",
            ),
            (r#"{"type":"PING","body":[]}"#, "must be an object"),
        ] {
            let err = parse(text).1.unwrap_err();
            assert_eq!(err.code, code::BAD_REQUEST);
            assert!(err.message.contains(needle), "{text}: {}", err.message);
        }
    }
}
