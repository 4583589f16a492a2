//! The HTTP/1.1 connection machine: requests in, responses out, on one connection, for as
//! long as both sides want it open.
//!
//! Owns the request stream of one connection: buffering, head parsing, body framing
//! (`Content-Length` or chunked, within `max_body_bytes`), the keep-alive decision of each
//! exchange, the order of pipelined answers, and the request and keep-alive timeouts.
//! It does not route, validate upgrades or build answers: each complete request is an
//! event, and the caller answers it with [`Http1::respond`], [`Http1::reject`] or, for
//! an upgrade, takes the bytes after the head with [`Http1::take_upgrade`].
//!
//! States (`// Next:` is what can follow):
//! - `Head`: bytes accumulate until a request head parses. Next: `Body`, `Responding`
//!   (a request without a body), `Upgrading`, or `Done` (malformed; timeout).
//! - `Body`: the body arrives. Next: `Responding`, or `Done` (too large, malformed,
//!   timeout).
//! - `Responding`: the application has the request. Bytes that arrive meanwhile (the
//!   next pipelined request) are buffered, not parsed, so answers leave in request order.
//!   Next: `Head` (kept alive) or `Done`.
//! - `Upgrading`: an upgrade request is with the caller. Next: `Done` (rejected, or the
//!   caller took the connection for another protocol).
//! - `Done`: the last response is queued; input is ignored.

use crate::http::{
    is_upgrade_request, parse_request, BodyFraming, ChunkedDecoder, HandshakeError, HttpLimits,
    HttpResponse, Parsed, Request,
};

use super::{OutQueue, Tick};

/// Limits and timeouts of the HTTP machine, shared by every connection of a worker.
#[derive(Debug, Clone, Copy)]
pub struct Http1Config {
    /// Head size and header count limits.
    pub limits: HttpLimits,
    /// Largest request body, chunked or not (larger → 413).
    pub max_body_bytes: usize,
    /// How long a request may take to arrive whole, from its first byte (from the
    /// connection's start for the first one).
    pub request_timeout: Tick,
    /// How long a kept-alive connection may sit idle between requests.
    pub keepalive_timeout: Tick,
}

/// What the HTTP machine reports.
#[derive(Debug)]
pub enum HttpEvent {
    /// A plain request with its whole body. Answer it with [`Http1::respond`] (or
    /// [`Http1::reject`]) before the machine reads the next one.
    Request(Request),
    /// A request asking for a protocol upgrade (`Upgrade: websocket`). Answer it with
    /// [`Http1::reject`], or take the connection with [`Http1::take_upgrade`].
    Upgrade(Request),
    /// The request could not be read; its error response is queued and the machine is
    /// done.
    Rejected(HandshakeError),
    /// A request did not arrive whole within `request_timeout`; nothing was sent and the
    /// machine is done.
    RequestTimeout,
    /// The connection sat idle between requests for `keepalive_timeout`; the machine is
    /// done.
    KeepAliveTimeout,
}

enum State {
    Head,
    Body(Box<BodyState>),
    Responding { keep_alive: bool, head_only: bool },
    Upgrading,
    Done,
}

struct BodyState {
    request: Request,
    framing: Framing,
}

enum Framing {
    Length(usize),
    Chunked(ChunkedDecoder),
}

/// One connection's HTTP/1.x exchange.
pub struct Http1 {
    /// Received bytes not yet consumed.
    buf: Vec<u8>,
    state: State,
    /// When the current request's first byte arrived, or when the connection went idle.
    since: Tick,
    /// Requests answered so far.
    answered: u32,
}

impl std::fmt::Debug for Http1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http1")
            .field("buffered", &self.buf.len())
            .field("answered", &self.answered)
            .finish()
    }
}

impl Http1 {
    /// A machine for a connection accepted at `now`.
    pub fn new(now: Tick) -> Self {
        Http1 {
            buf: Vec::new(),
            state: State::Head,
            since: now,
            answered: 0,
        }
    }

