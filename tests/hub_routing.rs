//! The hub over real sockets: a message from a connection on one worker reaches a
//! connection on another; broadcast to 1,000 connections across workers arrives exactly
//! once and in order per sender; groups; attributes; refusing a handshake; stale ids.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use switchboard::http::{HttpResponse, Request};
use switchboard::{ConnId, Context, Handler, Message, Server};
use tungstenite::Message as WsMessage;

/// On open: tells the client its id. Text `to <id> <text>` is sent to that id through
/// the hub; `join <g>` / `leave <g>` change groups; `group <g> <text>` sends to a group.
struct Relay;

impl Handler for Relay {
    fn on_open(&self, ctx: &mut Context<'_>, req: &Request) -> Result<(), HttpResponse> {
        if req.query.as_deref() == Some("deny") {
            return Err(HttpResponse::text(401, "bad token\n"));
        }
        if let Some(name) = req.query.as_deref().and_then(|q| q.strip_prefix("name=")) {
            ctx.attributes_mut().insert(Name(name.to_owned()));
        }
        let id = ctx.id().to_string();
        ctx.send_text(format!("id {id}"));
        Ok(())
    }

    fn on_message(&self, ctx: &mut Context<'_>, msg: Message) {
        let Message::Text(text) = msg else { return };
        let mut words = text.splitn(3, ' ');
        match (words.next(), words.next(), words.next()) {
            (Some("to"), Some(id), Some(body)) => {
                if let Ok(id) = id.parse::<ConnId>() {
                    let from = ctx
                        .attributes()
                        .get::<Name>()
                        .map_or("?".to_owned(), |n| n.0.clone());
                    ctx.hub().send(id, Message::Text(format!("{from}: {body}")));
                }
            }
            (Some("join"), Some(g), None) => ctx.join(g),
            (Some("leave"), Some(g), None) => ctx.leave(g),
            (Some("group"), Some(g), Some(body)) => {
                ctx.hub().send_to_group(g, Message::Text(body.to_owned()))
            }
            (Some("all"), Some(body), None) => ctx.broadcast(Message::Text(body.to_owned())),
            _ => ctx.send_text("?"),
        }
    }
}

struct Name(String);

fn relay_server(workers: usize) -> switchboard::ServerHandle {
    start(
        Server::builder()
            .config(config(workers))
            .route("/relay", Relay),
    )
}

fn text(ws: &mut Client) -> String {
    match ws.read().unwrap() {
        WsMessage::Text(t) => t,
        other => panic!("expected text, got {other:?}"),
    }
}

/// Connects and reads the greeting: (client, its id).
fn join(addr: std::net::SocketAddr, query: &str) -> (Client, ConnId) {
    let mut ws = connect(addr, &format!("/relay{query}"));
    let greeting = text(&mut ws);
    let id = greeting.strip_prefix("id ").unwrap().parse().unwrap();
    (ws, id)
}

/// Opens connections until one is on worker 0 and one on worker 1.
fn one_per_worker(addr: std::net::SocketAddr) -> [(Client, ConnId); 2] {
    let mut found: [Option<(Client, ConnId)>; 2] = [None, None];
    for i in 0..200 {
        let (ws, id) = join(addr, &format!("?name=c{i}"));
        let w = id.worker();
        if found[w].is_none() {
            found[w] = Some((ws, id));
        }
        if found.iter().all(Option::is_some) {
            return found.map(Option::unwrap);
        }
    }
    panic!("200 connections all landed on one worker");
}

#[test]
fn a_message_crosses_from_worker_0_to_worker_1() {
    let server = relay_server(2);
    let [(mut a, a_id), (mut b, b_id)] = one_per_worker(server.local_addr());
    assert_eq!((a_id.worker(), b_id.worker()), (0, 1));
    a.send(WsMessage::Text(format!("to {b_id} hello from 0")))
        .unwrap();
    let got = text(&mut b);
    assert!(got.ends_with(": hello from 0"), "{got}");
    b.send(WsMessage::Text(format!("to {a_id} and back")))
        .unwrap();
    assert!(text(&mut a).ends_with(": and back"));
    server.stop();
}

#[test]
fn attributes_set_in_on_open_are_seen_later() {
    let server = relay_server(1);
    let (mut a, a_id) = join(server.local_addr(), "?name=alice");
    a.send(WsMessage::Text(format!("to {a_id} note to self")))
        .unwrap();
    assert_eq!(text(&mut a), "alice: note to self");
    server.stop();
}

