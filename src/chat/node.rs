//! The chat node's WebSocket handler: authentication at the handshake or by
//! `AUTH_REQUEST`, the message types, de-duplication, the bad-message limit, and the
//! connection timers (the engine's `set_timer`) that close sessions whose token expires or
//! that never authenticate.
//!
//! Owns per-connection chat state (in the connection's attributes) and the rules of the
//! protocol; routing goes through the registry and the hub, never through sockets.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use serde_json::json;

use super::auth::{unix_now, AuthError, Authenticator, User};
use super::config::{
    parse_duration, AuthMode, ChatConfig, DeliveryMode, FsyncPolicy, SessionLimitPolicy,
};
use super::durable::{self, Durable, Op, PullTo, Replay, Settings, Sink, Told};
use super::inflight::{Inflight, NeverSent};
use super::metrics::{ChatMetrics, DurableMetrics};
use super::protocol::{self, code, hot, Request, Resume};
use super::registry::{Added, Registry, Session};
use super::store::{self, NewMessage, SqliteStore, StoreError, EVERYONE};
use crate::config::ConfigError;
use crate::handler::{Context, Handler, Message};
use crate::http::{HttpResponse, Request as HttpRequest};
use crate::hub::Hub;
use crate::id::ConnId;
use crate::message::Payload;

/// Close code for a session whose token expired while it was connected.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// Close code for a session closed by the per-user session limit.
pub const CLOSE_SESSION_LIMIT: u16 = 4002;
/// The hub group every authenticated session joins (for "to everyone").
pub(crate) const ALL_USERS: &str = "users";

/// State shared by every connection of the node, and by its HTTP API.
pub struct ChatNode {
    pub(crate) cfg: ChatConfig,
    pub(crate) auth: Authenticator,
    pub(crate) registry: Registry,
    pub(crate) metrics: ChatMetrics,
    auth_timeout: Duration,
    dedup_window: Duration,
    ack_timeout: Duration,
    pub(crate) long_poll_timeout: Duration,
    /// The store thread, when `store.enabled`.
    pub(crate) durable: Option<Durable>,
    /// This node, for work handed to other threads that must call back into it.
    me: Weak<ChatNode>,
}

impl std::fmt::Debug for ChatNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatNode")
            .field("registry", &self.registry)
            .finish()
    }
}

/// `set_timer` tokens of the chat handler.
const TIMER_AUTH: u64 = 1;
const TIMER_TOKEN_EXPIRY: u64 = 2;
const TIMER_RESEND: u64 = 3;

/// Per-connection chat state, kept in the connection's attributes.
struct ConnState {
    /// Shared, so each message reads the sender without copying its strings.
    user: Option<Arc<User>>,
    bad: u32,
    bad_since: Instant,
    /// Stored messages sent and not yet acknowledged (with the store on, once
    /// authenticated).
    inflight: Option<Inflight>,
}

impl ChatNode {
    /// Builds the node from its configuration: opens the store (an unreadable, damaged
    /// or newer database is an error here, never wiped) and starts its thread.
    pub fn start(cfg: ChatConfig) -> Result<Arc<Self>, ConfigError> {
        let store = if cfg.store.enabled {
            let sync = match cfg.store.fsync {
                FsyncPolicy::Always => store::Sync::Always,
                FsyncPolicy::Normal => store::Sync::Normal,
            };
            let path = std::path::Path::new(&cfg.store.path);
            let s = SqliteStore::open(path, sync, cfg.store.max_size_mb << 20)
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
            tracing::info!(path = %cfg.store.path, epoch = store::Store::epoch(&s), fsync = ?cfg.store.fsync, "store opened");
            Some(s)
        } else {
            None
        };
        let settings = Settings {
            max_batch: cfg.store.max_batch,
            commit_delay: parse_duration(&cfg.store.commit_delay)?,
            max_queue: cfg.store.max_queue.max(1),
            replay_limit: cfg.delivery.replay_limit,
            max_age_ms: parse_duration(&cfg.store.max_age)?.as_millis() as i64,
            max_per_user: cfg.store.max_messages_per_user,
            max_per_channel: cfg.store.max_messages_per_channel,
            prune_every: Duration::from_secs(60),
        };
        let metrics = ChatMetrics::default();
        let node = ChatNode {
            auth: Authenticator::new(&cfg.auth)?,
            auth_timeout: parse_duration(&cfg.auth.timeout)?,
            dedup_window: parse_duration(&cfg.limits.dedup_window)?,
            ack_timeout: parse_duration(&cfg.delivery.ack_timeout)?,
            long_poll_timeout: parse_duration(&cfg.delivery.long_poll_timeout)?,
            registry: Registry::default(),
            metrics,
            cfg,
            durable: None,
            me: Weak::new(),
        };
        let mut spawn_error = None;
        let node = Arc::new_cyclic(|me: &Weak<ChatNode>| {
            let mut node = node;
            node.me = me.clone();
            if let Some(s) = store {
                let sink: Weak<dyn Sink> = me.clone();
                let m = node.metrics.durable.clone();
                match Durable::start(Box::new(s), settings, sink, m) {
                    Ok(d) => node.durable = Some(d),
                    Err(e) => spawn_error = Some(e),
                }
            }
            node
        });
        match spawn_error {
            Some(e) => Err(ConfigError::Invalid(format!(
                "cannot start the store thread: {e}"
            ))),
            None => Ok(node),
        }
    }

