//! Application destinations (`/app/**`) forwarded to an HTTP backend: the equivalent of
//! Spring's `@MessageMapping`, with the answer going where `@SendTo` / `@SendToUser`
//! would send it.
//!
//! A SEND to `/app/x` becomes `POST <url>` with a JSON body
//! `{"destination", "user", "session", "headers", "body"}` on one of the backend's own
//! threads (a worker never waits for a backend). The answer:
//! - `204`, or `200` with an empty body: nothing is sent;
//! - `200` with `{"body": …, "destination"?: …, "contentType"?: …}`: `body` (a string as
//!   it is, any other JSON value serialised) is published to `destination`. A destination
//!   under the user prefix without a user name (`/user/queue/reply`) is the sender's own
//!   (`@SendToUser`); with none, it goes to the first broker prefix plus the destination
//!   without the application prefix (`/app/greet` → `/topic/greet`), Spring's default
//!   for a `@MessageMapping` return value;
//! - anything else (a status, a timeout, bad JSON): logged and counted, the session goes on.
//!
//! Owns the job queue, the backend threads and a one-request HTTP/1.1 client. It does not
//! touch sessions: answers are published through [`Stomp::push`].

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};
use serde_json::{json, Map, Value};

use super::frame::Frame;
use super::Stomp;
use crate::http::ChunkedDecoder;
use crate::hub::Hub;

/// Largest backend answer read, in bytes; a longer one is an error.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// Where and how to call the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendSettings {
    /// `http://host:port/path`.
    pub url: String,
    /// Connect, write and read timeout of one call.
    pub timeout: Duration,
    /// Threads calling the backend at once.
    pub threads: usize,
    /// SENDs waiting for a thread; beyond, the sender gets an ERROR.
    pub max_queue: usize,
}

/// `url` split for the client.
#[derive(Debug, Clone)]
struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("backend url {url:?} must start with http://"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let with_port = if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("backend url {url:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("backend url {url:?}: no address"))?;
    Ok(Target {
        addr,
        host: host.to_string(),
        path: path.to_string(),
    })
}

/// One forwarded SEND.
struct Job {
    stomp: Arc<Stomp>,
    hub: Hub,
    user: String,
    session: String,
    frame: Frame,
}

/// The backend's queue; its threads end when it is dropped.
pub(crate) struct Backend {
    tx: Sender<Job>,
    url: String,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend").field("url", &self.url).finish()
    }
}

impl Backend {
    /// Checks the URL and starts the threads.
    pub(crate) fn start(s: &BackendSettings) -> Result<Backend, String> {
        let target = parse_url(&s.url)?;
        let (tx, rx) = crossbeam_channel::bounded::<Job>(s.max_queue.max(1));
        for i in 0..s.threads.max(1) {
            let (rx, target, timeout) = (rx.clone(), target.clone(), s.timeout);
            std::thread::Builder::new()
                .name(format!("stomp-app-{i}"))
                .spawn(move || run(rx, target, timeout))
                .map_err(|e| format!("backend thread: {e}"))?;
        }
        Ok(Backend {
            tx,
            url: s.url.clone(),
        })
    }

    /// Queues `frame` for the backend; `Err` when the queue is full.
    pub(crate) fn forward(
        &self,
        stomp: Arc<Stomp>,
        hub: Hub,
        user: String,
        session: String,
        frame: Frame,
    ) -> Result<(), String> {
        let job = Job {
            stomp,
            hub,
            user,
            session,
            frame,
        };
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err("the application backend is busy".into()),
            Err(TrySendError::Disconnected(_)) => Err("the application backend stopped".into()),
        }
    }
}

