//! Server configuration: every limit and timeout in one place, with its default.
//!
//! Owns the `Config` struct, its defaults and loading it from a TOML file. It does not
//! apply anything; the server and reactor read it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::http::{HttpLimits, UpgradePolicy};
use crate::ws::deflate::DeflateConfig;
use crate::ws::DecoderLimits;

/// Server configuration. Every field has a default; a TOML file may set any subset
/// (`switchboard echo --config switchboard.toml`). Sizes are in bytes, times in
/// milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:9001`.
    pub listen: SocketAddr,
    /// Worker threads, each with its own event loop and connections. `0` (the default)
    /// means one per available core.
    pub workers: usize,
    /// Listen backlog per worker socket. Default 1024.
    pub backlog: i32,
    /// Largest HTTP request head (request line and headers). Default 8 KiB; larger → 431.
    pub max_handshake_bytes: usize,
    /// Most request header lines. Default 64; more → 431.
    pub max_headers: usize,
    /// Largest body of a plain HTTP request (the push API's JSON). Default 64 KiB;
    /// larger → 413.
    pub max_body_bytes: usize,
    /// A client that has not sent a whole request (head and body: a handshake, or a
    /// plain HTTP request) within this time of its first byte — of the connection's start
    /// for the first request — is disconnected. Default 10 s.
    pub handshake_timeout_ms: u64,
    /// How long a deferred HTTP answer (`http_route_deferred`) may take before the
    /// server answers 504 instead. Default 30 s.
    pub http_response_timeout_ms: u64,
    /// How long an HTTP connection is kept open, idle, for its next request after a
    /// response (keep-alive). 0: close after every response. Default 60 s.
    pub keepalive_timeout_ms: u64,
    /// Largest frame payload. Default 16 MiB; larger → close 1009.
    pub max_frame_size: usize,
    /// Largest message after reassembly. Default 64 MiB; larger → close 1009.
    pub max_message_size: usize,
    /// When more than this many bytes wait to be written to a connection, the server stops
    /// reading from it until half have drained, so a client that sends without reading
    /// cannot grow the server's memory. Default 256 KiB.
    pub write_high_water: usize,
    /// Most bytes queued for one connection before a new message meets the
    /// `slow_consumer` policy. A message is always queued while the queue is under the
    /// limit, so one connection holds at most this plus one message. Default 1 MiB.
    pub max_queued_bytes: usize,
    /// What happens to a message for a connection whose queue is full: `close` (the
    /// default) drops what is queued and closes with 1008; `drop` discards the message
    /// and counts it.
    pub slow_consumer: SlowConsumerPolicy,
    /// Send a ping after this long without hearing from a client. Default 30 s; 0 turns
    /// pings off.
    pub heartbeat_interval_ms: u64,
    /// Close (1001) a connection that has sent nothing, pongs included, for this long.
    /// Default 75 s (two missed heartbeats and a margin); 0 turns it off.
    pub idle_timeout_ms: u64,
    /// Most connections the server holds; handshakes beyond it get 503. Default 100,000.
    pub max_connections: usize,
    /// Most connections from one client IP; handshakes beyond it get 503. Default 0
    /// (no limit).
    pub max_connections_per_ip: usize,
    /// Addresses of reverse proxies (nginx, a load balancer) whose `X-Forwarded-For`
    /// (its last entry) or `X-Real-IP` header is believed: for a handshake from one of
    /// them, that header gives the client address used by `max_connections_per_ip`,
    /// `Context::remote_ip` and the logs. From any other address the headers are
    /// ignored, since a client could write them. Default: none.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// After a close frame is sent (or an HTTP error answered), how long to wait for the
    /// peer to close TCP before dropping it. Default 5 s.
    pub close_timeout_ms: u64,
    /// On shutdown, how long to wait for clients to answer close 1001. Default 5 s.
    pub shutdown_timeout_ms: u64,
    /// Allowed `Origin` values; empty (the default) allows any. Requests without `Origin`
    /// (non-browser clients) are allowed.
    pub allowed_origins: Vec<String>,
    /// Subprotocols the server speaks, in order of preference. Default none.
    pub subprotocols: Vec<String>,
    /// Size of each worker's read buffer. Default 64 KiB.
    pub read_buffer_size: usize,
    /// `[deflate]`: permessage-deflate (RFC 7692). Off by default.
    pub deflate: DeflateConfig,
    /// `[tls]`: serve `wss://` and `https://` (rustls). Absent by default.
    pub tls: Option<TlsConfig>,
    /// `[[raw]]`: raw TCP listeners, each serving a WebSocket route's handler to clients
    /// that send lines or length-prefixed messages instead of WebSocket frames. None by
    /// default.
    pub raw: Vec<RawListenerConfig>,
}

