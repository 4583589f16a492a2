//! The HTTP side of a SockJS endpoint: every path under its prefix — the greeting,
//! `/info`, `/iframe.html`, and `/{server}/{session}/{transport}` — and the table of its
//! sessions.
//!
//! Owns URL and method rules, CORS, caching and cookie headers, the answers that need no
//! session, and finding (or opening) the session a request belongs to. What a session
//! does with its requests is `session.rs`'s; it never touches a connection itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::frame::{self, Wrapping};
use super::session::{answer_once, Attach, SessionWire, WireInput};
use super::SockJsConfig;
use crate::http::{percent_decode, HttpResponse, Request};
use crate::hub::Hub;
use crate::id::ConnId;
use crate::reply::HttpReply;

const NO_CACHE: &str = "no-store, no-cache, must-revalidate, max-age=0";
const ONE_YEAR: &str = "public, max-age=31536000";
const JS: &str = "application/javascript;charset=UTF-8";
const TEXT: &str = "text/plain;charset=UTF-8";

enum Entry {
    /// The handler has the opening request.
    Opening,
    Live(ConnId),
    /// Closed by the application: its close frame, served until `until`.
    Closed {
        frame: String,
        until: Instant,
    },
}

/// What every request and session of one endpoint shares.
pub(crate) struct Shared {
    pub(crate) cfg: SockJsConfig,
    pub(crate) prefix: String,
    /// The WebSocket route whose handler serves the sessions.
    pub(crate) route: usize,
    sessions: Mutex<Table>,
    /// The engine's `allowed_origins`, set when the server starts.
    pub(crate) engine_origins: std::sync::OnceLock<Vec<String>>,
    iframe: String,
    etag: String,
}

struct Table {
    map: HashMap<String, Entry>,
    swept_at: Instant,
}

impl Shared {
    pub(crate) fn new(prefix: &str, route: usize, cfg: SockJsConfig) -> Self {
        let iframe = iframe_page(&cfg.client_url);
        let etag = format!("\"{:016x}\"", fnv(iframe.as_bytes()));
        Shared {
            cfg,
            prefix: prefix.to_owned(),
            route,
            sessions: Mutex::new(Table {
                map: HashMap::new(),
                swept_at: Instant::now(),
            }),
            engine_origins: std::sync::OnceLock::new(),
            iframe,
            etag,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        // A panic while holding the lock leaves a table that is still consistent.
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_live(&self, key: &str, id: ConnId) {
        self.table().map.insert(key.to_owned(), Entry::Live(id));
    }

    pub(crate) fn set_closed(&self, key: &str, frame: String) {
        let until = Instant::now() + self.cfg.disconnect_delay;
        self.table()
            .map
            .insert(key.to_owned(), Entry::Closed { frame, until });
    }

    pub(crate) fn forget(&self, key: &str) {
        self.table().map.remove(key);
    }
}

/// What a request under an endpoint's prefix asks for, from its method and the path
/// after the prefix alone (pure, so it is fuzzed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// `GET /` — "Welcome to SockJS!".
    Greeting,
    /// `/info`.
    Info,
    /// `/iframe.html` and its versions.
    Iframe,
    /// A WebSocket URL asked for without an upgrade.
    WebSocketOverHttp,
    /// `OPTIONS` on an XHR transport: CORS preflight allowing these methods.
    Preflight(&'static str),
    /// `xhr_send` / `jsonp_send`.
    Send {
        /// The session id.
        session: &'a str,
        /// `jsonp_send` (answers `ok`, may be a form).
        jsonp: bool,
    },
    /// A receiving transport.
    Receive {
        /// The session id.
        session: &'a str,
        /// Which one.
        transport: Transport,
    },
    /// Nothing here: 404.
    NotFound,
}

/// The receiving transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `xhr`: polling, one answer per request.
    Xhr,
    /// `xhr_streaming`: a chunked answer of frames, each on a line.
    XhrStreaming,
    /// `eventsource`: server-sent events.
    EventSource,
    /// `htmlfile`: a streamed page of script tags.
    HtmlFile,
    /// `jsonp`: polling, each answer a callback call.
    Jsonp,
}

/// Classifies a request: `rest` is its path after the endpoint's prefix.
pub fn classify<'a>(rest: &'a str, method: &str) -> Target<'a> {
    match rest {
        "" | "/" => return Target::Greeting,
        "/info" => return Target::Info,
        "/websocket" => return Target::WebSocketOverHttp,
        r if is_iframe_path(r) => return Target::Iframe,
        _ => {}
    }
    let mut parts = rest.strip_prefix('/').unwrap_or("\0").split('/');
    let (Some(server), Some(session), Some(transport), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Target::NotFound;
    };
    let valid = |s: &str| !s.is_empty() && !s.contains('.');
    if !valid(server) || !valid(session) {
        return Target::NotFound;
    }
    let receive = |transport| Target::Receive { session, transport };
    match (transport, method) {
        ("xhr" | "xhr_send" | "xhr_streaming", "OPTIONS") => Target::Preflight("OPTIONS, POST"),
        ("xhr_send", "POST") => Target::Send {
            session,
            jsonp: false,
        },
        ("jsonp_send", "POST") => Target::Send {
            session,
            jsonp: true,
        },
        ("websocket", _) => Target::WebSocketOverHttp,
        ("xhr", "POST") => receive(Transport::Xhr),
        ("xhr_streaming", "POST") => receive(Transport::XhrStreaming),
        ("eventsource", "GET") => receive(Transport::EventSource),
        ("htmlfile", "GET") => receive(Transport::HtmlFile),
        ("jsonp", "GET") => receive(Transport::Jsonp),
        _ => Target::NotFound,
    }
}

