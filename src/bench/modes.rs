//! The bench modes: echo, broadcast, connect and hold. Each splits its connections over
//! the client threads, runs a [`Driver`] loop per thread, and merges the threads' stats.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::conn::{request_offering, Event, State, DEFLATE_OFFER};
use super::driver::{ns_since, Driver};
use super::payload::{self, SeqTracker};
use super::report::{spawn_progress, Progress, Report, Stats};
use super::stomp_frames::{self, stomp_in, StompIn};
use super::{ensure_fds, BenchError, CommonArgs};
use crate::ws::OpCode;

/// How long to wait for messages still in flight once sending stops.
const DRAIN: Duration = Duration::from_secs(5);
/// How long to wait for every connection to open before giving up on the stragglers.
const CONNECT_WAIT: Duration = Duration::from_secs(30);

/// `bench echo` options.
#[derive(Debug, Clone, clap::Args)]
pub struct EchoArgs {
    /// Options every mode shares.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Connections.
    #[arg(long, short = 'c', default_value_t = 100)]
    pub connections: usize,
    /// Messages in flight per connection.
    #[arg(long, short = 'k', default_value_t = 10)]
    pub in_flight: usize,
    /// Payload bytes per message (at least 20: source, sequence and timestamp).
    #[arg(long, short = 's', default_value_t = 32)]
    pub size: usize,
}

/// `bench broadcast` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BroadcastArgs {
    /// Options every mode shares.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Subscribers (connections that only receive).
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Publishers (they receive too: the route sends to everyone on it).
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Messages per second per publisher; 0: as fast as the server accepts, with at most
    /// --in-flight of a publisher's messages not yet back to it.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Window per publisher when --rate is 0.
    #[arg(long, short = 'k', default_value_t = 16)]
    pub in_flight: usize,
    /// Payload bytes per message (at least 20).
    #[arg(long, short = 's', default_value_t = 64)]
    pub size: usize,
}

/// `bench stomp` options: the broadcast run, through a STOMP broker's topic.
#[derive(Debug, Clone, clap::Args)]
pub struct StompArgs {
    /// Subscribers, publishers, rate, window and size, as for `broadcast` (`--url` is the
    /// broker's WebSocket endpoint; the size, at least 40, is the body's).
    #[command(flatten)]
    pub fanout: BroadcastArgs,
    /// The destination everyone subscribes to and publishers send to.
    #[arg(long, default_value = "/topic/bench")]
    pub destination: String,
}

/// `bench connect` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// Options every mode shares.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Handshakes in progress at once.
    #[arg(long, short = 'c', default_value_t = 50)]
    pub concurrency: usize,
}

/// `bench hold` options.
#[derive(Debug, Clone, clap::Args)]
pub struct HoldArgs {
    /// Options every mode shares.
    #[command(flatten)]
    pub common: CommonArgs,
    /// Connections to open and hold.
    #[arg(long, short = 'c', default_value_t = 10_000)]
    pub connections: usize,
    /// Handshakes in progress at once while opening.
    #[arg(long, default_value_t = 200)]
    pub concurrency: usize,
}

fn check_size(size: usize) -> Result<(), BenchError> {
    if size < payload::HEADER {
        return Err(BenchError::Invalid(format!(
            "--size must be at least {} bytes (source, sequence, timestamp)",
            payload::HEADER
        )));
    }
    Ok(())
}

/// Runs `per_thread(thread, driver)` on each client thread and merges what they return.
fn run_threads(
    common: &CommonArgs,
    (default_url, default_path): (&str, &str),
    progress: &Arc<Progress>,
    per_thread: impl Fn(usize, Driver) -> Stats + Send + Sync + 'static,
) -> Result<Stats, BenchError> {
    let target = common.target(default_url, default_path)?;
    super::preflight(&target, &target.path, super::preflight_timeout(common))?;
    let binds = common.binds()?;
    let offer = if common.deflate { DEFLATE_OFFER } else { "" };
    let req = request_offering(&target.host, &target.path, offer);
    let per_thread = Arc::new(per_thread);
    let mut handles = Vec::new();
    for t in 0..common.threads() {
        let driver = Driver::new(
            target.addr,
            req.clone(),
            binds.clone(),
            0x9e37_79b9 ^ t as u64,
            target.tls.clone(),
        )?;
        let f = per_thread.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("bench-{t}"))
                .spawn(move || f(t, driver))?,
        );
    }
    let mut total = Stats::default();
    for h in handles {
        match h.join() {
            Ok(s) => total.merge(&s),
            Err(_) => return Err(BenchError::Invalid("a bench thread panicked".into())),
        }
    }
    progress.done.store(true, Ordering::Release);
    Ok(total)
}

