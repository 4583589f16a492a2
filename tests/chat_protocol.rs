//! The chat node over real sockets: every message type of the protocol, errors,
//! several sessions per user, the per-user limit, authentication at the handshake and by
//! AUTH_REQUEST, the auth timeout, and a JWT that expires while connected.

mod common;

use common::chat::*;
use serde_json::json;
use tungstenite::Message;

#[test]
fn private_message_reaches_every_session_of_the_user() {
    let server = node(&["notify_join=false"]);
    let addr = server.local_addr();
    let (mut alice, _) = login(addr, "alice");
    let (mut bob1, _) = login(addr, "bob");
    let (mut bob2, _) = login(addr, "bob");
    send(
        &mut alice,
        "SEND_TO_ONE_REQUEST",
        json!({"toUser": "bob", "msgId": "m1", "content": "hi bob"}),
        "r1",
    );
    let resp = next_of(&mut alice, "SEND_RESPONSE");
    assert_eq!(resp["requestId"], "r1");
    assert_eq!(
        resp["body"],
        json!({"msgId": "m1", "code": 0, "message": "stored"})
    );
    for bob in [&mut bob1, &mut bob2] {
        let m = next_of(bob, "SEND_TO_USER_REQUEST");
        assert_eq!(
            m["body"],
            json!({"msgId": "m1", "content": "hi bob", "fromUser": "alice", "seq": 1})
        );
    }
    quiet(&mut alice, 200);
    server.stop();
}

#[test]
fn private_message_to_an_offline_user_says_so_without_a_store() {
    let server = node(&["store.enabled=false"]);
    let (mut alice, _) = login(server.local_addr(), "alice");
    send(
        &mut alice,
        "SEND_TO_ONE_REQUEST",
        json!({"toUser": "nobody", "msgId": "m1", "content": 1}),
        "r",
    );
    let resp = next_of(&mut alice, "SEND_RESPONSE");
    assert_eq!(resp["body"]["code"], 3, "{resp}");
    server.stop();
}

#[test]
fn a_repeated_msg_id_is_delivered_once() {
    let server = node(&["notify_join=false"]);
    let addr = server.local_addr();
    let (mut alice, _) = login(addr, "alice");
    let (mut bob, _) = login(addr, "bob");
    for _ in 0..2 {
        send(
            &mut alice,
            "SEND_TO_ONE_REQUEST",
            json!({"toUser": "bob", "msgId": "same", "content": "x"}),
            "r",
        );
        assert_eq!(next_of(&mut alice, "SEND_RESPONSE")["body"]["code"], 0);
    }
    assert_eq!(
        next_of(&mut bob, "SEND_TO_USER_REQUEST")["body"]["msgId"],
        "same"
    );
    quiet(&mut bob, 300);
    server.stop();
}

#[test]
fn send_to_all_and_join_notices_reach_everyone() {
    let server = node(&["notify_join=true"]);
    let addr = server.local_addr();
    let (mut alice, _) = login(addr, "alice");
    let (mut bob, _) = login(addr, "bob");
    // Alice hears her own join, then Bob's.
    assert_eq!(
        next_of(&mut alice, "USER_JOIN_NOTICE_REQUEST")["body"]["nickname"],
        "alice"
    );
    assert_eq!(
        next_of(&mut alice, "USER_JOIN_NOTICE_REQUEST")["body"]["nickname"],
        "bob"
    );
    send(
        &mut bob,
        "SEND_TO_ALL_REQUEST",
        json!({"msgId": "g1", "content": "hello all"}),
        "r",
    );
    assert_eq!(next_of(&mut bob, "SEND_RESPONSE")["body"]["code"], 0);
    for ws in [&mut alice, &mut bob] {
        let m = next_of(ws, "SEND_TO_USER_REQUEST");
        // With the store on, a message to everyone is numbered in the history of "*".
        let mut body = m["body"].clone();
        assert!(body["epoch"].is_string(), "{m}");
        body.as_object_mut().unwrap().remove("epoch");
        assert_eq!(
            body,
            json!({"msgId": "g1", "content": "hello all", "fromUser": "bob", "channel": "*", "seq": 1})
        );
    }
    server.stop();
}

