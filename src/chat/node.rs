//! The chat node's WebSocket handler: authentication at the handshake or by
//! `AUTH_REQUEST`, the message types, de-duplication, the bad-message limit, and the
//! connection timers (the engine's `set_timer`) that close sessions whose token expires or
//! that never authenticate.
//!
//! Owns per-connection chat state (in the connection's attributes) and the rules of the
//! protocol; routing goes through the registry and the hub, never through sockets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::auth::{unix_now, AuthError, Authenticator, User};
use super::config::{parse_duration, AuthMode, ChatConfig, SessionLimitPolicy};
use super::metrics::ChatMetrics;
use super::protocol::{self, code, hot, Request};
use super::registry::{Added, Registry, Session};
use crate::config::ConfigError;
use crate::handler::{Context, Handler, Message};
use crate::http::{HttpResponse, Request as HttpRequest};

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

/// Per-connection chat state, kept in the connection's attributes.
struct ConnState {
    /// Shared, so each message reads the sender without copying its strings.
    user: Option<Arc<User>>,
    bad: u32,
    bad_since: Instant,
}

impl ChatNode {
    /// Builds the node's shared state from its configuration.
    pub fn new(cfg: ChatConfig) -> Result<Self, ConfigError> {
        Ok(ChatNode {
            auth: Authenticator::new(&cfg.auth)?,
            auth_timeout: parse_duration(&cfg.auth.timeout)?,
            dedup_window: parse_duration(&cfg.limits.dedup_window)?,
            registry: Registry::default(),
            metrics: ChatMetrics::default(),
            cfg,
        })
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
        if self.cfg.notify_join {
            let notice = protocol::message(
                "USER_JOIN_NOTICE_REQUEST",
                json!({ "nickname": user.name }),
                None,
            );
            ctx.hub().send_to_group(ALL_USERS, Message::Text(notice));
        }
        if let Some(state) = ctx.attributes_mut().get_mut::<ConnState>() {
            state.user = Some(Arc::new(user));
        }
        Ok(())
    }
}

/// The token a handshake carries: `?token=`, `?accessToken=` or `Authorization: Bearer`.
fn handshake_token(req: &HttpRequest) -> Option<String> {
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
                // client, so it gets the AUTH_RESPONSE too.
                let id = ctx.id().to_string();
                let body = json!({ "code": code::OK, "message": "authenticated", "userId": user_id, "sessionId": id });
                Self::reply(ctx, protocol::message("AUTH_RESPONSE", body, None));
                Ok(())
            }
            None => {
                ctx.set_timer(node.auth_timeout, TIMER_AUTH);
                Ok(())
            }
        }
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
            (Request::Auth { token }, None) => match node.auth.verify(&token) {
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
                        let id = ctx.id().to_string();
                        let body = json!({ "code": code::OK, "message": "authenticated", "userId": user_id, "sessionId": id });
                        Self::reply(ctx, protocol::message("AUTH_RESPONSE", body, rid));
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
                Self::send_response(ctx, &msg_id, code::OK, "sent", rid);
                let out = hot::to_user(&msg_id, &content, &me.id);
                node.metrics.delivered(node.registry.session_count());
                ctx.send_to_group(ALL_USERS, Message::Text(out));
            }
            (Request::Subscribe { channel }, Some(_)) => {
                node.registry.subscribe(ctx.id(), &channel);
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
            _ => {}
        }
    }
}
