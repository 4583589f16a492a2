//! The shell that runs a STOMP [`Session`] on a WebSocket connection: feeds it each
//! message, carries out its events (authenticate, subscribe, publish, close), runs its
//! heart-beat timer, and fans published messages out to subscribers.
//!
//! Owns the per-connection state (in the connection's attributes) and the fan-out. The
//! protocol rules are the session's; the naming rules the destinations'.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::destinations::{Subscriber, Target};
use super::frame::{Command, Frame};
use super::session::{AckMode, Event, Session};
use super::Stomp;
use crate::handler::{Context, Handler, Message};
use crate::http::{HttpResponse, Request};
use crate::hub::Hub;
use crate::id::ConnId;
use crate::message::Payload;

const TIMER_CONNECT: u64 = 1;
const TIMER_HEARTBEAT: u64 = 2;

/// Close codes: the ERROR frame says why.
const CLOSE_PROTOCOL: u16 = 1002;
const CLOSE_POLICY: u16 = 1008;

const SERVER: &str = concat!("Switchboard/", env!("CARGO_PKG_VERSION"));

/// SEND headers that are the broker's to set on a MESSAGE, not passed through.
const RESERVED: [&str; 9] = [
    "destination",
    "transaction",
    "receipt",
    "content-length",
    "message-id",
    "subscription",
    "ack",
    "id",
    "redelivered",
];

/// The STOMP endpoint's WebSocket handler.
#[derive(Debug, Clone)]
pub struct StompHandler(pub Arc<Stomp>);

/// One connection's STOMP state.
struct StompConn {
    session: Session,
    /// The user from the handshake, or from CONNECT once accepted.
    user: Option<String>,
    /// Subscription id → table key.
    keys: HashMap<String, String>,
    /// CONNECT was accepted (for the open-sessions gauge).
    accepted: bool,
}

/// Milliseconds on a process-wide monotonic clock: the sessions' `now`.
fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

fn state<'a>(ctx: &'a mut Context<'_>) -> Option<&'a mut StompConn> {
    ctx.attributes_mut().get_mut::<StompConn>()
}

fn to_message(bytes: Vec<u8>) -> Message {
    match String::from_utf8(bytes) {
        Ok(text) => Message::Text(text),
        Err(e) => Message::Binary(e.into_bytes()),
    }
}

fn send_all(ctx: &mut Context<'_>, out: &mut Vec<Vec<u8>>) {
    for bytes in out.drain(..) {
        ctx.send(to_message(bytes));
    }
}

impl Handler for StompHandler {
    fn on_open(&self, ctx: &mut Context<'_>, req: &Request) -> Result<(), HttpResponse> {
        let user = self.0.auth.handshake(req, ctx.id()).map_err(|reason| {
            self.0.metrics.refused.fetch_add(1, Ordering::Relaxed);
            tracing::info!(conn = %ctx.id(), %reason, "stomp handshake refused");
            HttpResponse::text(401, format!("{reason}\n"))
        })?;
        ctx.attributes_mut().insert(StompConn {
            session: Session::new(now_ms()),
            user,
            keys: HashMap::new(),
            accepted: false,
        });
        ctx.set_timer(self.0.settings.connect_timeout, TIMER_CONNECT);
        Ok(())
    }

    fn on_message(&self, ctx: &mut Context<'_>, msg: Message) {
        let cfg = &self.0.settings.session;
        let Some(st) = state(ctx) else { return };
        st.session.push(msg.as_bytes(), now_ms());
        let mut out = Vec::new();
        loop {
            let Some(st) = state(ctx) else { return };
            let ev = st.session.poll(cfg, &mut out);
            send_all(ctx, &mut out);
            match ev {
                Some(ev) => self.on_event(ctx, ev),
                None => return,
            }
        }
    }

