//! Echo and broadcast over real sockets with tungstenite as the client, and the close
//! codes the server sends when a client breaks the rules.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use std::collections::HashSet;

use switchboard::http::{HttpResponse, Request};
use switchboard::{Config, Context, Handler, Server};
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

#[test]
fn text_is_echoed() {
    let server = start_echo(config(2));
    let mut ws = connect(server.local_addr(), "/");
    for text in ["hello", "", "ünïcødé ✓ 𝄞"] {
        ws.send(Message::Text(text.into())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::Text(text.into()));
    }
    server.stop();
}

#[test]
fn one_mib_binary_is_echoed() {
    let server = start_echo(config(2));
    let mut ws = connect(server.local_addr(), "/any/path");
    let data: Vec<u8> = (0..1 << 20).map(|i| (i * 31 % 251) as u8).collect();
    ws.send(Message::Binary(data.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Binary(data));
    server.stop();
}

#[test]
fn fragmented_message_with_a_ping_in_between_is_reassembled() {
    let server = start_echo(config(1));
    let mut ws = connect(server.local_addr(), "/");
    let parts: [&[u8]; 3] = [b"frag", b"men", b"ted \xe2\x9c\x93"];
    ws.write(Message::Frame(Frame::message(
        parts[0].to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .unwrap();
    ws.write(Message::Frame(Frame::message(
        parts[1].to_vec(),
        OpCode::Data(Data::Continue),
        false,
    )))
    .unwrap();
    ws.write(Message::Ping(b"mid".to_vec())).unwrap();
    ws.write(Message::Frame(Frame::message(
        parts[2].to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .unwrap();
    ws.flush().unwrap();
    // The pong for the ping comes first: the message completes after it.
    assert_eq!(ws.read().unwrap(), Message::Pong(b"mid".to_vec()));
    assert_eq!(ws.read().unwrap(), Message::Text("fragmented ✓".into()));
    server.stop();
}

#[test]
fn ping_gets_a_pong_with_the_same_payload() {
    let server = start_echo(config(1));
    let mut ws = connect(server.local_addr(), "/");
    ws.send(Message::Ping(b"are you there".to_vec())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Pong(b"are you there".to_vec()));
    server.stop();
}

#[test]
fn close_handshake_echoes_the_code_and_closes_tcp() {
    let server = start_echo(config(1));
    let mut ws = connect(server.local_addr(), "/");
    ws.close(Some(CloseFrame {
        code: CloseCode::Library(4000),
        reason: "bye".into(),
    }))
    .unwrap();
    // tungstenite yields the server's close frame, then reports the closed connection
    // once the server has closed TCP.
    match ws.read() {
        Ok(Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::Library(4000)),
        other => panic!("expected the echoed close, got {other:?}"),
    }
    match ws.read() {
        Err(tungstenite::Error::ConnectionClosed) => {}
        other => panic!("expected the connection to be closed, got {other:?}"),
    }
    server.stop();
}

#[test]
fn unmasked_frame_is_closed_with_1002() {
    let server = start_echo(config(1));
    let mut s = raw_ws(server.local_addr(), "/");
    s.write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    assert_eq!(read_close_code(&mut s), 1002);
    read_to_close(&mut s);
    server.stop();
}

#[test]
fn reserved_opcode_and_rsv_bits_are_closed_with_1002() {
    let server = start_echo(config(1));
    for b0 in [0x83u8, 0xC1, 0x91] {
        let mut s = raw_ws(server.local_addr(), "/");
        s.write_all(&client_frame(b0, b"x")).unwrap();
        assert_eq!(read_close_code(&mut s), 1002, "first byte {b0:#x}");
        read_to_close(&mut s);
    }
    server.stop();
}

#[test]
fn invalid_utf8_is_closed_with_1007_before_the_message_ends() {
    let server = start_echo(config(1));
    let mut s = raw_ws(server.local_addr(), "/");
    // First fragment of a text message carrying an invalid sequence; FIN not set, and
    // the rest never comes: the server must not wait for it.
    s.write_all(&client_frame(0x01, b"ok\xf4\x90\x80\x80"))
        .unwrap();
    assert_eq!(read_close_code(&mut s), 1007);
    read_to_close(&mut s);
    server.stop();
}

#[test]
fn oversized_message_is_closed_with_1009() {
    let server = start_echo(Config {
        max_message_size: 1000,
        ..config(1)
    });
    let mut ws = connect(server.local_addr(), "/");
    ws.send(Message::Binary(vec![0; 1001])).unwrap();
    match ws.read() {
        Ok(Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::Size),
        other => panic!("expected close 1009, got {other:?}"),
    }
    server.stop();
}

/// Tells each client which worker owns it, then broadcasts what it receives.
struct WorkerTellingBroadcast;
impl Handler for WorkerTellingBroadcast {
    fn on_open(&self, ctx: &mut Context<'_>, _req: &Request) -> Result<(), HttpResponse> {
        let worker = ctx.id().worker().to_string();
        ctx.send_text(worker);
        Ok(())
    }
    fn on_message(&self, ctx: &mut Context<'_>, msg: switchboard::Message) {
        ctx.broadcast(msg);
    }
}

#[test]
fn broadcast_reaches_everyone_on_the_route_across_workers() {
    let server = start(
        Server::builder()
            .config(config(2))
            .route("/broadcast", WorkerTellingBroadcast)
            .fallback(switchboard::echo::Echo),
    );
    let addr = server.local_addr();
    // Enough connections that the kernel's reuseport hash puts some on each worker.
    let mut workers = HashSet::new();
    let mut clients = Vec::new();
    while clients.len() < 16 || workers.len() < 2 {
        assert!(clients.len() < 200, "all connections landed on one worker");
        let mut c = connect(addr, "/broadcast");
        match c.read().unwrap() {
            Message::Text(w) => workers.insert(w),
            other => panic!("expected the worker id, got {other:?}"),
        };
        clients.push(c);
    }
    let mut bystander = connect(addr, "/");
    for round in 0..3 {
        let text = format!("to all {round}");
        clients[round * 5]
            .send(Message::Text(text.clone()))
            .unwrap();
        for c in clients.iter_mut() {
            assert_eq!(c.read().unwrap(), Message::Text(text.clone()));
        }
    }
    // A connection on another path got nothing: its next message is its own echo.
    bystander.send(Message::Text("me".into())).unwrap();
    assert_eq!(bystander.read().unwrap(), Message::Text("me".into()));
    server.stop();
}

#[test]
fn a_client_that_does_not_read_does_not_stall_others() {
    let server = start_echo(Config {
        write_high_water: 64 * 1024,
        ..config(1)
    });
    let addr = server.local_addr();
    // The greedy client sends far more than it reads; the server stops reading from it
    // once its queue is over the high-water mark, instead of buffering without bound.
    let mut greedy = raw_ws(addr, "/");
    greedy
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let frame = client_frame(0x82, &vec![7u8; 60_000]);
    let mut sent = 0usize;
    for _ in 0..2000 {
        match greedy.write_all(&frame) {
            Ok(()) => sent += frame.len(),
            Err(_) => break,
        }
    }
    assert!(
        sent < 2000 * frame.len(),
        "the server kept reading without bound"
    );
    let mut other = connect(addr, "/");
    other.send(Message::Text("still here".into())).unwrap();
    assert_eq!(other.read().unwrap(), Message::Text("still here".into()));
    server.stop();
}
