//! One STOMP session as a sans-IO machine: bytes and `now` (milliseconds) in, frames to
//! send and events for the broker out.
//!
//! Owns the session rules of STOMP 1.0–1.2: CONNECT first and once, version and
//! heart-beat negotiation, subscriptions and their ack modes, the ACK/NACK ledger of
//! `client` and `client-individual` subscriptions, transactions, receipts, and the
//! `ERROR`-then-close rule. It does not authenticate, route or touch sockets: the
//! handler answers [`Event::Connect`] and carries out the other events.

use std::collections::{HashMap, VecDeque};

use super::frame::{Command, Frame, FrameError, FrameLimits, FrameParser, Parsed};

/// Versions this broker speaks, lowest first.
pub const VERSIONS: [&str; 3] = ["1.0", "1.1", "1.2"];

/// How a subscription's messages are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    /// Delivered is done: nothing to acknowledge.
    Auto,
    /// An ACK acknowledges that message and every earlier one of the subscription.
    Client,
    /// An ACK acknowledges that message only.
    ClientIndividual,
}

/// Limits and timings of a session; every one a field of `[stomp]` in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Frame size limits.
    pub limits: FrameLimits,
    /// Shortest interval at which the broker can send heart-beats, ms (0: never).
    pub heartbeat_send_ms: u64,
    /// Interval at which the broker wants heart-beats from the client, ms (0: none).
    pub heartbeat_receive_ms: u64,
    /// Subscriptions one session may hold.
    pub max_subscriptions: usize,
    /// Messages waiting for ACK in one session; beyond, the subscription's oldest is
    /// dropped.
    pub max_pending_acks: usize,
    /// Frames held by one open transaction.
    pub max_transaction_frames: usize,
    /// Open transactions per session.
    pub max_transactions: usize,
    /// Times a NACKed message is delivered again before it is dropped.
    pub max_redeliveries: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            limits: FrameLimits::default(),
            heartbeat_send_ms: 10_000,
            heartbeat_receive_ms: 10_000,
            max_subscriptions: 1000,
            max_pending_acks: 1000,
            max_transaction_frames: 1000,
            max_transactions: 16,
            max_redeliveries: 3,
        }
    }
}

/// What the handler must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A CONNECT or STOMP frame with a version in common: authenticate, then call
    /// [`Session::accept`] or [`Session::refuse`].
    Connect {
        /// `login` header.
        login: Option<String>,
        /// `passcode` header.
        passcode: Option<String>,
        /// `token` header, or `Authorization` without its `Bearer `.
        token: Option<String>,
    },
    /// A new subscription.
    Subscribe {
        /// Its id.
        id: String,
        /// The destination as the client wrote it.
        destination: String,
        /// Its ack mode.
        ack: AckMode,
    },
    /// A subscription ended.
    Unsubscribe {
        /// Its id.
        id: String,
        /// Its destination.
        destination: String,
    },
    /// A SEND (at once, or when its transaction commits).
    Send(Frame),
    /// Bytes to send now, in order with the other events: a RECEIPT (queued behind the
    /// frame's own event, so a frame the handler refuses never gets one) or a NACKed
    /// message delivered again (with `redelivered:true`).
    Reply(Vec<u8>),
    /// The client said DISCONNECT (its RECEIPT is already out): close the connection.
    Disconnect,
    /// A protocol error: the `ERROR` frame is out; close the connection.
    Failed(String),
}

