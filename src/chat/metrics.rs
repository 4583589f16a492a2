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
pub(crate) const MESSAGE_LABELS: [&str; 8] = [
    "AUTH_REQUEST",
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
        out
    }
}
