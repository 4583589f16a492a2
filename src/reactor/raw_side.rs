//! Raw TCP connections in the worker: opening one as it is accepted on a raw listener.
//!
//! Owns that first step only — counting the connection, asking the route's handler
//! (`on_open` with a request for the route's path and no headers, as if a WebSocket
//! handshake had arrived), and putting the raw machine in place, or the refusal's body,
//! framed, followed by the close. From then on the connection is an ordinary open
//! connection: reads, sends, broadcasts, timers and closes are the worker's common code,
//! through [`Link`]. It never parses what the connection carries.

use std::net::SocketAddr;

use super::accept::ListenerSpec;
use super::session::Session;
use super::worker::{Conn, Open, Proto, Worker};
use crate::conn::{Closing, Link, Raw};
use crate::http::{HttpResponse, Request};
use crate::io::Io;
use crate::metrics::bump;
use crate::rawframe::encode;

impl Worker {
    /// Opens a connection accepted on raw listener `spec`, whose slot is the slab's
    /// next.
    pub(super) fn open_raw(
        &mut self,
        spec: &ListenerSpec,
        io: Io,
        peer: SocketAddr,
        generation: u32,
    ) {
        let Some(raw) = &spec.raw else {
            return;
        };
        let ip = peer.ip();
        self.admission.accepted(ip);
        bump(&self.metrics.connections_open, 1);
        bump(&self.metrics.connections_total, 1);
        let now = self.tick();
        let mut session = Session {
            route: raw.route as u32,
            protocol: None,
            path: self.intern_path(&raw.path),
            attributes: Default::default(),
            groups: None,
        };
        let req = Request {
            method: "GET".into(),
            path: raw.path.to_string(),
            query: None,
            version: 1,
            headers: Vec::new(),
            body: Vec::new(),
        };
        let slot = self.conns.vacant_key();
        let id = self.conn_id(slot, generation);
        let mut verdict = self.admission.admit(ip).map_err(|e| e.response());
        let mut actions = match verdict.is_ok() {
            true => self.env.run(id, ip, &mut session, |h, ctx| {
                verdict = h.on_open(ctx, &req);
            }),
            false => Vec::new(),
        };
        let mut conn = Conn::new(io, generation, Proto::Closing(Closing::new(now, 0)), ip);
        if let Err(resp) = verdict {
            if actions.capacity() > 0 {
                actions.clear();
                self.env.actions.set(actions);
            }
            return self.refuse_raw(conn, raw.framing, &resp);
        }
        // Broadcasts made before this connection opened are not for it.
        self.settle_broadcasts();
        let link = Link::Raw(Box::new(Raw::new(raw.framing, raw.max, now)));
        conn.proto = Proto::Open(Box::new(Open { link, session }));
        let slot = self.conns.insert(conn);
        tracing::debug!(worker = self.index, slot, %peer, "raw connection open");
        self.apply_actions(slot, raw.route, actions);
        self.reschedule(slot);
        self.mark_dirty(slot);
    }

    /// Sends a refused raw connection the refusal's body as one message, then closes it.
    fn refuse_raw(
        &mut self,
        mut conn: Conn,
        framing: crate::rawframe::RawFraming,
        resp: &HttpResponse,
    ) {
        let why = String::from_utf8_lossy(&resp.body);
        tracing::info!(remote = %conn.ip, status = resp.status,
            "raw connection refused: {}", why.trim_end());
        bump(
            &self.metrics.handshake_failures
                [crate::metrics::HandshakeFailure::from_status(resp.status) as usize],
            1,
        );
        conn.out
            .push_bytes(encode(framing, why.trim_end().as_bytes()));
        let slot = self.conns.insert(conn);
        self.enter_closing(slot);
    }
}