fn run(rx: Receiver<Job>, target: Target, timeout: Duration) {
    for job in rx {
        let m = &job.stomp.metrics;
        let dest = job.frame.get("destination").unwrap_or_default().to_string();
        match call(&target, timeout, &request_body(&job)).and_then(|a| answer(&job, &dest, a)) {
            Ok(()) => m.app_forwarded.fetch_add(1, Ordering::Relaxed),
            Err(why) => {
                tracing::warn!(destination = %dest, user = %job.user, %why, "stomp application backend call failed");
                m.app_failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
}

fn request_body(job: &Job) -> Vec<u8> {
    let headers: Map<String, Value> = job
        .frame
        .headers
        .iter()
        .rev() // the first of repeated headers wins
        .map(|(n, v)| (n.clone(), Value::String(v.clone())))
        .collect();
    let body = String::from_utf8_lossy(&job.frame.body);
    json!({
        "destination": job.frame.get("destination"),
        "user": job.user,
        "session": job.session,
        "headers": headers,
        "body": body,
    })
    .to_string()
    .into_bytes()
}

/// Publishes the backend's answer, if it has one.
fn answer(job: &Job, dest: &str, (status, body): (u16, Vec<u8>)) -> Result<(), String> {
    if status == 204 || (status == 200 && body.iter().all(u8::is_ascii_whitespace)) {
        return Ok(());
    }
    if status != 200 {
        return Err(format!("backend answered {status}"));
    }
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| format!("backend answer is not JSON: {e}"))?;
    let (to, content_type, payload) = reply_of(&job.stomp, &job.user, dest, &v)?;
    job.stomp
        .push(&job.hub, &to, Some(&content_type), payload.as_bytes())
        .map(|_| ())
        .map_err(|e| format!("backend answer to {to:?}: {e}"))
}

/// Where an answer goes, its content type and its body.
fn reply_of(
    stomp: &Stomp,
    user: &str,
    dest: &str,
    v: &Value,
) -> Result<(String, String, String), String> {
    let obj = v
        .as_object()
        .ok_or("backend answer must be a JSON object")?;
    let body = obj.get("body").ok_or("backend answer has no \"body\"")?;
    let (payload, default_type) = match body {
        Value::String(s) => (s.clone(), "text/plain;charset=UTF-8"),
        other => (other.to_string(), "application/json"),
    };
    let content_type = match obj.get("contentType") {
        Some(Value::String(s)) => s.clone(),
        _ => default_type.to_string(),
    };
    let p = &stomp.settings.prefixes;
    let to = match obj.get("destination") {
        Some(Value::String(d)) => match d.strip_prefix(p.user.as_str()) {
            // `@SendToUser("/queue/x")`: the sender's own user destination.
            Some(rest) if rest.starts_with('/') && is_bare_user_destination(p, rest) => {
                format!("{}/{user}{rest}", p.user)
            }
            _ => d.clone(),
        },
        Some(_) => return Err("backend answer's \"destination\" must be a string".into()),
        None => {
            let first = p.broker.first().ok_or("no broker prefix to answer to")?;
            format!(
                "{first}{}",
                dest.strip_prefix(p.app.as_str()).unwrap_or(dest)
            )
        }
    };
    Ok((to, content_type, payload))
}

/// `/queue/x` after the user prefix names no user (`/alice/queue/x` does).
fn is_bare_user_destination(p: &super::Prefixes, rest: &str) -> bool {
    p.broker.iter().any(|b| {
        rest.strip_prefix(b.as_str())
            .is_some_and(|r| r.is_empty() || r.starts_with('/'))
    })
}

/// One `POST` on a new connection (`Connection: close`): the status and the body.
fn call(t: &Target, timeout: Duration, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let io = |e: std::io::Error| format!("backend {}: {e}", t.addr);
    let mut s = TcpStream::connect_timeout(&t.addr, timeout).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nUser-Agent: switchboard\r\n\r\n",
        t.path,
        t.host,
        body.len()
    );
    s.write_all(head.as_bytes()).map_err(io)?;
    s.write_all(body).map_err(io)?;
    let mut raw = Vec::new();
    s.take(MAX_ANSWER_BYTES as u64 + 16 * 1024)
        .read_to_end(&mut raw)
        .map_err(io)?;
    parse_answer(&raw)
}

/// The status and body of a whole HTTP/1.1 response read to its close.
fn parse_answer(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("backend answer cut short".into()),
        Err(e) => return Err(format!("backend answer: {e}")),
    };
    let status = resp.code.unwrap_or(0);
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).trim().to_ascii_lowercase())
    };
    let rest = &raw[n..];
    if header("transfer-encoding").is_some_and(|te| te.ends_with("chunked")) {
        let mut input = rest;
        let mut body = Vec::new();
        let mut dec = ChunkedDecoder::new(MAX_ANSWER_BYTES, 8 * 1024);
        return match dec.decode(&mut input, &mut body) {
            Ok(true) => Ok((status, body)),
            Ok(false) => Err("backend answer cut short".into()),
            Err(e) => Err(format!("backend answer: {e}")),
        };
    }
    let body = match header("content-length").map(|l| l.parse::<usize>()) {
        Some(Ok(len)) if len <= rest.len() => rest[..len].to_vec(),
        Some(Ok(_)) => return Err("backend answer cut short".into()),
        Some(Err(_)) => return Err("backend answer: bad Content-Length".into()),
        None => rest.to_vec(),
    };
    if body.len() > MAX_ANSWER_BYTES {
        return Err("backend answer too large".into());
    }
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_whole_chunked_or_to_the_close() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbodyEXTRA";
        assert_eq!(parse_answer(r), Ok((200, b"body".to_vec())));
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        assert_eq!(parse_answer(r), Ok((200, b"abc".to_vec())));
        let r = b"HTTP/1.0 204 No Content\r\n\r\n";
        assert_eq!(parse_answer(r), Ok((204, vec![])));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
        assert!(parse_answer(b"HTTP/1.1 200").is_err());
        assert!(parse_answer(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn urls_need_http_and_a_resolvable_host() {
        let t = parse_url("http://127.0.0.1:9000/stomp/app").unwrap();
        assert_eq!(t.addr.port(), 9000);
        assert_eq!(t.path, "/stomp/app");
        assert_eq!(parse_url("http://127.0.0.1:9000").unwrap().path, "/");
        assert!(parse_url("https://127.0.0.1/").is_err());
        assert!(parse_url("127.0.0.1:9000").is_err());
    }
}