/// A message sent to a `client`/`client-individual` subscription and not yet ACKed.
#[derive(Debug)]
struct Pending {
    ack_id: String,
    sub: String,
    /// The MESSAGE frame, kept for a redelivery after a NACK.
    frame: Frame,
    attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Sub {
    destination: String,
    ack: AckMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Authenticating,
    Connected,
    Closed,
}

/// One STOMP session.
#[derive(Debug)]
pub struct Session {
    parser: FrameParser,
    state: State,
    /// Minor version: 0, 1 or 2.
    minor: u8,
    subs: HashMap<String, Sub>,
    pending: VecDeque<Pending>,
    transactions: HashMap<String, Vec<Frame>>,
    ready: VecDeque<Event>,
    /// Negotiated heart-beat intervals (ms; 0 = off).
    send_every: u64,
    expect_every: u64,
    last_in: u64,
    last_out: u64,
    next_ack: u64,
}

impl Session {
    /// A session that waits for CONNECT.
    pub fn new(now: u64) -> Self {
        Session {
            parser: FrameParser::new(),
            state: State::Connecting,
            minor: 0,
            subs: HashMap::new(),
            pending: VecDeque::new(),
            transactions: HashMap::new(),
            ready: VecDeque::new(),
            send_every: 0,
            expect_every: 0,
            last_in: now,
            last_out: now,
            next_ack: 0,
        }
    }

    /// Whether CONNECT was accepted and the session is not closed.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// Whether headers sent to this client are escaped (1.1 and 1.2).
    pub fn escapes(&self) -> bool {
        self.minor >= 1
    }

    /// The negotiated version, `1.x`.
    pub fn version(&self) -> &'static str {
        VERSIONS[self.minor as usize]
    }

    /// The ack mode of subscription `id`, if it exists.
    pub fn ack_mode(&self, id: &str) -> Option<AckMode> {
        self.subs.get(id).map(|s| s.ack)
    }

    /// Every subscription as (id, destination).
    pub fn subscriptions(&self) -> impl Iterator<Item = (&str, &str)> {
        self.subs
            .iter()
            .map(|(id, s)| (id.as_str(), s.destination.as_str()))
    }

    /// Messages waiting for an ACK.
    pub fn pending_acks(&self) -> usize {
        self.pending.len()
    }

    /// Bytes of a WebSocket message from the client.
    pub fn push(&mut self, bytes: &[u8], now: u64) {
        self.last_in = now;
        if self.state != State::Closed {
            self.parser.push(bytes);
        }
    }

    /// The next event, writing any frames to send into `out`; `None` until more bytes
    /// arrive (or, while a CONNECT is being authenticated, until it is answered).
    pub fn poll(&mut self, cfg: &SessionConfig, out: &mut Vec<Vec<u8>>) -> Option<Event> {
        loop {
            if let Some(ev) = self.ready.pop_front() {
                return Some(ev);
            }
            if matches!(self.state, State::Closed | State::Authenticating) {
                return None;
            }
            match self.parser.next(&cfg.limits)? {
                Ok(Parsed::HeartBeat) => continue,
                Ok(Parsed::Frame(f)) => {
                    if let Err(why) = self.on_frame(f, cfg, out) {
                        return Some(self.fail(&why, None, out));
                    }
                }
                Err(e) => return Some(self.fail_frame(&e, out)),
            }
        }
    }

    fn fail_frame(&mut self, e: &FrameError, out: &mut Vec<Vec<u8>>) -> Event {
        self.fail(&e.to_string(), None, out)
    }

    /// Sends `ERROR` with `message` and ends the session.
    pub fn fail(&mut self, message: &str, receipt: Option<&str>, out: &mut Vec<Vec<u8>>) -> Event {
        let mut f = Frame::new(Command::Error).header("message", message);
        if let Some(r) = receipt {
            f = f.header("receipt-id", r);
        }
        f = f
            .header("content-type", "text/plain")
            .body(message.as_bytes().to_vec());
        out.push(f.encode(self.escapes()));
        self.state = State::Closed;
        self.ready.clear();
        Event::Failed(message.to_owned())
    }