    fn on_close(&self, ctx: &mut Context<'_>, _code: u16, _reason: &str) {
        let id = ctx.id();
        let Some(st) = ctx.attributes_mut().remove::<StompConn>() else {
            return;
        };
        for (sub, key) in &st.keys {
            self.0.table.remove(key, id, sub);
        }
        let m = &self.0.metrics;
        m.unacked_dropped
            .fetch_add(st.session.pending_acks() as u64, Ordering::Relaxed);
        if st.accepted {
            m.disconnected.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_timer(&self, ctx: &mut Context<'_>, token: u64) {
        let Some(st) = state(ctx) else { return };
        match token {
            TIMER_CONNECT if !st.session.is_connected() && !st.session.is_closed() => {
                let mut out = Vec::new();
                st.session.fail("no CONNECT in time", None, &mut out);
                send_all(ctx, &mut out);
                ctx.close(CLOSE_POLICY, "no CONNECT in time");
            }
            TIMER_HEARTBEAT => self.heartbeat(ctx),
            _ => {}
        }
    }
}

impl StompHandler {
    fn on_event(&self, ctx: &mut Context<'_>, ev: Event) {
        match ev {
            Event::Connect {
                login,
                passcode,
                token,
            } => self.on_connect(ctx, login, passcode, token),
            Event::Subscribe {
                id,
                destination,
                ack,
            } => self.on_subscribe(ctx, id, &destination, ack),
            Event::Unsubscribe { id, .. } => {
                let conn = ctx.id();
                if let Some(key) = state(ctx).and_then(|st| st.keys.remove(&id)) {
                    self.0.table.remove(&key, conn, &id);
                }
            }
            Event::Send(frame) => self.on_send(ctx, &frame),
            Event::Reply(bytes) => ctx.send(to_message(bytes)),
            Event::Disconnect => ctx.close(1000, "DISCONNECT"),
            Event::Failed(why) => {
                self.0.metrics.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(conn = %ctx.id(), %why, "stomp error");
                ctx.close(CLOSE_PROTOCOL, "STOMP error");
            }
        }
    }

    /// Ends the session with ERROR `why`, then closes.
    fn fail(&self, ctx: &mut Context<'_>, why: &str, code: u16) {
        let mut out = Vec::new();
        if let Some(st) = state(ctx) {
            st.session.fail(why, None, &mut out);
        }
        send_all(ctx, &mut out);
        self.0.metrics.errors.fetch_add(1, Ordering::Relaxed);
        ctx.close(code, "STOMP error");
    }

    fn on_connect(
        &self,
        ctx: &mut Context<'_>,
        login: Option<String>,
        passcode: Option<String>,
        token: Option<String>,
    ) {
        let conn = ctx.id();
        let from_handshake = state(ctx).and_then(|st| st.user.clone());
        let user = match from_handshake {
            Some(u) => Ok(u),
            None => self.0.auth.connect(
                login.as_deref(),
                passcode.as_deref(),
                token.as_deref(),
                conn,
            ),
        };
        let user = match user {
            Ok(u) => u,
            Err(reason) => {
                self.0.metrics.refused.fetch_add(1, Ordering::Relaxed);
                tracing::info!(%conn, %reason, "stomp CONNECT refused");
                let mut out = Vec::new();
                if let Some(st) = state(ctx) {
                    st.session.refuse(&reason, &mut out);
                }
                send_all(ctx, &mut out);
                return ctx.close(CLOSE_POLICY, "CONNECT refused");
            }
        };
        let mut out = Vec::new();
        let now = now_ms();
        let Some(st) = state(ctx) else { return };
        st.session
            .accept(&conn.to_string(), &user, SERVER, now, &mut out);
        let version = st.session.version();
        let next = st.session.poll_timeout();
        st.user = Some(user.clone());
        st.accepted = true;
        send_all(ctx, &mut out);
        self.0.metrics.connected.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%conn, %user, version, "stomp session connected");
        if let Some(at) = next {
            ctx.set_timer(
                Duration::from_millis(at.saturating_sub(now)),
                TIMER_HEARTBEAT,
            );
        }
    }

    fn on_subscribe(&self, ctx: &mut Context<'_>, id: String, destination: &str, ack: AckMode) {
        let conn = ctx.id();
        let Some(st) = state(ctx) else { return };
        let user = st.user.clone().unwrap_or_default();
        let escapes = st.session.escapes();
        match self.0.settings.prefixes.subscription(destination, &user) {
            Ok(Target::Broker { key, shown }) => {
                st.keys.insert(id.clone(), key.clone());
                self.0.table.add(
                    &key,
                    Subscriber {
                        conn,
                        id: id.into(),
                        shown: shown.into(),
                        ack,
                        escapes,
                    },
                );
            }
            Ok(Target::App(_)) => self.fail(
                ctx,
                &format!(
                    "cannot subscribe to {destination:?}: application destinations take SEND only"
                ),
                CLOSE_POLICY,
            ),
            Err(why) => self.fail(ctx, &why, CLOSE_POLICY),
        }
    }

    fn on_send(&self, ctx: &mut Context<'_>, frame: &Frame) {
        let dest = frame.get("destination").unwrap_or_default();
        match self.0.settings.prefixes.send(dest) {
            Ok(Target::Broker { key, .. }) => {
                publish(&self.0, Via::Ctx(ctx), &key, frame);
            }
            Ok(Target::App(d)) => self.forward(ctx, &d, frame),
            Err(why) => self.fail(ctx, &why, CLOSE_POLICY),
        }
    }

    /// A SEND to an application destination goes to the backend, or is refused.
    fn forward(&self, ctx: &mut Context<'_>, dest: &str, frame: &Frame) {
        let Some(app) = &self.0.app else {
            return self.fail(
                ctx,
                &format!("{dest:?}: application destinations need a backend (stomp.app_backend), and none is configured"),
                CLOSE_POLICY,
            );
        };
        let session = ctx.id().to_string();
        let user = state(ctx)
            .and_then(|st| st.user.clone())
            .unwrap_or_default();
        let hub = ctx.hub().clone();
        if let Err(why) = app.forward(self.0.clone(), hub, user, session, frame.clone()) {
            self.0.metrics.app_failed.fetch_add(1, Ordering::Relaxed);
            self.fail(ctx, &format!("{dest:?}: {why}"), CLOSE_POLICY);
        }
    }

    fn heartbeat(&self, ctx: &mut Context<'_>) {
        let now = now_ms();
        let mut out = Vec::new();
        let Some(st) = state(ctx) else { return };
        let result = st.session.handle_timeout(now, &mut out);
        let next = st.session.poll_timeout();
        send_all(ctx, &mut out);
        match result {
            Err(why) => {
                self.0
                    .metrics
                    .heartbeat_timeouts
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(conn = %ctx.id(), %why, "stomp heart-beat timeout");
                // The client went quiet: an ERROR it may never read, then close.
                let mut out = Vec::new();
                let msg = format!("heart-beat timeout: {why}");
                if let Some(st) = state(ctx) {
                    st.session.fail(&msg, None, &mut out);
                }
                send_all(ctx, &mut out);
                ctx.close(CLOSE_POLICY, "heart-beat timeout");
            }
            Ok(()) => {
                if let Some(at) = next {
                    ctx.set_timer(
                        Duration::from_millis(at.saturating_sub(now).max(1)),
                        TIMER_HEARTBEAT,
                    );
                }
            }
        }
    }
}

/// How a fan-out reaches connections: from a handler (this worker's recipients get it
/// without an inbox hop) or from any thread.
pub(crate) enum Via<'a, 'c> {
    Hub(&'a Hub),
    Ctx(&'a mut Context<'c>),
}

impl Via<'_, '_> {
    fn send_many(&mut self, to: &[ConnId], msg: Payload) {
        match self {
            Via::Hub(h) => h.send_many(to, msg),
            Via::Ctx(c) => c.send_many(to, msg),
        }
    }

