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
//!   The answer comes at once ([`Http1::respond`]), or later: the caller *parks* the
//!   request ([`Http1::park`]) and answers when the application does, or when
//!   `response_timeout` passes ([`HttpEvent::ResponseTimeout`]). Next: `Head` (kept
//!   alive), `Streaming`, or `Done`.
//! - `Streaming`: the head went out without a length ([`Http1::start_stream`]); chunks
//!   follow ([`Http1::send_chunk`]) until [`Http1::finish_stream`]. HTTP/1.1 streams are
//!   chunked and the connection stays open after them; HTTP/1.0 streams end when the
//!   connection closes. Next: `Head` or `Done`.
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
    /// How long a parked request may wait for the application's answer.
    pub response_timeout: Tick,
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
    /// A parked request got no answer within `response_timeout`; the caller answers it
    /// (504, say) with [`Http1::respond`].
    ResponseTimeout,
}

enum State {
    Head,
    Body(Box<BodyState>),
    Responding {
        keep_alive: bool,
        head_only: bool,
        /// When the request was parked, if it was.
        parked: Option<Tick>,
    },
    Streaming {
        keep_alive: bool,
        head_only: bool,
        /// Chunked (HTTP/1.1); otherwise the body ends with the connection.
        chunked: bool,
    },
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
    /// The minor HTTP version of the request being answered.
    version: u8,
    /// Bytes were dropped behind a pending answer: close after it.
    overflow: bool,
    /// Set while a parked request's answer is pending; raised when the exchange ends.
    watch: Option<AnswerWatch>,
}

/// Tells the holder of a deferred answer when the exchange it answers is over — the
/// answer is complete, or the connection is gone — by raising a shared flag when dropped.
/// A SockJS session uses it to see that its streaming receiver has left.
#[derive(Debug)]
pub struct AnswerWatch(pub std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for AnswerWatch {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// The most bytes buffered behind an answer that is not given yet: a whole request of
/// the largest size, twice.
fn pipeline_limit(cfg: &Http1Config) -> usize {
    2 * (cfg.limits.max_handshake_bytes + cfg.max_body_bytes)
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
            version: 1,
            overflow: false,
            watch: None,
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
            if self.is_waiting() && self.buf.len() + input.len() > pipeline_limit(cfg) {
                // A client that pipelines without end behind a parked answer: what does
                // not fit is dropped, and the connection closes after the answer.
                self.overflow = true;
            } else {
                self.buf.extend_from_slice(input);
            }
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
                State::Responding { .. }
                | State::Streaming { .. }
                | State::Upgrading
                | State::Done => return None,
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
            parked: None,
        };
        self.version = request.version;
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
        let Some((keep_alive, head_only)) = self.waiting(close) else {
            return;
        };
        out.push_bytes(resp.encode(keep_alive, head_only));
        self.done_answering(keep_alive, now);
    }

    /// For the request waiting for its answer: whether the connection may stay open after
    /// it (the client's wish, the caller's `close`, and no overflow) and whether it is a
    /// `HEAD`. `None` if no request is waiting.
    fn waiting(&self, close: bool) -> Option<(bool, bool)> {
        match self.state {
            State::Responding {
                keep_alive,
                head_only,
                ..
            } => Some((keep_alive && !close && !self.overflow, head_only)),
            _ => None,
        }
    }

    /// One more request answered: on to the next (kept alive) or done.
    fn done_answering(&mut self, keep_alive: bool, now: Tick) {
        self.answered += 1;
        self.watch = None;
        if keep_alive {
            self.state = State::Head;
            self.since = now;
        } else {
            self.state = State::Done;
        }
    }

    /// Leaves the request last handed out waiting for an answer that will come later
    /// (from another thread, through the caller): [`Http1::respond`] or
    /// [`Http1::start_stream`] then, or [`HttpEvent::ResponseTimeout`] after
    /// `response_timeout`.
    pub fn park(&mut self, now: Tick, watch: Option<AnswerWatch>) {
        if let State::Responding { parked, .. } = &mut self.state {
            *parked = Some(now);
            self.watch = watch;
        }
    }

    /// Whether a request is waiting for the application's answer (handed out, or
    /// parked), so an answer may be given now.
    pub fn is_responding(&self) -> bool {
        matches!(self.state, State::Responding { .. })
    }

    /// Whether an answer (parked, or streaming) is pending.
    fn is_waiting(&self) -> bool {
        matches!(
            self.state,
            State::Responding { .. } | State::Streaming { .. }
        )
    }

    /// Whether a streamed answer is in progress.
    pub fn is_streaming(&self) -> bool {
        matches!(self.state, State::Streaming { .. })
    }

    /// Starts a streamed answer to the waiting request: the head of `resp` (its body is
    /// ignored) without a length, chunked for HTTP/1.1, close-delimited for HTTP/1.0.
    pub fn start_stream(&mut self, resp: &HttpResponse, close: bool, out: &mut OutQueue) {
        let Some((keep_alive, head_only)) = self.waiting(close) else {
            return;
        };
        let chunked = self.version >= 1;
        // A close-delimited (HTTP/1.0) body can only end by closing.
        let keep_alive = keep_alive && chunked;
        out.push_bytes(resp.encode_stream_head(chunked, keep_alive));
        self.state = State::Streaming {
            keep_alive,
            head_only,
            chunked,
        };
    }

    /// Sends one piece of a streamed answer (nothing for an empty piece, which in
    /// chunked coding would end the body).
    pub fn send_chunk(&mut self, bytes: &[u8], out: &mut OutQueue) {
        let State::Streaming {
            head_only: false,
            chunked,
            ..
        } = self.state
        else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        if chunked {
            let mut piece = format!("{:x}\r\n", bytes.len()).into_bytes();
            piece.extend_from_slice(bytes);
            piece.extend_from_slice(b"\r\n");
            out.push_bytes(piece);
        } else {
            out.push_bytes(bytes.to_vec());
        }
    }

    /// Ends a streamed answer: the connection goes on to the next request, or (HTTP/1.0,
    /// or asked to close) the machine is done.
    pub fn finish_stream(&mut self, now: Tick, out: &mut OutQueue) {
        let State::Streaming {
            keep_alive,
            head_only,
            chunked,
        } = self.state
        else {
            return;
        };
        if chunked && !head_only {
            out.push_bytes(b"0\r\n\r\n".to_vec());
        }
        self.done_answering(keep_alive, now);
    }

    /// Answers with `resp` and closes: for an upgrade the caller refused, a path with
    /// no route, or a request the server will not serve.
    pub fn reject(&mut self, resp: &HttpResponse, out: &mut OutQueue) {
        out.push_bytes(resp.to_bytes());
        self.answered += 1;
        self.watch = None;
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
            State::Responding {
                parked: Some(at), ..
            } => Some(at.saturating_add(cfg.response_timeout)),
            State::Responding { .. } | State::Streaming { .. } | State::Upgrading | State::Done => {
                None
            }
        }
    }

    /// Checks the request and keep-alive timeouts at `now`.
    pub fn handle_timeout(&mut self, now: Tick, cfg: &Http1Config) -> Option<HttpEvent> {
        let due = self.poll_timeout(cfg)?;
        if now < due {
            return None;
        }
        if let State::Responding { parked, .. } = &mut self.state {
            // The caller answers; the request is no longer parked.
            *parked = None;
            return Some(HttpEvent::ResponseTimeout);
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