/// Connections of `total` that thread `t` of `threads` owns.
fn share(total: usize, t: usize, threads: usize) -> usize {
    total / threads + usize::from(t < total % threads)
}

struct EchoConn {
    id: u32,
    next_seq: u64,
    tracker: SeqTracker,
    open: bool,
}

pub(crate) fn echo(a: EchoArgs) -> Result<(bool, Report), BenchError> {
    let run_start = Instant::now();
    check_size(a.size)?;
    ensure_fds(a.connections as u64)?;
    let progress = Arc::new(Progress::default());
    let t0 = Instant::now();
    let warm_end = t0 + a.common.warmup();
    let send_end = warm_end + a.common.duration();
    let warm_ns = (warm_end - t0).as_nanos() as u64;
    let threads = a.common.threads();
    let (size, in_flight, connections) = (a.size, a.in_flight.max(1), a.connections);
    let p = progress.clone();
    let printer = spawn_progress(progress.clone(), "round trips", a.common.server_pid);
    let stats = run_threads(
        &a.common,
        (super::DEFAULT_URL, "/"),
        &progress,
        move |t, mut d| {
            let mut s = Stats::default();
            let mine = share(connections, t, threads);
            let mut conns: Vec<EchoConn> = Vec::with_capacity(mine);
            for i in 0..mine {
                match d.open() {
                    Ok(idx) => {
                        debug_assert_eq!(idx, i);
                        if let Some(c) = d.conns[idx].as_mut() {
                            c.reserve_frame(size);
                        }
                        conns.push(EchoConn {
                            id: (i * threads + t) as u32,
                            next_seq: 0,
                            tracker: SeqTracker::default(),
                            open: false,
                        });
                    }
                    Err(_) => s.conn_errors += 1,
                }
            }
            let mut outstanding: u64 = 0;
            loop {
                let now = Instant::now();
                let sending = now < send_end;
                if !sending && (outstanding == 0 || now >= send_end + DRAIN) {
                    break;
                }
                let mut failed = Vec::new();
                let res = d.turn(
                    Duration::from_millis(5),
                    |idx, c, ev, now| {
                        let ec = &mut conns[idx];
                        let now_ns = (now - t0).as_nanos() as u64;
                        let sending = now < send_end;
                        match ev {
                            Event::Opened => {
                                ec.open = true;
                                p.open.fetch_add(1, Ordering::Relaxed);
                                if sending {
                                    for _ in 0..in_flight {
                                        let seq = ec.next_seq;
                                        ec.next_seq += 1;
                                        let id = ec.id;
                                        c.send_with(OpCode::Binary, size, |b| {
                                            payload::write(b, id, seq, now_ns)
                                        });
                                        s.sent += 1;
                                        outstanding += 1;
                                    }
                                }
                            }
                            Event::Message(op, data) => {
                                s.received += 1;
                                match payload::check(data, size).filter(|_| op == OpCode::Binary) {
                                    Some((src, seq, sent_ns)) if src == ec.id => {
                                        if ec.tracker.record(seq) {
                                            outstanding = outstanding.saturating_sub(1);
                                        }
                                        if sent_ns >= warm_ns
                                            && now_ns < (send_end - t0).as_nanos() as u64
                                        {
                                            s.completed += 1;
                                            s.bytes += data.len() as u64;
                                            s.record_latency(now_ns - sent_ns);
                                            p.events.fetch_add(1, Ordering::Relaxed);
                                        }
                                    }
                                    _ => {
                                        s.corrupted += 1;
                                        outstanding = outstanding.saturating_sub(1);
                                    }
                                }
                                if sending {
                                    let seq = ec.next_seq;
                                    ec.next_seq += 1;
                                    let id = ec.id;
                                    c.send_with(OpCode::Binary, size, |b| {
                                        payload::write(b, id, seq, now_ns)
                                    });
                                    s.sent += 1;
                                    outstanding += 1;
                                }
                            }
                            Event::Close => {
                                s.closed_by_server += 1;
                                c.state = State::Closed;
                            }
                        }
                    },
                    |idx, _| failed.push(idx),
                );
                if res.is_err() {
                    s.conn_errors += 1;
                    break;
                }
                for idx in failed {
                    s.conn_errors += 1;
                    p.errors.fetch_add(1, Ordering::Relaxed);
                    if let Some(ec) = conns.get_mut(idx) {
                        ec.open = false;
                    }
                }
            }
            for ec in &conns {
                s.duplicates += ec.tracker.duplicates;
                s.reordered += ec.tracker.reordered;
                s.lost += ec.next_seq.saturating_sub(ec.tracker.unique);
            }
            // Corrupted echoes were counted once and are not also lost.
            s.lost = s.lost.saturating_sub(s.corrupted);
            close_all(&mut d);
            s
        },
    )?;
    let server = printer.join().ok().flatten();
    let measured = a.common.duration();
    Ok((
        a.common.json,
        Report::new(
            "echo",
            "round trips",
            measured,
            stats,
            run_start,
            vec![
                ("connections", a.connections.into()),
                ("in_flight", a.in_flight.into()),
                ("size", a.size.into()),
            ],
        )
        .with_server(server),
    ))
}

