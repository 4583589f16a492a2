//! `bench chat`: simulated users of a chat node (`switchboard serve`, or anything speaking
//! the seeds' JSON protocol) send private, group and channel messages at a set rate; the
//! run reports end-to-end latency per message type and accounts for every delivery.
//!
//! Owns the user simulation only. Messages are JSON, so unlike the other modes this one
//! parses (and allocates) per message; it measures a protocol, not the framing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::conn::{request, Event, State};
use super::driver::Driver;
use super::payload::SeqTracker;
use super::report::{spawn_progress, Progress, Report, Stats};
use super::{ensure_fds, BenchError, CommonArgs};
use crate::ws::OpCode;

/// `bench chat` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ChatArgs {
    /// Options every mode shares (`--url` is the node's WebSocket endpoint).
    #[command(flatten)]
    pub common: CommonArgs,
    /// Simulated users, one session each.
    #[arg(long, short = 'u', default_value_t = 100)]
    pub users: usize,
    /// Messages per second each user sends.
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Percentages of private, group and channel messages.
    #[arg(long, default_value = "80,10,10")]
    pub mix: String,
    /// Users are `<prefix><n>`; in demo mode that is the token.
    #[arg(long, default_value = "bench-user-")]
    pub user_prefix: String,
    /// Sign HS256 JWTs with this secret instead of sending demo tokens.
    #[arg(long)]
    pub jwt_secret: Option<String>,
}

const KINDS: [&str; 3] = ["private", "group", "channel"];
/// The latency histogram of `SEND_RESPONSE` to private messages (the node's "stored"
/// acknowledgement when its store is on), after the three kinds'.
const ACK: usize = 3;
const CHANNEL: &str = "bench";

/// What the client reads of each message: borrowed where the JSON has no escapes.
#[derive(serde::Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    body: Option<IncomingBody<'a>>,
}

#[derive(serde::Deserialize)]
struct IncomingBody<'a> {
    #[serde(default)]
    code: Option<i64>,
    #[serde(rename = "msgId", borrow, default, deserialize_with = "string_or_none")]
    msg_id: Option<std::borrow::Cow<'a, str>>,
    // Only the bench's own string contents matter; anything else reads as none.
    #[serde(borrow, default, deserialize_with = "string_or_none")]
    content: Option<std::borrow::Cow<'a, str>>,
}

fn string_or_none<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::borrow::Cow<'de, str>>, D::Error> {
    use serde::Deserialize;
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Any<'a> {
        Str(#[serde(borrow)] std::borrow::Cow<'a, str>),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Any::deserialize(d)? {
        Any::Str(s) => Some(s),
        Any::Other(_) => None,
    })
}

struct User {
    idx: u32,
    authed: bool,
    subscribed: bool,
    next_send: Option<Instant>,
    sent: u64,
    /// Per destination, the next private sequence number.
    private_seq: HashMap<u32, u64>,
    group_seq: u64,
    channel_seq: u64,
    /// (kind, source) → what arrived.
    seen: HashMap<(u8, u32), SeqTracker>,
    /// Private messages sent and not yet answered: send number → send time (ns).
    unanswered: HashMap<u64, u64>,
}

fn token(a: &ChatArgs, user: &str) -> String {
    match &a.jwt_secret {
        Some(secret) => {
            let exp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
                + 3600;
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &json!({ "sub": user, "exp": exp }),
                &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap_or_default()
        }
        None => user.to_owned(),
    }
}

fn parse_mix(mix: &str) -> Result<[u32; 3], BenchError> {
    let parts: Vec<u32> = mix
        .split(',')
        .map(|p| p.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| BenchError::Invalid(format!("--mix {mix:?}: expected e.g. 80,10,10")))?;
    match parts.as_slice() {
        [p, g, c] if p + g + c == 100 => Ok([*p, *g, *c]),
        _ => Err(BenchError::Invalid(format!(
            "--mix {mix:?}: three percentages adding up to 100"
        ))),
    }
}

/// Shared counters: what each user sent, so receivers' totals can be checked at the end.
struct Sent {
    private: Vec<AtomicU64>, // users × users, [src * users + dst]
    group: Vec<AtomicU64>,
    channel: Vec<AtomicU64>,
}

