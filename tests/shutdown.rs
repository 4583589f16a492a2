//! Stopping: open connections get close 1001, and the binary exits 0 on SIGTERM.

mod common;

use std::process::Command;
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
    let (mut child, addr) = spawn_binary(&["echo", "--listen", "127.0.0.1:0", "--workers", "2"]);
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

#[test]
fn binary_stops_on_sigterm_even_when_its_stderr_is_closed() {
    // A supervisor that stopped reading the logs: every log line now fails to write.
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["echo", "--listen", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(child.stderr.take());
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running 15 s after SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
}
