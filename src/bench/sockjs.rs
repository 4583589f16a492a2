//! `bench sockjs`: STOMP fan-out received through SockJS xhr-streaming, or through a
//! plain WebSocket for comparison, in the same shape: one publisher SENDs to a topic at
//! a rate over WebSocket, N subscribers receive every MESSAGE.
//!
//! Owns this mode only. Subscribers are blocking threads (one each), whatever the
//! transport, so the client costs the same per delivery either way and the server's CPU
//! per delivery is what differs. An xhr-streaming subscriber reopens its stream when
//! the server ends it at its streaming limit, as sockjs-client does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::conn::{next_frame, request};
use super::driver::ns_since;
use super::payload::{self, SeqTracker};
use super::report::{spawn_progress, Progress, Report, Stats};
use super::stomp_frames::{self, stomp_in, StompIn};
use super::{ensure_fds, BenchError, CommonArgs, Target};
use crate::ws::mask::apply_mask;
use crate::ws::{FrameHeader, OpCode};

/// `bench sockjs` options.
#[derive(Debug, Clone, clap::Args)]
pub struct SockJsArgs {
    /// Options every mode shares (`--url` is the STOMP endpoint with SockJS on, e.g.
    /// ws://127.0.0.1:8080/stomp; `--threads` is ignored: one thread per subscriber).
    #[command(flatten)]
    pub common: CommonArgs,
    /// Subscribers.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// How subscribers receive: xhr-streaming (SockJS) or websocket (plain STOMP).
    #[arg(long, default_value = "xhr-streaming")]
    pub transport: String,
    /// Messages per second the publisher sends.
    #[arg(long, default_value_t = 1000.0)]
    pub rate: f64,
    /// Body bytes per message (at least 40).
    #[arg(long, short = 's', default_value_t = 64)]
    pub size: usize,
    /// The topic.
    #[arg(long, default_value = "/topic/bench-sockjs")]
    pub destination: String,
}

const READ_TIMEOUT: Duration = Duration::from_millis(200);

struct Shared {
    t0: Instant,
    size: usize,
    /// Start of the measured window and its end, in ns since `t0` (0: not yet).
    window: (AtomicU64, AtomicU64),
    ready: AtomicUsize,
    published: AtomicU64,
    /// Distinct deliveries so far, for the drain.
    unique: AtomicU64,
    stop: AtomicBool,
    progress: Arc<Progress>,
}