    /// Whether the machine has finished: its last response is queued and the connection
    /// should close once it is written.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Whether no request is in progress: nothing buffered, no request with the caller.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head) && self.buf.is_empty()
    }

    /// Requests answered so far on this connection.
    pub fn answered(&self) -> u32 {
        self.answered
    }

    /// Takes bytes from `input` and returns the next event, if one is complete. Call
    /// again (with an empty input too) until it returns `None`; a `Request` or `Upgrade`
    /// must be answered before the next call can report anything.
    pub fn handle_read(
        &mut self,
        input: &mut &[u8],
        now: Tick,
        cfg: &Http1Config,
        out: &mut OutQueue,
    ) -> Option<HttpEvent> {
        if matches!(self.state, State::Done) {
            *input = &[];
            return None;
        }
        if !input.is_empty() {
            if self.is_idle() {
                self.since = now;
            }
            self.buf.extend_from_slice(input);
            *input = &[];
        }
        loop {
            match &mut self.state {
                State::Head => match self.read_head(cfg) {
                    // A head with a body moved on to `Body`: read what is buffered of it.
                    Ok(None) if matches!(self.state, State::Body(_)) => continue,
                    Ok(None) => return None,
                    Ok(Some(event)) => return Some(event),
                    Err(e) => return Some(self.fail(e, out)),
                },
                State::Body(body) => match read_body(body, &mut self.buf) {
                    Ok(false) => return None,
                    Ok(true) => {
                        let State::Body(body) = std::mem::replace(&mut self.state, State::Done)
                        else {
                            return None;
                        };
                        return Some(self.hand_out(body.request));
                    }
                    Err(e) => return Some(self.fail(e, out)),
                },
                State::Responding { .. } | State::Upgrading | State::Done => return None,
            }
        }
    }

    /// Parses a head from the buffer: `Ok(None)` if it is not complete yet.
    fn read_head(&mut self, cfg: &Http1Config) -> Result<Option<HttpEvent>, HandshakeError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let (request, consumed) = match parse_request(&self.buf, &cfg.limits)? {
            Parsed::Partial => return Ok(None),
            Parsed::Complete { request, consumed } => (request, consumed),
        };
        self.buf.drain(..consumed);
        if is_upgrade_request(&request) {
            self.state = State::Upgrading;
            return Ok(Some(HttpEvent::Upgrade(request)));
        }
        if request.version >= 1 && request.header("Host").is_none() {
            return Err(HandshakeError::MissingHost);
        }
        let framing = match request.body_framing(cfg.max_body_bytes)? {
            BodyFraming::Length(0) => return Ok(Some(self.hand_out(request))),
            BodyFraming::Length(n) => Framing::Length(n),
            BodyFraming::Chunked => Framing::Chunked(ChunkedDecoder::new(
                cfg.max_body_bytes,
                cfg.limits.max_handshake_bytes,
            )),
        };
        self.state = State::Body(Box::new(BodyState { request, framing }));
        Ok(None)
    }

    fn hand_out(&mut self, request: Request) -> HttpEvent {
        let keep_alive = if request.version >= 1 {
            !request.has_token("Connection", "close")
        } else {
            request.has_token("Connection", "keep-alive")
        };
        let head_only = request.method == "HEAD";
        self.state = State::Responding {
            keep_alive,
            head_only,
        };
        HttpEvent::Request(request)
    }

    fn fail(&mut self, err: HandshakeError, out: &mut OutQueue) -> HttpEvent {
        self.reject(&err.response(), out);
        HttpEvent::Rejected(err)
    }

    /// Answers the request last handed out. The connection stays open for the next
    /// request unless the client asked to close (`Connection: close`, or HTTP/1.0
    /// without `keep-alive`) or the caller does (`close`: shutting down, say). Does
    /// nothing if no request is waiting for an answer.
    pub fn respond(&mut self, resp: &HttpResponse, close: bool, now: Tick, out: &mut OutQueue) {
        let State::Responding {
            keep_alive,
            head_only,
        } = self.state
        else {
            return;
        };
        let keep = keep_alive && !close;
        out.push_bytes(resp.encode(keep, head_only));
        self.answered += 1;
        if keep {
            self.state = State::Head;
            self.since = now;
        } else {
            self.state = State::Done;
        }
    }

    /// Answers with `resp` and closes: for an upgrade the caller refused, a path with
    /// no route, or a request the server will not serve.
    pub fn reject(&mut self, resp: &HttpResponse, out: &mut OutQueue) {
        out.push_bytes(resp.to_bytes());
        self.answered += 1;
        self.state = State::Done;
    }

    /// Hands the connection to another protocol after an `Upgrade` event: the bytes the
    /// client sent after the request head (its first frames, perhaps). The machine is
    /// done.
    pub fn take_upgrade(&mut self) -> Vec<u8> {
        self.state = State::Done;
        std::mem::take(&mut self.buf)
    }

    /// When [`Http1::handle_timeout`] must next be called.
    pub fn poll_timeout(&self, cfg: &Http1Config) -> Option<Tick> {
        match self.state {
            State::Head if self.buf.is_empty() && self.answered > 0 => {
                Some(self.since.saturating_add(cfg.keepalive_timeout))
            }
            State::Head | State::Body(_) => Some(self.since.saturating_add(cfg.request_timeout)),
            State::Responding { .. } | State::Upgrading | State::Done => None,
        }
    }

    /// Checks the request and keep-alive timeouts at `now`.
    pub fn handle_timeout(&mut self, now: Tick, cfg: &Http1Config) -> Option<HttpEvent> {
        let due = self.poll_timeout(cfg)?;
        if now < due {
            return None;
        }
        let idle = self.is_idle() && self.answered > 0;
        self.state = State::Done;
        self.buf = Vec::new();
        Some(if idle {
            HttpEvent::KeepAliveTimeout
        } else {
            HttpEvent::RequestTimeout
        })
    }
}

/// Moves body bytes from `buf` into the request: whether the body is complete.
fn read_body(body: &mut BodyState, buf: &mut Vec<u8>) -> Result<bool, HandshakeError> {
    match &mut body.framing {
        Framing::Length(need) => {
            let take = (*need - body.request.body.len()).min(buf.len());
            body.request.body.extend_from_slice(&buf[..take]);
            buf.drain(..take);
            Ok(body.request.body.len() == *need)
        }
        Framing::Chunked(dec) => {
            let mut input = &buf[..];
            let done = dec.decode(&mut input, &mut body.request.body)?;
            let used = buf.len() - input.len();
            buf.drain(..used);
            Ok(done)
        }
    }
}