#[test]
fn channels_subscribe_send_unsubscribe() {
    let server = node(&["notify_join=false"]);
    let addr = server.local_addr();
    let (mut alice, _) = login(addr, "alice");
    let (mut bob, _) = login(addr, "bob");
    let (mut carol, _) = login(addr, "carol");
    for ws in [&mut alice, &mut bob] {
        send(ws, "SUBSCRIBE_REQUEST", json!({"channel": "rust"}), "s");
        let r = next_of(ws, "SUBSCRIBE_RESPONSE");
        assert_eq!(r["body"]["code"], 0);
        assert_eq!(r["requestId"], "s");
    }
    send(
        &mut carol,
        "SEND_TO_CHANNEL_REQUEST",
        json!({"channel": "rust", "msgId": "c1", "content": "news"}),
        "r",
    );
    assert_eq!(next_of(&mut carol, "SEND_RESPONSE")["body"]["code"], 0);
    for ws in [&mut alice, &mut bob] {
        let m = next_of(ws, "CHANNEL_MESSAGE");
        let mut body = m["body"].clone();
        assert!(body["epoch"].is_string(), "{m}");
        body.as_object_mut().unwrap().remove("epoch");
        assert_eq!(
            body,
            json!({"channel": "rust", "msgId": "c1", "content": "news", "fromUser": "carol", "seq": 1})
        );
    }
    quiet(&mut carol, 200);
    send(
        &mut bob,
        "UNSUBSCRIBE_REQUEST",
        json!({"channel": "rust"}),
        "u",
    );
    assert_eq!(next_of(&mut bob, "UNSUBSCRIBE_RESPONSE")["body"]["code"], 0);
    send(
        &mut carol,
        "SEND_TO_CHANNEL_REQUEST",
        json!({"channel": "rust", "msgId": "c2", "content": "more"}),
        "r",
    );
    assert_eq!(
        next_of(&mut alice, "CHANNEL_MESSAGE")["body"]["msgId"],
        "c2"
    );
    quiet(&mut bob, 300);
    server.stop();
}

#[test]
fn ping_gets_pong_in_both_spellings() {
    let server = node(&[]);
    let (mut alice, _) = login(server.local_addr(), "alice");
    for t in ["PING", "ping"] {
        send(&mut alice, t, json!({}), t);
        let m = next_of(&mut alice, "PONG");
        assert_eq!(m["requestId"], t);
    }
    server.stop();
}

#[test]
fn bad_messages_get_error_replies_and_the_connection_stays_open() {
    let server = node(&["limits.max_message_bytes=200"]);
    let (mut alice, _) = login(server.local_addr(), "alice");
    let cases: Vec<(Message, i64)> = vec![
        (Message::Text("{not json".into()), 1),
        (Message::Text(json!({"type": "NOPE"}).to_string()), 1),
        (
            Message::Text(
                json!({"type": "SEND_TO_ONE_REQUEST", "body": {"msgId": "x", "content": 1}})
                    .to_string(),
            ),
            1,
        ),
        (Message::Binary(vec![1, 2, 3]), 1),
        (
            Message::Text(format!(
                "{{\"type\":\"PING\",\"pad\":\"{}\"}}",
                "x".repeat(300)
            )),
            6,
        ),
    ];
    for (m, code) in cases {
        alice.send(m).unwrap();
        let e = next_of(&mut alice, "ERROR");
        assert_eq!(e["body"]["code"], code, "{e}");
        assert!(e["body"]["message"].as_str().unwrap().len() > 3);
    }
    send(&mut alice, "PING", json!({}), "still-open");
    assert_eq!(next_of(&mut alice, "PONG")["requestId"], "still-open");
    server.stop();
}

#[test]
fn a_client_that_keeps_sending_garbage_is_closed_with_1008() {
    let server = node(&["limits.bad_messages_per_minute=3"]);
    let (mut alice, _) = login(server.local_addr(), "alice");
    for _ in 0..4 {
        alice.send(Message::Text("garbage".into())).unwrap();
    }
    assert_eq!(close_code(&mut alice), 1008);
    server.stop();
}

#[test]
fn without_a_token_only_auth_request_is_accepted() {
    let server = node(&["notify_join=false"]);
    let addr = server.local_addr();
    let mut ws = connect_with(addr, "", &[]);
    send(
        &mut ws,
        "SEND_TO_ALL_REQUEST",
        json!({"msgId": "x", "content": 1}),
        "r",
    );
    let e = next_of(&mut ws, "ERROR");
    assert_eq!(e["body"]["code"], 2, "{e}");
    send(&mut ws, "AUTH_REQUEST", json!({"accessToken": "dave"}), "a");
    let a = next_of(&mut ws, "AUTH_RESPONSE");
    assert_eq!(a["body"]["code"], 0);
    assert_eq!(a["body"]["userId"], "dave");
    assert_eq!(a["requestId"], "a");
    send(
        &mut ws,
        "SEND_TO_ALL_REQUEST",
        json!({"msgId": "x", "content": 1}),
        "r",
    );
    assert_eq!(next_of(&mut ws, "SEND_RESPONSE")["body"]["code"], 0);
    server.stop();
}

