//! Counters: one set per worker, written only by that worker, merged into one snapshot
//! on demand, and rendered in the Prometheus text format.
//!
//! Owns the counter names and their rendering. Workers increment with relaxed atomics
//! (each counter has a single writer); readers on other threads see values that may lag
//! by a few events, which is what a metrics scrape needs.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a handshake failed, for the `handshake_failures` counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// 400: malformed request or headers.
    BadRequest = 0,
    /// 403: origin not allowed, or the handler refused.
    Forbidden,
    /// 404: no route.
    NotFound,
    /// 426: wrong WebSocket version.
    UpgradeRequired,
    /// 431: request head too large.
    TooLarge,
    /// 503: connection limit reached or shutting down.
    Unavailable,
    /// Rejected by the route's handler with some other status.
    Rejected,
    /// No complete request within the handshake timeout.
    Timeout,
}

const FAILURE_LABELS: [&str; 8] = [
    "bad_request",
    "forbidden",
    "not_found",
    "upgrade_required",
    "too_large",
    "unavailable",
    "rejected",
    "timeout",
];

impl HandshakeFailure {
    /// The failure for an HTTP status the server answered a handshake with.
    pub fn from_status(status: u16) -> Self {
        match status {
            400 => HandshakeFailure::BadRequest,
            403 => HandshakeFailure::Forbidden,
            404 => HandshakeFailure::NotFound,
            426 => HandshakeFailure::UpgradeRequired,
            431 => HandshakeFailure::TooLarge,
            503 => HandshakeFailure::Unavailable,
            _ => HandshakeFailure::Rejected,
        }
    }
}

/// One worker's counters.
#[derive(Debug, Default)]
pub(crate) struct WorkerMetrics {
    pub(crate) connections_open: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) frames_in: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) handshake_failures: [AtomicU64; 8],
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) slow_consumer_closes: AtomicU64,
    pub(crate) idle_timeouts: AtomicU64,
    pub(crate) dropped_slow: AtomicU64,
    pub(crate) dropped_stale: AtomicU64,
    pub(crate) deflate_sessions: AtomicU64,
    pub(crate) tls_handshakes: AtomicU64,
    pub(crate) tls_failures: AtomicU64,
    pub(crate) tls_plain_http: AtomicU64,
}

/// Adds to a counter. Each worker's counters have exactly one writer (the worker), so a
/// plain load and store suffice: no locked read-modify-write on the hot path, and readers
/// on other threads still see whole values.
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl WorkerMetrics {
    pub(crate) fn handshake_failed(&self, why: HandshakeFailure) {
        bump(&self.handshake_failures[why as usize], 1);
    }

    fn add_to(&self, s: &mut MetricsSnapshot) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        s.connections_open += get(&self.connections_open);
        s.connections_total += get(&self.connections_total);
        s.frames_in += get(&self.frames_in);
        s.frames_out += get(&self.frames_out);
        s.bytes_in += get(&self.bytes_in);
        s.bytes_out += get(&self.bytes_out);
        for (i, c) in self.handshake_failures.iter().enumerate() {
            s.handshake_failures[i] += get(c);
        }
        s.protocol_errors += get(&self.protocol_errors);
        s.slow_consumer_closes += get(&self.slow_consumer_closes);
        s.idle_timeouts += get(&self.idle_timeouts);
        s.dropped_slow_consumer += get(&self.dropped_slow);
        s.dropped_stale_id += get(&self.dropped_stale);
        s.deflate_sessions += get(&self.deflate_sessions);
        s.tls_handshakes += get(&self.tls_handshakes);
        s.tls_handshake_failures += get(&self.tls_failures);
        s.tls_plain_http += get(&self.tls_plain_http);
    }
}

