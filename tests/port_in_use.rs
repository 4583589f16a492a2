//! Starting on a port another process listens on fails at once, with the address in the
//! message and a non-zero exit, instead of joining that process's SO_REUSEPORT group.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn run_until_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env("SWITCHBOARD__STORE__PATH", test_store_path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the second server kept running on a busy port");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

#[test]
fn a_second_switchboard_on_a_busy_port_exits_non_zero() {
    // A switchboard (a reuseport group of two workers) holds the port.
    let (mut first, addr) = spawn_binary(&["echo", "--listen", "127.0.0.1:0", "--workers", "2"]);
    let listen = addr.to_string();
    for cmd in [
        vec!["echo", "--listen", listen.as_str()],
        vec!["serve", "--listen", listen.as_str()],
    ] {
        let (code, err) = run_until_exit(&cmd);
        assert_ne!(code, Some(0), "{cmd:?}: {err}");
        assert!(err.contains(&listen), "{cmd:?}: {err}");
        assert!(err.contains("in use"), "{cmd:?}: {err}");
    }
    // The first one still serves everyone.
    let mut ws = connect(addr, "/");
    ws.send(tungstenite::Message::Text("still mine".into()))
        .unwrap();
    assert_eq!(
        ws.read().unwrap(),
        tungstenite::Message::Text("still mine".into())
    );
    first.kill().unwrap();
    let _ = first.wait();
}

#[test]
fn a_port_held_by_another_program_is_refused_too() {
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = other.local_addr().unwrap().to_string();
    let (code, err) = run_until_exit(&["echo", "--listen", &listen]);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains(&listen), "{err}");
}
