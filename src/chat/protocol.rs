//! The JSON message protocol: `{"type", "body", "requestId"}` both ways, the seeds'
//! message type names, and the reply codes.
//!
//! Owns parsing of client messages into typed requests and the shape of every message the
//! node sends. It knows nothing of sessions or sockets.

use serde::Deserialize;
use serde_json::value::RawValue;
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
    /// The store could not keep the message (disk full, read-only file): not sent.
    pub const STORE_FAILED: i64 = 7;
    /// The request needs the store and `store.enabled` is false.
    pub const NO_STORE: i64 = 8;
    /// More messages wait for the store than `store.max_queue`: not stored, retry later.
    pub const STORE_BUSY: i64 = 9;
    /// The server is closing the connection (idle, shutdown, slow consumer): a raw TCP
    /// connection's last `ERROR`, with `close`.
    pub const CLOSING: i64 = 10;
}

/// A message's `content`: any JSON, kept as the client's text (checked to be JSON, not
/// parsed into a tree), so the node forwards it without decoding and re-encoding it.
#[derive(Debug, Clone)]
pub struct Content(Box<RawValue>);

impl Content {
    /// The content as JSON text.
    pub fn json(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Content {
    fn eq(&self, other: &Self) -> bool {
        self.json() == other.json()
    }
}

impl Eq for Content {}

/// A client message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `AUTH_REQUEST {accessToken, lastSeq?, epoch?}`.
    Auth {
        /// The token.
        token: String,
        /// Where the client's copy of its history stands, to resume from.
        resume: Option<Resume>,
    },
    /// `ACK_REQUEST {seq}` (everything up to `seq`) or `{seqs: [...]}` (each of them).
    Ack {
        /// Cumulative acknowledgement.
        upto: Option<u64>,
        /// Individual acknowledgements.
        each: Vec<u64>,
    },
    /// `PULL_REQUEST {sinceSeq, limit?, channel?}`.
    Pull {
        /// A channel's history instead of the user's messages.
        channel: Option<String>,
        /// The client has everything up to here.
        since: u64,
        /// Most messages wanted (capped by `delivery.pull_limit`).
        limit: Option<u64>,
    },
    /// `SEND_TO_ONE_REQUEST {toUser, msgId, content}`.
    SendToOne {
        /// Recipient user id.
        to_user: String,
        /// Client's message id.
        msg_id: String,
        /// Any JSON.
        content: Content,
    },
    /// `SEND_TO_ALL_REQUEST {msgId, content}`.
    SendToAll {
        /// Client's message id.
        msg_id: String,
        /// Any JSON.
        content: Content,
    },
    /// `SUBSCRIBE_REQUEST {channel, sinceSeq?, epoch?}`.
    Subscribe {
        /// Channel name.
        channel: String,
        /// Where the client's copy of the channel's history stands, to recover from.
        resume: Option<Resume>,
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
        content: Content,
    },
    /// `PING` or `ping`.
    Ping,
}

impl Request {
    /// The message type's name on the wire (`PING` for both spellings).
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Auth { .. } => "AUTH_REQUEST",
            Request::Ack { .. } => "ACK_REQUEST",
            Request::Pull { .. } => "PULL_REQUEST",
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

/// Where a client's copy of its message history stands: the last `seq` it has and the
/// `epoch` that number belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The last sequence number the client has.
    pub last_seq: u64,
    /// The history the number belongs to (empty: unknown).
    pub epoch: String,
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

/// A field present in the text, `null` included (a plain `Option` would read `null` as
/// absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The envelope, with each part left as its JSON text: only what a request needs is
/// decoded, and `content` never is.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow, default, deserialize_with = "present")]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    body: Option<&'a RawValue>,
    #[serde(rename = "requestId", borrow, default, deserialize_with = "present")]
    request_id: Option<&'a RawValue>,
}

#[derive(Deserialize, Default)]
struct Body<'a> {
    #[serde(rename = "accessToken", borrow, default, deserialize_with = "present")]
    access_token: Option<&'a RawValue>,
    #[serde(rename = "toUser", borrow, default, deserialize_with = "present")]
    to_user: Option<&'a RawValue>,
    #[serde(rename = "msgId", borrow, default, deserialize_with = "present")]
    msg_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    content: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    channel: Option<&'a RawValue>,
    #[serde(rename = "lastSeq", borrow, default, deserialize_with = "present")]
    last_seq: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    epoch: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    seq: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    seqs: Option<&'a RawValue>,
    #[serde(rename = "sinceSeq", borrow, default, deserialize_with = "present")]
    since_seq: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    limit: Option<&'a RawValue>,
}

