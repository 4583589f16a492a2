//! TLS listeners with real clients: a tungstenite client over rustls trusting a test CA
//! made here (rcgen), HTTPS on the same port, plain HTTP and broken handshakes refused
//! and counted without disturbing others, a second TLS address beside a plain one, the
//! certificate reloaded for new connections while open ones go on, and clear errors for
//! bad files at start.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::tls::*;
use common::*;
use switchboard::{Config, ServerError, TlsConfig};
use tungstenite::Message;

fn tls_config(cert: std::path::PathBuf, key: std::path::PathBuf) -> Config {
    Config {
        tls: Some(TlsConfig {
            cert,
            key,
            listen: None,
        }),
        ..config(2)
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn wss_and_https_share_the_tls_port() {
    let ca = TestCa::new("switchboard test CA");
    let dir = temp_dir("basic");
    let (cert, key, _) = ca.write_server_files(&dir, "first");
    let server = start_echo(tls_config(cert, key));
    let addr = server.local_addr();
    assert_eq!(server.tls_addr(), Some(addr));

    let mut ws = wss(addr, "/echo", ca.client_config());
    for msg in ["hello over TLS", &"x".repeat(100_000)] {
        ws.send(Message::text(msg)).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(msg));
    }
    ws.send(Message::binary(vec![7u8; 70_000])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![7u8; 70_000]));
    // The session negotiated http/1.1 by ALPN when asked.
    let mut s = tls_connect(addr, {
        let mut c = (*ca.client_config()).clone();
        c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        std::sync::Arc::new(c)
    });
    assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let resp = https_get(&mut s, "/healthz");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("ok\n"), "{resp}");

    ws.close(None).unwrap();
    let m = server.hub().metrics();
    assert!(m.tls_handshakes >= 2, "{m:?}");
    server.stop();
}

#[test]
fn plain_http_and_broken_handshakes_are_refused_and_counted() {
    let ca = TestCa::new("switchboard test CA");
    let dir = temp_dir("refused");
    let (cert, key, _) = ca.write_server_files(&dir, "first");
    let server = start_echo(tls_config(cert, key));
    let addr = server.local_addr();
    // A healthy connection open the whole time.
    let mut ws = wss(addr, "/echo", ca.client_config());

    // Plain HTTP gets a plain-text 400 and a close.
    let resp = raw_exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("speaks TLS"), "{resp}");

    // A record that is not a ClientHello, then garbage: closed.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
        .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    // A client that does not trust the certificate gives up mid-handshake.
    let untrusting = TestCa::new("another CA").client_config();
    let sock = TcpStream::connect(addr).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut conn = rustls::ClientConnection::new(untrusting, name).unwrap();
    let mut sock2 = sock;
    let err = loop {
        match conn.complete_io(&mut sock2) {
            Ok(_) if conn.is_handshaking() => continue,
            Ok(_) => panic!("handshake should fail"),
            Err(e) => break e,
        }
    };
    assert!(err.to_string().contains("certificate"), "{err}");
    drop(sock2);
    // A client that connects and leaves.
    drop(TcpStream::connect(addr).unwrap());

    let hub = server.hub();
    wait_for("the failures to be counted", || {
        let m = hub.metrics();
        m.tls_plain_http == 1 && m.tls_handshake_failures >= 4
    });
    // The healthy connection never noticed.
    ws.send(Message::text("still here")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("still here"));
    let text = hub.metrics().to_prometheus();
    assert!(
        text.contains("switchboard_tls_plain_http_total 1"),
        "{text}"
    );
    server.stop();
}

#[test]
fn a_second_address_speaks_tls_beside_the_plain_one() {
    let ca = TestCa::new("switchboard test CA");
    let dir = temp_dir("both");
    let (cert, key, _) = ca.write_server_files(&dir, "first");
    let server = start_echo(Config {
        tls: Some(TlsConfig {
            cert,
            key,
            listen: Some("127.0.0.1:0".parse().unwrap()),
        }),
        ..config(1)
    });
    let plain = server.local_addr();
    let tls = server.tls_addr().expect("a TLS address");
    assert_ne!(plain, tls);
    let mut a = connect(plain, "/echo");
    let mut b = wss(tls, "/echo", ca.client_config());
    a.send(Message::text("plain")).unwrap();
    b.send(Message::text("tls")).unwrap();
    assert_eq!(a.read().unwrap(), Message::text("plain"));
    assert_eq!(b.read().unwrap(), Message::text("tls"));
    server.stop();
}