    /// The session registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The node's counters.
    pub fn metrics(&self) -> &ChatMetrics {
        &self.metrics
    }

    /// Counts and logs a refused token (never the token itself).
    fn refused(&self, ctx: &Context<'_>, err: &AuthError) {
        self.metrics.auth_failed(err.reason());
        tracing::info!(remote = %ctx.remote_ip(), session = %ctx.id(), reason = err.reason(), "login refused: {err}");
    }

    /// Registers an authenticated user for the connection in `ctx`. `Err` when the
    /// per-user limit refuses it.
    fn admit(self: &Arc<Self>, ctx: &mut Context<'_>, user: User) -> Result<(), ()> {
        let session = Session {
            id: ctx.id(),
            user: user.clone(),
            since: Instant::now(),
        };
        let close_oldest = self.cfg.limits.session_limit_policy == SessionLimitPolicy::CloseOldest;
        match self
            .registry
            .add(session, self.cfg.limits.sessions_per_user, close_oldest)
        {
            Added::Refused => {
                self.metrics.auth_failed("session_limit");
                tracing::info!(user = %user.id, remote = %ctx.remote_ip(), "login refused: session limit reached");
                return Err(());
            }
            Added::Evict(old) => ctx.hub().close(
                old,
                CLOSE_SESSION_LIMIT,
                "session limit: replaced by a newer session",
            ),
            Added::Ok => {}
        }
        if let Some(exp) = user.expires_at {
            let left = exp.saturating_sub(unix_now());
            ctx.set_timer(Duration::from_secs(left), TIMER_TOKEN_EXPIRY);
        }
        self.metrics.auth_ok();
        tracing::info!(user = %user.id, remote = %ctx.remote_ip(), session = %ctx.id(), "session opened");
        ctx.join(ALL_USERS);
        let inflight = self.durable.as_ref().map(|_| {
            let track = self.cfg.delivery.mode == DeliveryMode::Ack;
            Inflight::new(track, self.cfg.delivery.max_unacked, true)
        });
        if let Some(state) = ctx.attributes_mut().get_mut::<ConnState>() {
            state.user = Some(Arc::new(user));
            state.inflight = inflight;
        }
        Ok(())
    }

    /// The `AUTH_RESPONSE` of an admitted session. With the store on, it waits for the
    /// replay of what the session missed (from `resume`, else from the user's cursor)
    /// and goes out with it; without, at once.
    fn welcome(
        &self,
        ctx: &mut Context<'_>,
        user_id: &str,
        resume: Option<Resume>,
        rid: Option<&str>,
    ) {
        match &self.durable {
            Some(d) => d.submit(
                ctx.hub(),
                Op::Resume {
                    stream: store::user_stream(user_id),
                    channel: None,
                    conn: ctx.id(),
                    client: resume,
                    rid: rid.map(str::to_owned),
                },
            ),
            None => {
                let id = ctx.id().to_string();
                let body = json!({ "code": code::OK, "message": "authenticated", "userId": user_id, "sessionId": id });
                ctx.send(Message::Text(protocol::message("AUTH_RESPONSE", body, rid)));
                self.announce(ctx);
            }
        }
    }

