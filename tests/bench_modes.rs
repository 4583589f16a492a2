//! Every bench mode runs against `switchboard echo` and reports a clean result.

mod common;

use std::process::Command;

fn bench(args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("bench")
        .args(args)
        .args(["--json", "--warmup", "0.2"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "bad json ({e}): {} / {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

#[test]
fn broadcast_mode_accounts_for_every_delivery() {
    let server = common::start_echo(common::config(2));
    let url = format!("ws://{}/broadcast", server.local_addr());
    let (code, json) = bench(&[
        "broadcast",
        "--url",
        &url,
        "--subscribers",
        "20",
        "--publishers",
        "2",
        "--duration",
        "1",
    ]);
    assert_eq!(code, 0, "{json}");
    let published = json["published"].as_u64().unwrap();
    assert!(published > 0);
    // Every one of the 22 connections gets every message: none lost.
    assert_eq!(json["lost"], 0, "{json}");
    assert_eq!(json["received"].as_u64().unwrap(), published * 22, "{json}");
    server.stop();
}

#[test]
fn broadcast_at_a_fixed_rate() {
    let server = common::start_echo(common::config(1));
    let url = format!("ws://{}/broadcast", server.local_addr());
    let (code, json) = bench(&[
        "broadcast",
        "--url",
        &url,
        "--subscribers",
        "5",
        "--rate",
        "200",
        "--duration",
        "1",
    ]);
    assert_eq!(code, 0, "{json}");
    let published = json["published"].as_u64().unwrap();
    // About 200/s for warm-up plus duration; a loose bound so load cannot flake it.
    assert!((100..=400).contains(&published), "{json}");
    server.stop();
}

#[test]
fn connect_mode_counts_handshakes() {
    let server = common::start_echo(common::config(1));
    let url = format!("ws://{}/", server.local_addr());
    let (code, json) = bench(&["connect", "--url", &url, "-c", "4", "--duration", "1"]);
    assert_eq!(code, 0, "{json}");
    assert!(json["completed"].as_u64().unwrap() > 10, "{json}");
    server.stop();
}

#[test]
fn hold_mode_opens_and_measures_memory() {
    let server = common::start_echo(common::config(1));
    let url = format!("ws://{}/", server.local_addr());
    let pid = std::process::id().to_string();
    let (code, json) = bench(&[
        "hold",
        "--url",
        &url,
        "-c",
        "200",
        "--duration",
        "1.5",
        "--server-pid",
        &pid,
    ]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["opened"], 200, "{json}");
    assert!(json.get("server_bytes_per_conn").is_some(), "{json}");
    server.stop();
}

#[test]
fn a_run_over_the_descriptor_limit_is_refused_clearly() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "bench",
            "hold",
            "--url",
            "ws://127.0.0.1:1/",
            "-c",
            "5000000",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("file descriptors"), "{err}");
}

#[test]
fn bind_range_spreads_connections_over_source_addresses() {
    // Two connections per client address at most: 6 connections only fit if they come
    // from three addresses.
    let server = common::start_echo(switchboard::Config {
        max_connections_per_ip: 2,
        ..common::config(1)
    });
    let url = format!("ws://{}/", server.local_addr());
    let (code, json) = bench(&[
        "echo",
        "--url",
        &url,
        "-c",
        "6",
        "-k",
        "2",
        "--duration",
        "0.5",
        "--bind-range",
        "127.0.0.1-127.0.0.3",
    ]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["connection_errors"], 0, "{json}");
    // Without rotation the same run is refused past the per-address limit.
    let (code, json) = bench(&[
        "echo",
        "--url",
        &url,
        "-c",
        "6",
        "-k",
        "2",
        "--duration",
        "0.5",
    ]);
    assert_eq!(code, 1, "{json}");
    assert!(json["connection_errors"].as_u64().unwrap() >= 4, "{json}");
    server.stop();
}

#[test]
fn chat_mode_accounts_for_every_private_group_and_channel_message() {
    let server = common::chat::node(&["notify_join=false"]);
    let url = format!("ws://{}/ws", server.local_addr());
    let (code, json) = bench(&[
        "chat",
        "--url",
        &url,
        "-u",
        "12",
        "--rate",
        "20",
        "--duration",
        "1",
    ]);
    assert_eq!(code, 0, "{json}");
    for kind in ["private", "group", "channel"] {
        let k = &json["by_type"][kind];
        assert!(k["expected"].as_u64().unwrap() > 0, "{kind}: {json}");
        assert_eq!(k["expected"], k["delivered"], "{kind}: {json}");
    }
    assert_eq!(json["lost"], 0);
    server.stop();
}

#[test]
fn chat_mode_with_jwt_tokens() {
    let secret = format!("auth.jwt_secret={}", common::chat::SECRET);
    let server = common::chat::node(&["auth.mode=jwt", &secret, "notify_join=false"]);
    let url = format!("ws://{}/ws", server.local_addr());
    let (code, json) = bench(&[
        "chat",
        "--url",
        &url,
        "-u",
        "4",
        "--rate",
        "10",
        "--duration",
        "0.5",
        "--jwt-secret",
        common::chat::SECRET,
    ]);
    assert_eq!(code, 0, "{json}");
    assert!(json["received"].as_u64().unwrap() > 0, "{json}");
    server.stop();
}

/// Runs `switchboard bench ARGS` to its end: (exit code, stderr, seconds taken).
fn bench_failing(args: &[&str]) -> (i32, String, f64) {
    let t0 = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("bench")
        .args(args)
        .args(["--warmup", "1", "--duration", "2"])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        t0.elapsed().as_secs_f64(),
    )
}

