//! What a worker does with the HTTP machine's events: answer plain routes, turn an
//! accepted upgrade into an open WebSocket, refuse the rest with their status.
//!
//! Owns the routing of a request (plain route, WebSocket route, 404), admission at the
//! upgrade, and the handler's `on_open` verdict. Framing, keep-alive and timeouts are the
//! machine's (`conn::http1`); sockets are the worker's.

use std::net::IpAddr;
use std::sync::Arc;

use super::session::Session;
use super::worker::{Open, Proto, Worker};
use crate::conn::{AnswerWatch, HttpEvent, Link, Ws};
use crate::http::{check_request_line, validate_upgrade, HandshakeError, HttpResponse, Request};
use crate::hub::HttpPart;
use crate::id::ConnId;
use crate::metrics::{bump, HandshakeFailure};
use crate::reply::HttpReply;
use crate::router::HttpRoute;

/// Most distinct request paths a worker interns; past it, each connection keeps its own
/// copy, so a client inventing paths cannot grow the table.
const MAX_INTERNED_PATHS: usize = 1024;

impl Worker {
    pub(super) fn on_http_event(&mut self, slot: usize, ev: HttpEvent) {
        match ev {
            HttpEvent::Request(req) => self.serve_http(slot, req),
            HttpEvent::Upgrade(req) => return self.upgrade(slot, req),
            HttpEvent::Rejected(err) => self.count_rejection(slot, &err),
            HttpEvent::ResponseTimeout => {
                tracing::warn!(
                    worker = self.index,
                    slot,
                    "a deferred HTTP answer timed out: 504"
                );
                let resp = HttpResponse::text(
                    504,
                    "the application gave no answer within http_response_timeout_ms\n",
                );
                self.answer(slot, &resp);
                return self.after_answer(slot);
            }
            HttpEvent::RequestTimeout | HttpEvent::KeepAliveTimeout => {}
        }
        self.after_http(slot);
    }

    /// Whether answers should close their connection: shutting down, or keep-alive
    /// turned off.
    fn close_after_answer(&self) -> bool {
        self.shutdown_deadline.is_some() || self.config.keepalive_timeout_ms == 0
    }

    /// Gives the waiting request of `slot` its whole answer.
    fn answer(&mut self, slot: usize, resp: &HttpResponse) {
        let close = self.close_after_answer();
        let now = self.tick();
        if let Some(conn) = self.conns.get_mut(slot) {
            if let Proto::Http(http) = &mut conn.proto {
                http.respond(resp, close, now, &mut conn.out);
            }
        }
    }

    /// After an answer given outside the read path (deferred, or on a timeout): close
    /// if the machine is done, else read the requests that were pipelined behind it.
    fn after_answer(&mut self, slot: usize) {
        self.after_http(slot);
        let waiting = match self.conns.get(slot).map(|c| &c.proto) {
            Some(Proto::Http(http)) => http.is_responding() || http.is_streaming(),
            _ => true,
        };
        if !waiting {
            self.on_bytes(slot, &[]);
        }
    }

    /// A piece of a deferred answer, from an [`crate::HttpReply`] on any thread.
    pub(super) fn on_http_part(&mut self, id: ConnId, part: HttpPart) {
        let (worker, slot, generation) = id.parts();
        let slot = slot as usize;
        let close = self.close_after_answer();
        let now = self.tick();
        let conn = self
            .conns
            .get_mut(slot)
            .filter(|c| worker == self.index && c.generation == generation);
        let Some((http, out)) = conn.and_then(|c| match &mut c.proto {
            Proto::Http(http) if http.is_responding() || http.is_streaming() => {
                Some((http, &mut c.out))
            }
            _ => None,
        }) else {
            // The client left, or the answer came after a 504.
            bump(&self.metrics.dropped_stale, 1);
            return;
        };
        match part {
            HttpPart::Whole(resp) => http.respond(&resp, close, now, out),
            HttpPart::Head(resp) => {
                http.start_stream(&resp, close, out);
                http.send_chunk(&resp.body, out);
            }
            HttpPart::Chunk(bytes) => http.send_chunk(&bytes, out),
            HttpPart::End => http.finish_stream(now, out),
            HttpPart::Dropped if http.is_responding() => {
                tracing::warn!(
                    worker = self.index,
                    slot,
                    "a deferred HTTP reply was dropped unanswered: 500"
                );
                let resp = HttpResponse::text(500, "the application gave no answer\n");
                http.respond(&resp, close, now, out);
            }
            HttpPart::Dropped => {}
        }
        self.after_answer(slot);
    }