    /// The join notice to everyone (`notify_join`), after the user's own
    /// `AUTH_RESPONSE`.
    fn announce(&self, ctx: &mut Context<'_>) {
        if !self.cfg.notify_join {
            return;
        }
        if let Some(user) = Self::session_user(ctx) {
            let body = json!({ "nickname": user.name });
            let notice = protocol::message("USER_JOIN_NOTICE_REQUEST", body, None);
            ctx.hub().send_to_group(ALL_USERS, Message::Text(notice));
        }
    }

    fn session_user(ctx: &Context<'_>) -> Option<Arc<User>> {
        ctx.attributes()
            .get::<ConnState>()
            .and_then(|s| s.user.clone())
    }

    fn inflight<'c>(ctx: &'c mut Context<'_>) -> Option<&'c mut Inflight> {
        ctx.attributes_mut()
            .get_mut::<ConnState>()
            .and_then(|s| s.inflight.as_mut())
    }

    /// Sends `payloads` to this connection and sets the resend timer if anything now
    /// waits for an acknowledgement.
    fn send_tracked(&self, ctx: &mut Context<'_>, payloads: Vec<Payload>, dropped: u64) {
        let me = ctx.id();
        for p in payloads {
            ctx.send_many(&[me], p);
        }
        DurableMetrics::add(&self.metrics.durable.left_for_pull, dropped);
        let arm = Self::inflight(ctx).is_some_and(|f| {
            let arm = f.waiting() && !f.timer_armed;
            f.timer_armed |= arm;
            arm
        });
        if arm {
            ctx.set_timer(self.ack_timeout, TIMER_RESEND);
        }
    }

    /// A stored message for this session's user, on the session's worker.
    fn push_stored(&self, ctx: &mut Context<'_>, seq: u64, payload: Payload) {
        let now = Instant::now();
        match Self::inflight(ctx) {
            Some(f) => {
                let (out, dropped) = f.push(seq, payload, now);
                if out.is_some() {
                    DurableMetrics::add(&self.metrics.durable.delivered, 1);
                }
                self.send_tracked(ctx, out.into_iter().collect(), dropped);
            }
            None => {
                let me = ctx.id();
                ctx.send_many(&[me], payload);
            }
        }
    }

    /// The login replay arrived: the `AUTH_RESPONSE`, then what was missed, then what was
    /// pushed meanwhile.
    fn on_resumed(
        &self,
        ctx: &mut Context<'_>,
        rid: Option<String>,
        replay: Result<Replay, String>,
    ) {
        let Some(user) = Self::session_user(ctx) else {
            return;
        };
        let id = ctx.id().to_string();
        let mut body = json!({ "code": code::OK, "message": "authenticated", "userId": user.id, "sessionId": id });
        let (messages, has) = replay_fields(&mut body, replay);
        if let Some(e) = body.get("storeError") {
            tracing::warn!(user = %user.id, "store: cannot read the login replay: {e}");
        }
        ctx.send(Message::Text(protocol::message(
            "AUTH_RESPONSE",
            body,
            rid.as_deref(),
        )));
        self.announce(ctx);
        let replay: Vec<(u64, Payload)> = messages
            .into_iter()
            .map(|(seq, text)| (seq, Payload::from(Message::Text(text))))
            .collect();
        if let Some(f) = Self::inflight(ctx) {
            // The client has everything up to where the replay starts: it may ACK it.
            f.pulled_upto(has);
            let (out, dropped) = f.resumed(replay, Instant::now());
            self.send_tracked(ctx, out, dropped);
        }
    }

    /// A `PULL_REQUEST`'s answer arrived.
    fn on_pulled(
        &self,
        ctx: &mut Context<'_>,
        rid: Option<String>,
        replay: Result<Replay, String>,
    ) {
        let text = match replay {
            Ok(r) => {
                if let (Some(f), Some((last, _))) = (Self::inflight(ctx), r.messages.last()) {
                    f.pulled_upto(*last);
                }
                protocol::with_code("PULL_RESPONSE", &durable::replay_json(&r), rid.as_deref())
            }
            Err(e) => protocol::error(
                code::STORE_FAILED,
                &format!("cannot read the store: {e}"),
                rid.as_deref(),
            ),
        };
        ctx.send(Message::Text(text));
    }