#[test]
fn a_run_that_cannot_connect_ends_with_exit_1_and_the_reason() {
    // A port nobody listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("ws://127.0.0.1:{port}/");
    for mode in ["echo", "broadcast", "connect", "chat"] {
        let (code, err, _) = bench_failing(&[mode, "--url", &url]);
        assert_eq!(code, 1, "{mode}: {err}");
        assert!(err.contains("connection refused"), "{mode}: {err}");
    }
}

#[test]
fn bench_chat_against_a_node_that_refuses_its_tokens_says_why() {
    let server = common::chat::node(&[
        "auth.mode=jwt",
        &format!("auth.jwt_secret={}", common::chat::SECRET),
    ]);
    let url = format!("ws://{}/ws", server.local_addr());
    // Demo tokens (no --jwt-secret) against a JWT node: 401.
    let (code, err, _) = bench_failing(&["chat", "--url", &url, "-u", "4"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("401"), "{err}");
    server.stop();
    // An engine that is not a chat node: the login is never answered.
    let echo = common::start_echo(common::config(1));
    let url = format!("ws://{}/ws", echo.local_addr());
    let (code, err, _) = bench_failing(&["chat", "--url", &url, "-u", "4"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("switchboard serve") || err.contains("no message"),
        "{err}"
    );
    echo.stop();
}

#[test]
fn stomp_and_sockjs_modes_account_for_every_delivery() {
    let server = common::chat::node(&["sockjs.stomp=true", "notify_join=false"]);
    let url = format!("ws://{}/stomp", server.local_addr());
    let (code, json) = bench(&[
        "stomp",
        "--url",
        &url,
        "--subscribers",
        "20",
        "--publishers",
        "2",
        "--duration",
        "1",
    ]);
    assert_eq!(code, 0, "{json}");
    let published = json["published"].as_u64().unwrap();
    assert!(published > 0);
    assert_eq!(json["lost"], 0, "{json}");
    assert_eq!(json["corrupted"], 0, "{json}");
    assert_eq!(json["received"].as_u64().unwrap(), published * 22, "{json}");
    for transport in ["xhr-streaming", "websocket"] {
        let (code, json) = bench(&[
            "sockjs",
            "--url",
            &url,
            "--subscribers",
            "5",
            "--rate",
            "500",
            "--transport",
            transport,
            "--duration",
            "1",
        ]);
        assert_eq!(code, 0, "{transport}: {json}");
        let published = json["published"].as_u64().unwrap();
        assert!(published > 0, "{json}");
        assert_eq!(json["lost"], 0, "{transport}: {json}");
        assert_eq!(
            json["received"].as_u64().unwrap(),
            published * 5,
            "{transport}: {json}"
        );
    }
    server.stop();
}

#[test]
fn echo_over_wss_trusts_the_given_ca_and_loses_nothing() {
    use common::tls::{temp_dir, TestCa};
    let ca = TestCa::new("bench CA");
    let dir = temp_dir("bench");
    let (cert, key, _) = ca.write_server_files(&dir, "localhost");
    let ca_file = ca.write_ca(&dir);
    let server = common::start_echo(switchboard::Config {
        tls: Some(switchboard::TlsConfig {
            cert,
            key,
            listen: None,
        }),
        ..common::config(1)
    });
    let url = format!("wss://localhost:{}/", server.local_addr().port());
    let ca_arg = ca_file.display().to_string();
    // 64 KiB messages, 4 in flight: more than rustls buffers by default.
    for size in ["32", "65536"] {
        let (code, json) = bench(&[
            "echo",
            "--url",
            &url,
            "--ca",
            &ca_arg,
            "-c",
            "4",
            "-k",
            "4",
            "-s",
            size,
            "--duration",
            "0.5",
        ]);
        assert_eq!(code, 0, "{json}");
        assert_eq!(json["lost"], 0, "{json}");
        assert!(json["received"].as_u64().unwrap() > 0, "{json}");
    }
    // Without --ca there is nothing to trust: a clear usage error, exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["bench", "echo", "--url", &url, "--duration", "0.2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ca"));
    server.stop();
}

#[test]
fn broadcast_with_deflate_inflates_every_delivery() {
    let server = common::start_echo(switchboard::Config {
        deflate: switchboard::ws::deflate::DeflateConfig {
            enabled: true,
            ..Default::default()
        },
        ..common::config(2)
    });
    let url = format!("ws://{}/broadcast", server.local_addr());
    // 1 KiB of the bench's byte ramp compresses, so frames go out with RSV1.
    let (code, json) = bench(&[
        "broadcast",
        "--url",
        &url,
        "--subscribers",
        "10",
        "--publishers",
        "1",
        "-s",
        "1024",
        "--deflate",
        "--duration",
        "0.5",
    ]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["lost"], 0, "{json}");
    assert_eq!(json["corrupted"], 0, "{json}");
    let published = json["published"].as_u64().unwrap();
    assert_eq!(json["received"].as_u64().unwrap(), published * 11, "{json}");
    let m = server.hub().metrics();
    assert_eq!(m.deflate_sessions, 11, "every connection agreed to deflate");
    let payload_bytes = json["received"].as_u64().unwrap() * 1024;
    assert!(
        m.bytes_out < payload_bytes / 2,
        "sent {} bytes for {payload_bytes} bytes of messages: not compressed",
        m.bytes_out
    );
    server.stop();
}