    /// Answers a plain request from its route; with no plain route for the path, the
    /// request is refused as a WebSocket handshake would be (404, or why it is not one).
    fn serve_http(&mut self, slot: usize, req: Request) {
        let Some(route) = self.env.router.http_route(&req.path) else {
            let err = match check_request_line(&req) {
                Err(e) => e,
                Ok(()) if self.env.router.ws_route(&req.path).is_none() => {
                    HandshakeError::NotFound(req.path)
                }
                Ok(()) => validate_upgrade(&req, &self.env.policy)
                    .err()
                    .unwrap_or(HandshakeError::NotUpgrade),
            };
            return self.reject(slot, err);
        };
        let hub = &self.env.hub;
        match route.clone() {
            HttpRoute::Now(route) => {
                // A panicking route must not take the worker (and every connection on
                // it) down.
                let resp =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| route(&req, hub)))
                        .unwrap_or_else(|_| {
                            tracing::error!(path = %req.path, "HTTP route panicked; answering 500");
                            HttpResponse::text(500, "internal error\n")
                        });
                self.answer(slot, &resp);
            }
            HttpRoute::Later(route) => {
                let now = self.tick();
                let Some((generation, peer)) = self.conns.get(slot).map(|c| (c.generation, c.ip))
                else {
                    return;
                };
                let ip = client_ip(peer, &req, &self.config.trusted_proxies);
                let id = self.conn_id(slot, generation);
                let conn = &mut self.conns[slot];
                let over = Arc::new(std::sync::atomic::AtomicBool::new(false));
                if let Proto::Http(http) = &mut conn.proto {
                    http.park(now, Some(AnswerWatch(over.clone())));
                }
                let reply = HttpReply::new(hub.clone(), id, over, ip);
                // A panic drops the reply, which answers 500.
                let called = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    route(&req, hub, reply)
                }));
                if called.is_err() {
                    tracing::error!(path = %req.path, "HTTP route panicked");
                }
            }
        }
    }

    fn count_rejection(&mut self, slot: usize, err: &HandshakeError) {
        let remote = self.conns.get(slot).map(|c| c.ip);
        tracing::info!(
            remote = ?remote,
            status = err.status(),
            "request refused: {err}"
        );
        self.metrics
            .handshake_failed(HandshakeFailure::from_status(err.status()));
    }

    /// Answers with `err`'s response and closes.
    fn reject(&mut self, slot: usize, err: HandshakeError) {
        self.count_rejection(slot, &err);
        self.refuse(slot, &err.response());
    }

    fn refuse(&mut self, slot: usize, resp: &HttpResponse) {
        if let Some(conn) = self.conns.get_mut(slot) {
            if let Proto::Http(http) = &mut conn.proto {
                http.reject(resp, &mut conn.out);
            }
        }
    }

    /// An upgrade request: route, admit, validate, ask the handler, then switch the
    /// connection to the WebSocket machine (or refuse it).
    fn upgrade(&mut self, slot: usize, req: Request) {
        match self.try_upgrade(slot, req) {
            Ok(rest) => {
                self.reschedule(slot);
                self.mark_dirty(slot);
                if !rest.is_empty() {
                    self.on_bytes(slot, &rest);
                }
            }
            Err(err) => {
                if let Some(err) = err {
                    self.reject(slot, err);
                }
                self.after_http(slot);
            }
        }
    }

    /// The bytes after the head on success; `Err(Some(e))` to refuse with `e`,
    /// `Err(None)` if the handler already refused with its own response.
    fn try_upgrade(
        &mut self,
        slot: usize,
        req: Request,
    ) -> Result<Vec<u8>, Option<HandshakeError>> {
        check_request_line(&req).map_err(Some)?;
        let route = self
            .env
            .router
            .ws_route(&req.path)
            .ok_or_else(|| Some(HandshakeError::NotFound(req.path.clone())))?;
        if self.shutdown_deadline.is_some() {
            return Err(Some(HandshakeError::Unavailable("shutting down")));
        }
        let (peer, generation) = match self.conns.get(slot) {
            Some(conn) => (conn.ip, conn.generation),
            None => return Err(None),
        };
        let ip = client_ip(peer, &req, &self.config.trusted_proxies);
        if ip != peer {
            // Count the connection against the client, not the proxy.
            self.admission.released(peer);
            self.admission.accepted(ip);
            if let Some(conn) = self.conns.get_mut(slot) {
                conn.ip = ip;
            }
        }
        self.admission.admit(ip).map_err(Some)?;
        let upgrade = validate_upgrade(&req, &self.env.policy).map_err(Some)?;
        let protocol = upgrade.protocol.as_ref().and_then(|p| {
            let i = self.env.policy.subprotocols.iter().position(|s| s == p)?;
            u8::try_from(i).ok()
        });
        let mut session = Session {
            route: route as u32,
            protocol,
            path: self.intern_path(&req.path),
            attributes: Default::default(),
            groups: None,
        };
        let id = self.conn_id(slot, generation);
        let mut verdict = Ok(());
        let mut actions = self.env.run(id, ip, &mut session, |h, ctx| {
            verdict = h.on_open(ctx, &req);
        });
        if let Err(resp) = verdict {
            // What a refusing handler asked for is not for the next connection.
            actions.clear();
            self.env.actions.set(actions);
            bump(
                &self.metrics.handshake_failures
                    [HandshakeFailure::from_status(resp.status) as usize],
                1,
            );
            let why = String::from_utf8_lossy(&resp.body);
            let why: String = why.chars().take(200).collect();
            tracing::info!(
                remote = %ip,
                path = %req.path,
                status = resp.status,
                "handshake refused by the handler: {why}"
            );
            self.refuse(slot, &resp);
            return Err(None);
        }
        let now = self.tick();
        let limits = self.ws_cfg.limits;
        let Some(conn) = self.conns.get_mut(slot) else {
            return Err(None);
        };
        let Proto::Http(http) = &mut conn.proto else {
            return Err(None);
        };
        let rest = http.take_upgrade();
        conn.out.push_bytes(upgrade.response);
        // Broadcasts made before this connection opened are not for it.
        self.settle_broadcasts();
        let Some(conn) = self.conns.get_mut(slot) else {
            return Err(None);
        };
        let ws = match &upgrade.deflate {
            Some(agreed) => {
                bump(&self.metrics.deflate_sessions, 1);
                Ws::with_deflate(limits, now, agreed, &self.config.deflate)
            }
            None => Ws::new(limits, now),
        };
        conn.proto = Proto::Open(Box::new(Open {
            link: Link::Ws(ws),
            session,
        }));

        tracing::debug!(worker = self.index, slot, "websocket open");
        self.apply_actions(slot, route, actions);
        Ok(rest)
    }

    /// The shared copy of a request path: one allocation per distinct path per worker
    /// instead of one per connection.
    pub(super) fn intern_path(&mut self, path: &str) -> Arc<str> {
        if let Some(p) = self.paths.get(path) {
            return p.clone();
        }
        let shared: Arc<str> = path.into();
        if self.paths.len() < MAX_INTERNED_PATHS {
            self.paths.insert(path.into(), shared.clone());
        }
        shared
    }
}