    /// The resend timer: repeat what is still unacknowledged, give up after
    /// `max_attempts` (the message stays in the store for pull).
    fn on_resend_timer(&self, ctx: &mut Context<'_>) {
        let (timeout, attempts) = (self.ack_timeout, self.cfg.delivery.max_attempts);
        let Some(f) = Self::inflight(ctx) else {
            return;
        };
        f.timer_armed = false;
        let due = f.due(Instant::now(), timeout, attempts);
        let m = &self.metrics.durable;
        DurableMetrics::add(&m.resent, due.resend.len() as u64);
        self.send_tracked(ctx, due.resend, due.given_up);
    }

    /// Queues a client's message for the store; the sender's `SEND_RESPONSE` follows the
    /// commit (or says the store is busy now).
    fn store_message(
        &self,
        ctx: &mut Context<'_>,
        stream: String,
        kind: &str,
        body: String,
        msg_id: String,
        rid: Option<&str>,
    ) {
        let (Some(d), Some(me)) = (&self.durable, Self::session_user(ctx)) else {
            return;
        };
        let msg = NewMessage {
            stream,
            kind: kind.to_owned(),
            body,
            created_ms: durable::unix_ms(),
        };
        let told = Told::Sender {
            conn: ctx.id(),
            user: me.id.clone(),
            msg_id,
            rid: rid.map(str::to_owned),
        };
        if let Err(Told::Sender { msg_id, .. }) = d.append(ctx.hub(), msg, told) {
            self.registry.forget_delivery(&me.id, &msg_id);
            let text = "store busy: not stored, retry later";
            ChatHandler::send_response(ctx, &msg_id, code::STORE_BUSY, text, rid);
        }
    }

    /// A subscription's replay: `SUBSCRIBE_RESPONSE` with where the channel's history
    /// stands, then the messages the client missed (after its `sinceSeq`).
    fn on_subscribed(
        &self,
        ctx: &mut Context<'_>,
        rid: Option<String>,
        channel: String,
        replay: Result<Replay, String>,
    ) {
        let mut body = json!({ "code": code::OK, "channel": channel });
        let (messages, _) = replay_fields(&mut body, replay);
        let text = protocol::message("SUBSCRIBE_RESPONSE", body, rid.as_deref());
        ctx.send(Message::Text(text));
        for (_, text) in messages {
            ctx.send(Message::Text(text));
        }
    }

    /// `ACK_REQUEST`: settles tracked pushes and moves the user's cursor.
    fn on_ack(
        &self,
        ctx: &mut Context<'_>,
        upto: Option<u64>,
        each: &[u64],
        rid: Option<&str>,
    ) -> Result<(), String> {
        let Some(d) = &self.durable else {
            return Err("the store is off (store.enabled = false): nothing to acknowledge".into());
        };
        let Some(user) = Self::session_user(ctx) else {
            return Err("authenticate first".into());
        };
        let Some(f) = Self::inflight(ctx) else {
            return Err("authenticate first".into());
        };
        let never = |NeverSent(n)| format!("seq {n} was never sent to this session");
        let mut settled = 0;
        if let Some(n) = upto {
            settled += f.ack_upto(n).map_err(never)?;
        }
        if !each.is_empty() {
            settled += f.ack_each(each).map_err(never)?;
        }
        let cursor = f.cursor();
        DurableMetrics::add(&self.metrics.durable.acked, settled);
        if let Some(seq) = cursor {
            d.submit(
                ctx.hub(),
                Op::Ack {
                    stream: store::user_stream(&user.id),
                    seq,
                },
            );
        }
        let body = json!({ "code": code::OK, "ackedSeq": cursor });
        ctx.send(Message::Text(protocol::message("ACK_RESPONSE", body, rid)));
        Ok(())
    }
}