/// All workers' counters added up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Connections currently held (handshaking, open or closing).
    pub connections_open: u64,
    /// Connections accepted since start.
    pub connections_total: u64,
    /// Data messages received (whole messages, after reassembly).
    pub frames_in: u64,
    /// Frames queued for sending: data, close and heartbeat pings. Pongs are queued by the
    /// WebSocket machine itself and not counted.
    pub frames_out: u64,
    /// Bytes read from sockets.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Failed handshakes, indexed by [`HandshakeFailure`].
    pub handshake_failures: [u64; 8],
    /// Connections failed for breaking RFC 6455 (close 1002, 1007, 1009).
    pub protocol_errors: u64,
    /// Connections closed because their outbound queue was full (policy `close`).
    pub slow_consumer_closes: u64,
    /// Connections closed for sending nothing within `idle_timeout_ms`.
    pub idle_timeouts: u64,
    /// Messages not queued because the recipient's queue was full (policy `drop`).
    pub dropped_slow_consumer: u64,
    /// Messages addressed to a connection id that no longer exists.
    pub dropped_stale_id: u64,
    /// WebSocket connections that agreed to permessage-deflate.
    pub deflate_sessions: u64,
    /// TLS handshakes completed.
    pub tls_handshakes: u64,
    /// TLS connections that failed before or during the handshake (a broken or
    /// refused handshake, a client that is not speaking TLS), plain HTTP included.
    pub tls_handshake_failures: u64,
    /// Of those, clients that sent plain HTTP to a TLS port (answered 400).
    pub tls_plain_http: u64,
}

impl MetricsSnapshot {
    pub(crate) fn collect(workers: &[std::sync::Arc<WorkerMetrics>]) -> Self {
        let mut s = MetricsSnapshot::default();
        for w in workers {
            w.add_to(&mut s);
        }
        s
    }

    /// Failed handshakes for one reason.
    pub fn handshake_failures_for(&self, why: HandshakeFailure) -> u64 {
        self.handshake_failures[why as usize]
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP switchboard_{name} {help}");
            let _ = writeln!(out, "# TYPE switchboard_{name} {kind}");
            let _ = writeln!(out, "switchboard_{name} {value}");
        };
        metric(
            "connections_open",
            "gauge",
            "Connections currently held.",
            self.connections_open,
        );
        metric(
            "connections_total",
            "counter",
            "Connections accepted.",
            self.connections_total,
        );
        metric(
            "messages_in_total",
            "counter",
            "Data messages received.",
            self.frames_in,
        );
        metric(
            "frames_out_total",
            "counter",
            "Data, close and ping frames queued for sending (pongs are not counted).",
            self.frames_out,
        );
        metric(
            "bytes_in_total",
            "counter",
            "Bytes read from sockets.",
            self.bytes_in,
        );
        metric(
            "bytes_out_total",
            "counter",
            "Bytes written to sockets.",
            self.bytes_out,
        );
        metric(
            "protocol_errors_total",
            "counter",
            "Connections failed for protocol errors.",
            self.protocol_errors,
        );
        metric(
            "slow_consumer_closes_total",
            "counter",
            "Connections closed for a full outbound queue.",
            self.slow_consumer_closes,
        );
        metric(
            "idle_timeouts_total",
            "counter",
            "Connections closed for idleness.",
            self.idle_timeouts,
        );
        metric(
            "dropped_messages_total",
            "counter",
            "Messages dropped: recipient queue full (policy drop).",
            self.dropped_slow_consumer,
        );
        metric(
            "stale_id_drops_total",
            "counter",
            "Messages for connection ids that no longer exist.",
            self.dropped_stale_id,
        );
        metric(
            "deflate_sessions_total",
            "counter",
            "WebSocket connections that agreed to permessage-deflate.",
            self.deflate_sessions,
        );
        metric(
            "tls_handshakes_total",
            "counter",
            "TLS handshakes completed.",
            self.tls_handshakes,
        );
        metric(
            "tls_handshake_failures_total",
            "counter",
            "TLS connections that failed before the handshake completed.",
            self.tls_handshake_failures,
        );
        metric(
            "tls_plain_http_total",
            "counter",
            "Plain HTTP requests sent to a TLS port (answered 400).",
            self.tls_plain_http,
        );
        let _ = writeln!(
            out,
            "# HELP switchboard_handshake_failures_total Failed handshakes by reason."
        );

        let _ = writeln!(out, "# TYPE switchboard_handshake_failures_total counter");
        for (label, value) in FAILURE_LABELS.iter().zip(self.handshake_failures) {
            let _ = writeln!(
                out,
                "switchboard_handshake_failures_total{{reason=\"{label}\"}} {value}"
            );
        }
        out
    }
}
