//! Stopping: open connections get close 1001, and the binary exits 0 on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

fn expect_going_away(ws: &mut Client) {
    match ws.read() {
        Ok(Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::Away),
        Ok(other) => panic!("expected close 1001, got {other:?}"),
        Err(e) => panic!("expected close 1001, got {e}"),
    }
}

#[test]
fn stop_sends_1001_to_every_connection() {
    let server = start_echo(config(2));
    let addr = server.local_addr();
    let mut clients: Vec<_> = (0..20).map(|_| connect(addr, "/")).collect();
    let stopper = server.stopper();
    let joiner = std::thread::spawn(move || server.join());
    stopper.stop();
    for c in clients.iter_mut() {
        expect_going_away(c);
    }
    joiner.join().unwrap();
    // The listeners are gone.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn binary_exits_zero_on_sigterm_after_closing_clients_with_1001() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["echo", "--listen", "127.0.0.1:0", "--workers", "2"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The log line "listening local_addr=..." names the real port.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited early"
        );
        if let Some(rest) = line.split("local_addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let addr = addr.parse().unwrap();
    let mut ws = connect(addr, "/");
    ws.send(Message::Text("ping".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Text("ping".into()));

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    expect_going_away(&mut ws);
    drop(ws);
    std::thread::spawn(move || for _ in stderr.lines() {});
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "server did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "exit status {code}");
}