/// The messages of an `xhr_send` or `jsonp_send` body (`jsonp_send` may be a form
/// with the payload in `d`).
pub fn send_payload(body: &[u8], form: bool) -> Result<Vec<String>, frame::PayloadError> {
    match form {
        true => frame::parse_payload(form_field(body, "d").unwrap_or_default().as_bytes()),
        false => frame::parse_payload(body),
    }
}

/// Serves one request under the endpoint's prefix.
pub(crate) fn serve(shared: &Arc<Shared>, req: &Request, hub: &Hub, reply: HttpReply) {
    let rest = req.path.get(shared.prefix.len()..).unwrap_or("");
    let resp = match classify(rest, &req.method) {
        Target::Greeting => greeting(req),
        Target::Info => info(shared, req),
        Target::Iframe => iframe(shared, req),
        Target::WebSocketOverHttp => websocket_over_http(shared, req),
        Target::Preflight(methods) => options(req, methods),
        Target::NotFound => not_found(),
        Target::Send { session, jsonp } => match refuse_origin(shared, req) {
            Some(resp) => resp,
            None => return send(shared, req, hub, reply, session, jsonp),
        },
        Target::Receive { session, transport } => match refuse_origin(shared, req) {
            Some(resp) => resp,
            None => return receiving(shared, req, hub, reply, session, transport),
        },
    };
    reply.send(resp);
}

fn greeting(req: &Request) -> HttpResponse {
    match req.method.as_str() {
        "GET" | "HEAD" => typed(200, TEXT, "Welcome to SockJS!\n"),
        _ => not_allowed("GET"),
    }
}

fn info(shared: &Shared, req: &Request) -> HttpResponse {
    match req.method.as_str() {
        "GET" => {
            let body = serde_json::json!({
                "websocket": shared.cfg.websocket,
                "cookie_needed": shared.cfg.cookie_needed,
                "origins": ["*:*"],
                "entropy": entropy(),
            });
            let resp = typed(200, "application/json;charset=UTF-8", body.to_string())
                .header("Cache-Control", NO_CACHE);
            cors(resp, req)
        }
        "OPTIONS" => options(req, "OPTIONS, GET"),
        _ => not_allowed("GET, OPTIONS"),
    }
}

