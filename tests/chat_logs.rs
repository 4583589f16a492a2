//! What `switchboard serve` logs at `info`: sessions opened (user, address, session id),
//! handshakes refused (status and why), sessions closed (code); never a token.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::chat::*;
use serde_json::json;

/// Kills the server when the test ends, passed or not.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sessions_refusals_and_closes_are_logged_without_tokens() {
    let secret = format!("auth.jwt_secret={SECRET}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--set",
            "auth.mode=jwt",
            "--set",
            &secret,
        ])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("SWITCHBOARD__STORE__PATH", common::test_store_path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let _server = Kill(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines: Vec<String> = Vec::new();
    let mut wait_for = |needle: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(l) = lines.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => lines.push(l),
                Err(_) => panic!("no log line with {needle:?} in:\n{}", lines.join("\n")),
            }
        }
    };
    let listening = wait_for("local_addr=");
    let addr: std::net::SocketAddr = listening
        .split("local_addr=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();

    let good = jwt("olga", 600, json!({}));
    let mut ws = connect_with(addr, &format!("?token={good}"), &[]);
    next_of(&mut ws, "AUTH_RESPONSE");
    let opened = wait_for("session opened");
    assert!(
        opened.contains("user=olga") && opened.contains("remote=127.0.0.1"),
        "{opened}"
    );

    let forged = jwt("olga", 600, json!({})) + "x";
    let _ = common::raw_exchange(
        addr,
        common::upgrade_request(&format!("/ws?token={forged}"), "").as_bytes(),
    );
    let refused = wait_for("status=401");
    assert!(refused.contains("bad signature"), "{refused}");

    ws.close(Some(tungstenite::protocol::CloseFrame {
        code: tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "bye".into(),
    }))
    .unwrap();
    while ws.read().is_ok() {}
    let closed = wait_for("session closed");
    assert!(closed.contains("code=1000"), "{closed}");

    for l in &lines {
        assert!(
            !l.contains(&good) && !l.contains(&forged),
            "a token in the log: {l}"
        );
    }
}
