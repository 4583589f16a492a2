//! Helpers for chat-node tests: start a node with overrides, connect users, read JSON.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use switchboard::chat::{chat_server, ChatConfig};
use switchboard::ServerHandle;
use tungstenite::client::IntoClientRequest;
use tungstenite::Message;

use super::{set_timeout, Client};

pub const SECRET: &str = "test-secret-for-hs256";
pub const API_KEY: &str = "k3y";

/// A database path no other test uses (under the system's temp directory).
pub fn temp_store(name: &str) -> std::path::PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("switchboard-test-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir.join(format!("{name}.db"))
}

/// Starts a chat node on port 0 with `sets` applied over the defaults (and a store of
/// its own).
pub fn node(sets: &[&str]) -> ServerHandle {
    let mut all: Vec<String> = vec![
        "listen=127.0.0.1:0".into(),
        format!("store.path={}", temp_store("node").display()),
        format!("api.key={API_KEY}"),
        "engine.workers=2".into(),
        "engine.shutdown_timeout_ms=300".into(),
    ];
    all.extend(sets.iter().map(|s| s.to_string()));
    let cfg = ChatConfig::load(None, &all).expect("config");
    let (builder, _node) = chat_server(cfg).expect("node");
    builder.start().expect("starts")
}

/// Connects to `/ws` with `query` (e.g. `?accessToken=alice`) and extra headers.
pub fn connect_with(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> Client {
    let mut req = format!("ws://{addr}/ws{query}")
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap();
        req.headers_mut().insert(name, v.parse().unwrap());
    }
    let (ws, _) = tungstenite::connect(req).expect("handshake");
    set_timeout(&ws);
    ws
}

/// Connects as `user` (demo mode: the token is the user id) and reads the AUTH_RESPONSE.
pub fn login(addr: SocketAddr, user: &str) -> (Client, String) {
    let mut ws = connect_with(addr, &format!("?accessToken={user}"), &[]);
    let auth = next_of(&mut ws, "AUTH_RESPONSE");
    assert_eq!(auth["body"]["code"], 0, "{auth}");
    let sid = auth["body"]["sessionId"].as_str().unwrap().to_owned();
    (ws, sid)
}

/// The next JSON message.
pub fn next(ws: &mut Client) -> Value {
    loop {
        match ws.read().expect("a message") {
            Message::Text(t) => return serde_json::from_str(&t).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The next message of `kind`, skipping others (join notices, say).
pub fn next_of(ws: &mut Client, kind: &str) -> Value {
    for _ in 0..50 {
        let m = next(ws);
        if m["type"] == kind {
            return m;
        }
    }
    panic!("no {kind} in 50 messages");
}

/// Sends `{type, body, requestId}`.
pub fn send(ws: &mut Client, kind: &str, body: Value, request_id: &str) {
    let m = json!({ "type": kind, "body": body, "requestId": request_id });
    ws.send(Message::Text(m.to_string())).unwrap();
}

/// Asserts nothing arrives within `ms` (except pings).
pub fn quiet(ws: &mut Client, ms: u64) {
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(ms))).unwrap();
    }
    match ws.read() {
        Err(tungstenite::Error::Io(e))
            if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut => {}
        Ok(Message::Ping(_)) => {}
        other => panic!("expected silence, got {other:?}"),
    }
    set_timeout(ws);
}

/// The close code the server sends next (skipping data).
pub fn close_code(ws: &mut Client) -> u16 {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => return f.code.into(),
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    }
}

/// An HS256 JWT for `sub` expiring `exp_in` seconds from now, with extra claims.
pub fn jwt(sub: &str, exp_in: i64, extra: Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut claims = json!({ "sub": sub, "exp": now + exp_in });
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// A raw HTTP request on its own connection (`Connection: close`, so the answer ends at
/// EOF); (status, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> (u16, String) {
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = super::raw_exchange(addr, req.as_bytes());
    let status = resp[9..12].parse().unwrap();
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