#[test]
fn on_open_can_refuse_with_an_http_status() {
    let server = relay_server(1);
    let resp = raw_exchange(
        server.local_addr(),
        upgrade_request("/relay?deny", "").as_bytes(),
    );
    assert!(resp.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{resp}");
    assert!(resp.ends_with("bad token\n"));
    server.stop();
}

#[test]
fn a_message_for_a_closed_connection_is_dropped_and_counted() {
    let server = relay_server(1);
    let hub = server.hub();
    let addr = server.local_addr();
    let (mut gone, gone_id) = join(addr, "");
    gone.close(None).unwrap();
    while gone.read().is_ok() {}
    // A newcomer may reuse the slot; it must not receive what was meant for `gone`.
    let (mut newcomer, newcomer_id) = join(addr, "");
    let before = hub.metrics().dropped_stale_id;
    hub.send(gone_id, Message::Text("for the old one".into()));
    hub.send(newcomer_id, Message::Text("for the new one".into()));
    assert_eq!(text(&mut newcomer), "for the new one");
    assert_eq!(hub.metrics().dropped_stale_id, before + 1);
    server.stop();
}

#[test]
fn groups_deliver_to_members_on_every_worker_only() {
    let server = relay_server(2);
    let addr = server.local_addr();
    let [(mut a, _), (mut b, _)] = one_per_worker(addr);
    let (mut outsider, _) = join(addr, "");
    a.send(WsMessage::Text("join room".into())).unwrap();
    b.send(WsMessage::Text("join room".into())).unwrap();
    // Joins are carried out in order with later messages from the same connection, so
    // by the time an echo comes back the join is done.
    for ws in [&mut a, &mut b] {
        ws.send(WsMessage::Text("nonsense".into())).unwrap();
        assert_eq!(text(ws), "?");
    }
    outsider
        .send(WsMessage::Text("group room hi room".into()))
        .unwrap();
    assert_eq!(text(&mut a), "hi room");
    assert_eq!(text(&mut b), "hi room");
    b.send(WsMessage::Text("leave room".into())).unwrap();
    b.send(WsMessage::Text("nonsense".into())).unwrap();
    assert_eq!(text(&mut b), "?");
    outsider
        .send(WsMessage::Text("group room second".into()))
        .unwrap();
    assert_eq!(text(&mut a), "second");
    // b left: the next thing it hears is its own echo, not "second".
    b.send(WsMessage::Text("nonsense".into())).unwrap();
    assert_eq!(text(&mut b), "?");
    // The outsider was never a member.
    outsider.send(WsMessage::Text("nonsense".into())).unwrap();
    assert_eq!(text(&mut outsider), "?");
    server.stop();
}

#[test]
fn broadcast_to_a_thousand_connections_arrives_once_and_in_order_per_sender() {
    let server = relay_server(2);
    let addr = server.local_addr();
    let mut clients: Vec<(Client, ConnId)> = (0..1000).map(|_| join(addr, "")).collect();
    let on_worker_1 = clients.iter().filter(|(_, id)| id.worker() == 1).count();
    assert!(
        on_worker_1 > 0 && on_worker_1 < 1000,
        "connections not spread: {on_worker_1} on worker 1"
    );
    // Four senders, two per worker where possible, 25 messages each, all sent before
    // anyone reads.
    let mut senders: Vec<usize> = Vec::new();
    for w in [0, 1] {
        senders.extend(
            clients
                .iter()
                .enumerate()
                .filter(|(_, (_, id))| id.worker() == w)
                .map(|(i, _)| i)
                .take(2),
        );
    }
    const PER_SENDER: usize = 25;
    for seq in 0..PER_SENDER {
        for &s in &senders {
            clients[s]
                .0
                .send(WsMessage::Text(format!("all {s}:{seq}")))
                .unwrap();
        }
    }
    let expected = senders.len() * PER_SENDER;
    let deadline = Instant::now() + Duration::from_secs(60);
    for (ws, id) in clients.iter_mut() {
        let mut next: HashMap<usize, usize> = senders.iter().map(|&s| (s, 0)).collect();
        for _ in 0..expected {
            assert!(Instant::now() < deadline, "timed out");
            let t = text(ws);
            let (s, seq) = t.split_once(':').unwrap();
            let s: usize = s.parse().unwrap();
            let seq: usize = seq.parse().unwrap();
            let want = next.get_mut(&s).unwrap();
            assert_eq!(
                seq, *want,
                "client {id}: sender {s} out of order or duplicated"
            );
            *want += 1;
        }
        assert!(
            next.values().all(|&n| n == PER_SENDER),
            "client {id}: {next:?}"
        );
    }
    // Exactly once: nothing more is pending for anyone.
    let (ws, _) = &mut clients[0];
    ws.send(WsMessage::Text("nonsense".into())).unwrap();
    assert_eq!(text(ws), "?");
    server.stop();
}

#[test]
fn a_plain_thread_can_push_to_everyone_on_a_route() {
    let server = relay_server(2);
    let hub = server.hub();
    let mut clients: Vec<_> = (0..20).map(|_| join(server.local_addr(), "").0).collect();
    let pusher = std::thread::spawn(move || {
        for i in 0..3 {
            assert!(hub.broadcast("/relay", Message::Text(format!("tick {i}"))));
        }
        assert!(!hub.broadcast("/nope", Message::Text("x".into())));
    });
    pusher.join().unwrap();
    for c in clients.iter_mut() {
        for i in 0..3 {
            assert_eq!(text(c), format!("tick {i}"));
        }
    }
    server.stop();
}
