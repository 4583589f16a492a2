//! Deferred HTTP answers: a plain route that answers later, from any thread
//! ([`HttpReply`]), or in pieces ([`HttpStream`]) — long polling, server-sent events,
//! SockJS streaming.
//!
//! Owns the handles only. Each piece travels through the hub to the worker that owns the
//! connection, which hands it to the connection's HTTP machine; the machine keeps
//! pipelined answers in order and applies `http_response_timeout_ms`.

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
}

impl HttpReply {
    pub(crate) fn new(hub: Hub, id: ConnId) -> Self {
        HttpReply {
            hub,
            id,
            answered: false,
        }
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
}

impl HttpStream {
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