    fn hub(&self) -> &Hub {
        match self {
            Via::Hub(h) => h,
            Via::Ctx(c) => c.hub(),
        }
    }
}

/// Publishes a SEND frame to every subscriber of `key`. Subscribers with `auto` ack that
/// share a subscription id (as stompjs' `sub-0` does) share one encoded MESSAGE; each
/// `client` one goes through its session's ACK ledger on its own worker. Returns the
/// frames handed out.
pub(crate) fn publish(stomp: &Stomp, mut via: Via<'_, '_>, key: &str, send: &Frame) -> usize {
    stomp.metrics.published.fetch_add(1, Ordering::Relaxed);
    let subs = stomp.table.subscribers(key);
    if subs.is_empty() {
        return 0;
    }
    let base = message_frame(stomp, send);
    let mut groups: HashMap<(&str, &str, bool), Vec<ConnId>> = HashMap::new();
    for s in &subs {
        if s.ack == AckMode::Auto {
            groups
                .entry((&s.id, &s.shown, s.escapes))
                .or_default()
                .push(s.conn);
        } else {
            let frame = addressed(&base, &s.shown, &s.id);
            let sub = s.id.to_string();
            let stomp_cfg = stomp.settings.session.clone();
            via.hub().call(s.conn, move |ctx| {
                let bytes = state(ctx).and_then(|st| st.session.deliver(&sub, frame, &stomp_cfg));
                if let Some(bytes) = bytes {
                    ctx.send(to_message(bytes));
                }
            });
        }
    }
    for ((id, shown, escapes), conns) in groups {
        let bytes = addressed(&base, shown, id).encode(escapes);
        via.send_many(&conns, Payload::from(to_message(bytes)));
    }
    stomp
        .metrics
        .delivered
        .fetch_add(subs.len() as u64, Ordering::Relaxed);
    subs.len()
}

/// The MESSAGE for a SEND, without `destination` and `subscription` (each subscriber's
/// own): a new message-id, the content-type, and the sender's other headers.
fn message_frame(stomp: &Stomp, send: &Frame) -> Frame {
    let mut f = Frame::new(Command::Message).header("message-id", stomp.message_id());
    for (n, v) in &send.headers {
        if !RESERVED.contains(&n.as_str()) && !f.headers.iter().any(|(m, _)| m == n) {
            f.headers.push((n.clone(), v.clone()));
        }
    }
    f.body = send.body.clone();
    f
}

fn addressed(base: &Frame, shown: &str, sub: &str) -> Frame {
    let mut f = Frame::new(Command::Message)
        .header("destination", shown)
        .header("subscription", sub);
    f.headers.extend(base.headers.iter().cloned());
    f.body = base.body.clone();
    f
}