impl Sink for ChatNode {
    fn stored(
        &self,
        hub: &Hub,
        stream: &str,
        result: Result<(u64, &str), &StoreError>,
        told: Told,
    ) {
        let (seq, text) = match result {
            Ok(r) => r,
            Err(e) => {
                let why = format!("not stored: {e}");
                match told {
                    Told::Sender {
                        conn,
                        user: from,
                        msg_id,
                        rid,
                    } => {
                        self.registry.forget_delivery(&from, &msg_id);
                        let text =
                            hot::send_response(&msg_id, code::STORE_FAILED, &why, rid.as_deref());
                        hub.send(conn, Message::Text(text));
                    }
                    Told::Api(reply) => {
                        reply.send(HttpResponse::json(503, json!({ "error": why }).to_string()))
                    }
                }
                return;
            }
        };
        let user = stream.strip_prefix("u:");
        let channel = stream.strip_prefix("c:");
        let everyone = channel == Some(EVERYONE);
        let to = match (user, channel) {
            (Some(u), _) => self.registry.by_user(u),
            (None, Some(c)) if !everyone => self.registry.channel(c),
            _ => Vec::new(),
        };
        let sessions = if everyone {
            self.registry.session_count()
        } else {
            to.len()
        };
        match told {
            Told::Sender {
                conn, msg_id, rid, ..
            } => {
                let text = hot::send_response(&msg_id, code::OK, "stored", rid.as_deref());
                hub.send(conn, Message::Text(text));
            }
            Told::Api(reply) => reply.send(HttpResponse::json(
                200,
                json!({ "stored": true, "seq": seq, "sessions": sessions }).to_string(),
            )),
        }
        self.metrics.delivered(sessions);
        let payload = Payload::from(Message::Text(text.to_owned()));
        if everyone {
            return hub.send_to_group(ALL_USERS, payload);
        }
        if user.is_none() {
            // A channel's history is recovered by resubscribing, not resent: one shared
            // frame for every subscriber.
            return hub.send_many(&to, payload);
        }
        let Some(node) = self.me.upgrade() else {
            return;
        };
        for id in to {
            let (node, payload) = (node.clone(), payload.clone());
            hub.call(id, move |ctx| node.push_stored(ctx, seq, payload));
        }
    }

    fn resumed(
        &self,
        hub: &Hub,
        conn: ConnId,
        rid: Option<String>,
        channel: Option<String>,
        replay: Result<Replay, String>,
    ) {
        if let Some(node) = self.me.upgrade() {
            hub.call(conn, move |ctx| match channel {
                Some(c) => node.on_subscribed(ctx, rid, c, replay),
                None => node.on_resumed(ctx, rid, replay),
            });
        }
    }

    fn pulled(&self, hub: &Hub, conn: ConnId, rid: Option<String>, replay: Result<Replay, String>) {
        if let Some(node) = self.me.upgrade() {
            hub.call(conn, move |ctx| node.on_pulled(ctx, rid, replay));
        }
    }
}

/// Puts where a replayed history stands into a response body (`epoch`, `lastSeq`,
/// `recovered`, `hasMore`, or `storeError`); returns the replayed messages and the number
/// they follow.
fn replay_fields(
    body: &mut serde_json::Value,
    replay: Result<Replay, String>,
) -> (Vec<(u64, String)>, u64) {
    match replay {
        Ok(r) => {
            body["epoch"] = json!(r.epoch);
            body["lastSeq"] = json!(r.last_seq);
            body["recovered"] = json!(r.recovered);
            body["hasMore"] = json!(r.has_more);
            (r.messages, r.after)
        }
        Err(e) => {
            body["recovered"] = json!(false);
            body["storeError"] = json!(e);
            (Vec::new(), 0)
        }
    }
}

/// The token a handshake carries: `?token=`, `?accessToken=` or `Authorization: Bearer`.
pub(crate) fn handshake_token(req: &HttpRequest) -> Option<String> {
    req.query_param("token")
        .or_else(|| req.query_param("accessToken"))
        .or_else(|| {
            req.header("Authorization")
                .and_then(|h| h.strip_prefix("Bearer "))
                .map(|t| t.trim().to_owned())
        })
        .filter(|t| !t.is_empty())
}

fn json_response(status: u16, body: serde_json::Value) -> HttpResponse {
    HttpResponse::json(status, body.to_string())
}