fn iframe(shared: &Shared, req: &Request) -> HttpResponse {
    if req.method != "GET" && req.method != "HEAD" {
        return not_allowed("GET");
    }
    if req.header("If-None-Match") == Some(shared.etag.as_str()) {
        return HttpResponse {
            status: 304,
            headers: vec![("ETag".into(), shared.etag.clone())],
            body: Vec::new(),
        };
    }
    typed(200, "text/html;charset=UTF-8", shared.iframe.clone())
        .header("Cache-Control", ONE_YEAR)
        .header("Expires", "Thu, 31 Dec 2099 23:59:59 GMT")
        .header("ETag", &shared.etag)
}

/// `/iframe.html`, `/iframe-<version>.html`: letters, digits, `.`, `-`, `_` between.
fn is_iframe_path(rest: &str) -> bool {
    rest.strip_prefix("/iframe")
        .and_then(|r| r.strip_suffix(".html"))
        .is_some_and(|mid| {
            mid.is_empty()
                || (mid.starts_with('-')
                    && mid
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)))
        })
}

/// A plain request for a WebSocket URL: why it is not an upgrade.
fn websocket_over_http(shared: &Shared, req: &Request) -> HttpResponse {
    if !shared.cfg.websocket {
        return HttpResponse::text(404, "WebSocket is disabled on this endpoint\n");
    }
    if req.method != "GET" {
        return not_allowed("GET");
    }
    if req.has_token("Upgrade", "websocket") {
        return HttpResponse::text(400, "\"Connection\" must be \"Upgrade\".");
    }
    HttpResponse::text(400, "Can \"Upgrade\" only to \"WebSocket\".")
}

fn receiving(
    shared: &Arc<Shared>,
    req: &Request,
    hub: &Hub,
    reply: HttpReply,
    session: &str,
    transport: Transport,
) {
    let callback = req.query_param("c").unwrap_or_default();
    let needs_callback = matches!(transport, Transport::HtmlFile | Transport::Jsonp);
    if needs_callback && !frame::valid_callback(&callback) {
        return reply.send(HttpResponse::text(500, "\"callback\" parameter required"));
    }
    let (wrapping, stream, content_type) = match transport {
        Transport::Xhr => (Wrapping::Line, None, JS),
        Transport::XhrStreaming => {
            let mut prelude = vec![b'h'; 2048];
            prelude.push(b'\n');
            (Wrapping::Line, Some(prelude), JS)
        }
        Transport::EventSource => (
            Wrapping::EventSource,
            Some(b"\r\n".to_vec()),
            "text/event-stream;charset=UTF-8",
        ),
        Transport::HtmlFile => (
            Wrapping::HtmlFile,
            Some(htmlfile_prelude(&callback)),
            "text/html;charset=UTF-8",
        ),
        Transport::Jsonp => (Wrapping::Jsonp, None, JS),
    };
    let head = transport_headers(shared, req, typed(200, content_type, ""));
    let attach = Attach {
        reply,
        head,
        wrapping,
        callback,
        stream,
    };
    receive(shared, req, hub, session, attach);
}

/// Hands a receiving request to its session, opening the session if there is none.
fn receive(shared: &Arc<Shared>, req: &Request, hub: &Hub, session: &str, attach: Attach) {
    let mut table = shared.table();
    sweep(&mut table);
    match table.map.get(session) {
        Some(Entry::Live(id)) => {
            let id = *id;
            drop(table);
            hub.to_wire(id, Box::new(WireInput::Attach(attach)));
        }
        Some(Entry::Closed { frame, .. }) => {
            let frame = frame.clone();
            drop(table);
            answer_once(attach, &frame);
        }
        Some(Entry::Opening) => {
            drop(table);
            answer_once(
                attach,
                &frame::close_frame(2010, "Another connection still open"),
            );
        }
        None if table.map.len() >= shared.cfg.max_sessions => {
            drop(table);
            tracing::warn!(
                limit = shared.cfg.max_sessions,
                "SockJS session refused: sockjs.max_sessions reached"
            );
            let resp = HttpResponse::text(503, "too many SockJS sessions\n");
            attach.reply.send(transport_headers(shared, req, resp));
        }
        None => {
            table.map.insert(session.to_owned(), Entry::Opening);
            drop(table);
            let ip = attach.reply.remote_ip();
            let wire = SessionWire::http(shared.clone(), hub.clone(), session.to_owned(), attach);
            let worker = fnv(session.as_bytes()) as usize;
            hub.open_virtual(worker, shared.route, req.clone(), ip, Box::new(wire));
        }
    }
}

