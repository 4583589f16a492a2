//! The chat node's configuration: one TOML file, every field overridable by an
//! environment variable (`SWITCHBOARD__AUTH__MODE=jwt`) or a flag (`--set auth.mode=jwt`),
//! and a commented rendering of the effective values (`switchboard config`).
//!
//! Owns the `ChatConfig` tree and its defaults; it applies nothing itself.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::config::{Config, ConfigError};

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Signed JWTs (HS256 with `jwt_secret`, or RS256/ES256 with `jwt_public_key_file`).
    Jwt,
    /// The token is the user id, as in the seeds' tutorials. For local trials only.
    Demo,
    /// Anonymous sessions; no token needed.
    None,
}

/// What to do when a user opens more than `sessions_per_user` sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionLimitPolicy {
    /// Close the user's oldest session with 4002 and accept the new one.
    CloseOldest,
    /// Refuse the new one (HTTP 409 at the handshake, close 4002 after `AUTH_REQUEST`).
    Refuse,
}

/// `[auth]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `jwt`, `demo` or `none`.
    pub mode: AuthMode,
    /// HS256 secret (jwt mode).
    pub jwt_secret: String,
    /// PEM public key file for RS256 or ES256 (jwt mode); used instead of the secret.
    pub jwt_public_key_file: String,
    /// `RS256` or `ES256` for `jwt_public_key_file`.
    pub jwt_algorithm: String,
    /// How long an unauthenticated connection may wait before `AUTH_REQUEST`, e.g.
    /// `"10s"` or `"500ms"`.
    pub timeout: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            mode: AuthMode::Demo,
            jwt_secret: String::new(),
            jwt_public_key_file: String::new(),
            jwt_algorithm: "RS256".into(),
            timeout: "10s".into(),
        }
    }
}

/// `[api]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Bearer key for `/api/v1/*`; empty disables the API (every call gets 401).
    pub key: String,
}

/// `[limits]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Sessions one user may hold at once (tabs, devices).
    pub sessions_per_user: usize,
    /// `close_oldest` or `refuse`.
    pub session_limit_policy: SessionLimitPolicy,
    /// Largest JSON message a client may send; larger gets `ERROR` code 6.
    pub max_message_bytes: usize,
    /// Bad messages (malformed, unknown type, missing field) a connection may send per
    /// minute before it is closed with 1008.
    pub bad_messages_per_minute: u32,
    /// A repeated `msgId` from the same user within this window is not delivered again.
    pub dedup_window: String,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            sessions_per_user: 16,
            session_limit_policy: SessionLimitPolicy::CloseOldest,
            max_message_bytes: 64 * 1024,
            bad_messages_per_minute: 30,
            dedup_window: "60s".into(),
        }
    }
}

/// How hard each group commit is pushed to the disk (`store.fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Synced before anyone is told a message is stored: survives power loss.
    Always,
    /// WAL without a sync per commit: survives a crash of the process; the last commits
    /// before a power failure may be lost.
    Normal,
}

/// `[store]`: the durable message store (SQLite).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Keep messages addressed to users (private messages, durable pushes) in the store,
    /// numbered per user, so offline users get them and lost pushes can be pulled.
    pub enabled: bool,
    /// The SQLite database file; its directory is created if missing.
    pub path: String,
    /// `always` or `normal` (see [`FsyncPolicy`]).
    pub fsync: FsyncPolicy,
    /// Messages kept per user; older ones are dropped in the background. 0 = no limit.
    pub max_messages_per_user: u64,
    /// Messages kept per channel (and for `*`, messages to everyone) for recovery on
    /// resubscribe. 0 = no limit.
    pub max_messages_per_channel: u64,
    /// Messages older than this are dropped in the background, e.g. `"7d"`; `"0s"` = keep.
    pub max_age: String,
    /// Largest database size in MiB; writes beyond it fail like a full disk. 0 = no cap.
    pub max_size_mb: u64,
    /// Most messages committed in one transaction.
    pub max_batch: usize,
    /// How long the store thread gathers operations after the first before it commits
    /// them together: one sync shared by more messages, for at most this much latency.
    pub commit_delay: String,
    /// Operations that may wait for the store thread; beyond, messages are refused with
    /// `SEND_RESPONSE` code 9 (HTTP 503) until it catches up.
    pub max_queue: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            enabled: true,
            path: "data/switchboard.db".into(),
            fsync: FsyncPolicy::Always,
            max_messages_per_user: 10_000,
            max_messages_per_channel: 1_000,
            max_age: "7d".into(),
            max_size_mb: 0,
            max_batch: 4096,
            commit_delay: "0ms".into(),
            max_queue: 100_000,
        }
    }
}