/// Sends close 1000 on every open connection and gives the writes a moment to leave.
fn close_all(d: &mut Driver) {
    for c in d.conns.iter_mut().flatten() {
        if c.state == State::Open {
            c.send(OpCode::Close, &1000u16.to_be_bytes());
        }
    }
    d.flush_all(|_, _| {});
}

struct BcastConn {
    /// `Some(p)` for publisher `p`.
    publisher: Option<u32>,
    trackers: Vec<SeqTracker>,
    sent: u64,
    open: bool,
}

pub(crate) fn broadcast(a: BroadcastArgs) -> Result<(bool, Report), BenchError> {
    fanout(a, None)
}

pub(crate) fn stomp(a: StompArgs) -> Result<(bool, Report), BenchError> {
    if a.fanout.size < payload::TEXT_HEADER {
        return Err(BenchError::Invalid(format!(
            "--size must be at least {} for stomp",
            payload::TEXT_HEADER
        )));
    }
    fanout(a.fanout, Some(a.destination))
}

/// A broadcast run, raw (binary messages to `/broadcast`, which the server fans out) or
/// through a STOMP broker (CONNECT, SUBSCRIBE to `stomp`'s destination with a receipt,
/// SENDs to it, MESSAGEs back).
fn fanout(a: BroadcastArgs, stomp: Option<String>) -> Result<(bool, Report), BenchError> {
    let run_start = Instant::now();
    check_size(a.size)?;
    if a.publishers == 0 {
        return Err(BenchError::Invalid(
            "--publishers must be at least 1".into(),
        ));
    }
    let total = a.subscribers + a.publishers;
    ensure_fds(total as u64)?;
    let progress = Arc::new(Progress::default());
    let threads = a.common.threads();
    let opened = Arc::new(AtomicUsize::new(0));
    let published: Arc<Vec<AtomicU64>> =
        Arc::new((0..a.publishers).map(|_| AtomicU64::new(0)).collect());
    let received_unique = Arc::new(AtomicU64::new(0));
    let start_ns = Arc::new(AtomicU64::new(0));
    let warmup = a.common.warmup();
    let duration = a.common.duration();
    let (size, pubs, rate, window) = (a.size, a.publishers, a.rate, a.in_flight.max(1) as u64);
    let t0 = Instant::now();
    let p = progress.clone();
    let (opened2, published2, received2, start2) = (
        opened.clone(),
        published.clone(),
        received_unique.clone(),
        start_ns.clone(),
    );
    let printer = spawn_progress(progress.clone(), "deliveries", a.common.server_pid);
    let defaults = match stomp {
        Some(_) => (super::DEFAULT_STOMP_URL, "/stomp"),
        None => (super::DEFAULT_URL, "/broadcast"),
    };
    let mode = if stomp.is_some() {
        "stomp"
    } else {
        "broadcast"
    };
    let send_head = stomp.as_ref().map(|d| stomp_frames::send_head(d, size));
    let subscribe = stomp
        .as_ref()
        .map(|d| stomp_frames::subscribe(d).into_bytes());
    let stats = run_threads(&a.common, defaults, &progress, move |t, mut d| {
        let mut s = Stats::default();
        let mine = share(total, t, threads);
        let mut conns: Vec<BcastConn> = Vec::with_capacity(mine);
        for i in 0..mine {
            let global = i * threads + t;
            match d.open() {
                Ok(idx) => {
                    if let Some(c) = d.conns[idx].as_mut() {
                        c.reserve_frame(size);
                    }
                }
                Err(_) => {
                    s.conn_errors += 1;
                    continue;
                }
            }
            // Index in `conns` equals the driver's index: both grow only on success.
            conns.push(BcastConn {
                publisher: (global < pubs).then_some(global as u32),
                trackers: vec![SeqTracker::default(); pubs],
                sent: 0,
                open: false,
            });
        }
        // Every connection, on every thread, is open before anyone publishes.
        let connect_deadline = Instant::now() + CONNECT_WAIT;
        let mut started_at: Option<Instant> = None;
        let mut send_end = None;
        let mut drained_check: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if started_at.is_none()
                && (opened2.load(Ordering::Acquire) >= total || now >= connect_deadline)
            {
                // The first thread to get here fixes the start for all.
                let ns = ns_since(t0).max(1);
                let _ = start2.compare_exchange(0, ns, Ordering::AcqRel, Ordering::Acquire);
                let start = t0 + Duration::from_nanos(start2.load(Ordering::Acquire));
                started_at = Some(start);
                send_end = Some(start + warmup + duration);
            }
            let (warm_ns, end_ns) = match started_at {
                Some(st) => (
                    ((st + warmup) - t0).as_nanos() as u64,
                    ((st + warmup + duration) - t0).as_nanos() as u64,
                ),
                None => (u64::MAX, u64::MAX),
            };
            let sending = send_end.is_some_and(|e| now < e);
            if let Some(end) = send_end {
                if now >= end + Duration::from_millis(100) {
                    let expected: u64 = published2
                        .iter()
                        .map(|x| x.load(Ordering::Acquire))
                        .sum::<u64>()
                        * total as u64;
                    if received2.load(Ordering::Acquire) >= expected {
                        // Everyone has everything: a short grace period, then stop.
                        let first = *drained_check.get_or_insert(now);
                        if now >= first + Duration::from_millis(100) {
                            break;
                        }
                    }
                    if now >= end + DRAIN {
                        break;
                    }
                }
            }
            // Publish.
            if sending {
                let Some(st) = started_at else { continue };
                for (idx, bc) in conns.iter_mut().enumerate() {
                    let Some(pid) = bc.publisher else { continue };
                    if !bc.open {
                        continue;
                    }
                    let Some(c) = d.conns.get_mut(idx).and_then(Option::as_mut) else {
                        continue;
                    };
                    let allowed = if rate > 0.0 {
                        ((now - st).as_secs_f64() * rate) as u64 + 1
                    } else {
                        bc.trackers[pid as usize].unique + window
                    };
                    while bc.sent < allowed && c.pending() < 1 << 20 {
                        let seq = bc.sent;
                        match &send_head {
                            None => c.send_with(OpCode::Binary, size, |b| {
                                payload::write(b, pid, seq, ns_since(t0))
                            }),
                            Some(head) => c.send_with(OpCode::Text, head.len() + size + 1, |b| {
                                let (h, rest) = b.split_at_mut(head.len());
                                h.copy_from_slice(head);
                                payload::write_text(&mut rest[..size], pid, seq, ns_since(t0));
                                rest[size] = 0;
                            }),
                        }
                        bc.sent += 1;
                        s.sent += 1;
                        published2[pid as usize].fetch_add(1, Ordering::AcqRel);
                    }
                }
                d.flush_all(|_, _| {});
            }
            let mut failed = Vec::new();
            let timeout = if rate > 0.0 {
                Duration::from_millis(1)
            } else {
                Duration::from_millis(5)
            };
            let res = d.turn(
                timeout,
                |idx, c, ev, now| {
                    let bc = &mut conns[idx];
                    let mut ready = false;
                    match ev {
                        Event::Opened => match &subscribe {
                            Some(sub) => {
                                let connect =
                                    stomp_frames::connect(&format!("bench-stomp-{t}-{idx}"));
                                c.send(OpCode::Text, connect.as_bytes());
                                c.send(OpCode::Text, sub);
                            }
                            None => ready = true,
                        },
                        Event::Message(op, data) => {
                            let now_ns = (now - t0).as_nanos() as u64;
                            // The payload, or `None` for a STOMP frame that is not a
                            // delivery (CONNECTED, the SUBSCRIBE receipt).
                            let delivery = match &subscribe {
                                None => Some(
                                    payload::check(data, size).filter(|_| op == OpCode::Binary),
                                ),
                                Some(_) => match stomp_in(data) {
                                    StompIn::Message(body) => Some(payload::check_text(body, size)),
                                    StompIn::Receipt => {
                                        ready = true;
                                        None
                                    }
                                    StompIn::Error(why) => {
                                        tracing::warn!("the broker sent ERROR: {why}");
                                        Some(None)
                                    }
                                    StompIn::Other => None,
                                },
                            };
                            if let Some(checked) = delivery {
                                s.received += 1;
                                match checked {
                                    Some((src, seq, sent_ns)) if (src as usize) < pubs => {
                                        if bc.trackers[src as usize].record(seq) {
                                            received2.fetch_add(1, Ordering::AcqRel);
                                        }
                                        if sent_ns >= warm_ns && now_ns < end_ns {
                                            s.completed += 1;
                                            s.bytes += data.len() as u64;
                                            s.record_latency(now_ns.saturating_sub(sent_ns));
                                            p.events.fetch_add(1, Ordering::Relaxed);
                                        }
                                    }
                                    _ => s.corrupted += 1,
                                }
                            }
                        }
                        Event::Close => {
                            s.closed_by_server += 1;
                            c.state = State::Closed;
                        }
                    }
                    if ready && !bc.open {
                        bc.open = true;
                        opened2.fetch_add(1, Ordering::AcqRel);
                        p.open.fetch_add(1, Ordering::Relaxed);
                    }
                },
                |idx, _| failed.push(idx),
            );
            if res.is_err() {
                s.conn_errors += 1;
                break;
            }
            for idx in failed {
                s.conn_errors += 1;
                p.errors.fetch_add(1, Ordering::Relaxed);
                if let Some(bc) = conns.get_mut(idx) {
                    bc.open = false;
                }
            }
        }
        for bc in &conns {
            for tr in &bc.trackers {
                s.duplicates += tr.duplicates;
                s.reordered += tr.reordered;
            }
        }
        close_all(&mut d);
        // Loss needs every thread's published counts: the caller computes it from these.
        s.unique = conns
            .iter()
            .map(|bc| bc.trackers.iter().map(|t| t.unique).sum::<u64>())
            .sum();
        s
    })?;
    let server = printer.join().ok().flatten();
    let mut stats = stats;
    let published_total: u64 = published.iter().map(|x| x.load(Ordering::Acquire)).sum();
    stats.lost = (published_total * total as u64).saturating_sub(stats.unique);
    Ok((
        a.common.json,
        Report::new(
            mode,
            "deliveries",
            duration,
            stats,
            run_start,
            vec![
                ("subscribers", a.subscribers.into()),
                ("publishers", a.publishers.into()),
                ("published", published_total.into()),
                ("size", a.size.into()),
            ],
        )
        .with_server(server),
    ))
}

