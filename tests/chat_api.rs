//! The HTTP push API: every kind of `to`, the key, bad bodies, presence and stats.

mod common;

use common::chat::*;
use serde_json::{json, Value};

fn push(addr: std::net::SocketAddr, body: Value) -> (u16, Value) {
    let (status, text) = http(
        addr,
        "POST",
        "/api/v1/send",
        Some(API_KEY),
        &body.to_string(),
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn push_to_each_kind_of_target() {
    let secret = format!("auth.jwt_secret={SECRET}");
    let server = node(&["auth.mode=jwt", &secret, "notify_join=false"]);
    let addr = server.local_addr();
    let login_jwt = |sub: &str, user_type: i64| {
        let mut ws = connect_with(
            addr,
            &format!("?token={}", jwt(sub, 600, json!({"user_type": user_type}))),
            &[],
        );
        let auth = next_of(&mut ws, "AUTH_RESPONSE");
        let sid = auth["body"]["sessionId"].as_str().unwrap().to_owned();
        (ws, sid)
    };
    let (mut admin1, admin1_sid) = login_jwt("ann", 1);
    let (mut admin2, _) = login_jwt("ann", 1);
    let (mut staff, _) = login_jwt("sam", 2);
    let (mut other_admin, _) = login_jwt("abe", 1);
    let msg = |n: &str| json!({"type": "NOTICE", "body": {"n": n}});

    let mut m = msg("user");
    m["to"] = json!({"userId": "ann"});
    assert_eq!(push(addr, m), (200, json!({"sessions": 2})));
    for ws in [&mut admin1, &mut admin2] {
        assert_eq!(next_of(ws, "NOTICE")["body"]["n"], "user");
    }

    let mut m = msg("type");
    m["to"] = json!({"userType": 1});
    assert_eq!(push(addr, m), (200, json!({"sessions": 3})));
    for ws in [&mut admin1, &mut admin2, &mut other_admin] {
        assert_eq!(next_of(ws, "NOTICE")["body"]["n"], "type");
    }

    let mut m = msg("type+user");
    m["to"] = json!({"userType": 1, "userId": "abe"});
    assert_eq!(push(addr, m), (200, json!({"sessions": 1})));
    assert_eq!(
        next_of(&mut other_admin, "NOTICE")["body"]["n"],
        "type+user"
    );

    let mut m = msg("session");
    m["to"] = json!({"sessionId": admin1_sid});
    assert_eq!(push(addr, m), (200, json!({"sessions": 1})));
    assert_eq!(next_of(&mut admin1, "NOTICE")["body"]["n"], "session");

    send(
        &mut staff,
        "SUBSCRIBE_REQUEST",
        json!({"channel": "ops"}),
        "s",
    );
    next_of(&mut staff, "SUBSCRIBE_RESPONSE");
    let mut m = msg("channel");
    m["to"] = json!({"channel": "ops"});
    assert_eq!(push(addr, m), (200, json!({"sessions": 1})));
    assert_eq!(next_of(&mut staff, "NOTICE")["body"]["n"], "channel");

    let mut m = msg("all");
    m["to"] = json!({"all": true});
    assert_eq!(push(addr, m), (200, json!({"sessions": 4})));
    for ws in [&mut admin1, &mut admin2, &mut staff, &mut other_admin] {
        assert_eq!(next_of(ws, "NOTICE")["body"]["n"], "all");
    }
    // Nobody got anything twice: each connection's next message is the reply to a ping.
    for ws in [&mut admin1, &mut admin2, &mut staff, &mut other_admin] {
        send(ws, "PING", json!({}), "p");
        assert_eq!(next(ws)["type"], "PONG");
    }

    let mut m = msg("offline");
    m["to"] = json!({"userId": "nobody"});
    assert_eq!(push(addr, m), (200, json!({"sessions": 0})));
    server.stop();
}

#[test]
fn the_api_needs_the_key_and_a_good_body() {
    let server = node(&["engine.max_body_bytes=512"]);
    let addr = server.local_addr();
    let body = json!({"type": "X", "body": {}, "to": {"all": true}}).to_string();
    assert_eq!(http(addr, "POST", "/api/v1/send", None, &body).0, 401);
    assert_eq!(
        http(addr, "POST", "/api/v1/send", Some("wrong"), &body).0,
        401
    );
    assert_eq!(http(addr, "GET", "/api/v1/send", Some(API_KEY), "").0, 405);
    for (bad, needle) in [
        ("not json", "not JSON"),
        (r#"{"body":{},"to":{"all":true}}"#, "type"),
        (r#"{"type":"X"}"#, "is required: {"),
        (r#"{"type":"X","to":{"sessionId":"zzz"}}"#, "sessionId"),
        (r#"{"type":"X","to":{"planet":"mars"}}"#, "no known target"),
    ] {
        let (status, text) = http(addr, "POST", "/api/v1/send", Some(API_KEY), bad);
        assert_eq!(status, 400, "{bad}: {text}");
        assert!(text.contains(needle), "{bad}: {text}");
    }
    let big =
        json!({"type": "X", "body": {"pad": "x".repeat(600)}, "to": {"all": true}}).to_string();
    assert_eq!(
        http(addr, "POST", "/api/v1/send", Some(API_KEY), &big).0,
        413
    );
    server.stop();
}

#[test]
fn an_api_without_a_configured_key_refuses_everyone() {
    let server = node(&["api.key=\"\""]);
    let (status, text) = http(server.local_addr(), "GET", "/api/v1/stats", Some(""), "");
    assert_eq!(status, 401);
    assert!(text.contains("api.key"), "{text}");
    server.stop();
}

#[test]
fn presence_and_stats() {
    let server = node(&["notify_join=false"]);
    let addr = server.local_addr();
    let (_a1, _) = login(addr, "amy");
    let (_a2, _) = login(addr, "amy");
    let (_b, _) = login(addr, "ben");
    let (status, text) = http(
        addr,
        "GET",
        "/api/v1/presence?userId=amy",
        Some(API_KEY),
        "",
    );
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"userId": "amy", "online": true, "sessions": 2})
    );
    let (_, text) = http(
        addr,
        "GET",
        "/api/v1/presence?userId=zed",
        Some(API_KEY),
        "",
    );
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["online"],
        false
    );
    let (_, text) = http(addr, "GET", "/api/v1/presence", Some(API_KEY), "");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["users"],
        json!([{"userId": "amy", "sessions": 2}, {"userId": "ben", "sessions": 1}])
    );
    let (_, text) = http(addr, "GET", "/api/v1/stats", Some(API_KEY), "");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (v["users"].as_u64(), v["sessions"].as_u64()),
        (Some(2), Some(3)),
        "{v}"
    );
    let (status, page) = http(addr, "GET", "/", None, "");
    assert_eq!(status, 200);
    assert!(page.contains("<title>switchboard demo</title>"));
    assert_eq!(http(addr, "GET", "/healthz", None, "").0, 200);
    server.stop();
}