/// How stored messages reach a session (`delivery.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// Push; what a session does not `ACK_REQUEST` within `ack_timeout` is pushed again.
    Ack,
    /// Push once; the client pulls (`PULL_REQUEST`) what it missed.
    Pull,
}

/// `[delivery]`: acknowledgements, resends, pulls and long polls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// `ack` or `pull`.
    pub mode: DeliveryMode,
    /// Resend what a session has not acknowledged after this long (`ack` mode).
    pub ack_timeout: String,
    /// Pushes of one message to one session before it is left for pull.
    pub max_attempts: u32,
    /// Unacknowledged messages remembered per session for resending; beyond, the oldest
    /// is left for pull.
    pub max_unacked: usize,
    /// Most messages replayed when a session authenticates (more: `hasMore`, then pull).
    pub replay_limit: usize,
    /// Most messages in one `PULL_RESPONSE` or long-poll answer (larger limits are capped).
    pub pull_limit: usize,
    /// How long `GET /api/v1/messages` is held when there is nothing new.
    pub long_poll_timeout: String,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            mode: DeliveryMode::Ack,
            ack_timeout: "10s".into(),
            max_attempts: 3,
            max_unacked: 1000,
            replay_limit: 500,
            pull_limit: 500,
            long_poll_timeout: "25s".into(),
        }
    }
}

/// `[stomp]`: the STOMP 1.2 broker endpoint (Spring's `/ws` + simple broker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StompConfig {
    /// Serve STOMP over WebSocket at `path`.
    pub enabled: bool,
    /// Path of the STOMP WebSocket endpoint (must differ from `ws_path`).
    pub path: String,
    /// Broker destination prefixes (pub/sub), as in `enableSimpleBroker(...)`.
    pub broker_prefixes: Vec<String>,
    /// User destination prefix (`setUserDestinationPrefix`).
    pub user_prefix: String,
    /// Application destination prefix (`setApplicationDestinationPrefixes`).
    pub app_prefix: String,
    /// Shortest interval at which the broker sends heart-beats ("0s" = none).
    pub heartbeat_send: String,
    /// Interval at which the broker wants the client's heart-beats ("0s" = none);
    /// three missed intervals close the connection.
    pub heartbeat_receive: String,
    /// Time a connection has to send an accepted CONNECT.
    pub connect_timeout: String,
    /// Largest command line plus headers of a frame, in bytes.
    pub max_header_bytes: usize,
    /// Most headers in a frame.
    pub max_headers: usize,
    /// Largest frame body, in bytes.
    pub max_body_bytes: usize,
    /// Subscriptions one session may hold.
    pub max_subscriptions: usize,
    /// Messages waiting for ACK per session; beyond, the oldest is dropped.
    pub max_pending_acks: usize,
    /// Open transactions per session.
    pub max_transactions: usize,
    /// Frames one transaction may hold.
    pub max_transaction_frames: usize,
    /// Deliveries again of a NACKed message before it is dropped.
    pub max_redeliveries: u32,
    /// `http://host:port/path` that SENDs to `app_prefix` destinations are POSTed to
    /// (`@MessageMapping`); empty: such SENDs get an ERROR.
    pub app_backend: String,
    /// Connect, write and read timeout of one backend call.
    pub app_timeout: String,
    /// Backend calls in flight at once (one thread each).
    pub app_threads: usize,
    /// SENDs waiting for a backend thread; beyond, the sender gets an ERROR.
    pub app_max_queue: usize,
}

/// `[tls]`: serve `wss://` and `https://` (the demo page, the push API) with rustls.
/// Empty `cert` (the default): no TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// PEM certificate chain, the server's certificate first. Empty: no TLS.
    pub cert: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
    /// A second address that speaks TLS beside the plain `listen`; empty: `listen`
    /// itself speaks TLS.
    pub listen: String,
}

impl TlsSection {
    /// The engine's TLS settings, or `None` without a certificate.
    fn engine(&self) -> Result<Option<crate::TlsConfig>, ConfigError> {
        if self.cert.is_empty() {
            if !self.key.is_empty() || !self.listen.is_empty() {
                let e = "tls.key and tls.listen need tls.cert".to_owned();
                return Err(ConfigError::Invalid(e));
            }
            return Ok(None);
        }
        if self.key.is_empty() {
            return Err(ConfigError::Invalid("tls.cert needs tls.key".into()));
        }
        let listen = match self.listen.as_str() {
            "" => None,
            l => Some(l.parse().map_err(|_| {
                ConfigError::Invalid(format!("tls.listen: {l:?} is not host:port"))
            })?),
        };
        Ok(Some(crate::TlsConfig {
            cert: self.cert.clone().into(),
            key: self.key.clone().into(),
            listen,
        }))
    }
}