fn is_object(raw: &RawValue) -> bool {
    raw.get().starts_with('{')
}

/// A JSON string's value; `None` for any other JSON.
fn as_string(raw: &RawValue) -> Option<String> {
    if raw.get().starts_with('"') {
        serde_json::from_str(raw.get()).ok()
    } else {
        None
    }
}

/// An integer's decimal text; `None` for any other JSON.
fn as_integer(raw: &RawValue) -> Option<String> {
    let n: serde_json::Number = serde_json::from_str(raw.get()).ok()?;
    (n.is_i64() || n.is_u64()).then(|| n.to_string())
}

fn field(raw: Option<&RawValue>, name: &str) -> Result<String, BadMessage> {
    let raw = raw.ok_or_else(|| bad(format!("body.{name} is missing")))?;
    match as_string(raw) {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(bad(format!("body.{name} is empty"))),
        None => Err(bad(format!("body.{name} must be a string"))),
    }
}

/// An id field (`msgId`, `toUser`): a string, or an integer as Java clients send a
/// `Long`, taken as its decimal string.
fn id_field(raw: Option<&RawValue>, name: &str) -> Result<String, BadMessage> {
    if let Some(n) = raw.filter(|r| !r.get().starts_with('"')) {
        return as_integer(n)
            .ok_or_else(|| bad(format!("body.{name} must be a string or an integer")));
    }
    field(raw, name)
}

/// A sequence number: a non-negative integer (or its decimal string, as some clients
/// send 64-bit numbers).
fn seq_value(raw: &RawValue, name: &str) -> Result<u64, BadMessage> {
    let text = raw.get().trim_matches('"');
    text.parse::<u64>()
        .map_err(|_| bad(format!("body.{name} must be a non-negative integer")))
}

fn opt_seq(raw: Option<&RawValue>, name: &str) -> Result<Option<u64>, BadMessage> {
    match raw.filter(|r| r.get() != "null") {
        None => Ok(None),
        Some(r) => seq_value(r, name).map(Some),
    }
}

fn seq_list(raw: Option<&RawValue>) -> Result<Vec<u64>, BadMessage> {
    let Some(raw) = raw.filter(|r| r.get() != "null") else {
        return Ok(Vec::new());
    };
    let items: Vec<&RawValue> = serde_json::from_str(raw.get())
        .map_err(|_| bad("body.seqs must be an array of integers"))?;
    if items.len() > 10_000 {
        return Err(bad("body.seqs holds more than 10000 numbers"));
    }
    items.into_iter().map(|r| seq_value(r, "seqs")).collect()
}

fn resume(body: &Body<'_>) -> Result<Option<Resume>, BadMessage> {
    Ok(opt_seq(body.last_seq, "lastSeq")?.map(|last_seq| Resume {
        last_seq,
        epoch: body.epoch.and_then(as_string).unwrap_or_default(),
    }))
}

fn content(raw: Option<&RawValue>) -> Result<Content, BadMessage> {
    raw.map(|r| Content(r.to_owned()))
        .ok_or_else(|| bad("body.content is missing"))
}

