//! The chat node's own counters, served after the engine's on `/metrics`: logins by
//! outcome, messages in by type, deliveries out, and sessions and users online.
//!
//! Owns the counters and their Prometheus text. Counting is a relaxed atomic add on the
//! worker that saw the event; nothing here blocks or allocates on the message path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use super::registry::Registry;

/// Why a login was refused, as a metric label.
pub(crate) const AUTH_FAILURE_LABELS: [&str; 5] = [
    "missing",
    "expired",
    "bad_signature",
    "malformed",
    "session_limit",
];

/// Client message types, as metric labels (`invalid`: could not be parsed).
pub(crate) const MESSAGE_LABELS: [&str; 10] = [
    "AUTH_REQUEST",
    "ACK_REQUEST",
    "PULL_REQUEST",
    "SEND_TO_ONE_REQUEST",
    "SEND_TO_ALL_REQUEST",
    "SUBSCRIBE_REQUEST",
    "UNSUBSCRIBE_REQUEST",
    "SEND_TO_CHANNEL_REQUEST",
    "PING",
    "invalid",
];

/// The chat node's counters.
#[derive(Debug, Default)]
pub struct ChatMetrics {
    auth_ok: AtomicU64,
    auth_failed: [AtomicU64; AUTH_FAILURE_LABELS.len()],
    messages_in: [AtomicU64; MESSAGE_LABELS.len()],
    deliveries_out: AtomicU64,
    /// The durable store's counters.
    pub durable: std::sync::Arc<DurableMetrics>,
}

/// Upper bounds (µs) of the commit latency histogram's buckets.
const COMMIT_BUCKETS_US: [u64; 11] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

/// The durable store's counters: what was stored, delivered, acknowledged, resent and
/// pulled, and how the group commits go.
#[derive(Debug, Default)]
pub struct DurableMetrics {
    pub(crate) stored: AtomicU64,
    pub(crate) store_failed: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) resent: AtomicU64,
    pub(crate) left_for_pull: AtomicU64,
    pub(crate) pulled: AtomicU64,
    pub(crate) queue_depth: AtomicU64,
    pub(crate) long_polls_parked: AtomicU64,
    pub(crate) commits: AtomicU64,
    pub(crate) commit_batch_sum: AtomicU64,
    commit_us_sum: AtomicU64,
    commit_buckets: [AtomicU64; COMMIT_BUCKETS_US.len()],
}

impl DurableMetrics {
    pub(crate) fn add(a: &AtomicU64, n: u64) {
        a.fetch_add(n, Ordering::Relaxed);
    }

    /// Records one group commit of `batch` messages that took `us` microseconds.
    pub(crate) fn commit(&self, batch: usize, us: u64) {
        Self::add(&self.commits, 1);
        Self::add(&self.commit_batch_sum, batch as u64);
        Self::add(&self.commit_us_sum, us);
        if let Some(i) = COMMIT_BUCKETS_US.iter().position(|b| us <= *b) {
            Self::add(&self.commit_buckets[i], 1);
        }
    }

