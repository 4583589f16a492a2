//! SockJS 0.3.3 over real sockets: the static URLs, every transport, sessions that
//! outlive requests, the close frame, the disconnect delay, the framed and raw
//! WebSocket transports, and the chat node and STOMP broker run unchanged on a session.
mod common;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::chat::node;
use common::http::{read_chunk, read_head, Resp};
use common::{config, connect, start};
use switchboard::http::{HttpResponse, Request};
use switchboard::sockjs::SockJsConfig;
use switchboard::{Context, Handler, Message, Server};
use tungstenite::Message as WsMessage;

fn request_bytes(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
    close: bool,
) -> Vec<u8> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: x\r\n");
    if close {
        r.push_str("Connection: close\r\n");
    }
    for (n, v) in headers {
        r.push_str(&format!("{n}: {v}\r\n"));
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    r.into_bytes()
}

/// A whole exchange on its own connection.
fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&request_bytes(method, path, headers, body, true))
        .unwrap();
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("Transfer-Encoding") && v == "chunked");
    let body = if chunked {
        let mut all = String::new();
        loop {
            let c = read_chunk(&mut r);
            if c.is_empty() {
                break;
            }
            all.push_str(&c);
        }
        all
    } else {
        let mut b = String::new();
        r.read_to_string(&mut b).unwrap();
        b
    };
    Resp {
        status,
        headers,
        body,
    }
}

/// Starts a streaming request; the reader is past the head.
fn stream(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> (u16, Vec<(String, String)>, BufReader<TcpStream>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&request_bytes(method, path, &[], "", false))
        .unwrap();
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    (status, headers, r)
}

fn echo_node() -> switchboard::ServerHandle {
    start(switchboard::echo::sockjs_echo_server(config(2)))
}

#[test]
fn static_urls_answer_as_the_protocol_says() {
    let server = echo_node();
    let addr = server.local_addr();
    for p in ["/echo", "/echo/"] {
        let r = http(addr, "GET", p, &[], "");
        assert_eq!((r.status, r.body.as_str()), (200, "Welcome to SockJS!\n"));
    }
    let r = http(
        addr,
        "GET",
        "/echo/info",
        &[("Origin", "http://a.example")],
        "",
    );
    assert_eq!(r.status, 200);
    let info: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(info["websocket"], true);
    assert_eq!(info["cookie_needed"], false);
    assert_eq!(info["origins"], serde_json::json!(["*:*"]));
    assert!(info["entropy"].is_u64());
    assert_eq!(
        r.header("Access-Control-Allow-Origin"),
        Some("http://a.example")
    );
    assert_eq!(r.header("Access-Control-Allow-Credentials"), Some("true"));
    assert!(r.header("Cache-Control").unwrap().contains("no-cache"));
    let off = http(addr, "GET", "/disabled_websocket_echo/info", &[], "");
    assert!(off.body.contains("\"websocket\":false"));

    let r = http(addr, "OPTIONS", "/echo/info", &[("Origin", "null")], "");
    assert_eq!(r.status, 204);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    assert_eq!(
        r.header("Access-Control-Allow-Methods"),
        Some("OPTIONS, GET")
    );

    let page = http(addr, "GET", "/echo/iframe-1.6.1.html?t=1", &[], "");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("SockJS.bootstrap_iframe()"));
    let etag = page.header("ETag").unwrap().to_owned();
    let again = http(
        addr,
        "GET",
        "/echo/iframe.html",
        &[("If-None-Match", &etag)],
        "",
    );
    assert_eq!((again.status, again.body.as_str()), (304, ""));
    assert_eq!(http(addr, "GET", "/echo/IFRAME.HTML", &[], "").status, 404);

    for bad in ["//", "/a./a", "/a/a.", "/", "///"] {
        let r = http(addr, "POST", &format!("/echo{bad}/xhr"), &[], "");
        assert_eq!(r.status, 404, "{bad}");
    }
    let r = http(addr, "GET", "/echo/0/0/websocket", &[], "");
    assert_eq!(r.status, 400);
    assert!(r.body.contains("Can \"Upgrade\" only to \"WebSocket\"."));
    let r = http(addr, "POST", "/echo/0/0/websocket", &[], "");
    assert_eq!((r.status, r.header("Allow")), (405, Some("GET")));
    server.stop();
}