/// `[[raw]]`: a raw TCP listener. Its connections are open at once (no handshake): the
/// route's handler gets `on_open` with a request for `route` and no headers, then every
/// message, exactly as for a WebSocket on that route. Limits, idle timeout and slow
/// consumer policy are the WebSocket ones; there are no pings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListenerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The WebSocket route whose handler serves these connections (`/ws`, say).
    pub route: String,
    /// `line` (one message per line, the default) or `length_prefix` (a 4-byte
    /// big-endian length before each message).
    #[serde(default)]
    pub framing: crate::rawframe::RawFraming,
    /// Speak TLS with the `[tls]` certificate.
    #[serde(default)]
    pub tls: bool,
    /// Largest message; a longer one closes the connection (1009, after the handler's
    /// [`crate::Handler::close_notice`]). 0 (the default): `max_message_size`.
    #[serde(default)]
    pub max_message_size: usize,
}

/// `[tls]`: the certificate and key a TLS listener serves.
///
/// Without `listen`, the main listener (`listen` above) speaks TLS; with it, the main
/// listener stays plain and this address speaks TLS, both serving the same routes.
/// `SIGHUP` (or [`crate::ServerHandle::tls_reloader`]) reads the files again for new
/// connections; open ones keep their sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, the server's certificate first.
    pub cert: std::path::PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: std::path::PathBuf,
    /// A second address that speaks TLS beside the plain `listen`.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        let dec = DecoderLimits::default();
        let http = HttpLimits::default();
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 9001)),
            workers: 0,
            backlog: 1024,
            max_handshake_bytes: http.max_handshake_bytes,
            max_headers: http.max_headers,
            max_body_bytes: 64 * 1024,
            handshake_timeout_ms: 10_000,
            keepalive_timeout_ms: 60_000,
            http_response_timeout_ms: 30_000,
            max_frame_size: dec.max_frame_size,
            max_message_size: dec.max_message_size,
            write_high_water: 256 * 1024,
            max_queued_bytes: 1 << 20,
            slow_consumer: SlowConsumerPolicy::Close,
            heartbeat_interval_ms: 30_000,
            idle_timeout_ms: 75_000,
            max_connections: 100_000,
            max_connections_per_ip: 0,
            trusted_proxies: Vec::new(),
            close_timeout_ms: 5_000,
            shutdown_timeout_ms: 5_000,
            allowed_origins: Vec::new(),
            subprotocols: Vec::new(),
            read_buffer_size: 64 * 1024,
            deflate: DeflateConfig::default(),
            tls: None,
            raw: Vec::new(),
        }
    }
}