#[test]
fn a_connection_that_never_authenticates_is_closed_with_1008() {
    let server = node(&["auth.timeout=\"300ms\""]);
    let mut ws = connect_with(server.local_addr(), "", &[]);
    assert_eq!(close_code(&mut ws), 1008);
    server.stop();
}

#[test]
fn over_the_session_limit_the_oldest_session_is_closed_with_4002() {
    let server = node(&["limits.sessions_per_user=2", "notify_join=false"]);
    let addr = server.local_addr();
    let (mut first, _) = login(addr, "erin");
    let (_second, _) = login(addr, "erin");
    let (_third, _) = login(addr, "erin");
    assert_eq!(close_code(&mut first), 4002);
    server.stop();
}

#[test]
fn with_policy_refuse_the_new_session_gets_409() {
    let server = node(&[
        "limits.sessions_per_user=1",
        "limits.session_limit_policy=refuse",
    ]);
    let addr = server.local_addr();
    let (_first, _) = login(addr, "erin");
    let resp = common::raw_exchange(
        addr,
        common::upgrade_request("/ws?accessToken=erin", "").as_bytes(),
    );
    assert!(resp.starts_with("HTTP/1.1 409"), "{resp}");
    server.stop();
}

#[test]
fn jwt_at_the_handshake_from_query_or_header_and_a_bad_one_is_401() {
    let secret = format!("auth.jwt_secret={SECRET}");
    let server = node(&["auth.mode=jwt", &secret]);
    let addr = server.local_addr();
    let token = jwt("frank", 60, json!({"name": "Frank", "user_type": 2}));
    let mut ws = connect_with(addr, &format!("?token={token}"), &[]);
    assert_eq!(next_of(&mut ws, "AUTH_RESPONSE")["body"]["userId"], "frank");
    let bearer = format!("Bearer {token}");
    let mut ws2 = connect_with(addr, "", &[("Authorization", &bearer)]);
    assert_eq!(next_of(&mut ws2, "AUTH_RESPONSE")["body"]["code"], 0);
    for bad in [
        format!("{token}x"),
        jwt("frank", -10, json!({})),
        "nonsense".into(),
    ] {
        let resp = common::raw_exchange(
            addr,
            common::upgrade_request(&format!("/ws?token={bad}"), "").as_bytes(),
        );
        assert!(resp.starts_with("HTTP/1.1 401"), "{resp}");
    }
    // A bad token by AUTH_REQUEST is answered, not closed.
    let mut ws3 = connect_with(addr, "", &[]);
    send(
        &mut ws3,
        "AUTH_REQUEST",
        json!({"accessToken": "nonsense"}),
        "a",
    );
    assert_eq!(next_of(&mut ws3, "AUTH_RESPONSE")["body"]["code"], 2);
    server.stop();
}

#[test]
fn a_jwt_that_expires_while_connected_closes_with_4001() {
    let secret = format!("auth.jwt_secret={SECRET}");
    let server = node(&["auth.mode=jwt", &secret]);
    let token = jwt("gina", 2, json!({}));
    let mut ws = connect_with(server.local_addr(), &format!("?token={token}"), &[]);
    assert_eq!(next_of(&mut ws, "AUTH_RESPONSE")["body"]["code"], 0);
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => {
                assert_eq!(u16::from(f.code), 4001);
                assert_eq!(f.reason, "token expired");
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("no close: {e}"),
        }
    }
    server.stop();
}

#[test]
fn percent_encoded_tokens_work_as_in_the_seeds() {
    let server = node(&["notify_join=false"]);
    let addr = server.local_addr();
    let mut ws = connect_with(addr, "?accessToken=%E8%8A%8B%E8%89%BF", &[]);
    assert_eq!(next_of(&mut ws, "AUTH_RESPONSE")["body"]["userId"], "芋艿");
    server.stop();
}

fn signed(alg: jsonwebtoken::Algorithm, key: jsonwebtoken::EncodingKey, sub: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        &json!({"sub": sub, "exp": exp, "tenant_id": "t1"}),
        &key,
    )
    .unwrap()
}