pub(crate) fn sockjs(a: SockJsArgs) -> Result<(bool, Report), BenchError> {
    let run_start = Instant::now();
    let xhr = match a.transport.as_str() {
        "xhr-streaming" => true,
        "websocket" => false,
        t => {
            return Err(BenchError::Invalid(format!(
                "--transport {t:?}: xhr-streaming or websocket"
            )))
        }
    };
    if a.size < payload::TEXT_HEADER || a.subscribers == 0 || a.rate <= 0.0 {
        return Err(BenchError::Invalid(
            "--size at least 40, --subscribers at least 1, --rate above 0".into(),
        ));
    }
    ensure_fds(a.subscribers as u64 * 2 + 8)?;
    let target = a.common.target(super::DEFAULT_STOMP_URL, "/stomp")?;
    super::preflight(&target, &target.path, super::preflight_timeout(&a.common))?;
    let progress = Arc::new(Progress::default());
    let sh = Arc::new(Shared {
        t0: Instant::now(),
        size: a.size,
        window: (AtomicU64::new(0), AtomicU64::new(0)),
        ready: AtomicUsize::new(0),
        published: AtomicU64::new(0),
        unique: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        progress: progress.clone(),
    });
    let results = Arc::new(Mutex::new(Stats::default()));
    let mut subs = Vec::new();
    for i in 0..a.subscribers {
        let (sh, target, dest, results) = (
            sh.clone(),
            target.clone(),
            a.destination.clone(),
            results.clone(),
        );
        subs.push(
            std::thread::Builder::new()
                .name(format!("sub-{i}"))
                .spawn(move || {
                    let mut s = Stats::default();
                    let mut seq = SeqTracker::default();
                    let r = match xhr {
                        true => xhr_subscriber(&sh, &target, &dest, i, &mut s, &mut seq),
                        false => ws_subscriber(&sh, &target, &dest, i, &mut s, &mut seq),
                    };
                    if let Err(e) = r {
                        tracing::warn!("subscriber {i}: {e}");
                        s.conn_errors += 1;
                        sh.progress.errors.fetch_add(1, Ordering::Relaxed);
                    }
                    s.unique = seq.unique;
                    s.duplicates += seq.duplicates;
                    s.reordered += seq.reordered;
                    if let Ok(mut all) = results.lock() {
                        all.merge(&s);
                    }
                })?,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while sh.ready.load(Ordering::Acquire) < a.subscribers && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let printer = spawn_progress(progress.clone(), "deliveries", a.common.server_pid);
    let (warmup, duration) = (a.common.warmup(), a.common.duration());
    let start = ns_since(sh.t0);
    sh.window
        .0
        .store(start + warmup.as_nanos() as u64, Ordering::Release);
    sh.window.1.store(
        start + (warmup + duration).as_nanos() as u64,
        Ordering::Release,
    );
    let sent = publish(&sh, &target, &a.destination, a.rate, warmup + duration);
    // Drain: until every subscriber has everything, or 5 s.
    let drain_end = Instant::now() + Duration::from_secs(5);
    let expected = sh.published.load(Ordering::Acquire) * a.subscribers as u64;
    while Instant::now() < drain_end && sh.unique.load(Ordering::Acquire) < expected {
        std::thread::sleep(Duration::from_millis(50));
    }
    sh.stop.store(true, Ordering::Release);
    for t in subs {
        let _ = t.join();
    }
    progress.done.store(true, Ordering::Release);
    let server = printer.join().ok().flatten();
    let mut stats = std::mem::take(
        &mut *results
            .lock()
            .map_err(|_| BenchError::Invalid("poisoned".into()))?,
    );
    stats.sent = sent.as_ref().map_or(0, |n| *n);
    if let Err(e) = &sent {
        tracing::warn!("publisher: {e}");
        stats.conn_errors += 1;
    }
    let published = sh.published.load(Ordering::Acquire);
    stats.lost = (published * a.subscribers as u64).saturating_sub(stats.unique);
    Ok((
        a.common.json,
        Report::new(
            "sockjs",
            "deliveries",
            duration,
            stats,
            run_start,
            vec![
                ("transport", a.transport.clone().into()),
                ("subscribers", a.subscribers.into()),
                ("published", published.into()),
                ("rate", a.rate.into()),
                ("size", a.size.into()),
            ],
        )
        .with_server(server),
    ))
}

/// Records one MESSAGE body.
fn on_message(sh: &Shared, body: &[u8], s: &mut Stats, seq: &mut SeqTracker) {
    let now = ns_since(sh.t0);
    s.received += 1;
    let Some((src, n, sent_ns)) = payload::check_text(body, sh.size).filter(|h| h.0 == 0) else {
        s.corrupted += 1;
        return;
    };
    if seq.record(n) {
        sh.unique.fetch_add(1, Ordering::AcqRel);
    }
    let (from, to) = (
        sh.window.0.load(Ordering::Acquire),
        sh.window.1.load(Ordering::Acquire),
    );
    if from > 0 && sent_ns >= from && now < to && src == 0 {
        s.completed += 1;
        s.bytes += body.len() as u64;
        s.record_latency(now.saturating_sub(sent_ns));
        sh.progress.events.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a STOMP frame is to a subscriber.
fn on_frame(sh: &Shared, frame: &[u8], s: &mut Stats, seq: &mut SeqTracker, ready: &mut bool) {
    match stomp_in(frame) {
        StompIn::Message(body) => on_message(sh, body, s, seq),
        StompIn::Receipt if !*ready => {
            *ready = true;
            sh.ready.fetch_add(1, Ordering::AcqRel);
            sh.progress.open.fetch_add(1, Ordering::Relaxed);
        }
        StompIn::Error(why) => {
            tracing::warn!("the broker sent ERROR: {why}");
            s.corrupted += 1;
        }
        _ => {}
    }
}

/// `CONNECT` then `SUBSCRIBE` with a receipt.
fn connect_frames(user: &str, dest: &str) -> [String; 2] {
    [stomp_frames::connect(user), stomp_frames::subscribe(dest)]
}

/// A read that timed out (the socket's read timeout), to be retried unless stopping.
fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A blocking WebSocket to `path`, past its 101: the stream and bytes read beyond it.
fn ws_open(target: &Target, path: &str) -> std::io::Result<(TcpStream, Vec<u8>)> {
    let mut s = TcpStream::connect(target.addr)?;
    s.set_nodelay(true)?;
    s.write_all(&request(&target.host, path))?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if !got.starts_with(b"HTTP/1.1 101") {
                return Err(std::io::Error::other("handshake refused"));
            }
            return Ok((s, got.split_off(i + 4)));
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other("closed during the handshake"));
        }
        got.extend_from_slice(&buf[..n]);
    }
}

fn ws_send(s: &mut TcpStream, text: &[u8], key: [u8; 4]) -> std::io::Result<()> {
    let h = FrameHeader::new(true, OpCode::Text, text.len(), Some(key));
    let mut out = h.as_bytes().to_vec();
    let start = out.len();
    out.extend_from_slice(text);
    apply_mask(&mut out[start..], key, 0);
    s.write_all(&out)
}

fn ws_subscriber(
    sh: &Shared,
    target: &Target,
    dest: &str,
    i: usize,
    s: &mut Stats,
    seq: &mut SeqTracker,
) -> std::io::Result<()> {
    let (mut sock, mut buf) = ws_open(target, &target.path)?;
    for f in connect_frames(&format!("bench-ws-{i}"), dest) {
        ws_send(&mut sock, f.as_bytes(), [1, 2, 3, 4])?;
    }
    sock.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut ready = false;
    let mut chunk = vec![0u8; 64 * 1024];
    while !sh.stop.load(Ordering::Acquire) {
        let mut used = 0;
        while let Ok(Some(f)) = next_frame(&buf[used..], 1 << 20) {
            let payload = &buf[used + f.head..used + f.head + f.len];
            if f.op == OpCode::Text {
                on_frame(sh, payload, s, seq, &mut ready);
            }
            used += f.head + f.len;
        }
        buf.drain(..used);
        match sock.read(&mut chunk) {
            Ok(0) => return Err(std::io::Error::other("the server closed")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if timed_out(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// One HTTP request on its own connection, answered whole; the status.
fn post(target: &Target, path: &str, body: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(target.addr)?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        target.host,
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0))
}

/// Opens an xhr_streaming request; the reader is past the head and the prelude.
fn open_stream(
    target: &Target,
    url: &str,
    stop: &AtomicBool,
) -> std::io::Result<BufReader<TcpStream>> {
    let mut s = TcpStream::connect(target.addr)?;
    s.write_all(
        format!(
            "POST {url}/xhr_streaming HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
            target.host
        )
        .as_bytes(),
    )?;
    s.set_read_timeout(Some(READ_TIMEOUT))?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        read_line_patiently(&mut r, &mut line, stop)?;
        if line == "\r\n" {
            break;
        }
    }
    read_chunk(&mut r, stop)?; // the prelude
    Ok(r)
}

fn read_line_patiently(
    r: &mut BufReader<TcpStream>,
    line: &mut String,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match r.read_line(line) {
            Ok(0) => return Err(std::io::Error::other("the server closed")),
            Ok(_) if line.ends_with('\n') => return Ok(()),
            Ok(_) => {}
            Err(e)
                if timed_out(&e) && !stop.load(Ordering::Acquire) && Instant::now() < deadline => {}
            Err(e) => return Err(e),
        }
    }
}

/// One chunk of the chunked body (empty: the stream ended).
fn read_chunk(r: &mut BufReader<TcpStream>, stop: &AtomicBool) -> std::io::Result<Vec<u8>> {
    let mut size = String::new();
    read_line_patiently(r, &mut size, stop)?;
    let n = usize::from_str_radix(size.trim(), 16).map_err(std::io::Error::other)?;
    let mut data = vec![0; n + 2];
    let mut got = 0;
    while got < data.len() {
        match r.read(&mut data[got..]) {
            Ok(0) => return Err(std::io::Error::other("the server closed")),
            Ok(k) => got += k,
            Err(e) if timed_out(&e) && !stop.load(Ordering::Acquire) => {}
            Err(e) => return Err(e),
        }
    }
    data.truncate(n);
    Ok(data)
}

fn xhr_subscriber(
    sh: &Shared,
    target: &Target,
    dest: &str,
    i: usize,
    s: &mut Stats,
    seq: &mut SeqTracker,
) -> std::io::Result<()> {
    let url = format!("{}/000/bench-{i}-{}", target.path, std::process::id());
    let mut r = open_stream(target, &url, &sh.stop)?;
    let frames: Vec<String> = connect_frames(&format!("bench-xhr-{i}"), dest).into();
    let body = serde_json::to_string(&frames).map_err(std::io::Error::other)?;
    let status = post(target, &format!("{url}/xhr_send"), &body)?;
    if status != 204 {
        return Err(std::io::Error::other(format!("xhr_send answered {status}")));
    }
    let mut ready = false;
    while !sh.stop.load(Ordering::Acquire) {
        let chunk = match read_chunk(&mut r, &sh.stop) {
            Ok(c) => c,
            Err(_) if sh.stop.load(Ordering::Acquire) => return Ok(()),
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            // The streaming limit: reopen, as sockjs-client does.
            r = open_stream(target, &url, &sh.stop)?;
            continue;
        }
        for line in chunk
            .split(|&b| b == b'\n')
            .filter(|l| l.first() == Some(&b'a'))
        {
            let msgs: Vec<String> =
                serde_json::from_slice(&line[1..]).map_err(std::io::Error::other)?;
            for m in msgs {
                on_frame(sh, m.as_bytes(), s, seq, &mut ready);
            }
        }
    }
    Ok(())
}

/// SENDs at `rate` for `for_how_long` over a plain STOMP WebSocket; how many went out.
fn publish(
    sh: &Shared,
    target: &Target,
    dest: &str,
    rate: f64,
    for_how_long: Duration,
) -> std::io::Result<u64> {
    let (mut sock, _) = ws_open(target, &target.path)?;
    ws_send(
        &mut sock,
        stomp_frames::connect("bench-publisher").as_bytes(),
        [9, 8, 7, 6],
    )?;
    // Nothing to read that matters: CONNECTED only (no subscription). Drain it so the
    // server never blocks on us.
    let mut reader = sock.try_clone()?;
    std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while matches!(reader.read(&mut b), Ok(n) if n > 0) {}
    });
    let start = Instant::now();
    let mut frame = stomp_frames::send_head(dest, sh.size);
    let body_at = frame.len();
    frame.resize(body_at + sh.size + 1, 0);
    let mut sent = 0u64;
    while start.elapsed() < for_how_long {
        let due = (start.elapsed().as_secs_f64() * rate) as u64 + 1;
        while sent < due {
            payload::write_text(
                &mut frame[body_at..body_at + sh.size],
                0,
                sent,
                ns_since(sh.t0),
            );
            ws_send(&mut sock, &frame, [(sent as u8) | 1, 2, 3, 4])?;
            sent += 1;
            sh.published.fetch_add(1, Ordering::AcqRel);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    Ok(sent)
}