/// Forgets closed sessions whose close frame has been served long enough (at most
/// once a second: the walk is over every session).
fn sweep(table: &mut Table) {
    let now = Instant::now();
    if now.duration_since(table.swept_at).as_millis() < 1000 {
        return;
    }
    table.swept_at = now;
    table
        .map
        .retain(|_, e| !matches!(e, Entry::Closed { until, .. } if *until <= now));
}

/// `xhr_send` / `jsonp_send`: the client's messages for a live session.
fn send(shared: &Shared, req: &Request, hub: &Hub, reply: HttpReply, session: &str, jsonp: bool) {
    let msgs = match send_payload(&req.body, jsonp && is_form(req)) {
        Ok(m) => m,
        Err(e) => {
            let resp = transport_headers(shared, req, HttpResponse::text(500, e.to_string()));
            return reply.send(resp);
        }
    };
    let id = match shared.table().map.get(session) {
        Some(Entry::Live(id)) => *id,
        _ => return reply.send(not_found()),
    };
    let resp = if jsonp {
        typed(200, TEXT, "ok")
    } else {
        typed(204, TEXT, "")
    };
    let resp = transport_headers(shared, req, resp);
    hub.to_wire(id, Box::new(WireInput::Messages(msgs, Some((reply, resp)))));
}

fn is_form(req: &Request) -> bool {
    req.header("Content-Type").is_some_and(|ct| {
        ct.split(';').next().is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    })
}

/// The value of `name` in a form body (`+` is a space, `%XX` a byte).
fn form_field(body: &[u8], name: &str) -> Option<String> {
    let body = std::str::from_utf8(body).ok()?;
    body.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then(|| percent_decode(&v.replace('+', " ")))?
    })
}

/// A session request that the endpoint's origin rule refuses (403), if it does.
pub(crate) fn refuse_origin(shared: &Shared, req: &Request) -> Option<HttpResponse> {
    // No Origin: not a browser, which the handshake lets through too.
    let origin = req.header("Origin")?;
    let listed = |list: &[String]| {
        list.iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    };
    // The engine's allow-list guards every way in, as it does the WebSocket handshake.
    let engine = shared.engine_origins.get().map_or(&[][..], Vec::as_slice);
    let allowed = listed(&shared.cfg.allowed_origins) && (engine.is_empty() || listed(engine));
    if allowed {
        return None;
    }
    tracing::info!(%origin, path = %req.path, "SockJS request refused: origin not allowed");
    Some(HttpResponse::text(403, "origin not allowed\n"))
}

/// The headers of every transport answer: CORS, no caching, the cookie if asked.
fn transport_headers(shared: &Shared, req: &Request, resp: HttpResponse) -> HttpResponse {
    let mut resp = cors(resp.header("Cache-Control", NO_CACHE), req);
    if shared.cfg.cookie_needed {
        let value = cookie(req, "JSESSIONID").unwrap_or_else(|| "dummy".into());
        resp = resp.header("Set-Cookie", &format!("JSESSIONID={value}; Path=/"));
    }
    resp
}

