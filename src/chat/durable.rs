//! The store thread: every write to the durable store goes through it, so a worker never
//! waits for the disk. Workers and the push API queue operations; the thread takes
//! whatever has queued (up to `store.max_batch`), commits all appended messages in one
//! transaction (group commit), then hands each result to the node's [`Sink`], which
//! carries it back to the connection's worker through the hub. It also holds the parked
//! long polls (`GET /api/v1/messages`) and runs retention.
//!
//! Owns the queue, the batching, long-poll waiters and their JSON answers. It knows the
//! store only through the [`Store`] trait and the node only through [`Sink`]; it never
//! touches sessions or the registry.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::metrics::DurableMetrics;
use super::protocol::Resume;
use super::store::{delivery_text, NewMessage, Store, StoreError, Stored};
use crate::http::HttpResponse;
use crate::hub::Hub;
use crate::id::ConnId;
use crate::reply::HttpReply;

/// Who is told that an appended message was stored (or was not).
#[derive(Debug)]
pub(crate) enum Told {
    /// A chat client: `SEND_RESPONSE` for its `msgId`.
    Sender {
        /// The sender's session.
        conn: ConnId,
        /// The sending user (to forget the msgId on failure).
        user: String,
        /// The client's message id.
        msg_id: String,
        /// The request's `requestId`.
        rid: Option<String>,
    },
    /// A push API call, answered when the message is stored.
    Api(HttpReply),
}

/// Where a pull's answer goes.
#[derive(Debug)]
pub(crate) enum PullTo {
    /// `PULL_RESPONSE` on a session.
    Ws {
        /// The session.
        conn: ConnId,
        /// The request's `requestId`.
        rid: Option<String>,
    },
    /// A long poll, held until `until` if there is nothing to answer with.
    Http {
        /// The parked request.
        reply: HttpReply,
        /// When to give up and answer with no messages.
        until: Instant,
    },
}

/// Work for the store thread.
#[derive(Debug)]
pub(crate) enum Op {
    /// Number, keep, then deliver a message (to a user or a channel: its stream).
    Append {
        /// The message.
        msg: NewMessage,
        /// Who to tell.
        told: Told,
    },
    /// A user has everything up to `seq`.
    Ack {
        /// The user's stream.
        stream: String,
        /// Cumulative.
        seq: u64,
    },
    /// A session logged in (or subscribed to `channel`): read what it missed.
    Resume {
        /// The user's (or the channel's) stream.
        stream: String,
        /// The channel, for a subscription.
        channel: Option<String>,
        /// The session.
        conn: ConnId,
        /// What the client said it has, if anything.
        client: Option<Resume>,
        /// The `AUTH_REQUEST`'s `requestId`.
        rid: Option<String>,
    },
    /// Messages above `after`, up to `limit`.
    Pull {
        /// The user's (or a channel's) stream.
        stream: String,
        /// The client has everything up to here.
        after: u64,
        /// Most messages (already capped).
        limit: usize,
        /// Where the answer goes.
        to: PullTo,
    },
}

/// A stretch of a user's history, read for a login, a pull or a long poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replay {
    /// The messages follow this number (what the client already has).
    pub after: u64,
    /// The store's epoch.
    pub epoch: String,
    /// The user's last number.
    pub last_seq: u64,
    /// The messages (number, delivery text), oldest first.
    pub messages: Vec<(u64, String)>,
    /// More messages follow the last one returned.
    pub has_more: bool,
    /// The client's numbers belong to this history and nothing it lacks was dropped by
    /// retention (logins only; true for pulls).
    pub recovered: bool,
}

/// What the node does with the store thread's results. Called on the store thread; an
/// implementation hands each result to the connection's worker (`Hub::call`) and returns.
pub(crate) trait Sink: Send + Sync {
    /// A message was stored as `seq` of `stream` (`text` is its delivery) or failed.
    fn stored(&self, hub: &Hub, stream: &str, result: Result<(u64, &str), &StoreError>, told: Told);
    /// A login's (or, with `channel`, a subscription's) replay, or why it could not be
    /// read.
    fn resumed(
        &self,
        hub: &Hub,
        conn: ConnId,
        rid: Option<String>,
        channel: Option<String>,
        replay: Result<Replay, String>,
    );
    /// A `PULL_REQUEST`'s answer.
    fn pulled(&self, hub: &Hub, conn: ConnId, rid: Option<String>, replay: Result<Replay, String>);
}

