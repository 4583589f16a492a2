//! The bench client catches a broken server: a deliberately faulty echo server that
//! corrupts, drops, duplicates or reorders messages makes `switchboard bench echo` exit
//! non-zero with the matching counter, and a correct server passes clean.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::Command;

use tungstenite::Message;

#[derive(Clone, Copy, Debug)]
enum Fault {
    Corrupt,
    Drop,
    Duplicate,
    Reorder,
}

/// An echo server (tungstenite, one thread per connection) that misbehaves on every 20th
/// message.
fn faulty_server(fault: Fault) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let Ok(mut ws) = tungstenite::accept(stream) else {
                    return;
                };
                let mut n = 0u64;
                let mut held: Option<Message> = None;
                while let Ok(msg) = ws.read() {
                    if !(msg.is_binary() || msg.is_text()) {
                        continue;
                    }
                    n += 1;
                    let special = n % 20 == 0;
                    let out: Vec<Message> = match (fault, special) {
                        (Fault::Corrupt, true) => {
                            let mut data = msg.into_data();
                            let last = data.len() - 1;
                            data[last] ^= 0xff;
                            vec![Message::Binary(data)]
                        }
                        (Fault::Drop, true) => vec![],
                        (Fault::Duplicate, true) => vec![msg.clone(), msg],
                        (Fault::Reorder, true) => {
                            held = Some(msg);
                            vec![]
                        }
                        (Fault::Reorder, false) if held.is_some() => {
                            vec![msg, held.take().unwrap()]
                        }
                        _ => vec![msg],
                    };
                    for m in out {
                        if ws.send(m).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn bench(addr: SocketAddr) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "bench",
            "echo",
            "--url",
            &format!("ws://{addr}/"),
            "-c",
            "2",
            "-k",
            "4",
            "-s",
            "64",
            "--duration",
            "1",
            "--warmup",
            "0",
            "--json",
        ])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("bad json ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    (out.status.code().unwrap_or(-1), json)
}

fn assert_caught(fault: Fault, counter: &str) {
    let (code, json) = bench(faulty_server(fault));
    assert_eq!(code, 1, "{fault:?} not caught: {json}");
    assert!(
        json[counter].as_u64().unwrap() > 0,
        "{fault:?}: {counter} is 0 in {json}"
    );
}

#[test]
fn corruption_is_caught() {
    assert_caught(Fault::Corrupt, "corrupted");
}

#[test]
fn drops_are_caught() {
    assert_caught(Fault::Drop, "lost");
}

#[test]
fn duplicates_are_caught() {
    assert_caught(Fault::Duplicate, "duplicates");
}

#[test]
fn reordering_is_caught() {
    assert_caught(Fault::Reorder, "reordered");
}

#[test]
fn a_correct_server_passes_clean() {
    let server = common::start_echo(common::config(1));
    let (code, json) = bench(server.local_addr());
    assert_eq!(code, 0, "{json}");
    for counter in [
        "corrupted",
        "lost",
        "duplicates",
        "reordered",
        "connection_errors",
    ] {
        assert_eq!(json[counter].as_u64(), Some(0), "{counter} in {json}");
    }
    assert!(json["completed"].as_u64().unwrap() > 0);
    server.stop();
}