fn cookie(req: &Request, name: &str) -> Option<String> {
    req.headers_all("Cookie")
        .flat_map(|h| h.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
}

/// CORS with credentials: the request's origin echoed (`*` for none or `null`).
fn cors(resp: HttpResponse, req: &Request) -> HttpResponse {
    let origin = match req.header("Origin") {
        Some(o) if o != "null" => o.to_owned(),
        _ => "*".to_owned(),
    };
    let mut resp = resp
        .header("Access-Control-Allow-Origin", &origin)
        .header("Access-Control-Allow-Credentials", "true");
    if origin != "*" {
        resp = resp.header("Vary", "Origin");
    }
    match req.header("Access-Control-Request-Headers") {
        Some(h) if !h.trim().is_empty() => resp.header("Access-Control-Allow-Headers", h),
        _ => resp,
    }
}

fn options(req: &Request, methods: &str) -> HttpResponse {
    let resp = HttpResponse {
        status: 204,
        headers: vec![
            ("Cache-Control".into(), ONE_YEAR.into()),
            ("Expires".into(), "Thu, 31 Dec 2099 23:59:59 GMT".into()),
            ("Access-Control-Max-Age".into(), "31536000".into()),
            ("Access-Control-Allow-Methods".into(), methods.into()),
        ],
        body: Vec::new(),
    };
    cors(resp, req)
}

fn typed(status: u16, content_type: &str, body: impl Into<String>) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("Content-Type".into(), content_type.into())],
        body: body.into().into_bytes(),
    }
}

fn not_found() -> HttpResponse {
    HttpResponse::text(404, "Not found\n")
}

/// 405 with `Allow` and no body.
fn not_allowed(allow: &str) -> HttpResponse {
    HttpResponse {
        status: 405,
        headers: vec![("Allow".into(), allow.into())],
        body: Vec::new(),
    }
}

fn htmlfile_prelude(callback: &str) -> Vec<u8> {
    let mut page = format!(
        "<!doctype html>\n<html><head>\n  \
<meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  \
<meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n\
</head><body><h2>Don't panic!</h2>\n  <script>\n    \
document.domain = document.domain;\n    var c = parent.{callback};\n    c.start();\n    \
function p(d) {{c.message(d);}};\n    window.onload = function() {{c.stop();}};\n  </script>"
    );
    // Some browsers render nothing of a streamed page before its first kilobyte.
    page.push_str(&" ".repeat(1024usize.saturating_sub(page.len()) + 1));
    page.push_str("\r\n\r\n");
    page.into_bytes()
}

fn iframe_page(client_url: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html>\n<head>\n  \
<meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  \
<meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n  <script>\n    \
document.domain = document.domain;\n    \
_sockjs_onload = function(){{SockJS.bootstrap_iframe();}};\n  </script>\n  \
<script src=\"{client_url}\"></script>\n</head>\n<body>\n  <h2>Don't panic!</h2>\n  \
<p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>\n</body>\n</html>"
    )
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A number the browser seeds its generator with: not for secrets, only unpredictable
/// from one request to the next.
fn entropy() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iframe_paths() {
        for ok in [
            "/iframe.html",
            "/iframe-a.html",
            "/iframe-.html",
            "/iframe-0.1.2abc-dirty.2144.html",
        ] {
            assert!(is_iframe_path(ok), "{ok}");
        }
        for bad in [
            "/iframe.htm",
            "/iframe",
            "/IFRAME.HTML",
            "/iframe.HTML",
            "/iframe-/.html",
            "/iframea.html",
        ] {
            assert!(!is_iframe_path(bad), "{bad}");
        }
    }

    #[test]
    fn form_fields_decode() {
        assert_eq!(
            form_field(b"d=%5B%22x%22%5D", "d").as_deref(),
            Some("[\"x\"]")
        );
        assert_eq!(form_field(b"p=p", "d"), None);
        assert_eq!(form_field(b"a=1&d=b+c", "d").as_deref(), Some("b c"));
    }

    #[test]
    fn htmlfile_prelude_is_over_a_kilobyte() {
        assert!(htmlfile_prelude("cb").len() > 1024);
    }
}