/// What to do with a message for a connection whose outbound queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SlowConsumerPolicy {
    /// Drop what is queued and close the connection with 1008 "slow consumer".
    Close,
    /// Discard the new message and count it in `switchboard_dropped_messages_total`.
    Drop,
}

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for [`Config`].
    #[error("invalid config {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// What is wrong, with line and column.
        source: toml::de::Error,
    },
    /// A value is out of range.
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads a TOML file; fields it leaves out keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that would make the server misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        if self.workers > 1024 {
            return bad("workers must be at most 1024");
        }
        if self.max_handshake_bytes < 64 {
            return bad("max_handshake_bytes must be at least 64");
        }
        if self.max_headers == 0 {
            return bad("max_headers must be at least 1");
        }
        if self.max_frame_size == 0 || self.max_message_size == 0 {
            return bad("max_frame_size and max_message_size must be positive");
        }
        // Queue lengths are kept in 32 bits (idle connections stay small): each of these
        // is capped at 1 GiB so a queue (limit plus one message) stays under 4 GiB.
        const GIB: usize = 1 << 30;
        if self.max_message_size > GIB || self.max_frame_size > GIB {
            return bad("max_message_size and max_frame_size must be at most 1 GiB");
        }
        if self.max_queued_bytes > GIB || self.write_high_water > GIB {
            return bad("max_queued_bytes and write_high_water must be at most 1 GiB");
        }
        if self.subprotocols.len() > 255 {
            return bad("at most 255 subprotocols");
        }
        if self.max_connections == 0 {
            return bad("max_connections must be at least 1");
        }
        if self.read_buffer_size < 1024 {
            return bad("read_buffer_size must be at least 1024");
        }
        if let Err(e) = self.deflate.check() {
            return Err(ConfigError::Invalid(e));
        }
        if self.tls.is_some() && self.read_buffer_size < 40 * 1024 {
            // Half of it takes TLS bytes, which must hold a whole 16 KiB record.
            return bad("read_buffer_size must be at least 40960 with [tls]");
        }
        if self.tls.is_some() && !cfg!(feature = "tls") {
            return bad("[tls] is set but this build has no TLS (cargo feature `tls`)");
        }
        if let Some(TlsConfig {
            listen: Some(addr), ..
        }) = &self.tls
        {
            if *addr == self.listen && addr.port() != 0 {
                return bad(
                    "tls.listen must differ from listen (leave it out to make listen speak TLS)",
                );
            }
        }
        for r in &self.raw {
            if r.tls && self.tls.is_none() {
                return bad("a [[raw]] listener with tls = true needs [tls]");
            }
            if !r.route.starts_with('/') {
                return bad("raw.route must be a WebSocket route's path, starting with /");
            }
        }

        Ok(())
    }

    /// The number of workers to start: `workers`, or the core count when it is 0.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    pub(crate) fn http_limits(&self) -> HttpLimits {
        HttpLimits {
            max_handshake_bytes: self.max_handshake_bytes,
            max_headers: self.max_headers,
        }
    }

    pub(crate) fn decoder_limits(&self) -> DecoderLimits {
        DecoderLimits {
            max_frame_size: self.max_frame_size,
            max_message_size: self.max_message_size,
        }
    }

    pub(crate) fn upgrade_policy(&self) -> UpgradePolicy {
        UpgradePolicy {
            allowed_origins: self.allowed_origins.clone(),
            subprotocols: self.subprotocols.clone(),
            deflate: self.deflate.clone(),
        }
    }

    pub(crate) fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    pub(crate) fn keepalive_timeout(&self) -> Duration {
        Duration::from_millis(self.keepalive_timeout_ms)
    }

    pub(crate) fn http_response_timeout(&self) -> Duration {
        Duration::from_millis(self.http_response_timeout_ms)
    }

    pub(crate) fn close_timeout(&self) -> Duration {
        Duration::from_millis(self.close_timeout_ms)
    }

    pub(crate) fn heartbeat_interval(&self) -> Option<Duration> {
        (self.heartbeat_interval_ms > 0).then(|| Duration::from_millis(self.heartbeat_interval_ms))
    }

    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        (self.idle_timeout_ms > 0).then(|| Duration::from_millis(self.idle_timeout_ms))
    }

    pub(crate) fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_file_keeps_defaults_and_unknown_fields_fail() {
        let c: Config = toml::from_str("workers = 3\nmax_frame_size = 1024\n").unwrap();
        assert_eq!(c.workers, 3);
        assert_eq!(c.max_frame_size, 1024);
        assert_eq!(c.max_handshake_bytes, 8192);
        assert!(toml::from_str::<Config>("max_frame = 1").is_err());
    }
}
