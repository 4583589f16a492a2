//! Virtual connections: open WebSocket machines whose transport is a [`Wire`] instead of
//! a socket of this worker (a SockJS session carried by a series of HTTP requests).
//!
//! Owns their lifecycle in the worker: opening one on a route (the handler's `on_open`
//! verdict goes to the wire), handing it input from other threads, and feeding what the
//! wire produces to the connection's machine. Everything else — handler calls, sends,
//! groups, broadcasts, timers, the close handshake — is the same code as for a socket,
//! which is the point: handlers cannot tell the difference. It never parses what the
//! wire carries.

use std::any::Any;
use std::net::IpAddr;

use super::session::Session;
use super::worker::{Conn, Open, Proto, Worker};
use crate::conn::{Link, Ws};
use crate::http::Request;
use crate::id::ConnId;
use crate::io::{Io, Wire};
use crate::message::ConnError;
use crate::metrics::bump;

impl Worker {
    /// Opens a virtual connection on `route` for `req`, if the route's handler accepts it.
    pub(super) fn open_virtual(
        &mut self,
        route: usize,
        req: &Request,
        ip: IpAddr,
        mut wire: Box<dyn Wire>,
    ) {
        if self.shutdown_deadline.is_some() || route >= self.env.router.ws.len() {
            let resp = crate::http::HttpResponse::text(503, "shutting down\n");
            return wire.refused(resp);
        }
        let mut session = Session {
            route: route as u32,
            protocol: None,
            path: self.intern_path(&req.path),
            attributes: Default::default(),
            groups: None,
        };
        let generation = self.take_generation();
        let slot = self.conns.vacant_key();
        let id = self.conn_id(slot, generation);
        let mut verdict = Ok(());
        let mut actions = self.env.run(id, ip, &mut session, |h, ctx| {
            verdict = h.on_open(ctx, req);
        });
        if let Err(resp) = verdict {
            actions.clear();
            self.env.actions.set(actions);
            tracing::info!(remote = %ip, path = %req.path, status = resp.status,
                "session refused by the handler");
            return wire.refused(resp);
        }
        let now = self.tick();
        wire.opened(id, now);
        self.settle_broadcasts();
        let limits = self.ws_cfg.limits;
        let open = Proto::Open(Box::new(Open {
            link: Link::Ws(Ws::new(limits, now)),
            session,
        }));
        let slot = self
            .conns
            .insert(Conn::new(Io::virtual_wire(wire), generation, open, ip));
        bump(&self.metrics.connections_open, 1);
        bump(&self.metrics.connections_total, 1);
        tracing::debug!(worker = self.index, slot, path = %req.path, "virtual connection open");
        self.apply_actions(slot, route, actions);
        self.pump_wire(slot);
    }

    /// Input from another thread for the wire of `id`.
    pub(super) fn wire_input(&mut self, id: ConnId, input: Box<dyn Any + Send>) {
        let Some(slot) = self.resolve(id) else {
            return;
        };
        let now = self.tick();
        if let Some(wire) = self.conns.get_mut(slot).and_then(|c| c.io.wire()) {
            wire.input(input, now);
        }
        self.pump_wire(slot);
    }

    /// Feeds the wire's pending input to the machine, drops the connection if the far
    /// side is gone, and keeps the wire's deadline in the wheel.
    pub(super) fn pump_wire(&mut self, slot: usize) {
        let mut input = std::mem::take(&mut self.wire_scratch);
        let gone = match self.conns.get_mut(slot).and_then(|c| c.io.wire()) {
            Some(wire) => {
                wire.take_input(&mut input);
                wire.is_gone()
            }
            None => return,
        };
        if !input.is_empty() {
            if let Some(conn) = self.conns.get_mut(slot) {
                conn.out.unpark_storage(&mut self.out_pool);
            }
            self.on_bytes(slot, &input);
        }
        input.clear();
        self.wire_scratch = input;
        if gone {
            return self.drop_conn(slot, Some(ConnError::Io("the client went away".into())));
        }
        self.mark_dirty(slot);
        self.reschedule(slot);
    }
}
