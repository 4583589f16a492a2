//! Durable delivery against a real node and a real SQLite file: offline messages,
//! per-user numbers, ACK and resend, resume with lastSeq/epoch, pull, long polls, the
//! push API's durable messages, and a store that cannot write.

mod common;

use std::time::{Duration, Instant};

use common::chat::*;
use serde_json::{json, Value};
use switchboard::chat::{chat_server, ChatConfig};

fn private(ws: &mut common::Client, to: &str, msg_id: &str, content: Value) -> Value {
    send(
        ws,
        "SEND_TO_ONE_REQUEST",
        json!({"toUser": to, "msgId": msg_id, "content": content}),
        msg_id,
    );
    next_of(ws, "SEND_RESPONSE")
}

fn login_with(addr: std::net::SocketAddr, query: &str) -> (common::Client, Value) {
    let mut ws = connect_with(addr, query, &[]);
    let auth = next_of(&mut ws, "AUTH_RESPONSE");
    assert_eq!(auth["body"]["code"], 0, "{auth}");
    (ws, auth)
}

fn seq_of(m: &Value) -> u64 {
    m["body"]["seq"]
        .as_u64()
        .unwrap_or_else(|| panic!("no seq in {m}"))
}

#[test]
fn an_offline_user_gets_stored_messages_at_login_in_order() {
    let server = node(&["notify_join=false"]);
    let addr = server.local_addr();
    let (mut alice, _) = login(addr, "alice");
    for i in 1..=3 {
        let r = private(&mut alice, "bob", &format!("m{i}"), json!(i));
        assert_eq!(r["body"]["code"], 0, "{r}");
        assert_eq!(r["body"]["message"], "stored");
    }
    let (mut bob, auth) = login_with(addr, "?accessToken=bob");
    assert_eq!(auth["body"]["lastSeq"], 3, "{auth}");
    assert_eq!(auth["body"]["recovered"], true);
    assert_eq!(auth["body"]["hasMore"], false);
    assert!(auth["body"]["epoch"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));
    for i in 1..=3 {
        let m = next_of(&mut bob, "SEND_TO_USER_REQUEST");
        assert_eq!((seq_of(&m), &m["body"]["content"]), (i, &json!(i)));
        assert_eq!(m["body"]["fromUser"], "alice");
    }
    send(&mut bob, "ACK_REQUEST", json!({"seq": 3}), "a");
    assert_eq!(next_of(&mut bob, "ACK_RESPONSE")["body"]["ackedSeq"], 3);
    drop(bob);
    // Acknowledged: a new session of bob's without lastSeq gets nothing again.
    let (mut bob, auth) = login_with(addr, "?accessToken=bob");
    assert_eq!(auth["body"]["lastSeq"], 3);
    quiet(&mut bob, 300);
    server.stop();
}

#[test]
fn unacknowledged_pushes_are_resent_and_acknowledged_ones_are_not() {
    let server = node(&[
        "notify_join=false",
        "delivery.ack_timeout=300ms",
        "delivery.max_attempts=2",
    ]);
    let addr = server.local_addr();
    let (mut alice, _) = login(addr, "alice");
    let (mut lazy, _) = login(addr, "bob");
    let (mut good, _) = login(addr, "bob");
    private(&mut alice, "bob", "x1", json!("hi"));
    let first = next_of(&mut good, "SEND_TO_USER_REQUEST");
    send(
        &mut good,
        "ACK_REQUEST",
        json!({"seqs": [seq_of(&first)]}),
        "a",
    );
    next_of(&mut good, "ACK_RESPONSE");
    assert_eq!(seq_of(&next_of(&mut lazy, "SEND_TO_USER_REQUEST")), 1);
    // The lazy session never acknowledges: one more push (max_attempts = 2), then no more.
    let again = next_of(&mut lazy, "SEND_TO_USER_REQUEST");
    assert_eq!(
        (seq_of(&again), &again["body"]["content"]),
        (1, &json!("hi"))
    );
    quiet(&mut lazy, 900);
    quiet(&mut good, 200);
    // It is still in the store for pull.
    send(&mut lazy, "PULL_REQUEST", json!({"sinceSeq": 0}), "p");
    let p = next_of(&mut lazy, "PULL_RESPONSE");
    assert_eq!(p["body"]["messages"][0]["body"]["seq"], 1, "{p}");
    server.stop();
}