/// The WebSocket handler of the chat node.
#[derive(Debug)]
pub struct ChatHandler(pub Arc<ChatNode>);

impl ChatHandler {
    fn reply(ctx: &mut Context<'_>, text: String) {
        ctx.send(Message::Text(text));
    }

    /// Counts a bad message; true when the connection must now be closed.
    fn count_bad(&self, ctx: &mut Context<'_>) -> bool {
        let limit = self.0.cfg.limits.bad_messages_per_minute;
        let Some(state) = ctx.attributes_mut().get_mut::<ConnState>() else {
            return false;
        };
        if state.bad_since.elapsed() > Duration::from_secs(60) {
            state.bad = 0;
            state.bad_since = Instant::now();
        }
        state.bad += 1;
        state.bad > limit
    }

    fn bad(&self, ctx: &mut Context<'_>, code_: i64, text: &str, request_id: Option<&str>) {
        if self.count_bad(ctx) {
            Self::reply(
                ctx,
                protocol::error(code::RATE_LIMITED, "too many bad messages", request_id),
            );
            ctx.close(1008, "too many bad messages");
        } else {
            Self::reply(ctx, protocol::error(code_, text, request_id));
        }
    }

    fn send_response(
        ctx: &mut Context<'_>,
        msg_id: &str,
        code_: i64,
        text: &str,
        rid: Option<&str>,
    ) {
        Self::reply(ctx, hot::send_response(msg_id, code_, text, rid));
    }
}

impl Handler for ChatHandler {
    fn on_open(&self, ctx: &mut Context<'_>, req: &HttpRequest) -> Result<(), HttpResponse> {
        ctx.attributes_mut().insert(ConnState {
            user: None,
            bad: 0,
            bad_since: Instant::now(),
            inflight: None,
        });
        let node = &self.0;
        let user = match node.auth.mode() {
            AuthMode::None => Some(User {
                id: format!("anon-{}", ctx.id()),
                user_type: None,
                tenant_id: None,
                name: format!("anon-{}", ctx.id()),
                expires_at: None,
            }),
            _ => match handshake_token(req).map(|t| node.auth.verify(&t)) {
                None => None,
                Some(Ok(user)) => Some(user),
                Some(Err(e)) => {
                    node.refused(ctx, &e);
                    return Err(json_response(
                        401,
                        json!({ "code": code::UNAUTHORIZED, "message": e.to_string() }),
                    ));
                }
            },
        };
        match user {
            Some(user) => {
                let user_id = user.id.clone();
                node.admit(ctx, user).map_err(|()| {
                    json_response(
                        409,
                        json!({ "code": code::FORBIDDEN, "message": "session limit reached for this user" }),
                    )
                })?;
                // As in the seeds: a token on the URL is an AUTH_REQUEST made for the
                // client, so it gets the AUTH_RESPONSE too (`?lastSeq=&epoch=` resume).
                let resume =
                    req.query_param("lastSeq")
                        .and_then(|n| n.parse().ok())
                        .map(|last_seq| Resume {
                            last_seq,
                            epoch: req.query_param("epoch").unwrap_or_default(),
                        });
                node.welcome(ctx, &user_id, resume, None);
                Ok(())
            }
            None => {
                ctx.set_timer(node.auth_timeout, TIMER_AUTH);
                Ok(())
            }
        }
    }

    fn close_notice(&self, _ctx: &mut Context<'_>, code: u16, reason: &str) -> Option<Message> {
        Some(Message::Text(protocol::close_notice(code, reason)))
    }