#[test]
fn xhr_polling_carries_a_session_across_requests() {
    let server = echo_node();
    let addr = server.local_addr();
    let url = "/echo/000/polling-1";
    let r = http(addr, "POST", &format!("{url}/xhr"), &[], "");
    assert_eq!((r.status, r.body.as_str()), (200, "o\n"));
    assert_eq!(
        r.header("Content-Type"),
        Some("application/javascript;charset=UTF-8")
    );
    let r = http(
        addr,
        "POST",
        &format!("{url}/xhr_send"),
        &[],
        r#"["a","b\u2028"]"#,
    );
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    let r = http(addr, "POST", &format!("{url}/xhr"), &[], "");
    assert_eq!(r.body, "a[\"a\",\"b\\u2028\"]\n");

    let r = http(addr, "POST", &format!("{url}/xhr_send"), &[], r#"["x"#);
    assert_eq!(r.status, 500);
    assert!(r.body.contains("Broken JSON encoding."));
    let r = http(addr, "POST", &format!("{url}/xhr_send"), &[], "");
    assert!(r.body.contains("Payload expected."));
    let r = http(addr, "POST", "/echo/000/nobody/xhr_send", &[], r#"["x"]"#);
    assert_eq!(r.status, 404);

    // A second receiver while one waits gets c[2010].
    let (_, _, first) = {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&request_bytes(
            "POST",
            &format!("{url}/xhr"),
            &[],
            "",
            false,
        ))
        .unwrap();
        (0, (), s)
    };
    std::thread::sleep(Duration::from_millis(200));
    let r = http(addr, "POST", &format!("{url}/xhr"), &[], "");
    assert_eq!(r.body, "c[2010,\"Another connection still open\"]\n");
    // The waiting one gets what is sent next.
    http(addr, "POST", &format!("{url}/xhr_send"), &[], r#"["late"]"#);
    let mut r = BufReader::new(first);
    let (status, _) = read_head(&mut r);
    assert_eq!(status, 200);
    let mut body = vec![0; "a[\"late\"]\n".len()];
    r.read_exact(&mut body).unwrap();
    assert_eq!(String::from_utf8(body).unwrap(), "a[\"late\"]\n");
    server.stop();
}

#[test]
fn streaming_transports_send_a_prelude_then_frames_until_the_limit() {
    let server = echo_node();
    let addr = server.local_addr();
    let url = "/echo/000/streaming-1";
    let (status, headers, mut r) = stream(addr, "POST", &format!("{url}/xhr_streaming"));
    assert_eq!(status, 200);
    assert!(headers
        .iter()
        .any(|(n, v)| n == "Transfer-Encoding" && v == "chunked"));
    assert_eq!(read_chunk(&mut r), format!("{}\n", "h".repeat(2048)));
    assert_eq!(read_chunk(&mut r), "o\n");
    let msg = format!("\"{}\"", "x".repeat(128));
    // The echo endpoint ends a streaming answer after 4096 bytes.
    let mut sent = 2;
    while sent < 4096 {
        let s = http(
            addr,
            "POST",
            &format!("{url}/xhr_send"),
            &[],
            &format!("[{msg}]"),
        );
        assert_eq!(s.status, 204);
        let frame = read_chunk(&mut r);
        assert_eq!(frame, format!("a[{msg}]\n"));
        sent += frame.len();
    }
    assert_eq!(read_chunk(&mut r), "", "the stream ends at the limit");
    // The session lives on: the client reconnects and gets what was sent meanwhile.
    http(
        addr,
        "POST",
        &format!("{url}/xhr_send"),
        &[],
        r#"["after"]"#,
    );
    let (_, _, mut r) = stream(addr, "POST", &format!("{url}/xhr_streaming"));
    read_chunk(&mut r);
    assert_eq!(read_chunk(&mut r), "a[\"after\"]\n");

    let url = "/echo/000/es-1";
    let (status, headers, mut r) = stream(addr, "GET", &format!("{url}/eventsource"));
    assert_eq!(status, 200);
    assert!(headers
        .iter()
        .any(|(_, v)| v == "text/event-stream;charset=UTF-8"));
    assert_eq!(read_chunk(&mut r), "\r\n");
    assert_eq!(read_chunk(&mut r), "data: o\r\n\r\n");
    http(
        addr,
        "POST",
        &format!("{url}/xhr_send"),
        &[],
        r#"["  \u0000\n\r "]"#,
    );
    assert_eq!(read_chunk(&mut r), "data: a[\"  \\u0000\\n\\r \"]\r\n\r\n");

    let url = "/echo/000/html-1";
    let (_, _, mut r) = stream(addr, "GET", &format!("{url}/htmlfile?c=%63allback"));
    let prelude = read_chunk(&mut r);
    assert!(prelude.len() > 1024 && prelude.contains("var c = parent.callback;"));
    assert_eq!(read_chunk(&mut r), "<script>\np(\"o\");\n</script>\r\n");
    let r = http(addr, "GET", "/echo/a/a/htmlfile", &[], "");
    assert_eq!(r.status, 500);
    assert!(r.body.contains("\"callback\" parameter required"));
    server.stop();
}

#[test]
fn jsonp_polling_and_the_cookie() {
    let server = echo_node();
    let addr = server.local_addr();
    let url = "/cookie_needed_echo/000/jsonp-1";
    let r = http(addr, "GET", &format!("{url}/jsonp?c=cb"), &[], "");
    assert_eq!(r.body, "cb(\"o\");\r\n");
    assert!(r
        .header("Set-Cookie")
        .unwrap()
        .starts_with("JSESSIONID=dummy;"));
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = http(
        addr,
        "POST",
        &format!("{url}/jsonp_send"),
        &form,
        "d=%5B%22x%22%5D",
    );
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    let r = http(addr, "POST", &format!("{url}/jsonp_send"), &form, "p=p");
    assert!(r.body.contains("Payload expected."));
    let cookie = [("Cookie", "JSESSIONID=abc")];
    let r = http(addr, "GET", &format!("{url}/jsonp?c=cb"), &cookie, "");
    assert_eq!(r.body, "cb(\"a[\\\"x\\\"]\");\r\n");
    assert!(r
        .header("Set-Cookie")
        .unwrap()
        .starts_with("JSESSIONID=abc;"));
    server.stop();
}

#[test]
fn a_closed_session_serves_its_close_frame() {
    let server = echo_node();
    let addr = server.local_addr();
    let url = "/close/000/closed-1";
    assert_eq!(
        http(addr, "POST", &format!("{url}/xhr"), &[], "").body,
        "o\n"
    );
    for _ in 0..2 {
        let r = http(addr, "POST", &format!("{url}/xhr"), &[], "");
        assert_eq!(r.body, "c[3000,\"Go away!\"]\n");
    }
    let (_, _, mut r) = stream(addr, "POST", "/close/000/closed-2/xhr_streaming");
    read_chunk(&mut r);
    assert_eq!(read_chunk(&mut r), "o\n");
    assert_eq!(read_chunk(&mut r), "c[3000,\"Go away!\"]\n");
    assert_eq!(read_chunk(&mut r), "");
    server.stop();
}

#[test]
fn an_aborted_receiver_ends_the_session() {
    let server = echo_node();
    let addr = server.local_addr();
    let url = "/echo/000/abort-1";
    assert_eq!(
        http(addr, "POST", &format!("{url}/xhr"), &[], "").body,
        "o\n"
    );
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&request_bytes(
        "POST",
        &format!("{url}/xhr"),
        &[],
        "",
        false,
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(s);
    std::thread::sleep(Duration::from_millis(200));
    let r = http(addr, "POST", &format!("{url}/xhr"), &[], "");
    assert!(
        r.body == "o\n" || r.body == "c[1002,\"Connection interrupted\"]\n",
        "{}",
        r.body
    );
    server.stop();
}

/// Counts opens and closes, echoes, and broadcasts `tick` to the route.
struct Counting(Arc<AtomicUsize>, Arc<AtomicUsize>);

impl Handler for Counting {
    fn on_open(&self, _ctx: &mut Context<'_>, req: &Request) -> Result<(), HttpResponse> {
        if req.query_param("token").as_deref() == Some("bad") {
            return Err(HttpResponse::text(401, "bad token"));
        }
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn on_message(&self, ctx: &mut Context<'_>, msg: Message) {
        match msg {
            Message::Text(t) if t == "everyone" => ctx.broadcast(Message::Text("tick".into())),
            m => ctx.send(m),
        }
    }
    fn on_close(&self, _ctx: &mut Context<'_>, _code: u16, _reason: &str) {
        self.1.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn sessions_are_connections_to_the_handler_and_expire_without_a_receiver() {
    let (opened, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let cfg = SockJsConfig {
        disconnect_delay: Duration::from_millis(500),
        ..SockJsConfig::default()
    };
    let server = start(
        Server::builder()
            .config(config(2))
            .route("/s", Counting(opened.clone(), closed.clone()))
            .sockjs("/s", cfg),
    );
    let addr = server.local_addr();
    // The handler's verdict answers the first request.
    let r = http(addr, "POST", "/s/0/refused/xhr?token=bad", &[], "");
    assert_eq!((r.status, r.body.as_str()), (401, "bad token"));
    assert_eq!(http(addr, "POST", "/s/0/refused/xhr", &[], "").body, "o\n");

    // A broadcast from a WebSocket client reaches a SockJS session waiting for nobody.
    assert_eq!(http(addr, "POST", "/s/0/b/xhr", &[], "").body, "o\n");
    let mut ws = connect(addr, "/s");
    ws.send(WsMessage::Text("everyone".into())).unwrap();
    assert_eq!(ws.read().unwrap(), WsMessage::Text("tick".into()));
    let r = http(addr, "POST", "/s/0/b/xhr", &[], "");
    assert_eq!(r.body, "a[\"tick\"]\n");
    assert_eq!(opened.load(Ordering::SeqCst), 3);

    // Without a receiver for the disconnect delay, both sessions end.
    let t = Instant::now();
    while closed.load(Ordering::SeqCst) < 2 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(closed.load(Ordering::SeqCst), 2);
    // The id is free again: a new session.
    assert_eq!(http(addr, "POST", "/s/0/b/xhr", &[], "").body, "o\n");
    server.stop();
}

#[test]
fn websocket_transports_framed_and_raw() {
    let server = echo_node();
    let addr = server.local_addr();
    let mut ws = connect(addr, "/echo/000/ws-1/websocket");
    assert_eq!(ws.read().unwrap(), WsMessage::Text("o".into()));
    ws.send(WsMessage::Text("".into())).unwrap();
    ws.send(WsMessage::Text(r#"["a","b"]"#.into())).unwrap();
    // Messages written in one turn leave in one array frame.
    let mut got: Vec<String> = Vec::new();
    while got.len() < 2 {
        let WsMessage::Text(f) = ws.read().unwrap() else {
            panic!("text frames only");
        };
        let arr: Vec<String> = serde_json::from_str(f.strip_prefix('a').unwrap()).unwrap();
        got.extend(arr);
    }
    assert_eq!(got, ["a", "b"]);
    ws.send(WsMessage::Text(r#"["a"#.into())).unwrap();
    assert!(matches!(ws.read(), Ok(WsMessage::Close(_)) | Err(_)));

    let mut ws = connect(addr, "/close/000/ws-2/websocket");
    assert_eq!(ws.read().unwrap(), WsMessage::Text("o".into()));
    assert_eq!(
        ws.read().unwrap(),
        WsMessage::Text(r#"c[3000,"Go away!"]"#.into())
    );
    assert!(matches!(ws.read(), Ok(WsMessage::Close(_)) | Err(_)));

    let mut raw = connect(addr, "/echo/websocket");
    raw.send(WsMessage::Text("Hello world!\u{ffff}".into()))
        .unwrap();
    assert_eq!(
        raw.read().unwrap(),
        WsMessage::Text("Hello world!\u{ffff}".into())
    );
    assert!(
        tungstenite::connect(format!("ws://{addr}/disabled_websocket_echo/0/x/websocket")).is_err()
    );
    server.stop();
}

#[test]
fn the_chat_node_and_the_stomp_broker_run_on_sockjs_sessions() {
    let server = node(&["auth.mode=demo", "sockjs.chat=true", "sockjs.stomp=true"]);
    let addr = server.local_addr();
    // Chat JSON over xhr polling, authenticated by the handshake token.
    let url = "/ws/000/chat-1";
    let r = http(addr, "POST", &format!("{url}/xhr?token=alice"), &[], "");
    assert_eq!(r.body, "o\n");
    let ping =
        serde_json::json!([serde_json::json!({"type": "PING", "requestId": "p1"}).to_string()]);
    let r = http(
        addr,
        "POST",
        &format!("{url}/xhr_send"),
        &[],
        &ping.to_string(),
    );
    assert_eq!(r.status, 204);
    let mut got = String::new();
    for _ in 0..5 {
        got += &http(addr, "POST", &format!("{url}/xhr"), &[], "").body;
        if got.contains("PONG") {
            break;
        }
    }
    assert!(got.contains("PONG") && got.contains("p1"), "{got}");

    // STOMP over xhr polling: CONNECT, SUBSCRIBE, SEND to the topic, MESSAGE back.
    let url = "/stomp/000/stomp-1";
    assert_eq!(
        http(addr, "POST", &format!("{url}/xhr?token=bob"), &[], "").body,
        "o\n"
    );
    let frames = serde_json::json!([
        "CONNECT\naccept-version:1.2\nhost:x\nheart-beat:0,0\n\n\0",
        "SUBSCRIBE\nid:0\ndestination:/topic/t\n\n\0",
        "SEND\ndestination:/topic/t\ncontent-type:text/plain\n\nhello\0",
    ]);
    let r = http(
        addr,
        "POST",
        &format!("{url}/xhr_send"),
        &[],
        &frames.to_string(),
    );
    assert_eq!(r.status, 204);
    let mut got = String::new();
    for _ in 0..5 {
        let body = http(addr, "POST", &format!("{url}/xhr"), &[], "").body;
        got += &body;
        if got.contains("MESSAGE") {
            break;
        }
    }
    assert!(
        got.contains("CONNECTED") && got.contains("version:1.2"),
        "{got}"
    );
    assert!(got.contains("MESSAGE") && got.contains("hello"), "{got}");
    server.stop();
}

#[test]
fn a_receiving_session_outlives_the_engine_idle_timeout_on_heart_beats() {
    let (opened, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut engine = config(1);
    engine.heartbeat_interval_ms = 0;
    engine.idle_timeout_ms = 1000;
    let cfg = SockJsConfig {
        heartbeat: Duration::from_millis(300),
        ..SockJsConfig::default()
    };
    let server = start(
        Server::builder()
            .config(engine)
            .route("/s", Counting(opened, closed.clone()))
            .sockjs("/s", cfg),
    );
    let addr = server.local_addr();
    let (_, _, mut r) = stream(addr, "POST", "/s/0/idle/xhr_streaming");
    read_chunk(&mut r);
    assert_eq!(read_chunk(&mut r), "o\n");
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(2500) {
        assert_eq!(read_chunk(&mut r), "h\n");
    }
    assert_eq!(
        closed.load(Ordering::SeqCst),
        0,
        "the session is still open"
    );
    http(addr, "POST", "/s/0/idle/xhr_send", &[], r#"["still here"]"#);
    loop {
        let c = read_chunk(&mut r);
        if c != "h\n" {
            assert_eq!(c, "a[\"still here\"]\n");
            break;
        }
    }
    server.stop();
}

#[test]
fn origin_allow_lists_guard_every_transport() {
    let (opened, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut engine = config(1);
    engine.allowed_origins = vec!["https://ok.example".into(), "https://b.example".into()];
    let cfg = SockJsConfig {
        allowed_origins: vec!["https://OK.example".into(), "https://c.example".into()],
        ..SockJsConfig::default()
    };
    let server = start(
        Server::builder()
            .config(engine)
            .route("/s", Counting(opened, closed))
            .sockjs("/s", cfg),
    );
    let addr = server.local_addr();
    let ok = [("Origin", "https://ok.example")];
    assert_eq!(http(addr, "POST", "/s/0/o1/xhr", &ok, "").body, "o\n");
    // Not a browser: no Origin, no check, as at the handshake.
    assert_eq!(http(addr, "POST", "/s/0/o2/xhr", &[], "").body, "o\n");
    // Allowed by the engine but not by the endpoint, and the other way round.
    for origin in [
        "https://b.example",
        "https://c.example",
        "https://evil.example",
    ] {
        let r = http(addr, "POST", "/s/0/o3/xhr", &[("Origin", origin)], "");
        assert_eq!(r.status, 403, "{origin}");
        let r = http(
            addr,
            "POST",
            "/s/0/o1/xhr_send",
            &[("Origin", origin)],
            r#"["x"]"#,
        );
        assert_eq!(r.status, 403, "{origin}");
    }
    // The framed WebSocket transport applies the endpoint's list too.
    let req = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{addr}/s/0/o4/websocket"
    ))
    .map(|mut r| {
        r.headers_mut()
            .insert("Origin", "https://b.example".parse().unwrap());
        r
    })
    .unwrap();
    assert!(tungstenite::connect(req).is_err());
    server.stop();
}