    fn to_prometheus(&self, out: &mut String) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        for (name, kind, help, v) in [
            (
                "stored_total",
                "counter",
                "Messages committed to the store.",
                &self.stored,
            ),
            (
                "store_failed_total",
                "counter",
                "Messages the store could not keep (answered with code 7).",
                &self.store_failed,
            ),
            (
                "durable_delivered_total",
                "counter",
                "Stored messages pushed to sessions, resends excluded.",
                &self.delivered,
            ),
            (
                "acked_total",
                "counter",
                "Messages acknowledged by sessions.",
                &self.acked,
            ),
            (
                "resent_total",
                "counter",
                "Pushes repeated after ack_timeout.",
                &self.resent,
            ),
            (
                "left_for_pull_total",
                "counter",
                "Messages no longer resent (max_attempts or max_unacked); they stay pullable.",
                &self.left_for_pull,
            ),
            (
                "pulled_total",
                "counter",
                "Messages returned by replays, PULL_REQUEST and long polls.",
                &self.pulled,
            ),
            (
                "store_queue_depth",
                "gauge",
                "Operations waiting for the store thread.",
                &self.queue_depth,
            ),
            (
                "long_polls_parked",
                "gauge",
                "Long-poll requests waiting for a message.",
                &self.long_polls_parked,
            ),
            (
                "store_commit_messages_total",
                "counter",
                "Messages in group commits (divide by the histogram's count for the batch size).",
                &self.commit_batch_sum,
            ),
        ] {
            let _ = writeln!(out, "# HELP switchboard_chat_{name} {help}");
            let _ = writeln!(out, "# TYPE switchboard_chat_{name} {kind}");
            let _ = writeln!(out, "switchboard_chat_{name} {}", get(v));
        }
        let name = "switchboard_chat_store_commit_seconds";
        let _ = writeln!(out, "# HELP {name} Time to commit one group of messages.");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, n) in COMMIT_BUCKETS_US.iter().zip(&self.commit_buckets) {
            cumulative += get(n);
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {cumulative}",
                *b as f64 / 1e6
            );
        }
        let count = get(&self.commits);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", get(&self.commit_us_sum) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

impl ChatMetrics {
    pub(crate) fn auth_ok(&self) {
        self.auth_ok.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refused login; `reason` is one of [`AUTH_FAILURE_LABELS`].
    pub(crate) fn auth_failed(&self, reason: &str) {
        if let Some(i) = AUTH_FAILURE_LABELS.iter().position(|l| *l == reason) {
            self.auth_failed[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a message in; `kind` is one of [`MESSAGE_LABELS`].
    pub(crate) fn message_in(&self, kind: &str) {
        let i = MESSAGE_LABELS
            .iter()
            .position(|l| *l == kind)
            .unwrap_or(MESSAGE_LABELS.len() - 1);
        self.messages_in[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts messages handed to the hub for `n` sessions.
    pub(crate) fn delivered(&self, n: usize) {
        self.deliveries_out.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The counters and the registry's gauges in the Prometheus text format.
    pub fn to_prometheus(&self, registry: &Registry) -> String {
        let mut out = String::new();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(out, "# HELP switchboard_chat_auth_total Logins by outcome.");
        let _ = writeln!(out, "# TYPE switchboard_chat_auth_total counter");
        let _ = writeln!(
            out,
            "switchboard_chat_auth_total{{result=\"ok\"}} {}",
            get(&self.auth_ok)
        );
        for (label, v) in AUTH_FAILURE_LABELS.iter().zip(&self.auth_failed) {
            let _ = writeln!(
                out,
                "switchboard_chat_auth_total{{result=\"refused\",reason=\"{label}\"}} {}",
                get(v)
            );
        }
        let _ = writeln!(
            out,
            "# HELP switchboard_chat_messages_in_total Client messages by type."
        );
        let _ = writeln!(out, "# TYPE switchboard_chat_messages_in_total counter");
        for (label, v) in MESSAGE_LABELS.iter().zip(&self.messages_in) {
            let _ = writeln!(
                out,
                "switchboard_chat_messages_in_total{{type=\"{label}\"}} {}",
                get(v)
            );
        }
        let (users, sessions, _) = registry.counts();
        for (name, kind, help, value) in [
            (
                "deliveries_out_total",
                "counter",
                "Messages handed out for delivery, one per recipient session.",
                get(&self.deliveries_out),
            ),
            (
                "sessions_online",
                "gauge",
                "Authenticated sessions.",
                sessions as u64,
            ),
            (
                "users_online",
                "gauge",
                "Users with at least one session.",
                users as u64,
            ),
        ] {
            let _ = writeln!(out, "# HELP switchboard_chat_{name} {help}");
            let _ = writeln!(out, "# TYPE switchboard_chat_{name} {kind}");
            let _ = writeln!(out, "switchboard_chat_{name} {value}");
        }
        self.durable.to_prometheus(&mut out);
        out
    }
}