/// `[tcp]`: the chat protocol over raw TCP (or TLS), for devices and services that
/// cannot speak WebSocket: one JSON message per line, or a 4-byte length prefix. Same
/// auth (`AUTH_REQUEST` first), registry, delivery and limits as the WebSocket endpoint.
/// Empty `listen` (the default): off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpSection {
    /// Address of the raw TCP listener; empty: none.
    pub listen: String,
    /// `line` (one JSON message per line) or `length_prefix` (4-byte big-endian length).
    pub framing: crate::rawframe::RawFraming,
    /// Speak TLS with the `[tls]` certificate.
    pub tls: bool,
    /// Largest message; a longer one gets `ERROR` code 6 and the connection is closed.
    /// 0 (the default): `limits.max_message_bytes`.
    pub max_message_bytes: usize,
}

impl TcpSection {
    /// The engine's raw listener, or `None` when off.
    fn engine(
        &self,
        route: &str,
        limits: &LimitsConfig,
    ) -> Result<Option<crate::RawListenerConfig>, ConfigError> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        let listen = self.listen.parse().map_err(|_| {
            ConfigError::Invalid(format!("tcp.listen: {:?} is not host:port", self.listen))
        })?;
        Ok(Some(crate::RawListenerConfig {
            listen,
            route: route.to_owned(),
            framing: self.framing,
            tls: self.tls,
            max_message_size: match self.max_message_bytes {
                0 => limits.max_message_bytes,
                n => n,
            },
        }))
    }
}

/// `[sockjs]`: SockJS (protocol 0.3.3) fallback for the chat and STOMP endpoints
/// (Spring's `.withSockJS()`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SockJsSection {
    /// SockJS on the chat endpoint (`ws_path`).
    pub chat: bool,
    /// SockJS on the STOMP endpoint (`stomp.path`).
    pub stomp: bool,
    /// Offer the `websocket` transport.
    pub websocket: bool,
    /// Ask load balancers for sticky sessions (`JSESSIONID` cookie).
    pub cookie_needed: bool,
    /// Heart-beat frame interval.
    pub heartbeat: String,
    /// A session with no receiving request this long is closed.
    pub disconnect_delay: String,
    /// Bytes after which a streaming answer is ended (the client reconnects).
    pub response_limit: usize,
    /// Bytes of messages held while no request is receiving; beyond, the session closes.
    pub max_buffered_bytes: usize,
    /// Sessions open at once per endpoint; beyond, 503.
    pub max_sessions: usize,
    /// The sockjs-client script `/iframe.html` loads.
    pub client_url: String,
    /// Origins allowed to open sessions; `*` = any.
    pub allowed_origins: Vec<String>,
}

impl Default for SockJsSection {
    fn default() -> Self {
        let d = crate::sockjs::SockJsConfig::default();
        SockJsSection {
            chat: false,
            stomp: false,
            websocket: d.websocket,
            cookie_needed: d.cookie_needed,
            heartbeat: "25s".into(),
            disconnect_delay: "5s".into(),
            response_limit: d.response_limit,
            max_buffered_bytes: d.max_buffered_bytes,
            max_sessions: d.max_sessions,
            client_url: d.client_url,
            allowed_origins: d.allowed_origins,
        }
    }
}

impl SockJsSection {
    /// The endpoint settings.
    pub fn settings(&self) -> Result<crate::sockjs::SockJsConfig, ConfigError> {
        let heartbeat = parse_duration(&self.heartbeat)?;
        let disconnect_delay = parse_duration(&self.disconnect_delay)?;
        if heartbeat.is_zero() || disconnect_delay.is_zero() {
            return Err(ConfigError::Invalid(
                "sockjs.heartbeat and sockjs.disconnect_delay must be above 0".into(),
            ));
        }
        if self.response_limit == 0 || self.max_sessions == 0 {
            return Err(ConfigError::Invalid(
                "sockjs.response_limit and sockjs.max_sessions must be at least 1".into(),
            ));
        }
        Ok(crate::sockjs::SockJsConfig {
            websocket: self.websocket,
            cookie_needed: self.cookie_needed,
            heartbeat,
            disconnect_delay,
            response_limit: self.response_limit,
            max_buffered_bytes: self.max_buffered_bytes,
            max_sessions: self.max_sessions,
            client_url: self.client_url.clone(),
            allowed_origins: self.allowed_origins.clone(),
        })
    }
}