/// The client's address: `peer`, unless `peer` is a trusted proxy that says who it
/// forwards for (the last `X-Forwarded-For` entry, which the proxy itself appended, or
/// `X-Real-IP`).
fn client_ip(peer: IpAddr, req: &Request, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded = req
        .headers_all("X-Forwarded-For")
        .last()
        .and_then(|v| v.rsplit(',').next())
        .and_then(|v| v.trim().parse().ok());
    forwarded
        .or_else(|| req.header("X-Real-IP").and_then(|v| v.parse().ok()))
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_request, HttpLimits, Parsed};

    fn req(headers: &str) -> Request {
        let head = format!("GET / HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
        match parse_request(head.as_bytes(), &HttpLimits::default()) {
            Ok(Parsed::Complete { request, .. }) => request,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let trusted = [proxy];
        let xff = req("X-Forwarded-For: 1.1.1.1, 203.0.113.9\r\n");
        assert_eq!(
            client_ip(proxy, &xff, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(other, &xff, &trusted), other);
        let real = req("X-Real-IP: 2001:db8::7\r\n");
        assert_eq!(
            client_ip(proxy, &real, &trusted),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
        let junk = req("X-Forwarded-For: nonsense\r\n");
        assert_eq!(client_ip(proxy, &junk, &trusted), proxy);
    }
}