    fn on_message(&self, ctx: &mut Context<'_>, msg: Message) {
        let node = &self.0;
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(_) => {
                return self.bad(ctx, code::BAD_REQUEST, "text frames only", None)
            }
        };
        if text.len() > node.cfg.limits.max_message_bytes {
            let limit = node.cfg.limits.max_message_bytes;
            return self.bad(
                ctx,
                code::TOO_LARGE,
                &format!("message over {limit} bytes"),
                None,
            );
        }
        let (rid, parsed) = protocol::parse(&text);
        let rid = rid.as_deref();
        let req = match parsed {
            Ok(r) => r,
            Err(e) => {
                node.metrics.message_in("invalid");
                return self.bad(ctx, e.code, &e.message, rid);
            }
        };
        node.metrics.message_in(req.kind());
        let user = ctx
            .attributes()
            .get::<ConnState>()
            .and_then(|s| s.user.clone());
        // One check for every message type that carries a msgId: a repeat within the
        // window is answered but not delivered again.
        if let (Some(me), Some(msg_id)) = (&user, req.msg_id()) {
            if !node
                .registry
                .first_delivery(&me.id, msg_id, node.dedup_window)
            {
                let msg_id = msg_id.to_owned();
                let text = "duplicate msgId: not delivered again";
                return Self::send_response(ctx, &msg_id, code::OK, text, rid);
            }
        }
        match (req, user) {
            (Request::Ping, _) => Self::reply(ctx, protocol::message("PONG", json!({}), rid)),
            (Request::Auth { .. }, Some(_)) => {
                let body = json!({ "code": code::FORBIDDEN, "message": "already authenticated" });
                Self::reply(ctx, protocol::message("AUTH_RESPONSE", body, rid));
            }
            (Request::Auth { token, resume }, None) => match node.auth.verify(&token) {
                Err(e) => {
                    node.refused(ctx, &e);
                    // Seed 000 answers a missing token with code 1, a refused one with 2.
                    let (code_, text) = match e {
                        AuthError::Missing => {
                            (code::BAD_REQUEST, "accessToken is missing".to_owned())
                        }
                        other => (code::UNAUTHORIZED, other.to_string()),
                    };
                    let body = json!({ "code": code_, "message": text });
                    Self::reply(ctx, protocol::message("AUTH_RESPONSE", body, rid));
                }
                Ok(user) => {
                    // The reply goes straight onto this connection's queue; the join
                    // notice travels through the hub, so the reply arrives first.
                    let user_id = user.id.clone();
                    if node.admit(ctx, user).is_ok() {
                        node.welcome(ctx, &user_id, resume, rid);
                    } else {
                        let body = json!({ "code": code::FORBIDDEN, "message": "session limit reached for this user" });
                        Self::reply(ctx, protocol::message("AUTH_RESPONSE", body, rid));
                        ctx.close(CLOSE_SESSION_LIMIT, "session limit");
                    }
                }
            },
            (_, None) => self.bad(
                ctx,
                code::UNAUTHORIZED,
                "authenticate first (AUTH_REQUEST)",
                rid,
            ),
            (
                Request::SendToOne {
                    to_user,
                    msg_id,
                    content,
                },
                Some(me),
            ) => {
                if node.durable.is_some() {
                    let body = hot::to_user_body(&msg_id, &content, &me.id);
                    let stream = store::user_stream(&to_user);
                    let kind = "SEND_TO_USER_REQUEST";
                    return node.store_message(ctx, stream, kind, body, msg_id, rid);
                }
                let to = node.registry.by_user(&to_user);
                if to.is_empty() {
                    return Self::send_response(
                        ctx,
                        &msg_id,
                        code::USER_OFFLINE,
                        "user offline",
                        rid,
                    );
                }
                // The sender's answer first: a sender among the recipients gets it
                // before its own copy, as when delivery went through the hub.
                Self::send_response(ctx, &msg_id, code::OK, "sent", rid);
                let out = hot::to_user(&msg_id, &content, &me.id);
                node.metrics.delivered(to.len());
                ctx.send_many(&to, Message::Text(out));
            }
            (Request::SendToAll { msg_id, content }, Some(me)) => {
                if let Some(d) = &node.durable {
                    let body = hot::channel_body(EVERYONE, &msg_id, &content, &me.id, d.epoch());
                    let stream = store::channel_stream(EVERYONE);
                    let kind = "SEND_TO_USER_REQUEST";
                    return node.store_message(ctx, stream, kind, body, msg_id, rid);
                }
                Self::send_response(ctx, &msg_id, code::OK, "sent", rid);
                let out = hot::to_user(&msg_id, &content, &me.id);
                node.metrics.delivered(node.registry.session_count());
                ctx.send_to_group(ALL_USERS, Message::Text(out));
            }
            (Request::Ack { upto, each }, Some(_)) => {
                if let Err(e) = node.on_ack(ctx, upto, &each, rid) {
                    self.bad(ctx, code::BAD_REQUEST, &e, rid);
                }
            }
            (
                Request::Pull {
                    since,
                    limit,
                    channel,
                },
                Some(me),
            ) => {
                let Some(d) = &node.durable else {
                    let text = "the store is off (store.enabled = false): nothing to pull";
                    return Self::reply(ctx, protocol::error(code::NO_STORE, text, rid));
                };
                let cap = node.cfg.delivery.pull_limit as u64;
                let limit = limit.unwrap_or(cap).clamp(1, cap) as usize;
                let to = PullTo::Ws {
                    conn: ctx.id(),
                    rid: rid.map(str::to_owned),
                };
                let stream = match &channel {
                    Some(c) => store::channel_stream(c),
                    None => store::user_stream(&me.id),
                };
                d.submit(
                    ctx.hub(),
                    Op::Pull {
                        stream,
                        after: since,
                        limit,
                        to,
                    },
                );
            }
            (Request::Subscribe { channel, resume }, Some(_)) => {
                // `*` (messages to everyone) reaches every session anyway: subscribing
                // to it only recovers its history.
                if channel != EVERYONE {
                    node.registry.subscribe(ctx.id(), &channel);
                }
                if let Some(d) = &node.durable {
                    let op = Op::Resume {
                        stream: store::channel_stream(&channel),
                        channel: Some(channel),
                        conn: ctx.id(),
                        client: resume,
                        rid: rid.map(str::to_owned),
                    };
                    return d.submit(ctx.hub(), op);
                }
                let body = json!({ "code": code::OK, "channel": channel });
                Self::reply(ctx, protocol::message("SUBSCRIBE_RESPONSE", body, rid));
            }
            (Request::Unsubscribe { channel }, Some(_)) => {
                let was = node.registry.unsubscribe(ctx.id(), &channel);
                let body = json!({ "code": code::OK, "channel": channel, "wasSubscribed": was });
                Self::reply(ctx, protocol::message("UNSUBSCRIBE_RESPONSE", body, rid));
            }
            (
                Request::SendToChannel {
                    channel,
                    msg_id,
                    content,
                },
                Some(me),
            ) => {
                if channel == EVERYONE {
                    let text = "channel \"*\" is for messages to everyone: use SEND_TO_ALL_REQUEST";
                    return self.bad(ctx, code::BAD_REQUEST, text, rid);
                }
                if let Some(d) = &node.durable {
                    let body = hot::channel_body(&channel, &msg_id, &content, &me.id, d.epoch());
                    let stream = store::channel_stream(&channel);
                    return node.store_message(ctx, stream, "CHANNEL_MESSAGE", body, msg_id, rid);
                }
                let to = node.registry.channel(&channel);
                Self::send_response(ctx, &msg_id, code::OK, "sent", rid);
                let out = hot::channel(&channel, &msg_id, &content, &me.id);
                node.metrics.delivered(to.len());
                ctx.send_many(&to, Message::Text(out));
            }
        }
    }

    fn on_close(&self, ctx: &mut Context<'_>, code: u16, reason: &str) {
        self.0.registry.remove(ctx.id());
        match ctx
            .attributes()
            .get::<ConnState>()
            .and_then(|s| s.user.as_ref())
        {
            Some(user) => {
                tracing::info!(user = %user.id, session = %ctx.id(), code, reason, "session closed")
            }
            None => {
                tracing::debug!(session = %ctx.id(), code, reason, "unauthenticated connection closed")
            }
        }
    }

    fn on_timer(&self, ctx: &mut Context<'_>, token: u64) {
        let user = ctx
            .attributes()
            .get::<ConnState>()
            .and_then(|s| s.user.as_ref());
        match token {
            TIMER_AUTH if user.is_none() => ctx.close(1008, "authentication timeout"),
            TIMER_TOKEN_EXPIRY
                if user
                    .and_then(|u| u.expires_at)
                    .is_some_and(|exp| exp <= unix_now()) =>
            {
                ctx.close(CLOSE_TOKEN_EXPIRED, "token expired")
            }
            TIMER_RESEND => self.0.on_resend_timer(ctx),
            _ => {}
        }
    }
}