pub(crate) fn connect(a: ConnectArgs) -> Result<(bool, Report), BenchError> {
    let run_start = Instant::now();
    ensure_fds(a.concurrency as u64)?;
    let progress = Arc::new(Progress::default());
    let t0 = Instant::now();
    let warm_end = t0 + a.common.warmup();
    let end = warm_end + a.common.duration();
    let threads = a.common.threads();
    let concurrency = a.concurrency.max(1);
    let p = progress.clone();
    let printer = spawn_progress(progress.clone(), "handshakes", a.common.server_pid);
    let stats = run_threads(
        &a.common,
        (super::DEFAULT_URL, "/"),
        &progress,
        move |t, mut d| {
            let mut s = Stats::default();
            let mine = share(concurrency, t, threads).max(1);
            let mut in_progress = 0usize;
            while Instant::now() < end {
                while in_progress < mine {
                    match d.open() {
                        Ok(_) => in_progress += 1,
                        Err(_) => {
                            s.conn_errors += 1;
                            p.errors.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                }
                let mut done = Vec::new();
                let mut failed = Vec::new();
                let res = d.turn(
                    Duration::from_millis(5),
                    |idx, c, ev, now| {
                        if let Event::Opened = ev {
                            if c.started >= warm_end && now < end {
                                s.completed += 1;
                                s.record_latency((now - c.started).as_nanos() as u64);
                                p.events.fetch_add(1, Ordering::Relaxed);
                            }
                            done.push(idx);
                        }
                    },
                    |idx, _| failed.push(idx),
                );
                if res.is_err() {
                    s.conn_errors += 1;
                    break;
                }
                for idx in done {
                    if let Some(c) = d.remove(idx) {
                        // Reset rather than close: no TIME_WAIT, so a long run does not use
                        // up the ephemeral ports.
                        let _ = socket2::SockRef::from(&c.sock).set_linger(Some(Duration::ZERO));
                    }
                    in_progress -= 1;
                }
                for _ in failed {
                    s.conn_errors += 1;
                    p.errors.fetch_add(1, Ordering::Relaxed);
                    in_progress -= 1;
                }
            }
            s
        },
    )?;
    let server = printer.join().ok().flatten();
    Ok((
        a.common.json,
        Report::new(
            "connect",
            "handshakes",
            a.common.duration(),
            stats,
            run_start,
            vec![("concurrency", a.concurrency.into())],
        )
        .with_server(server),
    ))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub(crate) fn hold(a: HoldArgs) -> Result<(bool, Report), BenchError> {
    let run_start = Instant::now();
    ensure_fds(a.connections as u64)?;
    let progress = Arc::new(Progress::default());
    let threads = a.common.threads();
    let rss_before = a.common.server_pid.and_then(rss_kib);
    let opened = Arc::new(AtomicUsize::new(0));
    let all_open_at = Arc::new(AtomicU64::new(0));
    let (n, concurrency, hold_for) = (a.connections, a.concurrency.max(1), a.common.duration());
    let t0 = Instant::now();
    let p = progress.clone();
    let (opened2, all_open2) = (opened.clone(), all_open_at.clone());
    let rss_open = Arc::new(AtomicU64::new(0));
    let rss_open2 = rss_open.clone();
    let pid = a.common.server_pid;
    let printer = spawn_progress(progress.clone(), "opened", None);
    let stats = run_threads(
        &a.common,
        (super::DEFAULT_URL, "/"),
        &progress,
        move |t, mut d| {
            let mut s = Stats::default();
            let mine = share(n, t, threads);
            let conc = share(concurrency, t, threads).max(1);
            let mut started = 0;
            let mut handshaking = 0;
            let deadline = Instant::now() + CONNECT_WAIT + hold_for;
            loop {
                while started < mine && handshaking < conc {
                    match d.open() {
                        Ok(_) => handshaking += 1,
                        Err(_) => {
                            s.conn_errors += 1;
                            p.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    started += 1;
                }
                let mut failed = 0;
                let res = d.turn(
                    Duration::from_millis(10),
                    |_, c, ev, _| match ev {
                        Event::Opened => {
                            handshaking -= 1;
                            s.completed += 1;
                            opened2.fetch_add(1, Ordering::AcqRel);
                            p.open.fetch_add(1, Ordering::Relaxed);
                            p.events.fetch_add(1, Ordering::Relaxed);
                        }
                        Event::Message(..) => s.received += 1,
                        Event::Close => {
                            s.closed_by_server += 1;
                            c.state = State::Closed;
                        }
                    },
                    |_, _| failed += 1,
                );
                if res.is_err() {
                    break;
                }
                s.conn_errors += failed;
                handshaking = handshaking.saturating_sub(failed as usize);
                let now = Instant::now();
                let all = opened2.load(Ordering::Acquire) + s.conn_errors as usize >= n;
                if all && all_open2.load(Ordering::Acquire) == 0 {
                    let _ = all_open2.compare_exchange(
                        0,
                        ns_since(t0).max(1),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    );
                }
                let since = all_open2.load(Ordering::Acquire);
                if since > 0 {
                    let open_at = t0 + Duration::from_nanos(since);
                    // Read the server's memory once things have settled, on thread 0.
                    if t == 0
                        && now >= open_at + Duration::from_secs(1)
                        && rss_open2.load(Ordering::Acquire) == 0
                    {
                        if let Some(kib) = pid.and_then(rss_kib) {
                            rss_open2.store(kib.max(1), Ordering::Release);
                        }
                    }
                    if now >= open_at + hold_for {
                        break;
                    }
                }
                if now >= deadline {
                    break;
                }
            }
            s
        },
    )?;
    let server = printer.join().ok().flatten();
    let mut extra = vec![
        ("connections", n.into()),
        ("opened", opened.load(Ordering::Acquire).into()),
    ];
    if let (Some(before), after) = (rss_before, rss_open.load(Ordering::Acquire)) {
        if after > 0 {
            let open = opened.load(Ordering::Acquire).max(1) as f64;
            extra.push(("server_rss_before_kib", before.into()));
            extra.push(("server_rss_open_kib", after.into()));
            extra.push((
                "server_bytes_per_conn",
                serde_json::json!(((after as f64 - before as f64) * 1024.0 / open).round()),
            ));
        }
    }
    Ok((
        a.common.json,
        Report::new("hold", "connections", hold_for, stats, run_start, extra).with_server(server),
    ))
}