#[test]
fn a_session_resumes_from_last_seq_and_a_wrong_epoch_says_resync() {
    let server = node(&["notify_join=false", "delivery.mode=pull"]);
    let addr = server.local_addr();
    let (mut alice, _) = login(addr, "alice");
    let (mut bob, auth) = login_with(addr, "?accessToken=bob");
    let epoch = auth["body"]["epoch"].as_str().unwrap().to_owned();
    for i in 1..=3 {
        private(&mut alice, "bob", &format!("r{i}"), json!(i));
        assert_eq!(seq_of(&next_of(&mut bob, "SEND_TO_USER_REQUEST")), i);
    }
    drop(bob);
    private(&mut alice, "bob", "r4", json!(4));
    // The client has 1..2: it gets exactly 3 and 4.
    let (mut bob, auth) = login_with(addr, &format!("?accessToken=bob&lastSeq=2&epoch={epoch}"));
    assert_eq!(auth["body"]["recovered"], true, "{auth}");
    assert_eq!(seq_of(&next_of(&mut bob, "SEND_TO_USER_REQUEST")), 3);
    assert_eq!(seq_of(&next_of(&mut bob, "SEND_TO_USER_REQUEST")), 4);
    quiet(&mut bob, 300);
    // By AUTH_REQUEST, with numbers from another history.
    let mut other = connect_with(addr, "", &[]);
    send(
        &mut other,
        "AUTH_REQUEST",
        json!({"accessToken": "bob", "lastSeq": 2, "epoch": "elsewhere"}),
        "auth",
    );
    let auth = next_of(&mut other, "AUTH_RESPONSE");
    assert_eq!(auth["requestId"], "auth");
    assert_eq!(auth["body"]["recovered"], false, "{auth}");
    assert_eq!(auth["body"]["epoch"], epoch.as_str());
    server.stop();
}