/// Parses one text frame: the request and its `requestId` (echoed in the reply).
pub fn parse(text: &str) -> (Option<String>, Result<Request, BadMessage>) {
    // Checked first: serde would also read a JSON array as this struct's fields.
    if !text.trim_start().starts_with('{') {
        return match serde_json::from_str::<&RawValue>(text) {
            Ok(_) => (None, Err(bad("message must be a JSON object"))),
            Err(e) => (None, Err(bad(format!("not JSON: {e}")))),
        };
    }
    let env: Envelope<'_> = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return (None, Err(bad(format!("not JSON: {e}")))),
    };
    let request_id = env
        .request_id
        .and_then(|r| as_string(r).or_else(|| as_integer(r)));
    let Some(kind) = env.kind.and_then(as_string) else {
        return (request_id, Err(bad("type is missing")));
    };
    let body: Body<'_> = match env.body {
        None => Body::default(),
        Some(raw) if is_object(raw) => match serde_json::from_str(raw.get()) {
            Ok(b) => b,
            Err(e) => return (request_id, Err(bad(format!("body: {e}")))),
        },
        Some(_) => return (request_id, Err(bad("body must be an object"))),
    };
    (request_id, request(&kind, &body))
}

fn request(kind: &str, body: &Body<'_>) -> Result<Request, BadMessage> {
    Ok(match kind {
        // A missing or empty token is the handler's to answer (AUTH_RESPONSE code 1, as
        // seed 000 does), not a malformed message.
        "AUTH_REQUEST" => Request::Auth {
            token: body.access_token.and_then(as_string).unwrap_or_default(),
            resume: resume(body)?,
        },
        "ACK_REQUEST" => {
            let upto = opt_seq(body.seq, "seq")?;
            let each = seq_list(body.seqs)?;
            if upto.is_none() && each.is_empty() {
                return Err(bad("body.seq (cumulative) or body.seqs (each) is required"));
            }
            Request::Ack { upto, each }
        }
        "PULL_REQUEST" => Request::Pull {
            channel: match body.channel.filter(|c| c.get() != "null") {
                Some(_) => Some(field(body.channel, "channel")?),
                None => None,
            },
            since: opt_seq(body.since_seq, "sinceSeq")?.unwrap_or(0),
            limit: opt_seq(body.limit, "limit")?,
        },
        "SEND_TO_ONE_REQUEST" => Request::SendToOne {
            to_user: id_field(body.to_user, "toUser")?,
            msg_id: id_field(body.msg_id, "msgId")?,
            content: content(body.content)?,
        },
        "SEND_TO_ALL_REQUEST" => Request::SendToAll {
            msg_id: id_field(body.msg_id, "msgId")?,
            content: content(body.content)?,
        },
        "SUBSCRIBE_REQUEST" => Request::Subscribe {
            channel: field(body.channel, "channel")?,
            resume: opt_seq(body.since_seq, "sinceSeq")?.map(|last_seq| Resume {
                last_seq,
                epoch: body.epoch.and_then(as_string).unwrap_or_default(),
            }),
        },
        "UNSUBSCRIBE_REQUEST" => Request::Unsubscribe {
            channel: field(body.channel, "channel")?,
        },
        "SEND_TO_CHANNEL_REQUEST" => Request::SendToChannel {
            channel: field(body.channel, "channel")?,
            msg_id: id_field(body.msg_id, "msgId")?,
            content: content(body.content)?,
        },
        "PING" | "ping" => Request::Ping,
        other => return Err(bad(format!("unknown type {other:?}"))),
    })
}

/// A message from the node: `{"type", "body"}` plus `requestId` when replying.
pub fn message(kind: &str, body: Value, request_id: Option<&str>) -> String {
    let mut m = json!({ "type": kind, "body": body });
    if let (Some(r), Some(obj)) = (request_id, m.as_object_mut()) {
        obj.insert("requestId".into(), Value::String(r.to_owned()));
    }
    m.to_string()
}