/// Settings the thread needs.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub max_batch: usize,
    pub commit_delay: Duration,
    pub max_queue: usize,
    pub replay_limit: usize,
    pub max_age_ms: i64,
    pub max_per_user: u64,
    pub max_per_channel: u64,
    pub prune_every: Duration,
}

/// The handle the node keeps: submit operations, read the epoch.
#[derive(Debug)]
pub(crate) struct Durable {
    tx: Option<Sender<Op>>,
    hub: Arc<OnceLock<Hub>>,
    epoch: String,
    max_queue: usize,
    thread: Option<JoinHandle<()>>,
}

impl Durable {
    /// Starts the store thread over `store`.
    pub(crate) fn start(
        store: Box<dyn Store>,
        settings: Settings,
        sink: Weak<dyn Sink>,
        metrics: Arc<DurableMetrics>,
    ) -> std::io::Result<Durable> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let hub = Arc::new(OnceLock::new());
        let epoch = store.epoch().to_owned();
        let max_queue = settings.max_queue;
        let mut worker = StoreThread {
            store,
            settings,
            sink,
            metrics,
            hub: hub.clone(),
            waiters: HashMap::new(),
            next_prune: Instant::now(),
        };
        let thread = std::thread::Builder::new()
            .name("switchboard-store".into())
            .spawn(move || worker.run(rx))?;
        Ok(Durable {
            tx: Some(tx),
            hub,
            epoch,
            max_queue,
            thread: Some(thread),
        })
    }

    /// Queues a new message unless `max_queue` operations already wait (then it is
    /// handed back: the caller refuses it, code 9 or HTTP 503).
    pub(crate) fn append(&self, hub: &Hub, msg: NewMessage, told: Told) -> Result<(), Told> {
        if self.depth() >= self.max_queue {
            return Err(told);
        }
        self.submit(hub, Op::Append { msg, told });
        Ok(())
    }

    /// Queues `op`. `hub` is remembered the first time (the store thread answers through
    /// it). Acknowledgements and reads are never refused; new messages go through
    /// [`Durable::append`].
    pub(crate) fn submit(&self, hub: &Hub, op: Op) {
        self.hub.get_or_init(|| hub.clone());
        if let Some(tx) = &self.tx {
            if let Err(e) = tx.send(op) {
                tracing::error!("store thread is gone; dropping {:?}", e.0);
            }
        }
    }

    /// The store's epoch.
    pub(crate) fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Operations waiting.
    pub(crate) fn depth(&self) -> usize {
        self.tx.as_ref().map_or(0, Sender::len)
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        // Closing the queue lets the thread finish what is queued, then stop.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A parked long poll.
#[derive(Debug)]
struct Waiter {
    after: u64,
    limit: usize,
    reply: HttpReply,
    until: Instant,
}

struct StoreThread {
    store: Box<dyn Store>,
    settings: Settings,
    sink: Weak<dyn Sink>,
    metrics: Arc<DurableMetrics>,
    hub: Arc<OnceLock<Hub>>,
    waiters: HashMap<String, Vec<Waiter>>,
    next_prune: Instant,
}

impl StoreThread {
    fn run(&mut self, rx: Receiver<Op>) {
        let mut batch = Vec::new();
        loop {
            let wait = self
                .next_deadline()
                .saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(op) => batch.push(op),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Group commit: gather for up to `commit_delay` after the first operation,
            // so a commit (and its sync) is shared by everything that arrives meanwhile.
            let gather_until = Instant::now() + self.settings.commit_delay;
            while batch.len() < self.settings.max_batch {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) if batch.is_empty() => break,
                    Err(_) => match rx.recv_deadline(gather_until) {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    },
                }
            }
            if !batch.is_empty() {
                self.process(std::mem::take(&mut batch));
            }
            self.expire_waiters(Instant::now());
            self.maybe_prune();
        }
        for (_, ws) in self.waiters.drain() {
            for w in ws {
                w.reply.send(HttpResponse::text(503, "shutting down\n"));
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let soonest_poll = self.waiters.values().flatten().map(|w| w.until).min();
        soonest_poll.map_or(self.next_prune, |t| t.min(self.next_prune))
    }

    fn process(&mut self, batch: Vec<Op>) {
        let (Some(hub), Some(sink)) = (self.hub.get().cloned(), self.sink.upgrade()) else {
            return;
        };
        let mut appends = Vec::new();
        let mut acks: Vec<(String, u64)> = Vec::new();
        let mut reads = Vec::new();
        for op in batch {
            match op {
                Op::Append { msg, told } => appends.push((msg, told)),
                Op::Ack { stream, seq } => acks.push((stream, seq)),
                other => reads.push(other),
            }
        }
        if !appends.is_empty() {
            self.append(&hub, &*sink, appends);
        }
        if !acks.is_empty() {
            let acks: Vec<(&str, u64)> = acks.iter().map(|(u, s)| (u.as_str(), *s)).collect();
            if let Err(e) = self.store.ack(&acks) {
                tracing::warn!(
                    acks = acks.len(),
                    "store: cannot record acknowledgements: {e}"
                );
            }
        }
        for op in reads {
            self.read(&hub, &*sink, op);
        }
    }

    fn append(&mut self, hub: &Hub, sink: &dyn Sink, appends: Vec<(NewMessage, Told)>) {
        let (msgs, tolds): (Vec<NewMessage>, Vec<Told>) = appends.into_iter().unzip();
        let started = Instant::now();
        let result = self.store.append(&msgs);
        let us = started.elapsed().as_micros() as u64;
        match result {
            Ok(seqs) => {
                self.metrics.commit(msgs.len(), us);
                DurableMetrics::add(&self.metrics.stored, msgs.len() as u64);
                let mut woken: Vec<&str> = Vec::new();
                for ((m, told), seq) in msgs.iter().zip(tolds).zip(seqs) {
                    let text = delivery_text(&m.kind, &m.body, seq);
                    sink.stored(hub, &m.stream, Ok((seq, &text)), told);
                    if self.waiters.contains_key(&m.stream) && !woken.contains(&m.stream.as_str()) {
                        woken.push(&m.stream);
                    }
                }
                for user in woken {
                    self.wake(user);
                }
            }
            Err(e) => {
                tracing::warn!(messages = msgs.len(), "store: group commit failed: {e}");
                DurableMetrics::add(&self.metrics.store_failed, msgs.len() as u64);
                for (m, told) in msgs.iter().zip(tolds) {
                    sink.stored(hub, &m.stream, Err(&e), told);
                }
            }
        }
    }

    fn replay(&mut self, stream: &str, after: u64, limit: usize) -> Result<Replay, StoreError> {
        let head = self.store.head(stream)?;
        let mut rows = self.store.since(stream, after, limit + 1)?;
        let has_more = rows.len() > limit;
        rows.truncate(limit);
        DurableMetrics::add(&self.metrics.pulled, rows.len() as u64);
        Ok(Replay {
            after,
            epoch: self.store.epoch().to_owned(),
            last_seq: head.last_seq,
            messages: rows
                .into_iter()
                .map(|s: Stored| (s.seq, delivery_text(&s.kind, &s.body, s.seq)))
                .collect(),
            has_more,
            recovered: after + 1 >= head.first_kept || after >= head.last_seq,
        })
    }

    fn read(&mut self, hub: &Hub, sink: &dyn Sink, op: Op) {
        match op {
            Op::Resume {
                stream,
                channel,
                conn,
                client,
                rid,
            } => {
                let r = self.resume(&stream, channel.is_some(), client);
                sink.resumed(hub, conn, rid, channel, r.map_err(|e| e.to_string()));
            }
            Op::Pull {
                stream,
                after,
                limit,
                to,
            } => {
                self.ack_quietly(&stream, after);
                let r = self.replay(&stream, after, limit);
                match to {
                    PullTo::Ws { conn, rid } => {
                        sink.pulled(hub, conn, rid, r.map_err(|e| e.to_string()))
                    }
                    PullTo::Http { reply, until } => match r {
                        Ok(r) if r.messages.is_empty() && Instant::now() < until => self.park(
                            stream,
                            Waiter {
                                after,
                                limit,
                                reply,
                                until,
                            },
                        ),
                        other => reply.send(poll_answer(other)),
                    },
                }
            }
            Op::Append { .. } | Op::Ack { .. } => {}
        }
    }

    /// A login or a subscription: from what the client says it has if that belongs to
    /// this history, else from the user's acknowledged cursor (a channel: from now).
    fn resume(
        &mut self,
        stream: &str,
        channel: bool,
        client: Option<Resume>,
    ) -> Result<Replay, StoreError> {
        let head = self.store.head(stream)?;
        let epoch = self.store.epoch().to_owned();
        let fallback = if channel { head.last_seq } else { head.acked };
        let (after, same_history) = match client {
            Some(c) if c.epoch == epoch && c.last_seq <= head.last_seq => {
                self.ack_quietly(stream, c.last_seq);
                (c.last_seq, true)
            }
            Some(_) => (fallback, false),
            None => (fallback, true),
        };
        let mut r = self.replay(stream, after, self.settings.replay_limit)?;
        r.recovered &= same_history;
        Ok(r)
    }

    /// A user's pull or resume position moves its cursor (channels have none).
    fn ack_quietly(&mut self, stream: &str, seq: u64) {
        if seq > 0 && stream.starts_with("u:") {
            if let Err(e) = self.store.ack(&[(stream, seq)]) {
                tracing::warn!(stream = %stream, "store: cannot record a pull position: {e}");
            }
        }
    }

    fn park(&mut self, user: String, w: Waiter) {
        DurableMetrics::add(&self.metrics.long_polls_parked, 1);
        self.waiters.entry(user).or_default().push(w);
    }

    fn unparked(&self, n: usize) {
        self.metrics
            .long_polls_parked
            .fetch_sub(n as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// New messages for `user`: answer its parked polls.
    fn wake(&mut self, user: &str) {
        let Some(ws) = self.waiters.remove(user) else {
            return;
        };
        self.unparked(ws.len());
        for w in ws {
            let r = self.replay(user, w.after, w.limit);
            w.reply.send(poll_answer(r));
        }
    }

    fn expire_waiters(&mut self, now: Instant) {
        let mut expired = Vec::new();
        self.waiters.retain(|_, ws| {
            let (gone, kept): (Vec<Waiter>, Vec<Waiter>) =
                ws.drain(..).partition(|w| w.until <= now);
            expired.extend(gone);
            *ws = kept;
            !ws.is_empty()
        });
        self.unparked(expired.len());
        for w in expired {
            let empty = Replay {
                after: w.after,
                epoch: self.store.epoch().to_owned(),
                last_seq: w.after,
                messages: Vec::new(),
                has_more: false,
                recovered: true,
            };
            w.reply.send(poll_answer(Ok(empty)));
        }
    }

    fn maybe_prune(&mut self) {
        let now = Instant::now();
        if now < self.next_prune {
            return;
        }
        self.next_prune = now + self.settings.prune_every;
        let s = &self.settings;
        let (users, channels) = (s.max_per_user, s.max_per_channel);
        let keep = move |stream: &str| {
            if stream.starts_with("c:") {
                channels
            } else {
                users
            }
        };
        match self.store.prune(unix_ms(), s.max_age_ms, &keep) {
            Ok(0) => {}
            Ok(n) => tracing::info!(dropped = n, "store retention dropped old messages"),
            Err(e) => tracing::warn!("store retention failed: {e}"),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `{"epoch","lastSeq","hasMore","messages":[…]}`: the body of `PULL_RESPONSE` and of a
/// long poll's answer. Messages are the delivery texts, so a client handles pulled and
/// pushed messages alike.
pub(crate) fn replay_json(r: &Replay) -> String {
    let mut o = String::with_capacity(64 + r.messages.iter().map(|m| m.1.len() + 1).sum::<usize>());
    o.push_str(r#"{"epoch":"#);
    o.push_str(&serde_json::Value::String(r.epoch.clone()).to_string());
    o.push_str(r#","hasMore":"#);
    o.push_str(if r.has_more { "true" } else { "false" });
    o.push_str(r#","lastSeq":"#);
    o.push_str(&r.last_seq.to_string());
    o.push_str(r#","messages":["#);
    for (i, (_, text)) in r.messages.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        o.push_str(text);
    }
    o.push_str("]}");
    o
}

fn poll_answer(r: Result<Replay, StoreError>) -> HttpResponse {
    match r {
        Ok(r) => HttpResponse::json(200, replay_json(&r)).header("Cache-Control", "no-store"),
        Err(e) => HttpResponse::json(
            503,
            serde_json::json!({ "error": e.to_string() }).to_string(),
        ),
    }
}