    /// Whether the session has ended (ERROR sent, or DISCONNECT).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    fn on_frame(
        &mut self,
        f: Frame,
        cfg: &SessionConfig,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), String> {
        if matches!(f.command, Command::Connect | Command::Stomp) {
            return self.on_connect(&f, cfg, out);
        }
        if self.state != State::Connected {
            return Err(format!("{} before CONNECT", f.command));
        }
        let receipt = f.get("receipt").map(str::to_owned);
        match f.command {
            Command::Send => self.on_send(f, cfg)?,
            Command::Subscribe => self.on_subscribe(&f, cfg)?,
            Command::Unsubscribe => self.on_unsubscribe(&f)?,
            Command::Ack | Command::Nack => {
                if let Some(tx) = f.get("transaction").map(str::to_owned) {
                    self.hold(tx, f, cfg)?;
                } else {
                    self.on_ack(&f, cfg)?;
                }
            }
            Command::Begin => {
                let tx = required(&f, "transaction")?;
                if self.transactions.contains_key(tx) {
                    return Err(format!("transaction {tx:?} already begun"));
                }
                if self.transactions.len() >= cfg.max_transactions {
                    return Err(format!(
                        "more than {} open transactions",
                        cfg.max_transactions
                    ));
                }
                self.transactions.insert(tx.to_owned(), Vec::new());
            }
            Command::Commit => {
                let tx = required(&f, "transaction")?;
                let held = self
                    .transactions
                    .remove(tx)
                    .ok_or_else(|| format!("no transaction {tx:?}"))?;
                for frame in held {
                    if frame.command == Command::Send {
                        self.ready.push_back(Event::Send(frame));
                    } else {
                        self.on_ack(&frame, cfg)?;
                    }
                }
            }
            Command::Abort => {
                let tx = required(&f, "transaction")?;
                self.transactions
                    .remove(tx)
                    .ok_or_else(|| format!("no transaction {tx:?}"))?;
            }
            Command::Disconnect => {
                if let Some(r) = &receipt {
                    out.push(self.receipt(r));
                }
                self.state = State::Closed;
                self.ready.push_back(Event::Disconnect);
                return Ok(());
            }
            other => return Err(format!("{other} is a server frame")),
        }
        if let Some(r) = receipt {
            let bytes = self.receipt(&r);
            self.ready.push_back(Event::Reply(bytes));
        }
        Ok(())
    }

    fn receipt(&self, id: &str) -> Vec<u8> {
        Frame::new(Command::Receipt)
            .header("receipt-id", id)
            .encode(self.escapes())
    }

    fn on_connect(
        &mut self,
        f: &Frame,
        cfg: &SessionConfig,
        out: &mut Vec<Vec<u8>>,
    ) -> Result<(), String> {
        if self.state != State::Connecting {
            return Err("CONNECT on a connected session".into());
        }
        let offered = f.get("accept-version").unwrap_or("1.0");
        let Some(minor) = (0..3u8)
            .rev()
            .find(|&m| offered.split(',').any(|v| v.trim() == VERSIONS[m as usize]))
        else {
            let e = Frame::new(Command::Error)
                .header("version", VERSIONS.join(","))
                .header("content-type", "text/plain")
                .header("message", "supported protocol versions are 1.0, 1.1 and 1.2")
                .body(format!("no version in common with {offered:?}; this broker speaks 1.0, 1.1 and 1.2").into_bytes());
            out.push(e.encode(false));
            self.state = State::Closed;
            self.ready
                .push_back(Event::Failed("no common version".into()));
            return Ok(());
        };
        self.minor = minor;
        let (cx, cy) = parse_heart_beat(f.get("heart-beat")).ok_or("bad heart-beat header")?;
        // What each side sends is at least what the other can take (STOMP 1.2,
        // "Heart-beating"); 0 on either side turns that direction off.
        self.send_every = both(cfg.heartbeat_send_ms, cy);
        self.expect_every = both(cx, cfg.heartbeat_receive_ms);
        self.state = State::Authenticating;
        let bearer = f
            .get("Authorization")
            .or_else(|| f.get("authorization"))
            .map(|a| a.strip_prefix("Bearer ").unwrap_or(a).trim().to_owned());
        self.ready.push_back(Event::Connect {
            login: f.get("login").map(str::to_owned),
            passcode: f.get("passcode").map(str::to_owned),
            token: f.get("token").map(str::to_owned).or(bearer),
        });
        Ok(())
    }

    /// Accepts the CONNECT: sends CONNECTED, with `user` as `user-name`.
    pub fn accept(
        &mut self,
        session: &str,
        user: &str,
        server: &str,
        now: u64,
        out: &mut Vec<Vec<u8>>,
    ) {
        if self.state != State::Authenticating {
            return;
        }
        self.state = State::Connected;
        self.parser.set_escapes(self.escapes());
        self.last_in = now;
        self.last_out = now;
        let mut f = Frame::new(Command::Connected).header("version", self.version());
        if self.minor >= 1 {
            f = f.header(
                "heart-beat",
                format!("{},{}", self.send_every, self.expect_every),
            );
        }
        f = f
            .header("session", session)
            .header("server", server)
            .header("user-name", user);
        out.push(f.encode(false));
    }

    /// Refuses the CONNECT with `ERROR` (`message` says why); the session ends.
    pub fn refuse(&mut self, message: &str, out: &mut Vec<Vec<u8>>) -> Event {
        self.fail(message, None, out)
    }

    fn on_send(&mut self, f: Frame, cfg: &SessionConfig) -> Result<(), String> {
        required(&f, "destination")?;
        match f.get("transaction").map(str::to_owned) {
            Some(tx) => self.hold(tx, f, cfg),
            None => {
                self.ready.push_back(Event::Send(f));
                Ok(())
            }
        }
    }

    fn hold(&mut self, tx: String, f: Frame, cfg: &SessionConfig) -> Result<(), String> {
        let held = self
            .transactions
            .get_mut(&tx)
            .ok_or_else(|| format!("no transaction {tx:?}"))?;
        if held.len() >= cfg.max_transaction_frames {
            return Err(format!(
                "transaction {tx:?} holds more than {} frames",
                cfg.max_transaction_frames
            ));
        }
        held.push(f);
        Ok(())
    }

    fn on_subscribe(&mut self, f: &Frame, cfg: &SessionConfig) -> Result<(), String> {
        let destination = required(f, "destination")?.to_owned();
        // 1.0 made the id optional: the destination stands in for it.
        let id = match (f.get("id"), self.minor) {
            (Some(id), _) => id.to_owned(),
            (None, 0) => destination.clone(),
            (None, _) => return Err("SUBSCRIBE without an id".into()),
        };
        let ack = match f.get("ack").unwrap_or("auto") {
            "auto" => AckMode::Auto,
            "client" => AckMode::Client,
            "client-individual" => AckMode::ClientIndividual,
            other => return Err(format!("unknown ack mode {other:?}")),
        };
        if self.subs.contains_key(&id) {
            return Err(format!("subscription id {id:?} already in use"));
        }
        if self.subs.len() >= cfg.max_subscriptions {
            return Err(format!("more than {} subscriptions", cfg.max_subscriptions));
        }
        self.subs.insert(
            id.clone(),
            Sub {
                destination: destination.clone(),
                ack,
            },
        );
        self.ready.push_back(Event::Subscribe {
            id,
            destination,
            ack,
        });
        Ok(())
    }

    fn on_unsubscribe(&mut self, f: &Frame) -> Result<(), String> {
        let id = match (f.get("id"), f.get("destination"), self.minor) {
            (Some(id), _, _) => id.to_owned(),
            (None, Some(d), 0) => d.to_owned(),
            _ => return Err("UNSUBSCRIBE without an id".into()),
        };
        let sub = self
            .subs
            .remove(&id)
            .ok_or_else(|| format!("no subscription {id:?}"))?;
        self.pending.retain(|p| p.sub != id);
        self.ready.push_back(Event::Unsubscribe {
            id,
            destination: sub.destination,
        });
        Ok(())
    }

    /// Sends a MESSAGE to subscription `sub` of this session through the ACK ledger
    /// (for `client` and `client-individual`; an `auto` one is sent as is). `frame` has
    /// every header but `ack`. Returns the bytes to send, or `None` if the
    /// subscription is gone.
    pub fn deliver(&mut self, sub: &str, mut frame: Frame, cfg: &SessionConfig) -> Option<Vec<u8>> {
        let mode = self.subs.get(sub)?.ack;
        if mode == AckMode::Auto || self.state != State::Connected {
            return Some(frame.encode(self.escapes()));
        }
        self.next_ack += 1;
        let ack_id = self.next_ack.to_string();
        if self.minor >= 2 {
            frame.headers.push(("ack".into(), ack_id.clone()));
        }
        let bytes = frame.encode(self.escapes());
        if self.pending.len() >= cfg.max_pending_acks {
            self.pending.pop_front();
        }
        self.pending.push_back(Pending {
            ack_id,
            sub: sub.to_owned(),
            frame,
            attempts: 1,
        });
        Some(bytes)
    }

    fn on_ack(&mut self, f: &Frame, cfg: &SessionConfig) -> Result<(), String> {
        // 1.2 names the message by `id` (our `ack` header); 1.0 and 1.1 by `message-id`
        // (with `subscription` in 1.1), which we map to the ack id we handed out.
        let at = if self.minor >= 2 {
            let id = required(f, "id")?;
            self.pending.iter().position(|p| p.ack_id == id)
        } else {
            let id = required(f, "message-id")?;
            let sub = f.get("subscription");
            self.pending.iter().position(|p| {
                p.frame.get("message-id") == Some(id) && sub.is_none_or(|s| s == p.sub)
            })
        };
        // An ACK for something already acknowledged, or dropped, is not an error: the
        // client cannot know which of its late ACKs still count.
        let Some(at) = at else { return Ok(()) };
        let sub = self.pending[at].sub.clone();
        let cumulative = self.subs.get(&sub).map(|s| s.ack) == Some(AckMode::Client);
        let taken: Vec<Pending> = if cumulative {
            let mut taken = Vec::new();
            let mut i = 0;
            let mut seen = 0;
            while i < self.pending.len() && seen <= at {
                seen += 1;
                if self.pending[i].sub == sub {
                    taken.extend(self.pending.remove(i));
                } else {
                    i += 1;
                }
            }
            taken
        } else {
            self.pending.remove(at).into_iter().collect()
        };
        if f.command == Command::Nack {
            for p in taken {
                self.redeliver(p, cfg);
            }
        }
        Ok(())
    }

    fn redeliver(&mut self, mut p: Pending, cfg: &SessionConfig) {
        if p.attempts > cfg.max_redeliveries || !self.subs.contains_key(&p.sub) {
            return;
        }
        p.attempts += 1;
        self.next_ack += 1;
        p.ack_id = self.next_ack.to_string();
        p.frame
            .headers
            .retain(|(n, _)| n != "ack" && n != "redelivered");
        if self.minor >= 2 {
            p.frame.headers.push(("ack".into(), p.ack_id.clone()));
        }
        p.frame.headers.push(("redelivered".into(), "true".into()));
        self.ready
            .push_back(Event::Reply(p.frame.encode(self.escapes())));
        self.pending.push_back(p);
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next, if ever.
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.state != State::Connected {
            return None;
        }
        let send = (self.send_every > 0).then(|| self.last_out + self.send_every);
        let recv = (self.expect_every > 0).then(|| self.last_in + 3 * self.expect_every);
        match (send, recv) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Heart-beat duties at `now`: an EOL into `out` when one is due; `Err` with the
    /// reason when the client has missed three of its heart-beats (close it).
    pub fn handle_timeout(&mut self, now: u64, out: &mut Vec<Vec<u8>>) -> Result<(), String> {
        if self.state != State::Connected {
            return Ok(());
        }
        if self.expect_every > 0 && now >= self.last_in + 3 * self.expect_every {
            self.state = State::Closed;
            return Err(format!(
                "no heart-beat from the client for {} ms",
                now - self.last_in
            ));
        }
        if self.send_every > 0 && now >= self.last_out + self.send_every {
            out.push(b"\n".to_vec());
            self.last_out = now;
        }
        Ok(())
    }
}

fn both(a: u64, b: u64) -> u64 {
    if a == 0 || b == 0 {
        0
    } else {
        a.max(b)
    }
}

fn parse_heart_beat(h: Option<&str>) -> Option<(u64, u64)> {
    let Some(h) = h else { return Some((0, 0)) };
    let (a, b) = h.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

fn required<'f>(f: &'f Frame, name: &str) -> Result<&'f str, String> {
    f.get(name)
        .ok_or_else(|| format!("{} without a {name} header", f.command))
}
