//! The durable store's seam: numbered message streams — one per user (what the chat node
//! keeps for users who may be offline, with each user's acknowledged position) and one
//! per channel (a bounded history, recovered on resubscribe) — and the one implementation
//! built so far, SQLite ([`SqliteStore`]).
//!
//! Owns the trait, its data types and errors. A store is driven by one thread (the
//! store thread in `durable.rs`), so implementations need `Send` but not `Sync`, and
//! may batch: [`Store::append`] takes a whole group and commits it at once. Nothing here
//! knows about sessions, sockets or the hub.

mod sqlite;

pub use sqlite::{SqliteStore, Sync};

/// The stream of a user's messages.
pub fn user_stream(user: &str) -> String {
    format!("u:{user}")
}

/// The history of a channel.
pub fn channel_stream(channel: &str) -> String {
    format!("c:{channel}")
}

/// The channel name of messages to everyone, reserved: `*`.
pub const EVERYONE: &str = "*";

/// A message to keep in one stream, before it has a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The stream ([`user_stream`] or [`channel_stream`]).
    pub stream: String,
    /// The wire type its recipients see (`SEND_TO_USER_REQUEST`, or a push API type).
    pub kind: String,
    /// The delivery's body, a JSON object as text, without `seq`.
    pub body: String,
    /// When it was accepted, in milliseconds since the Unix epoch (for retention by age).
    pub created_ms: i64,
}

/// A message as stored: its user's sequence number and what to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The user's sequence number, from 1, never reused.
    pub seq: u64,
    /// The wire type.
    pub kind: String,
    /// The body, a JSON object as text, without `seq`.
    pub body: String,
}

/// Where a user's history stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    /// The last sequence number given out (0: none yet).
    pub last_seq: u64,
    /// The oldest sequence number still kept (`last_seq + 1` when nothing is kept).
    pub first_kept: u64,
    /// How far the user has acknowledged or pulled (cumulative).
    pub acked: u64,
}

/// What went wrong in a store. The node answers the messages concerned with a non-zero
/// code and goes on; only [`StoreError::Open`] stops start-up.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or is not one this version can use.
    #[error("cannot open the store at {path}: {reason}")]
    Open {
        /// The database path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A read or a write failed (disk full, read-only file, I/O error).
    #[error("store error: {0}")]
    Db(String),
}

/// A durable per-user message store.
pub trait Store: Send {
    /// Numbers and keeps every message of `batch` in one commit, in order; the numbers
    /// are returned in the same order. All or nothing: on error none is kept.
    fn append(&mut self, batch: &[NewMessage]) -> Result<Vec<u64>, StoreError>;

    /// Up to `limit` messages of `user` with a number above `after`, oldest first.
    fn since(&mut self, user: &str, after: u64, limit: usize) -> Result<Vec<Stored>, StoreError>;

    /// Where `user`'s history stands.
    fn head(&mut self, user: &str) -> Result<Head, StoreError>;

    /// Records, for each `(user, seq)`, that the user has everything up to `seq` (a
    /// cursor never moves backwards, nor past the user's last number). One commit.
    fn ack(&mut self, acks: &[(&str, u64)]) -> Result<(), StoreError>;

    /// The store's epoch: it changes when the history is lost or reset (a new database),
    /// so a client never trusts numbers from another history.
    fn epoch(&self) -> &str;

    /// Drops messages older than `max_age_ms` (at `now_ms`, 0: no age limit) and all
    /// but the newest `keep(stream)` of each stream (0: no count limit). Returns how many
    /// were dropped.
    fn prune(
        &mut self,
        now_ms: i64,
        max_age_ms: i64,
        keep: &dyn Fn(&str) -> u64,
    ) -> Result<u64, StoreError>;
}

/// The text a recipient gets for a stored message: `{"body":{…,"seq":N},"type":"…"}`.
/// `body` is an object written by the node, so the number goes in before its last `}`.
pub fn delivery_text(kind: &str, body: &str, seq: u64) -> String {
    let inner = body.trim();
    let inner = inner
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .unwrap_or("");
    let mut o = String::with_capacity(body.len() + kind.len() + 40);
    o.push_str(r#"{"body":{"#);
    if !inner.trim().is_empty() {
        o.push_str(inner);
        o.push(',');
    }
    o.push_str(r#""seq":"#);
    o.push_str(&seq.to_string());
    o.push_str(r#"},"type":"#);
    o.push_str(&serde_json::Value::String(kind.to_owned()).to_string());
    o.push('}');
    o
}

#[cfg(test)]
mod tests {
    use super::delivery_text;

    #[test]
    fn the_number_goes_into_the_body() {
        let t = delivery_text(
            "SEND_TO_USER_REQUEST",
            r#"{"content":{"a":1},"msgId":"m"}"#,
            7,
        );
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        assert_eq!(v["body"]["seq"], 7);
        assert_eq!(v["body"]["content"]["a"], 1);
        assert_eq!(v["type"], "SEND_TO_USER_REQUEST");
        let e = delivery_text("NOTICE", "{ }", 1);
        assert_eq!(e, r#"{"body":{"seq":1},"type":"NOTICE"}"#);
    }
}