pub(crate) fn chat(a: ChatArgs) -> Result<(bool, Report), BenchError> {
    let run_start = Instant::now();
    let mix = parse_mix(&a.mix)?;
    // The user prefix as it appears inside a JSON string (escaped, without the quotes).
    let prefix_json = serde_json::to_string(&a.user_prefix)
        .map(|q| q[1..q.len() - 1].to_owned())
        .unwrap_or_default();
    if a.users < 2 {
        return Err(BenchError::Invalid("--users must be at least 2".into()));
    }
    ensure_fds(a.users as u64)?;
    let target = a.common.target(super::DEFAULT_CHAT_URL, "/ws")?;
    let first = format!(
        "{}?token={}",
        target.path,
        token(&a, &format!("{}preflight", a.user_prefix))
    );
    // A chat node answers the token with AUTH_RESPONSE; anything else (an echo server, a
    // refused token) ends the run here, with the reason.
    let reply =
        super::preflight(&target, &first, super::preflight_timeout(&a.common))?.first_text()?;
    let v: Value = serde_json::from_str(&reply).unwrap_or(Value::Null);
    if v["type"] != "AUTH_RESPONSE" || v["body"]["code"] != 0 {
        let reply: String = reply.chars().take(300).collect();
        return Err(BenchError::Connect {
            addr: target.addr,
            why: format!(
                "the server did not accept the login (is it `switchboard serve`?): {reply}"
            ),
        });
    }
    let binds = a.common.binds()?;
    let n = a.users;
    let threads = a.common.threads();
    let progress = Arc::new(Progress::default());
    let ready = Arc::new(AtomicUsize::new(0));
    let start_ns = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(Sent {
        private: (0..n * n).map(|_| AtomicU64::new(0)).collect(),
        group: (0..n).map(|_| AtomicU64::new(0)).collect(),
        channel: (0..n).map(|_| AtomicU64::new(0)).collect(),
    });
    let t0 = Instant::now();
    let (warmup, duration, rate) = (a.common.warmup(), a.common.duration(), a.rate.max(0.01));
    let printer = spawn_progress(progress.clone(), "deliveries", a.common.server_pid);
    let mut handles = Vec::new();
    for t in 0..threads {
        let a = a.clone();
        let prefix_json = prefix_json.clone();
        let (p, ready, start_ns, sent) = (
            progress.clone(),
            ready.clone(),
            start_ns.clone(),
            sent.clone(),
        );
        let mut driver = Driver::new(
            target.addr,
            Vec::new(),
            binds.clone(),
            0x5eed ^ t as u64,
            target.tls.clone(),
        )?;
        let host = target.host.clone();
        let base = target.path.clone();
        handles.push(std::thread::spawn(move || {
            let mut s = Stats::default();
            let mut hists: Vec<Histogram<u64>> = (0..4)
                .map(|_| Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("constant bounds"))
                .collect();
            let mut users: Vec<User> = Vec::new();
            let mut slots: Vec<usize> = Vec::new();
            for i in (t..n).step_by(threads) {
                let name = format!("{}{i}", a.user_prefix);
                let req = request(&host, &format!("{base}?token={}", token(&a, &name)));
                match driver.open_with(&req) {
                    Ok(idx) => {
                        slots.push(idx);
                        users.push(User {
                            idx: i as u32,
                            authed: false,
                            subscribed: false,
                            next_send: None,
                            sent: 0,
                            private_seq: HashMap::new(),
                            group_seq: 0,
                            channel_seq: 0,
                            seen: HashMap::new(),
                            unanswered: HashMap::new(),
                        });
                    }
                    Err(_) => s.conn_errors += 1,
                }
            }
            let by_slot: HashMap<usize, usize> = slots.iter().enumerate().map(|(u, &sl)| (sl, u)).collect();
            // Logins get at most the run's own length (and 30 s): a node that stops
            // answering must not hold the run forever.
            let setup_deadline = Instant::now() + (warmup + duration).min(Duration::from_secs(30));
            let mut window: Option<(Instant, Instant)> = None;
            let mut last_delivery = Instant::now();
            loop {
                let now = Instant::now();
                if window.is_none() && (ready.load(Ordering::Acquire) >= n || now >= setup_deadline) {
                    let ns = (now - t0).as_nanos() as u64;
                    let _ = start_ns.compare_exchange(0, ns.max(1), Ordering::AcqRel, Ordering::Acquire);
                    let st = t0 + Duration::from_nanos(start_ns.load(Ordering::Acquire));
                    window = Some((st + warmup, st + warmup + duration));
                    let count = users.len().max(1) as f64;
                    for (k, u) in users.iter_mut().enumerate() {
                        // Spread the users' first sends over one interval.
                        let offset = (k as f64 / count) / rate;
                        u.next_send = Some(st + Duration::from_secs_f64(offset));
                    }
                }
                if let Some((_, end)) = window {
                    if now >= end && (now >= end + Duration::from_secs(5) || now >= last_delivery + Duration::from_millis(500)) {
                        break;
                    }
                    // Send what is due.
                    for (k, u) in users.iter_mut().enumerate() {
                        let Some(due) = u.next_send else { continue };
                        if now < due || now >= end {
                            continue;
                        }
                        let Some(conn) = driver.conns.get_mut(slots[k]).and_then(Option::as_mut) else { continue };
                        if conn.state != State::Open {
                            continue;
                        }
                        let ts = (now - t0).as_nanos() as u64;
                        let pick = (u.sent * 37 + u.idx as u64) % 100;
                        let (idx, sent_n) = (u.idx, u.sent);
                        // Written as text, not through a JSON tree: the client must
                        // outrun the server it measures.
                        let text = if pick < mix[0] as u64 {
                            let mut dst = ((u.idx as u64 + 1 + u.sent * 7) % n as u64) as u32;
                            if dst == u.idx {
                                dst = (dst + 1) % n as u32;
                            }
                            let seq = u.private_seq.entry(dst).or_insert(0);
                            let text = format!(
                                r#"{{"type":"SEND_TO_ONE_REQUEST","body":{{"toUser":"{prefix}{dst}","msgId":"{idx}-{sent_n}","content":"0|{idx}|{seq}|{ts}"}}}}"#,
                                prefix = prefix_json,
                                seq = *seq
                            );
                            *seq += 1;
                            sent.private[u.idx as usize * n + dst as usize].fetch_add(1, Ordering::AcqRel);
                            u.unanswered.insert(sent_n, ts);
                            text
                        } else if pick < (mix[0] + mix[1]) as u64 {
                            let text = format!(
                                r#"{{"type":"SEND_TO_ALL_REQUEST","body":{{"msgId":"{idx}-{sent_n}","content":"1|{idx}|{seq}|{ts}"}}}}"#,
                                seq = u.group_seq
                            );
                            u.group_seq += 1;
                            sent.group[u.idx as usize].fetch_add(1, Ordering::AcqRel);
                            text
                        } else {
                            let text = format!(
                                r#"{{"type":"SEND_TO_CHANNEL_REQUEST","body":{{"channel":"{CHANNEL}","msgId":"{idx}-{sent_n}","content":"2|{idx}|{seq}|{ts}"}}}}"#,
                                seq = u.channel_seq
                            );
                            u.channel_seq += 1;
                            sent.channel[u.idx as usize].fetch_add(1, Ordering::AcqRel);
                            text
                        };
                        conn.send(OpCode::Text, text.as_bytes());
                        u.sent += 1;
                        s.sent += 1;
                        u.next_send = Some(due + Duration::from_secs_f64(1.0 / rate));
                    }
                    driver.flush_all(|_, _| {});
                }
                let received_before = s.received;
                let mut failed = Vec::new();
                let warm = window.map(|(w, e)| ((w - t0).as_nanos() as u64, (e - t0).as_nanos() as u64));
                let res = driver.turn(
                    Duration::from_millis(2),
                    |slot, c, ev, now| {
                        let Some(&k) = by_slot.get(&slot) else { return };
                        let u = &mut users[k];
                        let Event::Message(OpCode::Text, data) = ev else {
                            if let Event::Close = ev {
                                s.closed_by_server += 1;
                                c.state = State::Closed;
                            }
                            return;
                        };
                        let Ok(v) = serde_json::from_slice::<Incoming<'_>>(data) else {
                            s.corrupted += 1;
                            return;
                        };
                        let code = v.body.as_ref().and_then(|b| b.code);
                        match &*v.kind {
                            "AUTH_RESPONSE" if code == Some(0) && !u.authed => {
                                u.authed = true;
                                let sub = json!({"type": "SUBSCRIBE_REQUEST", "body": {"channel": CHANNEL}});
                                c.send(OpCode::Text, sub.to_string().as_bytes());
                            }
                            "AUTH_RESPONSE" => s.conn_errors += 1,
                            "SUBSCRIBE_RESPONSE" if !u.subscribed => {
                                u.subscribed = true;
                                ready.fetch_add(1, Ordering::AcqRel);
                                p.open.fetch_add(1, Ordering::Relaxed);
                            }
                            "SEND_RESPONSE" if code != Some(0) => s.conn_errors += 1,
                            "SEND_RESPONSE" => {
                                let sent_n = v.body.as_ref().and_then(|b| b.msg_id.as_deref())
                                    .and_then(|m| m.rsplit('-').next()).and_then(|n| n.parse::<u64>().ok());
                                if let Some(ts) = sent_n.and_then(|n| u.unanswered.remove(&n)) {
                                    let now_ns = (now - t0).as_nanos() as u64;
                                    if warm.is_some_and(|(w, e)| ts >= w && now_ns < e) {
                                        let _ = hists[ACK].record(now_ns.saturating_sub(ts).max(1));
                                    }
                                }
                            }
                            "SEND_TO_USER_REQUEST" | "CHANNEL_MESSAGE" => {
                                let content = v.body.as_ref().and_then(|b| b.content.as_deref()).unwrap_or("");
                                let f: Vec<&str> = content.split('|').collect();
                                let parsed = (|| {
                                    Some((f.first()?.parse::<u8>().ok()?, f.get(1)?.parse::<u32>().ok()?,
                                        f.get(2)?.parse::<u64>().ok()?, f.get(3)?.parse::<u64>().ok()?))
                                })();
                                let Some((kind, src, seq, ts)) = parsed.filter(|p| p.0 < 3 && (p.1 as usize) < n) else {
                                    s.corrupted += 1;
                                    return;
                                };
                                s.received += 1;
                                u.seen.entry((kind, src)).or_default().record(seq);
                                let now_ns = (now - t0).as_nanos() as u64;
                                if let Some((w, e)) = warm {
                                    if ts >= w && now_ns < e {
                                        s.completed += 1;
                                        let _ = hists[kind as usize].record(now_ns.saturating_sub(ts).max(1));
                                        s.record_latency(now_ns.saturating_sub(ts));
                                        p.events.fetch_add(1, Ordering::Relaxed);
                                    }
                                }
                            }
                            _ => {}
                        }
                    },
                    |idx, _| failed.push(idx),
                );
                if res.is_err() {
                    s.conn_errors += 1;
                    break;
                }
                s.conn_errors += failed.len() as u64;
                if s.received > received_before {
                    last_delivery = Instant::now();
                }
            }
            let mut received = vec![0u64; 3];
            for u in &users {
                for ((kind, _), tr) in &u.seen {
                    received[*kind as usize] += tr.unique;
                    s.duplicates += tr.duplicates;
                    s.reordered += tr.reordered;
                }
            }
            (s, hists, received)
        }));
    }
    let mut stats = Stats::default();
    let mut hists: Vec<Histogram<u64>> = (0..4)
        .map(|_| Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("constant bounds"))
        .collect();
    let mut received = [0u64; 3];
    for h in handles {
        let (s, hs, r) = h
            .join()
            .map_err(|_| BenchError::Invalid("a bench thread panicked".into()))?;
        stats.merge(&s);
        for (acc, h) in hists.iter_mut().zip(hs) {
            let _ = acc.add(&h);
        }
        for k in 0..3 {
            received[k] += r[k];
        }
    }
    progress.done.store(true, Ordering::Release);
    let server = printer.join().ok().flatten();
    let total = |v: &Vec<AtomicU64>| v.iter().map(|x| x.load(Ordering::Acquire)).sum::<u64>();
    // Private messages reach one user; group and channel messages reach every user
    // (everyone is subscribed to the bench channel).
    let expected = [
        total(&sent.private),
        total(&sent.group) * n as u64,
        total(&sent.channel) * n as u64,
    ];
    stats.lost = (0..3)
        .map(|k| expected[k].saturating_sub(received[k]))
        .sum();
    let quantile = |h: &Histogram<u64>, x: f64| {
        if h.is_empty() {
            0.0
        } else {
            h.value_at_quantile(x) as f64 / 1000.0
        }
    };
    let mut per_kind: serde_json::Map<String, Value> = (0..3)
        .map(|k| {
            let h = &hists[k];
            (
                KINDS[k].to_owned(),
                json!({ "expected": expected[k], "delivered": received[k],
                        "p50_us": quantile(h, 0.5), "p99_us": quantile(h, 0.99), "samples": h.len() }),
            )
        })
        .collect();
    // Sender to SEND_RESPONSE for private messages: with the node's store on, the time
    // until the message is committed ("stored").
    let h = &hists[ACK];
    per_kind.insert(
        "private_ack".into(),
        json!({ "p50_us": quantile(h, 0.5), "p99_us": quantile(h, 0.99), "samples": h.len() }),
    );
    Ok((
        a.common.json,
        Report::new(
            "chat",
            "deliveries",
            duration,
            stats,
            run_start,
            vec![
                ("users", n.into()),
                ("rate_per_user", a.rate.into()),
                ("by_type", Value::Object(per_kind)),
            ],
        )
        .with_server(server),
    ))
}