#[test]
fn rs256_and_es256_tokens_with_a_public_key_file() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    for (alg, name) in [
        (jsonwebtoken::Algorithm::RS256, "rs256"),
        (jsonwebtoken::Algorithm::ES256, "es256"),
    ] {
        let public = format!("auth.jwt_public_key_file=\"{dir}/{name}-public.pem\"");
        let algorithm = format!("auth.jwt_algorithm={}", name.to_uppercase());
        let server = node(&["auth.mode=jwt", &public, &algorithm]);
        let private = std::fs::read(format!("{dir}/{name}-private.pem")).unwrap();
        let key = match alg {
            jsonwebtoken::Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(&private),
            _ => jsonwebtoken::EncodingKey::from_ec_pem(&private),
        }
        .unwrap();
        let token = signed(alg, key, "hana");
        let mut ws = connect_with(server.local_addr(), &format!("?token={token}"), &[]);
        assert_eq!(
            next_of(&mut ws, "AUTH_RESPONSE")["body"]["userId"],
            "hana",
            "{name}"
        );
        // An HS256 token is not accepted where a public key is configured.
        let forged = jwt("hana", 600, json!({}));
        let resp = common::raw_exchange(
            server.local_addr(),
            common::upgrade_request(&format!("/ws?token={forged}"), "").as_bytes(),
        );
        assert!(resp.starts_with("HTTP/1.1 401"), "{name}: {resp}");
        server.stop();
    }
}

#[test]
fn mode_none_gives_anonymous_sessions() {
    let server = node(&["auth.mode=none", "notify_join=false"]);
    let mut ws = connect_with(server.local_addr(), "", &[]);
    let auth = next_of(&mut ws, "AUTH_RESPONSE");
    assert!(
        auth["body"]["userId"]
            .as_str()
            .unwrap()
            .starts_with("anon-"),
        "{auth}"
    );
    send(
        &mut ws,
        "SEND_TO_ALL_REQUEST",
        json!({"msgId": "a", "content": "hi"}),
        "r",
    );
    assert_eq!(next_of(&mut ws, "SEND_RESPONSE")["body"]["code"], 0);
    server.stop();
}

#[test]
fn clients_from_the_java_tutorials_are_understood() {
    let secret = format!("auth.jwt_secret={SECRET}");
    let server = node(&["notify_join=false", "auth.mode=jwt", &secret]);
    let addr = server.local_addr();
    // A JWT whose sub and tenant_id are numbers (Java Longs).
    let claims = json!({"sub": 1024, "tenant_id": 7, "exp": (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600)});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let mut numeric = connect_with(addr, &format!("?token={token}"), &[]);
    assert_eq!(
        next_of(&mut numeric, "AUTH_RESPONSE")["body"]["userId"],
        "1024"
    );
    let other = jwt("2048", 600, json!({}));
    let mut sender = connect_with(addr, &format!("?token={other}"), &[]);
    next_of(&mut sender, "AUTH_RESPONSE");
    // Numeric toUser and msgId.
    send(
        &mut sender,
        "SEND_TO_ONE_REQUEST",
        json!({"toUser": 1024, "msgId": 77, "content": "hi"}),
        "r1",
    );
    let resp = next_of(&mut sender, "SEND_RESPONSE");
    assert_eq!(
        (resp["body"]["code"].clone(), resp["body"]["msgId"].clone()),
        (json!(0), json!("77"))
    );
    let got = next_of(&mut numeric, "SEND_TO_USER_REQUEST");
    assert_eq!(got["body"]["fromUser"], "2048");
    assert_eq!(got["body"]["msgId"], "77");
    // Not an object: said so.
    sender
        .send(tungstenite::Message::Text("[1,2]".into()))
        .unwrap();
    let e = next_of(&mut sender, "ERROR");
    assert!(
        e["body"]["message"]
            .as_str()
            .unwrap()
            .contains("must be a JSON object"),
        "{e}"
    );
    server.stop();
}

#[test]
fn an_empty_access_token_gets_auth_response_code_1() {
    let server = node(&["notify_join=false"]);
    let mut ws = connect_with(server.local_addr(), "", &[]);
    for body in [json!({"accessToken": ""}), json!({})] {
        send(&mut ws, "AUTH_REQUEST", body, "a");
        let a = next_of(&mut ws, "AUTH_RESPONSE");
        assert_eq!(a["body"]["code"], 1, "{a}");
    }
    server.stop();
}