impl Default for StompConfig {
    fn default() -> Self {
        StompConfig {
            enabled: true,
            path: "/stomp".into(),
            broker_prefixes: vec!["/topic".into(), "/queue".into()],
            user_prefix: "/user".into(),
            app_prefix: "/app".into(),
            heartbeat_send: "10s".into(),
            heartbeat_receive: "10s".into(),
            connect_timeout: "10s".into(),
            max_header_bytes: 8 * 1024,
            max_headers: 64,
            max_body_bytes: 512 * 1024,
            max_subscriptions: 1000,
            max_pending_acks: 1000,
            max_transactions: 16,
            max_transaction_frames: 1000,
            max_redeliveries: 3,
            app_backend: String::new(),
            app_timeout: "5s".into(),
            app_threads: 4,
            app_max_queue: 1024,
        }
    }
}

impl StompConfig {
    /// The broker's settings.
    pub fn settings(&self) -> Result<crate::stomp::Settings, ConfigError> {
        use crate::stomp::{FrameLimits, Prefixes, SessionConfig, Settings};
        Ok(Settings {
            session: SessionConfig {
                limits: FrameLimits {
                    max_header_bytes: self.max_header_bytes,
                    max_headers: self.max_headers,
                    max_body_bytes: self.max_body_bytes,
                },
                heartbeat_send_ms: parse_duration(&self.heartbeat_send)?.as_millis() as u64,
                heartbeat_receive_ms: parse_duration(&self.heartbeat_receive)?.as_millis() as u64,
                max_subscriptions: self.max_subscriptions,
                max_pending_acks: self.max_pending_acks,
                max_transaction_frames: self.max_transaction_frames,
                max_transactions: self.max_transactions,
                max_redeliveries: self.max_redeliveries,
            },
            prefixes: Prefixes {
                broker: self.broker_prefixes.clone(),
                user: self.user_prefix.clone(),
                app: self.app_prefix.clone(),
            },
            connect_timeout: parse_duration(&self.connect_timeout)?,
            app_backend: match self.app_backend.as_str() {
                "" => None,
                url => Some(crate::stomp::BackendSettings {
                    url: url.to_string(),
                    timeout: parse_duration(&self.app_timeout)?,
                    threads: self.app_threads,
                    max_queue: self.app_max_queue,
                }),
            },
        })
    }

    fn validate(&self, ws_path: &str) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        self.settings()?;
        if !self.enabled {
            return Ok(());
        }
        if !self.path.starts_with('/') || self.path == ws_path {
            return bad(format!(
                "stomp.path {:?} must start with / and differ from ws_path",
                self.path
            ));
        }
        let prefixes = self
            .broker_prefixes
            .iter()
            .chain([&self.user_prefix, &self.app_prefix]);
        for p in prefixes {
            if !p.starts_with('/') || p.ends_with('/') || p.len() < 2 {
                return bad(format!(
                    "stomp prefix {p:?} must start with / and not end with one, e.g. \"/topic\""
                ));
            }
        }
        if self.broker_prefixes.is_empty() {
            return bad("stomp.broker_prefixes is empty".into());
        }
        if self.max_header_bytes < 64 || self.max_headers == 0 {
            return bad(
                "stomp.max_header_bytes must be at least 64 and max_headers at least 1".into(),
            );
        }
        Ok(())
    }
}

/// The chat node's configuration. `[engine]` holds the engine's own limits (see the
/// README's configuration table); `listen` here wins over `engine.listen`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Address to listen on.
    pub listen: String,
    /// Path of the WebSocket endpoint.
    pub ws_path: String,
    /// Announce each user who authenticates to everyone (`USER_JOIN_NOTICE_REQUEST`).
    pub notify_join: bool,
    /// Authentication.
    pub auth: AuthConfig,
    /// The HTTP push API.
    pub api: ApiConfig,
    /// Per-user and per-message limits.
    pub limits: LimitsConfig,
    /// The durable message store.
    pub store: StoreConfig,
    /// Acknowledgements, resends and pulls.
    pub delivery: DeliveryConfig,
    /// The STOMP broker endpoint.
    pub stomp: StompConfig,
    /// SockJS fallback for the endpoints.
    pub sockjs: SockJsSection,
    /// TLS for `listen` (or a second address).
    pub tls: TlsSection,
    /// The chat protocol over raw TCP.
    pub tcp: TcpSection,
    /// Engine settings.
    pub engine: Config,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            listen: "127.0.0.1:8080".into(),
            ws_path: "/ws".into(),
            notify_join: true,
            auth: AuthConfig::default(),
            api: ApiConfig::default(),
            limits: LimitsConfig::default(),
            store: StoreConfig::default(),
            delivery: DeliveryConfig::default(),
            stomp: StompConfig::default(),
            sockjs: SockJsSection::default(),
            tls: TlsSection::default(),
            tcp: TcpSection::default(),
            engine: Config {
                // Chat messages are small; the engine's own limit sits above the
                // protocol's (limits.max_message_bytes) so oversized JSON gets an ERROR
                // reply, not a close.
                max_message_size: 1 << 20,
                max_frame_size: 1 << 20,
                // A SockJS xhr_send carries a batch of messages: room for one of the
                // largest, JSON-escaped.
                max_body_bytes: 2 << 20,
                ..Config::default()
            },
        }
    }
}