#[test]
fn a_reload_serves_the_new_certificate_and_keeps_open_connections() {
    let ca = TestCa::new("switchboard test CA");
    let dir = temp_dir("reload");
    let (cert, key, first) = ca.write_server_files(&dir, "first");
    let server = start_echo(tls_config(cert.clone(), key.clone()));
    let addr = server.local_addr();
    let mut old = wss(addr, "/echo", ca.client_config());
    assert_eq!(peer_cert(old.get_ref()), first);

    let (_, _, second) = ca.write_server_files(&dir, "second");
    assert_eq!(server.tls_reloader().reload().unwrap(), 1);
    let new = tls_connect(addr, ca.client_config());
    assert_eq!(peer_cert(&new), second);
    old.send(Message::text("after the reload")).unwrap();
    assert_eq!(old.read().unwrap(), Message::text("after the reload"));

    // Bad files: the reload fails and the current certificate stays.
    std::fs::write(&key, "not a key").unwrap();
    let err = server.tls_reloader().reload().unwrap_err();
    assert!(err.to_string().contains("key.pem"), "{err}");
    let again = tls_connect(addr, ca.client_config());
    assert_eq!(peer_cert(&again), second);
    server.stop();
}

#[test]
fn bad_or_missing_files_stop_the_start_with_the_path() {
    let ca = TestCa::new("switchboard test CA");
    let dir = temp_dir("bad");
    let (cert, key, _) = ca.write_server_files(&dir, "first");
    let start = |cert: &std::path::Path, key: &std::path::Path| {
        switchboard::echo::echo_server(tls_config(cert.to_owned(), key.to_owned()))
            .start()
            .map(|h| h.stop())
    };
    let missing = dir.join("missing.pem");
    let err = start(&missing, &key).unwrap_err();
    assert!(matches!(err, ServerError::Tls(_)), "{err:?}");
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let err = start(&cert, &missing).unwrap_err().to_string();
    assert!(
        err.contains("private key") && err.contains("missing.pem"),
        "{err}"
    );
    // A key that belongs to another certificate.
    let other = temp_dir("bad-other");
    let (_, other_key, _) = ca.write_server_files(&other, "second");
    let err = start(&cert, &other_key).unwrap_err().to_string();
    assert!(err.contains("does not match"), "{err}");
    // The certificate file given as the key.
    let err = start(&cert, &cert).unwrap_err().to_string();
    assert!(err.contains("private key"), "{err}");
}

#[test]
fn tls_1_2_clients_are_served_too() {
    let ca = TestCa::new("switchboard test CA");
    let dir = temp_dir("tls12");
    let (cert, key, _) = ca.write_server_files(&dir, "localhost");
    let server = start_echo(tls_config(cert, key));
    let config = ca.client_config_for(&[&rustls::version::TLS12]);
    let mut ws = wss(server.local_addr(), "/echo", config);
    assert_eq!(
        ws.get_ref().conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let big = "x".repeat(100_000);
    for msg in ["small", big.as_str()] {
        ws.send(Message::text(msg)).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(msg));
    }
    server.stop();
}

#[test]
fn a_record_split_across_reads_survives_the_server_writing_in_between() {
    // The session holds the first half of a record when a broadcast makes the server
    // encrypt and write: the half must still be there for the second half to complete.
    let ca = TestCa::new("switchboard test CA");
    let dir = temp_dir("split");
    let (cert, key, _) = ca.write_server_files(&dir, "localhost");
    let server = start_echo(tls_config(cert, key));
    let addr = server.local_addr();
    let mut a = wss(addr, "/broadcast", ca.client_config());
    let mut b = wss(addr, "/broadcast", ca.client_config());

    // A's next message, encrypted but held back.
    let frame = switchboard::ws::encode_client_frame(
        true,
        switchboard::ws::OpCode::Text,
        b"from a, in two halves",
        [1, 2, 3, 4],
    );
    let stream = a.get_mut();
    stream.conn.writer().write_all(&frame).unwrap();
    let mut record = Vec::new();
    while stream.conn.wants_write() {
        stream.conn.write_tls(&mut record).unwrap();
    }
    let half = record.len() / 2;
    stream.sock.write_all(&record[..half]).unwrap();
    std::thread::sleep(Duration::from_millis(100));

    // B broadcasts: the server writes to A while A's record is half in.
    b.send(Message::text("from b")).unwrap();
    assert_eq!(a.read().unwrap(), Message::text("from b"));
    assert_eq!(b.read().unwrap(), Message::text("from b"));

    // The rest of A's record: the message arrives whole, to both.
    a.get_mut().sock.write_all(&record[half..]).unwrap();
    assert_eq!(a.read().unwrap(), Message::text("from a, in two halves"));
    assert_eq!(b.read().unwrap(), Message::text("from a, in two halves"));
    server.stop();
}

#[test]
fn a_tls_listener_needs_a_read_buffer_that_holds_a_record() {
    let ca = TestCa::new("switchboard test CA");
    let dir = temp_dir("small-buffer");
    let (cert, key, _) = ca.write_server_files(&dir, "localhost");
    let config = Config {
        read_buffer_size: 16 * 1024,
        ..tls_config(cert, key)
    };
    let err = switchboard::echo::echo_server(config)
        .start()
        .expect_err("refused");
    assert!(err.to_string().contains("read_buffer_size"), "{err}");
}
