//! The HTTP API for backends: push a message to users, sessions, channels or everyone;
//! presence; stats. Bearer-key authenticated, JSON in and out.
//!
//! Owns request validation and target resolution; delivery goes through the hub.

use std::sync::Arc;

use serde_json::{json, Value};

use super::durable::{self, Op, PullTo, Told};
use super::node::{ChatNode, ALL_USERS};
use super::protocol;
use super::store::{self, NewMessage};
use crate::handler::Message;
use crate::http::{HttpResponse, Request};
use crate::hub::Hub;
use crate::id::ConnId;
use crate::reply::HttpReply;
use crate::stomp::Stomp;

fn json_response(status: u16, body: Value) -> HttpResponse {
    HttpResponse::json(status, body.to_string())
}

fn error(status: u16, message: &str) -> HttpResponse {
    json_response(status, json!({ "error": message }))
}

/// `None` if the request carries the configured key; else the 401 to answer.
fn check_key(node: &ChatNode, req: &Request) -> Option<HttpResponse> {
    let key = &node.cfg.api.key;
    if key.is_empty() {
        return Some(error(401, "the push API is disabled: set api.key"));
    }
    let given = req
        .header("Authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim);
    // Compare without an early exit, so the time taken does not tell how much matched.
    let ok = given.is_some_and(|g| {
        g.len() == key.len()
            && g.bytes()
                .zip(key.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    (!ok).then(|| {
        error(
            401,
            "missing or wrong API key (Authorization: Bearer <api.key>)",
        )
        .header("WWW-Authenticate", "Bearer")
    })
}

/// `POST /api/v1/send` with `{"type", "body", "to": {...}, "durable"?}`: answers
/// `{"sessions": N}`, or for a durable message, once it is stored, `{"stored": true,
/// "seq": N, "sessions": N}`.
pub fn send(
    node: &Arc<ChatNode>,
    stomp: Option<&Stomp>,
    req: &Request,
    hub: &Hub,
    reply: HttpReply,
) {
    if let Some(resp) = stomp_send(node, stomp, req, hub) {
        return reply.send(resp);
    }
    match durable_send(node, req) {
        Ok(Some((d, msg))) => {
            if let Err(Told::Api(reply)) = d.append(hub, msg, Told::Api(reply)) {
                let busy = error(503, "store busy: not stored, retry later");
                reply.send(busy.header("Retry-After", "1"));
            }
        }
        Ok(None) => reply.send(send_now(node, req, hub)),
        Err(resp) => reply.send(resp),
    }
}

/// A request with a `"destination"`: a MESSAGE to a STOMP destination (`/topic/x`, or
/// `/user/<name>/queue/x` for one user's sessions, Spring's `convertAndSendToUser`).
/// `None` for every other request.
fn stomp_send(
    node: &ChatNode,
    stomp: Option<&Stomp>,
    req: &Request,
    hub: &Hub,
) -> Option<HttpResponse> {
    if req.method != "POST" || check_key(node, req).is_some() {
        return None;
    }
    let v = serde_json::from_slice::<Value>(&req.body).ok()?;
    let dest = v.get("destination")?;
    let Some(stomp) = stomp else {
        return Some(error(
            409,
            "\"destination\" needs the STOMP broker (stomp.enabled = true)",
        ));
    };
    let Some(dest) = dest.as_str() else {
        return Some(error(400, "\"destination\" must be a string"));
    };
    // A string body goes as is (text/plain); any other JSON as its JSON text.
    let (body, default_type) = match v.get("body") {
        Some(Value::String(t)) => (t.clone().into_bytes(), "text/plain;charset=UTF-8"),
        Some(other) => (other.to_string().into_bytes(), "application/json"),
        None => (Vec::new(), "text/plain;charset=UTF-8"),
    };
    let content_type = v
        .get("contentType")
        .and_then(Value::as_str)
        .unwrap_or(default_type);
    Some(match stomp.push(hub, dest, Some(content_type), &body) {
        Ok(n) => json_response(200, json!({ "sessions": n })),
        Err(e) => error(400, &e.to_string()),
    })
}

/// A request with `"durable": true`: the message to store, once checked. `Ok(None)` for
/// every other request (including ones [`send_now`] will refuse).
fn durable_send<'n>(
    node: &'n ChatNode,
    req: &Request,
) -> Result<Option<(&'n durable::Durable, NewMessage)>, HttpResponse> {
    if req.method != "POST" || check_key(node, req).is_some() {
        return Ok(None);
    }
    let Ok(v) = serde_json::from_slice::<Value>(&req.body) else {
        return Ok(None);
    };
    if v.get("durable").and_then(Value::as_bool) != Some(true) {
        return Ok(None);
    }
    let Some(d) = &node.durable else {
        return Err(error(
            409,
            "\"durable\" needs the store (store.enabled = true)",
        ));
    };
    let Some(kind) = v
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    else {
        return Err(error(400, "\"type\" (a non-empty string) is required"));
    };
    let to = v.get("to");
    let user = to.and_then(|t| t.get("userId")).and_then(Value::as_str);
    let channel = to.and_then(|t| t.get("channel")).and_then(Value::as_str);
    let all = to.and_then(|t| t.get("all")).and_then(Value::as_bool) == Some(true);
    let (stream, channel) = match (user, channel, all) {
        (Some(u), None, false) => (store::user_stream(u), None),
        (None, Some(c), false) if c != store::EVERYONE => (store::channel_stream(c), Some(c)),
        (None, None, true) => (store::channel_stream(store::EVERYONE), Some(store::EVERYONE)),
        _ => {
            return Err(error(
                400,
                "\"durable\" messages go to one user ({\"userId\"}), one channel ({\"channel\"}) or everyone ({\"all\": true})",
            ))
        }
    };
    let mut body = v.get("body").cloned().unwrap_or_else(|| json!({}));
    let Some(fields) = body.as_object_mut() else {
        return Err(error(
            400,
            "\"body\" of a durable message must be a JSON object",
        ));
    };
    if fields.contains_key("seq") {
        return Err(error(400, "\"body.seq\" is the node's to set"));
    }
    if let Some(c) = channel {
        // As a chat client's channel message: which history, and which epoch its numbers
        // belong to.
        fields.insert("channel".into(), json!(c));
        fields.insert("epoch".into(), json!(d.epoch()));
    }
    let msg = NewMessage {
        stream,
        kind: kind.to_owned(),
        body: body.to_string(),
        created_ms: durable::unix_ms(),
    };
    Ok(Some((d, msg)))
}

/// A push that is not durable: delivered to whoever is online now.
fn send_now(node: &Arc<ChatNode>, req: &Request, hub: &Hub) -> HttpResponse {
    if req.method != "POST" {
        return error(405, "use POST").header("Allow", "POST");
    }
    if let Some(denied) = check_key(node, req) {
        return denied;
    }
    let v: Value = match serde_json::from_slice(&req.body) {
        Ok(v) => v,
        Err(e) => return error(400, &format!("body is not JSON: {e}")),
    };
    let Some(kind) = v
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    else {
        return error(400, "\"type\" (a non-empty string) is required");
    };
    let body = v.get("body").cloned().unwrap_or_else(|| json!({}));
    let Some(to) = v.get("to").and_then(Value::as_object) else {
        return error(
            400,
            "\"to\" is required: {\"userId\"}, {\"userType\"}, {\"userType\", \"userId\"}, {\"sessionId\"}, {\"channel\"} or {\"all\": true}",
        );
    };
    let text = protocol::message(kind, body, None);
    let reg = &node.registry;
    let user_id = to.get("userId").and_then(Value::as_str);
    let user_type = to.get("userType").and_then(Value::as_i64);
    let targets: Vec<ConnId> = match (user_id, user_type) {
        (Some(u), Some(t)) => reg.by_type_and_user(t, u),
        (Some(u), None) => reg.by_user(u),
        (None, Some(t)) => reg.by_type(t),
        (None, None) => {
            if let Some(s) = to.get("sessionId").and_then(Value::as_str) {
                match s.parse::<ConnId>() {
                    Ok(id) if reg.get(id).is_some() => vec![id],
                    Ok(_) => Vec::new(),
                    Err(_) => return error(400, "sessionId is not a session id (w.s.g)"),
                }
            } else if let Some(c) = to.get("channel").and_then(Value::as_str) {
                reg.channel(c)
            } else if to.get("all").and_then(Value::as_bool) == Some(true) {
                let n = reg.session_count();
                node.metrics.delivered(n);
                hub.send_to_group(ALL_USERS, Message::Text(text));
                return json_response(200, json!({ "sessions": n }));
            } else {
                return error(400, "\"to\" names no known target");
            }
        }
    };
    if !targets.is_empty() {
        node.metrics.delivered(targets.len());
        hub.send_many(&targets, Message::Text(text));
    }
    json_response(200, json!({ "sessions": targets.len() }))
}

/// `GET /api/v1/presence?userId=…`: one user's sessions; without `userId`, who is online.
pub fn presence(node: &Arc<ChatNode>, req: &Request, _hub: &Hub) -> HttpResponse {
    if let Some(denied) = check_key(node, req) {
        return denied;
    }
    match req.query_param("userId") {
        Some(u) => {
            let n = node.registry.by_user(&u).len();
            json_response(200, json!({ "userId": u, "online": n > 0, "sessions": n }))
        }
        None => {
            let users: Vec<Value> = node
                .registry
                .online(1000)
                .into_iter()
                .map(|(u, n)| json!({ "userId": u, "sessions": n }))
                .collect();
            json_response(200, json!({ "users": users }))
        }
    }
}

/// `GET /api/v1/stats`: sessions, users, channels and the engine's counters.
pub fn stats(node: &Arc<ChatNode>, req: &Request, hub: &Hub) -> HttpResponse {
    if let Some(denied) = check_key(node, req) {
        return denied;
    }
    let (users, sessions, channels) = node.registry.counts();
    let m = hub.metrics();
    let store = node.durable.as_ref().map(
        |d| json!({ "epoch": d.epoch(), "queueDepth": d.depth(), "path": node.cfg.store.path }),
    );
    json_response(
        200,
        json!({
            "users": users,
            "sessions": sessions,
            "channels": channels,
            "connections_open": m.connections_open,
            "connections_total": m.connections_total,
            "messages_in": m.frames_in,
            "frames_out": m.frames_out,
            "store": store,
        }),
    )
}

/// `GET /api/v1/messages?since=SEQ[&limit=N][&timeout=SECONDS]` with the user's own token
/// (`Authorization: Bearer`, `?token=` or `?accessToken=`): the user's stored messages
/// after `since`, at once if there are any, else when one arrives or at the timeout
/// (`delivery.long_poll_timeout`, or less if asked) with none. Answers
/// `{"epoch","lastSeq","hasMore","messages":[…]}`, the body of `PULL_RESPONSE`.
pub fn messages(node: &Arc<ChatNode>, req: &Request, hub: &Hub, reply: HttpReply) {
    match poll(node, req) {
        Ok((user, after, limit, wait)) => {
            if let Some(d) = &node.durable {
                let to = PullTo::Http {
                    reply,
                    until: std::time::Instant::now() + wait,
                };
                d.submit(
                    hub,
                    Op::Pull {
                        stream: store::user_stream(&user),
                        after,
                        limit,
                        to,
                    },
                );
            }
        }
        Err(resp) => reply.send(resp),
    }
}

type Poll = (String, u64, usize, std::time::Duration);

fn poll(node: &ChatNode, req: &Request) -> Result<Poll, HttpResponse> {
    if req.method != "GET" {
        return Err(error(405, "use GET").header("Allow", "GET"));
    }
    if node.durable.is_none() {
        return Err(error(
            404,
            "no store (store.enabled = false): nothing to poll",
        ));
    }
    let token = req
        .query_param("token")
        .or_else(|| req.query_param("accessToken"))
        .or_else(|| {
            req.header("Authorization")
                .and_then(|h| h.strip_prefix("Bearer "))
                .map(|t| t.trim().to_owned())
        })
        .unwrap_or_default();
    let user = node.auth.verify(&token).map_err(|e| {
        node.metrics.auth_failed(e.reason());
        error(401, &format!("token refused: {e}")).header("WWW-Authenticate", "Bearer")
    })?;
    let number = |name: &str| -> Result<Option<u64>, HttpResponse> {
        match req.query_param(name) {
            None => Ok(None),
            Some(v) => v
                .parse::<u64>()
                .map(Some)
                .map_err(|_| error(400, &format!("{name} must be a non-negative integer"))),
        }
    };
    let after = number("since")?.unwrap_or(0);
    let cap = node.cfg.delivery.pull_limit as u64;
    let limit = number("limit")?.unwrap_or(cap).clamp(1, cap) as usize;
    let wait = match number("timeout")? {
        Some(s) => node
            .long_poll_timeout
            .min(std::time::Duration::from_secs(s)),
        None => node.long_poll_timeout,
    };
    Ok((user.id, after, limit, wait))
}