/// Parses `"10s"`, `"500ms"`, `"2m"`, `"1h"`, `"7d"` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, ConfigError> {
    let s = s.trim();
    let bad = || ConfigError::Invalid(format!("bad duration {s:?}: use e.g. \"10s\" or \"500ms\""));
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    Ok(match unit {
        "ms" => std::time::Duration::from_millis(n),
        "s" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(n * 60),
        "h" => std::time::Duration::from_secs(n * 3600),
        "d" => std::time::Duration::from_secs(n * 86_400),
        _ => return Err(bad()),
    })
}

impl ChatConfig {
    /// Defaults, then the file (if any), then `SWITCHBOARD__SECTION__FIELD` environment
    /// variables, then `overrides` (`section.field=value`), then checks.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<ChatConfig, ConfigError> {
        let mut tree = toml::Value::try_from(ChatConfig::default())
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let file_tree: toml::Value =
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.display().to_string(),
                    source,
                })?;
            merge(&mut tree, file_tree);
        }
        for (key, value) in std::env::vars() {
            if let Some(path) = key.strip_prefix("SWITCHBOARD__") {
                let dotted = path.to_ascii_lowercase().replace("__", ".");
                set(&mut tree, &dotted, &value)?;
            }
        }
        for o in overrides {
            let (k, v) = o
                .split_once('=')
                .ok_or_else(|| ConfigError::Invalid(format!("--set {o:?}: expected key=value")))?;
            set(&mut tree, k.trim(), v.trim())?;
        }
        let config: ChatConfig = tree
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that would make the node misbehave.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad(format!("listen: {:?} is not host:port", self.listen));
        }
        if !self.ws_path.starts_with('/') {
            return bad("ws_path must start with /".into());
        }
        parse_duration(&self.auth.timeout)?;
        parse_duration(&self.limits.dedup_window)?;
        parse_duration(&self.store.max_age)?;
        parse_duration(&self.store.commit_delay)?;
        if parse_duration(&self.delivery.ack_timeout)?.is_zero() {
            return bad("delivery.ack_timeout must be above 0".into());
        }
        let poll = parse_duration(&self.delivery.long_poll_timeout)?;
        if poll.as_millis() as u64 >= self.engine.http_response_timeout_ms {
            return bad(format!(
                "delivery.long_poll_timeout ({}) must be below engine.http_response_timeout_ms ({} ms)",
                self.delivery.long_poll_timeout, self.engine.http_response_timeout_ms
            ));
        }
        if self.store.enabled && self.store.path.trim().is_empty() {
            return bad("store.path is empty (set store.enabled = false for no store)".into());
        }
        if self.store.max_batch == 0
            || self.delivery.pull_limit == 0
            || self.delivery.max_attempts == 0
        {
            return bad(
                "store.max_batch, delivery.pull_limit and delivery.max_attempts must be at least 1"
                    .into(),
            );
        }
        if self.auth.mode == AuthMode::Jwt
            && self.auth.jwt_secret.is_empty()
            && self.auth.jwt_public_key_file.is_empty()
        {
            return bad(
                "auth.mode = \"jwt\" needs auth.jwt_secret or auth.jwt_public_key_file".into(),
            );
        }
        if !["RS256", "ES256"].contains(&self.auth.jwt_algorithm.as_str()) {
            return bad("auth.jwt_algorithm must be RS256 or ES256".into());
        }
        if self.limits.sessions_per_user == 0 {
            return bad("limits.sessions_per_user must be at least 1".into());
        }
        self.stomp.validate(&self.ws_path)?;
        self.sockjs.settings()?;
        if self.sockjs.stomp && !self.stomp.enabled {
            return bad("sockjs.stomp needs stomp.enabled".into());
        }
        self.tls.engine()?;
        if self.tcp.tls && self.tls.cert.is_empty() {
            return bad("tcp.tls needs tls.cert".into());
        }
        self.tcp.engine(&self.ws_path, &self.limits)?;
        self.engine.validate()
    }

    /// The engine configuration with `listen` and `[tls]` applied.
    pub fn engine_config(&self) -> Config {
        let mut c = self.engine.clone();
        if let Ok(addr) = self.listen.parse() {
            c.listen = addr;
        }
        if let Ok(Some(tls)) = self.tls.engine() {
            c.tls = Some(tls);
        }
        if let Ok(Some(raw)) = self.tcp.engine(&self.ws_path, &self.limits) {
            c.raw.push(raw);
        }
        // The STOMP subprotocols; a chat client offers none, so it gets none.
        if self.stomp.enabled {
            for p in crate::stomp::SUBPROTOCOLS {
                if !c.subprotocols.iter().any(|s| s == p) {
                    c.subprotocols.push(p.to_owned());
                }
            }
        }
        c
    }

    /// The effective configuration as TOML with a comment on every field.
    pub fn render_commented(&self) -> String {
        let tree = toml::Value::try_from(self).unwrap_or(toml::Value::Table(Default::default()));
        let mut out = String::from(
            "# switchboard serve: effective configuration (defaults, file, environment, flags).\n\
             # Any field can be set with SWITCHBOARD__SECTION__FIELD=value or --set section.field=value.\n\n",
        );
        render_table(&tree, "", &mut out);
        out
    }
}