#[test]
fn chat_counters_on_metrics() {
    let secret = format!("auth.jwt_secret={SECRET}");
    let server = node(&["auth.mode=jwt", &secret, "notify_join=false"]);
    let addr = server.local_addr();
    let mut ws = connect_with(addr, &format!("?token={}", jwt("mia", 600, json!({}))), &[]);
    next_of(&mut ws, "AUTH_RESPONSE");
    let expired = jwt("mia", -60, json!({}));
    let resp = common::raw_exchange(
        addr,
        common::upgrade_request(&format!("/ws?token={expired}"), "").as_bytes(),
    );
    assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    assert!(resp.contains("expired"), "{resp}");
    send(&mut ws, "PING", json!({}), "p");
    next_of(&mut ws, "PONG");
    send(
        &mut ws,
        "SEND_TO_ONE_REQUEST",
        json!({"toUser": "mia", "msgId": "1", "content": 1}),
        "s",
    );
    next_of(&mut ws, "SEND_TO_USER_REQUEST");
    let (status, text) = http(addr, "GET", "/metrics", None, "");
    assert_eq!(status, 200);
    for line in [
        "switchboard_chat_auth_total{result=\"ok\"} 1",
        "switchboard_chat_auth_total{result=\"refused\",reason=\"expired\"} 1",
        "switchboard_chat_messages_in_total{type=\"PING\"} 1",
        "switchboard_chat_messages_in_total{type=\"SEND_TO_ONE_REQUEST\"} 1",
        "switchboard_chat_deliveries_out_total 1",
        "switchboard_chat_sessions_online 1",
        "switchboard_chat_users_online 1",
        "switchboard_connections_open",
    ] {
        assert!(text.contains(line), "missing {line}:\n{text}");
    }
    server.stop();
}
