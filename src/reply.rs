//! Deferred HTTP answers: a plain route that answers later, from any thread
//! ([`HttpReply`]), or in pieces ([`HttpStream`]) — long polling, server-sent events,
//! SockJS streaming.
//!
//! Owns the handles only. Each piece travels through the hub to the worker that owns the
//! connection, which hands it to the connection's HTTP machine; the machine keeps
//! pipelined answers in order and applies `http_response_timeout_ms`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::http::HttpResponse;
use crate::hub::{HttpPart, Hub};
use crate::id::ConnId;

/// The answer to one request of a route added with
/// [`crate::ServerBuilder::http_route_deferred`]. Send it from any thread, once:
/// [`HttpReply::send`] for a whole response, [`HttpReply::start`] for a streamed one.
/// Dropped unanswered, it answers 500; not answered within `http_response_timeout_ms`,
/// the server answers 504. If the client has gone, the answer is dropped.
#[derive(Debug)]
pub struct HttpReply {
    hub: Hub,
    id: ConnId,
    answered: bool,
    over: Arc<AtomicBool>,
    ip: std::net::IpAddr,
}

impl HttpReply {
    pub(crate) fn new(hub: Hub, id: ConnId, over: Arc<AtomicBool>, ip: std::net::IpAddr) -> Self {
        HttpReply {
            hub,
            id,
            answered: false,
            over,
            ip,
        }
    }

    /// The client's address (the peer's, or the one a trusted proxy forwarded).
    pub fn remote_ip(&self) -> std::net::IpAddr {
        self.ip
    }

    /// Whether the exchange is already over: the client went away (or the server
    /// answered 504 for want of an answer), so nothing sent now will reach it.
    pub fn is_over(&self) -> bool {
        self.over.load(Ordering::Acquire)
    }

    /// The connection the request came on.
    pub fn conn_id(&self) -> ConnId {
        self.id
    }

    /// Answers with the whole response.
    pub fn send(mut self, resp: HttpResponse) {
        self.answered = true;
        self.hub.http(self.id, HttpPart::Whole(resp));
    }

    /// Starts a streamed answer with `resp`'s status and headers (its body, if any, is
    /// the first piece): chunked for HTTP/1.1, ended by closing the connection for
    /// HTTP/1.0.
    pub fn start(mut self, resp: HttpResponse) -> HttpStream {
        self.answered = true;
        self.hub.http(self.id, HttpPart::Head(resp));
        HttpStream {
            hub: self.hub.clone(),
            id: self.id,
            finished: false,
            over: self.over.clone(),
        }
    }
}

impl Drop for HttpReply {
    fn drop(&mut self) {
        if !self.answered {
            self.hub.http(self.id, HttpPart::Dropped);
        }
    }
}

/// A streamed answer in progress: pieces go out in the order they are sent; dropping it
/// ends the stream as [`HttpStream::finish`] does.
#[derive(Debug)]
pub struct HttpStream {
    hub: Hub,
    id: ConnId,
    finished: bool,
    over: Arc<AtomicBool>,
}

impl HttpStream {
    /// Whether the stream is over: the client went away, or the stream was finished.
    /// The flag is raised by the connection's worker, so it lags the client's leaving
    /// by the time the worker takes to notice (its next read of the socket).
    pub fn is_over(&self) -> bool {
        self.over.load(Ordering::Acquire)
    }

    /// Sends one piece of the body.
    pub fn send(&self, bytes: impl Into<Vec<u8>>) {
        self.hub.http(self.id, HttpPart::Chunk(bytes.into()));
    }

    /// Ends the body; the connection goes on to the client's next request (HTTP/1.1) or
    /// closes (HTTP/1.0).
    pub fn finish(mut self) {
        self.finished = true;
        self.hub.http(self.id, HttpPart::End);
    }
}

impl Drop for HttpStream {
    fn drop(&mut self) {
        if !self.finished {
            self.hub.http(self.id, HttpPart::End);
        }
    }
}