/// One comment per field, by dotted path.
fn comment(path: &str) -> &'static str {
    match path {
        "listen" => "address to listen on",
        "ws_path" => "path of the WebSocket endpoint",
        "notify_join" => {
            "announce each user who authenticates to everyone (USER_JOIN_NOTICE_REQUEST)"
        }
        "auth.mode" => {
            "jwt | demo (the token is the user id; local trials only) | none (anonymous)"
        }
        "auth.jwt_secret" => "HS256 secret (jwt mode)",
        "auth.jwt_public_key_file" => {
            "PEM public key for RS256/ES256 (jwt mode); used instead of the secret"
        }
        "auth.jwt_algorithm" => "RS256 or ES256, for jwt_public_key_file",
        "auth.timeout" => {
            "time an unauthenticated connection has to send AUTH_REQUEST; then close 1008"
        }
        "api.key" => "bearer key for /api/v1/*; empty disables the API (401)",
        "limits.sessions_per_user" => "sessions one user may hold at once",
        "limits.session_limit_policy" => "close_oldest (close it with 4002) | refuse",
        "limits.max_message_bytes" => {
            "largest JSON message from a client; larger gets ERROR code 6"
        }
        "limits.bad_messages_per_minute" => "bad messages per minute before close 1008",
        "limits.dedup_window" => {
            "a repeated msgId from one user within this window is not delivered twice"
        }
        "store.enabled" => {
            "keep messages to users (numbered per user) so offline users get them; false = at most once"
        }
        "store.path" => "SQLite database file (created with its directory)",
        "store.fsync" => {
            "always (synced before SEND_RESPONSE code 0; survives power loss) | normal (survives a process crash)"
        }
        "store.max_messages_per_user" => "messages kept per user; 0 = no limit",
        "store.max_messages_per_channel" => {
            "messages kept per channel (and \"*\", messages to everyone) for recovery; 0 = no limit"
        }
        "store.max_age" => "messages older than this are dropped, e.g. \"7d\"; \"0s\" = keep",
        "store.max_size_mb" => "largest database in MiB (writes beyond fail like a full disk); 0 = no cap",
        "store.max_batch" => "most messages in one group commit",
        "store.commit_delay" => "gather operations this long after the first before committing them together",
        "store.max_queue" => "operations waiting for the store; beyond, SEND_RESPONSE code 9 / HTTP 503",
        "delivery.mode" => "ack (resend what is not ACKed in ack_timeout) | pull (push once; clients pull)",
        "delivery.ack_timeout" => "resend an unacknowledged message after this long (ack mode)",
        "delivery.max_attempts" => "pushes of one message to one session before it is left for pull",
        "delivery.max_unacked" => "unacknowledged messages remembered per session",
        "delivery.replay_limit" => "most messages replayed at login (more: hasMore, then pull)",
        "delivery.pull_limit" => "most messages per PULL_RESPONSE or long-poll answer",
        "delivery.long_poll_timeout" => "how long GET /api/v1/messages waits for something new",
        "stomp.enabled" => "serve a STOMP 1.0-1.2 broker over WebSocket at stomp.path",
        "stomp.path" => "path of the STOMP endpoint (Spring: registry.addEndpoint(...))",
        "stomp.broker_prefixes" => "pub/sub destination prefixes (Spring: enableSimpleBroker(...))",
        "stomp.user_prefix" => "user destinations: /user/queue/x reaches one user's sessions (setUserDestinationPrefix)",
        "stomp.app_prefix" => "application destinations (setApplicationDestinationPrefixes); need a backend",
        "stomp.heartbeat_send" => "shortest interval the broker sends heart-beats at; \"0s\" = none",
        "stomp.heartbeat_receive" => "interval wanted from clients; 3 missed close the connection; \"0s\" = none",
        "stomp.connect_timeout" => "time to send an accepted CONNECT; then ERROR and close",
        "stomp.max_header_bytes" => "largest command line + headers of a frame; larger: ERROR and close",
        "stomp.max_headers" => "most headers in a frame; more: ERROR and close",
        "stomp.max_body_bytes" => "largest frame body; larger: ERROR and close",
        "stomp.max_subscriptions" => "subscriptions per session",
        "stomp.max_pending_acks" => "un-ACKed messages per session (client ack modes); beyond, the oldest is dropped",
        "stomp.max_transactions" => "open transactions per session",
        "stomp.max_transaction_frames" => "frames one transaction may hold",
        "stomp.app_backend" => "http://host:port/path SENDs to app_prefix destinations are POSTed to (@MessageMapping); empty: ERROR",
        "stomp.app_timeout" => "connect, write and read timeout of one application backend call",
        "stomp.app_threads" => "application backend calls in flight at once",
        "stomp.app_max_queue" => "SENDs waiting for a backend thread; beyond, ERROR and close",
        "stomp.max_redeliveries" => "deliveries again of a NACKed message before it is dropped",
        "sockjs.chat" => "SockJS fallback on the chat endpoint ws_path (Spring: .withSockJS())",
        "sockjs.stomp" => "SockJS fallback on the STOMP endpoint stomp.path",
        "sockjs.websocket" => "offer the websocket transport (false: streaming and polling only)",
        "sockjs.cookie_needed" => "set a JSESSIONID cookie for sticky load balancers",
        "sockjs.heartbeat" => "heart-beat frame (h) interval to the receiving request",
        "sockjs.disconnect_delay" => "close a session with no receiving request for this long",
        "sockjs.response_limit" => "bytes after which a streaming answer ends and the client reconnects",
        "sockjs.max_buffered_bytes" => "bytes held for a session while nothing receives; beyond, it closes",
        "sockjs.max_sessions" => "SockJS sessions at once per endpoint; beyond, 503",
        "sockjs.client_url" => "sockjs-client script loaded by /iframe.html",
        "sockjs.allowed_origins" => "Origin values allowed to open sessions; \"*\" = any",
        "engine.listen" => "(overridden by listen above)",
        "engine.workers" => "worker threads; 0 = one per core",
        "engine.backlog" => "listen backlog per worker",
        "engine.max_handshake_bytes" => "largest HTTP request head; larger gets 431",
        "engine.max_headers" => "most request headers; more gets 431",
        "engine.max_body_bytes" => "largest HTTP request body (push API); larger gets 413",
        "engine.handshake_timeout_ms" => "time to complete the HTTP request",
        "engine.max_frame_size" => "largest WebSocket frame; larger closes 1009",
        "engine.max_message_size" => "largest WebSocket message; larger closes 1009",
        "engine.write_high_water" => "queued bytes above which reading from the client pauses",
        "engine.max_queued_bytes" => "queued bytes above which slow_consumer applies",
        "engine.slow_consumer" => "close (1008) | drop",
        "engine.heartbeat_interval_ms" => "ping a silent client after this long; 0 = off",
        "engine.idle_timeout_ms" => {
            "close (1001) a client silent this long, pongs included; 0 = off"
        }
        "engine.max_connections" => "connections at once; more get 503",
        "engine.max_connections_per_ip" => "connections per client address; 0 = no limit",
        "engine.close_timeout_ms" => "wait for the peer to close TCP after our close",
        "engine.shutdown_timeout_ms" => "wait for clients to answer 1001 on shutdown",
        "engine.allowed_origins" => "Origin allow-list; empty = any",
        "engine.subprotocols" => "subprotocols offered",
        "engine.read_buffer_size" => "each worker's read buffer",
        "tls.cert" => "PEM certificate chain for wss:// and https://; empty = no TLS (SIGHUP reloads it)",
        "tls.key" => "PEM private key of tls.cert",
        "tcp.listen" => "address of a raw TCP listener speaking the chat protocol; empty = none",
        "tcp.framing" => "line (one JSON message per line) | length_prefix (4-byte big-endian length)",
        "tcp.tls" => "the raw TCP listener speaks TLS with tls.cert",
        "tcp.max_message_bytes" => {
            "largest raw TCP message; longer gets ERROR 6 and a close; 0 = limits.max_message_bytes"
        }
        "tls.listen" => "a second address that speaks TLS beside listen; empty = listen itself speaks TLS",
        "engine.raw" => {
            "more raw TCP listeners: [[engine.raw]] listen, route, framing, tls, max_message_size"
        }
        "engine.deflate.enabled" => "accept permessage-deflate when a client offers it",
        "engine.deflate.server_context_takeover" => {
            "keep the server's compression history per connection (~256 KiB each at 15/8); false = compress a broadcast once for all"
        }
        "engine.deflate.client_context_takeover" => {
            "let clients keep theirs (a ~40 KiB decompressor per connection); false = one borrowed per message"
        }
        "engine.deflate.server_max_window_bits" => "window (log2) the server compresses with, 9-15",
        "engine.deflate.client_max_window_bits" => "window (log2) clients may use when they offer the parameter, 9-15",
        "engine.deflate.mem_level" => "zlib memory level of the server's compressors, 1-9",
        "engine.deflate.level" => "compression level, 0 (store) to 9",
        "engine.deflate.compression_min_size" => "messages shorter than this go uncompressed",
        "engine.deflate.skip_incompressible" => "send a message uncompressed when deflate does not shorten it",

        _ => "",
    }
}