#[test]
fn pulls_are_capped_and_bad_acks_are_errors() {
    let server = node(&[
        "notify_join=false",
        "delivery.pull_limit=5",
        "delivery.mode=pull",
    ]);
    let addr = server.local_addr();
    let (mut alice, _) = login(addr, "alice");
    for i in 1..=8 {
        private(&mut alice, "carol", &format!("p{i}"), json!(i));
    }
    let (mut carol, auth) = login_with(addr, "?accessToken=carol");
    assert_eq!(
        auth["body"]["hasMore"], false,
        "replay_limit (500) holds all 8: {auth}"
    );
    for _ in 0..8 {
        next_of(&mut carol, "SEND_TO_USER_REQUEST");
    }
    send(
        &mut carol,
        "PULL_REQUEST",
        json!({"sinceSeq": 1, "limit": 1_000_000_000u64}),
        "big",
    );
    let p = next_of(&mut carol, "PULL_RESPONSE");
    assert_eq!(p["requestId"], "big");
    let got: Vec<u64> = p["body"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(seq_of)
        .collect();
    assert_eq!(got, vec![2, 3, 4, 5, 6]);
    assert_eq!(
        (p["body"]["hasMore"].clone(), p["body"]["lastSeq"].clone()),
        (json!(true), json!(8))
    );
    send(&mut carol, "ACK_REQUEST", json!({"seq": 99}), "bad");
    let e = next_of(&mut carol, "ERROR");
    assert_eq!(e["body"]["code"], 1, "{e}");
    assert!(
        e["body"]["message"]
            .as_str()
            .unwrap()
            .contains("never sent"),
        "{e}"
    );
    send(&mut carol, "ACK_REQUEST", json!({"seq": -1}), "neg");
    assert_eq!(next_of(&mut carol, "ERROR")["body"]["code"], 1);
    server.stop();
}

#[test]
fn a_long_poll_returns_when_a_message_arrives_or_empty_at_the_timeout() {
    let server = node(&["notify_join=false"]);
    let addr = server.local_addr();
    let (mut alice, _) = login(addr, "alice");
    let poller = std::thread::spawn(move || {
        let t = Instant::now();
        let r = http(addr, "GET", "/api/v1/messages?since=0&token=dave", None, "");
        (r, t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(400));
    let sent = Instant::now();
    private(&mut alice, "dave", "lp1", json!("wake"));
    let ((status, body), _) = poller.join().unwrap();
    let answered_after_send = sent.elapsed();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["messages"][0]["body"]["content"], "wake", "{v}");
    assert!(
        answered_after_send < Duration::from_secs(5),
        "held past the message"
    );
    // Nothing newer than 1: held until the (1 s) timeout, then empty.
    let t = Instant::now();
    let (status, body) = http(
        addr,
        "GET",
        "/api/v1/messages?since=1&timeout=1&token=dave",
        None,
        "",
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["messages"], json!([]), "{v}");
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "answered before the timeout"
    );
    // Bad requests.
    let (status, _) = http(addr, "GET", "/api/v1/messages?since=0&token=", None, "");
    assert_eq!(status, 401);
    let (status, _) = http(addr, "GET", "/api/v1/messages?since=x&token=dave", None, "");
    assert_eq!(status, 400);
    server.stop();
}

#[test]
fn a_client_gone_while_parked_leaves_nothing_behind() {
    let server = node(&["notify_join=false"]);
    let addr = server.local_addr();
    let parked = || -> u64 {
        let (_, text) = http(addr, "GET", "/metrics", None, "");
        text.lines()
            .find_map(|l| l.strip_prefix("switchboard_chat_long_polls_parked "))
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    use std::io::Write;
    s.write_all(b"GET /api/v1/messages?since=0&timeout=20&token=erin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while parked() != 1 {
        assert!(Instant::now() < deadline, "never parked");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(s);
    // The message that would have answered it still goes through, and the waiter is gone.
    let (mut alice, _) = login(addr, "alice");
    assert_eq!(
        private(&mut alice, "erin", "g1", json!(1))["body"]["code"],
        0
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while parked() != 0 {
        assert!(Instant::now() < deadline, "the waiter stayed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (_, erin) = login_with(addr, "?accessToken=erin");
    assert_eq!(erin["body"]["lastSeq"], 1);
    server.stop();
}

#[test]
fn the_push_api_stores_durable_messages() {
    let server = node(&["notify_join=false"]);
    let addr = server.local_addr();
    let push = |body: Value| {
        let (st, text) = http(
            addr,
            "POST",
            "/api/v1/send",
            Some(API_KEY),
            &body.to_string(),
        );
        (
            st,
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
        )
    };
    let (st, r) = push(
        json!({"type": "NOTICE", "body": {"title": "t"}, "to": {"userId": "frank"}, "durable": true}),
    );
    assert_eq!(
        (st, &r["stored"], &r["seq"], &r["sessions"]),
        (200, &json!(true), &json!(1), &json!(0)),
        "{r}"
    );
    let (st, r) =
        push(json!({"type": "NOTICE", "body": {}, "to": {"channel": "c"}, "durable": true}));
    assert_eq!(
        (st, &r["seq"]),
        (200, &json!(1)),
        "a channel has its own numbers: {r}"
    );
    let (st, r) =
        push(json!({"type": "NOTICE", "body": {}, "to": {"sessionId": "0.0.0"}, "durable": true}));
    assert_eq!(st, 400, "{r}");
    let (st, _) =
        push(json!({"type": "NOTICE", "body": [1], "to": {"userId": "frank"}, "durable": true}));
    assert_eq!(st, 400);
    let (mut frank, _) = login_with(addr, "?accessToken=frank");
    let m = next_of(&mut frank, "NOTICE");
    assert_eq!(m["body"], json!({"title": "t", "seq": 1}));
    let (st, r) = push(
        json!({"type": "NOTICE", "body": {"n": 2}, "to": {"userId": "frank"}, "durable": true}),
    );
    assert_eq!((st, &r["sessions"]), (200, &json!(1)));
    assert_eq!(
        next_of(&mut frank, "NOTICE")["body"],
        json!({"n": 2, "seq": 2})
    );
    server.stop();
}

#[test]
fn a_full_store_answers_code_7_and_the_node_stays_up() {
    let server = node(&["notify_join=false", "store.max_size_mb=1"]);
    let addr = server.local_addr();
    let (mut alice, _) = login(addr, "alice");
    let big = "x".repeat(60_000);
    let mut refused = None;
    for i in 0..100 {
        let r = private(&mut alice, "gina", &format!("big{i}"), json!(big));
        if r["body"]["code"] != 0 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("a 1 MiB store took 6 MB");
    assert_eq!(r["body"]["code"], 7, "{r}");
    assert!(
        r["body"]["message"]
            .as_str()
            .unwrap()
            .contains("not stored"),
        "{r}"
    );
    // Still up, and a retry of the refused msgId is not taken for a duplicate.
    send(&mut alice, "PING", json!({}), "p");
    next_of(&mut alice, "PONG");
    let msg_id = r["body"]["msgId"].as_str().unwrap().to_owned();
    let again = private(&mut alice, "gina", &msg_id, json!("small"));
    assert_ne!(
        again["body"]["message"], "duplicate msgId: not delivered again",
        "{again}"
    );
    server.stop();
}

#[test]
fn a_damaged_or_newer_database_stops_start_up_with_a_message() {
    let path = temp_store("damaged");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, vec![0x42u8; 16384]).unwrap();
    let cfg = ChatConfig::load(
        None,
        &[
            "listen=127.0.0.1:0".into(),
            format!("store.path={}", path.display()),
        ],
    )
    .unwrap();
    let Err(err) = chat_server(cfg) else {
        panic!("a damaged database was accepted");
    };
    let text = err.to_string();
    assert!(
        text.contains("cannot open the store") && text.contains(&path.display().to_string()),
        "{text}"
    );
    // The file is left as it was.
    assert_eq!(std::fs::read(&path).unwrap(), vec![0x42u8; 16384]);
}

#[test]
fn without_a_store_pull_and_ack_say_so() {
    let server = node(&["store.enabled=false", "notify_join=false"]);
    let (mut alice, auth) = login_with(server.local_addr(), "?accessToken=alice");
    assert!(auth["body"].get("epoch").is_none());
    send(&mut alice, "PULL_REQUEST", json!({"sinceSeq": 0}), "p");
    assert_eq!(next_of(&mut alice, "ERROR")["body"]["code"], 8);
    send(&mut alice, "ACK_REQUEST", json!({"seq": 1}), "a");
    assert_eq!(next_of(&mut alice, "ERROR")["body"]["code"], 1);
    server.stop();
}

#[test]
fn a_store_that_falls_behind_refuses_with_code_9() {
    let server = node(&[
        "notify_join=false",
        "store.max_queue=2",
        "store.max_batch=1",
    ]);
    let (mut alice, _) = login(server.local_addr(), "alice");
    // Forty messages in one burst: the worker queues them faster than one commit takes.
    for i in 0..40 {
        let body = json!({"toUser": "hal", "msgId": format!("q{i}"), "content": i});
        let m = json!({"type": "SEND_TO_ONE_REQUEST", "body": body});
        alice
            .write(tungstenite::Message::Text(m.to_string()))
            .unwrap();
    }
    alice.flush().unwrap();
    let mut codes = Vec::new();
    for _ in 0..40 {
        codes.push(
            next_of(&mut alice, "SEND_RESPONSE")["body"]["code"]
                .as_i64()
                .unwrap(),
        );
    }
    assert!(codes.contains(&9), "{codes:?}");
    assert!(codes.iter().all(|c| *c == 0 || *c == 9), "{codes:?}");
    let stored = codes.iter().filter(|c| **c == 0).count() as u64;
    let (_, hal) = login_with(server.local_addr(), "?accessToken=hal");
    assert_eq!(
        hal["body"]["lastSeq"], stored,
        "what was refused was not stored"
    );
    server.stop();
}

#[test]
fn channel_and_everyone_histories_are_recovered_on_resubscribe() {
    let server = node(&["notify_join=false"]);
    let addr = server.local_addr();
    let subscribe = |ws: &mut common::Client, body: Value| {
        send(ws, "SUBSCRIBE_REQUEST", body, "s");
        next_of(ws, "SUBSCRIBE_RESPONSE")
    };
    let (mut bob, _) = login(addr, "bob");
    let (mut ann, _) = login(addr, "ann");
    let first = subscribe(&mut ann, json!({"channel": "room"}));
    assert_eq!(first["body"]["code"], 0, "{first}");
    assert_eq!(first["body"]["lastSeq"], 0, "{first}");
    let epoch = first["body"]["epoch"].as_str().unwrap().to_owned();
    let say = |ws: &mut common::Client, i: u64| {
        let body = json!({"channel": "room", "msgId": format!("c{i}"), "content": i});
        send(ws, "SEND_TO_CHANNEL_REQUEST", body, "c");
        assert_eq!(next_of(ws, "SEND_RESPONSE")["body"]["message"], "stored");
    };
    for i in 1..=3 {
        say(&mut bob, i);
        let m = next_of(&mut ann, "CHANNEL_MESSAGE");
        assert_eq!(seq_of(&m), i, "{m}");
        assert_eq!(m["body"]["epoch"], epoch.as_str());
        assert_eq!(m["body"]["channel"], "room");
    }
    drop(ann);
    for i in 4..=5 {
        say(&mut bob, i);
    }
    for i in 1..=2 {
        let body = json!({"msgId": format!("a{i}"), "content": format!("all{i}")});
        send(&mut bob, "SEND_TO_ALL_REQUEST", body, "a");
        assert_eq!(
            next_of(&mut bob, "SEND_RESPONSE")["body"]["message"],
            "stored"
        );
    }
    let (mut ann, _) = login(addr, "ann");
    let r = subscribe(
        &mut ann,
        json!({"channel": "room", "sinceSeq": 3, "epoch": epoch}),
    );
    assert_eq!(r["body"]["recovered"], true, "{r}");
    assert_eq!(r["body"]["lastSeq"], 5, "{r}");
    assert_eq!(seq_of(&next_of(&mut ann, "CHANNEL_MESSAGE")), 4);
    assert_eq!(seq_of(&next_of(&mut ann, "CHANNEL_MESSAGE")), 5);
    // Messages to everyone: the history of channel "*".
    let r = subscribe(
        &mut ann,
        json!({"channel": "*", "sinceSeq": 0, "epoch": epoch}),
    );
    assert_eq!(r["body"]["lastSeq"], 2, "{r}");
    for i in 1..=2 {
        let m = next_of(&mut ann, "SEND_TO_USER_REQUEST");
        assert_eq!(seq_of(&m), i);
        assert_eq!(m["body"]["channel"], "*");
        assert_eq!(m["body"]["content"], format!("all{i}"));
    }
    // Numbers from another history: not recovered, nothing replayed.
    let r = subscribe(
        &mut ann,
        json!({"channel": "room", "sinceSeq": 1, "epoch": "other"}),
    );
    assert_eq!(r["body"]["recovered"], false, "{r}");
    quiet(&mut ann, 300);
    let pull = json!({"channel": "room", "sinceSeq": 0, "limit": 2});
    send(&mut ann, "PULL_REQUEST", pull, "p");
    let p = next_of(&mut ann, "PULL_RESPONSE");
    let got: Vec<u64> = p["body"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(seq_of)
        .collect();
    assert_eq!(got, vec![1, 2]);
    assert_eq!(p["body"]["hasMore"], true);
    let star = json!({"channel": "*", "msgId": "x", "content": 1});
    send(&mut ann, "SEND_TO_CHANNEL_REQUEST", star, "x");
    assert_eq!(next_of(&mut ann, "ERROR")["body"]["code"], 1);
    server.stop();
}