/// `{"type": kind, "body": {"code": 0, …}}` where `body_json` is an object written by
/// the node (a pull's answer), without building a tree of it.
pub fn with_code(kind: &str, body_json: &str, request_id: Option<&str>) -> String {
    let inner = body_json.trim().strip_prefix('{').unwrap_or("}");
    let mut o = String::with_capacity(body_json.len() + kind.len() + 48);
    o.push_str(r#"{"body":{"code":0"#);
    if !inner.trim_start().starts_with('}') {
        o.push(',');
    }
    o.push_str(inner);
    if let Some(r) = request_id {
        o.push_str(r#","requestId":"#);
        push_json_str(&mut o, r);
    }
    o.push_str(r#","type":"#);
    push_json_str(&mut o, kind);
    o.push('}');
    o
}

/// `ERROR {code, message}`.
pub fn error(code: i64, text: &str, request_id: Option<&str>) -> String {
    message(
        "ERROR",
        json!({ "code": code, "message": text }),
        request_id,
    )
}

/// A raw TCP connection's last message, which stands for a WebSocket close frame:
/// `ERROR {code, message, close}`, `close` being the close code.
pub fn close_notice(close: u16, reason: &str) -> String {
    let code = match (close, reason) {
        (1009, _) => code::TOO_LARGE,
        (1007, _) => code::BAD_REQUEST,
        (1008, "too many bad messages") => code::RATE_LIMITED,
        (1008, "authentication timeout") | (4001, _) => code::UNAUTHORIZED,
        (4002, _) => code::FORBIDDEN,
        _ => code::CLOSING,
    };
    message(
        "ERROR",
        json!({ "code": code, "message": reason, "close": close }),
        None,
    )
}

/// Writes `s` as a JSON string.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            out.push_str(&format!("\\u{b:04x}"));
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// The messages sent for every routed chat message, written as text directly: they are
/// the node's hot path, and a JSON tree per message costs more than the routing. Keys
/// come out in the order [`message`] gives them (sorted, as `serde_json` maps are), so
/// the text is byte for byte what it was when these went through a tree.
pub mod hot {
    use super::{push_json_str, Content};

    /// `SEND_TO_USER_REQUEST {msgId, content, fromUser}`: a private or to-everyone
    /// message as its recipients get it.
    pub fn to_user(msg_id: &str, content: &Content, from: &str) -> String {
        let mut o = String::with_capacity(80 + msg_id.len() + content.json().len() + from.len());
        o.push_str(r#"{"body":{"#);
        push_message_body(&mut o, msg_id, content, from);
        o.push_str(r#"},"type":"SEND_TO_USER_REQUEST"}"#);
        o
    }

    /// The body of [`to_user`] alone, `{"content":…,"fromUser":…,"msgId":…}`: what the
    /// store keeps (it adds `seq` when it sends it).
    pub fn to_user_body(msg_id: &str, content: &Content, from: &str) -> String {
        let mut o = String::with_capacity(40 + msg_id.len() + content.json().len() + from.len());
        o.push('{');
        push_message_body(&mut o, msg_id, content, from);
        o.push('}');
        o
    }

    /// The stored body of a channel message or a message to everyone (channel `*`):
    /// `{"channel","content","epoch","fromUser","msgId"}` (the store adds `seq`).
    pub fn channel_body(
        channel: &str,
        msg_id: &str,
        content: &Content,
        from: &str,
        epoch: &str,
    ) -> String {
        let mut o = String::with_capacity(
            60 + channel.len() + msg_id.len() + content.json().len() + from.len() + epoch.len(),
        );
        o.push_str(r#"{"channel":"#);
        push_json_str(&mut o, channel);
        o.push_str(r#","content":"#);
        o.push_str(content.json());
        o.push_str(r#","epoch":"#);
        push_json_str(&mut o, epoch);
        o.push_str(r#","fromUser":"#);
        push_json_str(&mut o, from);
        o.push_str(r#","msgId":"#);
        push_json_str(&mut o, msg_id);
        o.push('}');
        o
    }

    /// `CHANNEL_MESSAGE {channel, msgId, content, fromUser}`.
    pub fn channel(channel: &str, msg_id: &str, content: &Content, from: &str) -> String {
        let mut o = String::with_capacity(
            90 + channel.len() + msg_id.len() + content.json().len() + from.len(),
        );
        o.push_str(r#"{"body":{"channel":"#);
        push_json_str(&mut o, channel);
        o.push(',');
        push_message_body(&mut o, msg_id, content, from);
        o.push_str(r#"},"type":"CHANNEL_MESSAGE"}"#);
        o
    }

    /// `"content":…,"fromUser":"…","msgId":"…"`.
    fn push_message_body(o: &mut String, msg_id: &str, content: &Content, from: &str) {
        o.push_str(r#""content":"#);
        o.push_str(content.json());
        o.push_str(r#","fromUser":"#);
        push_json_str(o, from);
        o.push_str(r#","msgId":"#);
        push_json_str(o, msg_id);
    }

    /// `SEND_RESPONSE {msgId, code, message}`, the sender's answer.
    pub fn send_response(msg_id: &str, code: i64, text: &str, request_id: Option<&str>) -> String {
        let mut o = String::with_capacity(80 + msg_id.len() + text.len());
        o.push_str(r#"{"body":{"code":"#);
        o.push_str(&code.to_string());
        o.push_str(r#","message":"#);
        push_json_str(&mut o, text);
        o.push_str(r#","msgId":"#);
        push_json_str(&mut o, msg_id);
        o.push('}');
        if let Some(r) = request_id {
            o.push_str(r#","requestId":"#);
            push_json_str(&mut o, r);
        }
        o.push_str(r#","type":"SEND_RESPONSE"}"#);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Content {
        Content(RawValue::from_string(json.to_owned()).unwrap())
    }

    #[test]
    fn hot_messages_are_the_json_a_tree_would_give() {
        let content = raw(r#"{"a":[1,"x\"y"]}"#);
        let from = "用户\"\n\u{1}\u{8}\u{c}\t\r/";
        for (text, want) in [
            (
                hot::to_user("m\"1", &content, from),
                json!({"type": "SEND_TO_USER_REQUEST", "body": {"msgId": "m\"1", "content": {"a": [1, "x\"y"]}, "fromUser": from}}),
            ),
            (
                hot::channel("c", "m", &content, from),
                json!({"type": "CHANNEL_MESSAGE", "body": {"channel": "c", "msgId": "m", "content": {"a": [1, "x\"y"]}, "fromUser": from}}),
            ),
            (
                hot::send_response("m", 3, "user offline", Some("r\t")),
                json!({"type": "SEND_RESPONSE", "body": {"msgId": "m", "code": 3, "message": "user offline"}, "requestId": "r\t"}),
            ),
        ] {
            let got: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(got, want, "{text}");
            // Byte for byte what the JSON tree printed before.
            assert_eq!(text, want.to_string());
        }
    }

    #[test]
    fn null_fields_are_present_and_content_is_kept_verbatim() {
        let (_, r) = parse(r#"{"type":"SEND_TO_ALL_REQUEST","body":{"msgId":"m","content":null}}"#);
        assert_eq!(
            r,
            Ok(Request::SendToAll {
                msg_id: "m".into(),
                content: raw("null")
            })
        );
        let (_, r) = parse(r#"{"type":"SEND_TO_ALL_REQUEST","body":{"msgId":null,"content":1}}"#);
        assert!(r.unwrap_err().message.contains("string or an integer"));
        let (_, r) = parse(
            r#"{"type":"SEND_TO_ALL_REQUEST","body":{"msgId":"m","content":[1, {"b" : 2}]}}"#,
        );
        assert_eq!(
            r,
            Ok(Request::SendToAll {
                msg_id: "m".into(),
                content: raw(r#"[1, {"b" : 2}]"#)
            })
        );
        let (rid, _) = parse(r#"{"type":"PING","requestId":42}"#);
        assert_eq!(rid.as_deref(), Some("42"));
        assert!(parse(r#"{"type":"PING","body":{"x":}}"#).1.is_err());
    }

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
                content: raw("\"hi\"")
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
                content: raw("{}")
            })
        );
        let (_, r) = parse(r#"{"type":"SEND_TO_ALL_REQUEST","body":{"msgId":1.5,"content":1}}"#);
        assert!(r.unwrap_err().message.contains("string or an integer"));
        let (_, r) = parse(r#"{"type":"AUTH_REQUEST","body":{"accessToken":""}}"#);
        assert_eq!(
            r,
            Ok(Request::Auth {
                token: "".into(),
                resume: None
            })
        );
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