fn render_table(v: &toml::Value, prefix: &str, out: &mut String) {
    let Some(table) = v.as_table() else {
        return;
    };
    let mut subtables = Vec::new();
    for (k, val) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        if val.is_table() {
            subtables.push((path, val));
            continue;
        }
        let c = comment(&path);
        if !c.is_empty() {
            out.push_str(&format!("# {c}\n"));
        }
        out.push_str(&format!("{k} = {val}\n"));
    }
    for (path, val) in subtables {
        out.push_str(&format!("\n[{path}]\n"));
        render_table(val, &path, out);
    }
}

/// Overlays `from` onto `into`, table by table.
fn merge(into: &mut toml::Value, from: toml::Value) {
    match (into, from) {
        (toml::Value::Table(a), toml::Value::Table(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) if existing.is_table() && v.is_table() => merge(existing, v),
                    _ => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Sets `dotted` (e.g. `auth.mode`) to `raw`, read as a TOML value when it is one (numbers,
/// booleans, arrays) and as a string otherwise.
fn set(tree: &mut toml::Value, dotted: &str, raw: &str) -> Result<(), ConfigError> {
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let mut node = tree;
    let parts: Vec<&str> = dotted.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let table = node
            .as_table_mut()
            .ok_or_else(|| ConfigError::Invalid(format!("{dotted}: not a table")))?;
        if i == parts.len() - 1 {
            if !table.contains_key(*part) {
                return Err(ConfigError::Invalid(format!("unknown setting {dotted}")));
            }
            // Keep the type of the default: a string field stays a string even if the
            // value looks like a number.
            let value = match (&table[*part], value) {
                (toml::Value::String(_), v) if !v.is_str() => toml::Value::String(raw.to_owned()),
                (_, v) => v,
            };
            table.insert((*part).to_owned(), value);
            return Ok(());
        }
        node = table
            .get_mut(*part)
            .ok_or_else(|| ConfigError::Invalid(format!("unknown setting {dotted}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_in_order_and_unknown_keys_fail() {
        let c = ChatConfig::load(
            None,
            &[
                "auth.mode=none".into(),
                "limits.sessions_per_user=2".into(),
                "api.key=123".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.auth.mode, AuthMode::None);
        assert_eq!(c.limits.sessions_per_user, 2);
        assert_eq!(c.api.key, "123");
        assert!(ChatConfig::load(None, &["auth.nope=1".into()]).is_err());
        assert!(
            ChatConfig::load(None, &["auth.mode=jwt".into()]).is_err(),
            "jwt needs a key"
        );
    }

    #[test]
    fn rendering_round_trips() {
        let c = ChatConfig::default();
        let text = c.render_commented();
        assert!(text.contains("# jwt | demo"));
        let back: ChatConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s").unwrap().as_secs(), 10);
        assert_eq!(parse_duration("250ms").unwrap().as_millis(), 250);
        assert_eq!(parse_duration("2m").unwrap().as_secs(), 120);
        assert!(parse_duration("ten").is_err());
    }
}
